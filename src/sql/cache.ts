// Bounded LRU cache keyed by exact query text. Map iteration order is
// insertion order, so "move to the back on hit, evict from the front" gives
// O(1) LRU without a separate linked list.

export interface CacheLimits {
  /** most entries kept */
  maxEntries: number
  /** most key characters kept in total (keys dominate memory for long statements) */
  maxTotalChars: number
  /** longer texts are never cached (bulk INSERTs are rarely repeated verbatim) */
  maxKeyChars: number
}

export const DEFAULT_LIMITS: CacheLimits = {
  maxEntries: 10_000,
  maxTotalChars: 16 * 1024 * 1024,
  maxKeyChars: 256 * 1024,
}

export class LruCache<V> {
  private readonly map = new Map<string, V>()
  private chars = 0
  hits = 0
  misses = 0

  constructor(private limits: CacheLimits = DEFAULT_LIMITS) {}

  get(key: string): V | undefined {
    const v = this.map.get(key)
    if (v === undefined) {
      this.misses++
      return undefined
    }
    this.hits++
    // re-insert to mark as most recently used
    this.map.delete(key)
    this.map.set(key, v)
    return v
  }

  set(key: string, value: V): void {
    if (key.length > this.limits.maxKeyChars) return
    if (this.map.has(key)) {
      this.map.delete(key)
      this.chars -= key.length
    }
    this.map.set(key, value)
    this.chars += key.length
    this.evict()
  }

  setLimits(limits: Partial<CacheLimits>): void {
    this.limits = { ...this.limits, ...limits }
    this.evict()
  }

  clear(): void {
    this.map.clear()
    this.chars = 0
    this.hits = 0
    this.misses = 0
  }

  get size(): number {
    return this.map.size
  }

  private evict(): void {
    while (this.map.size > this.limits.maxEntries || this.chars > this.limits.maxTotalChars) {
      const oldest = this.map.keys().next()
      if (oldest.done) break
      this.map.delete(oldest.value)
      this.chars -= oldest.value.length
    }
  }
}
