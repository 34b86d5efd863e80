// The proxy's lock manager: strict two-phase locking on named resources
// (tables, sequences, pseudo-resources), so conflicting statements reach every
// backend in one order. A wait-for graph is checked whenever a request has to
// wait; the request that would close a cycle is refused (the deadlock victim).

/**
 * Multi-granularity modes: IS/IX on a table announce S/X locks on some of its
 * keys; S/X on a table cover all of them; SIX = S plus IX.
 */
export type LockMode = 'IS' | 'IX' | 'S' | 'SIX' | 'X'

export interface LockRequest {
  resource: string
  mode: LockMode
}

export interface LockOwner {
  id: number
  /** Shown in deadlock details and SHOW LOCKS. */
  label: string
}

export class DeadlockError extends Error {
  constructor(readonly cycle: LockOwner[]) {
    super('deadlock detected')
  }
}

export class LockWaitAborted extends Error {}

interface Waiter {
  owner: LockOwner
  mode: LockMode
  resolve: () => void
  reject: (e: Error) => void
}

interface Resource {
  holders: Map<number, { owner: LockOwner; mode: LockMode }>
  queue: Waiter[]
}

const COMPAT: Record<LockMode, Set<LockMode>> = {
  IS: new Set<LockMode>(['IS', 'IX', 'S', 'SIX']),
  IX: new Set<LockMode>(['IS', 'IX']),
  S: new Set<LockMode>(['IS', 'S']),
  SIX: new Set<LockMode>(['IS']),
  X: new Set<LockMode>(),
}

export function compatible(a: LockMode, b: LockMode): boolean {
  return COMPAT[a].has(b)
}

const RANK: Record<LockMode, number> = { IS: 0, IX: 1, S: 1, SIX: 2, X: 3 }

/** Does holding `held` already give `wanted`? */
export function covers(held: LockMode, wanted: LockMode): boolean {
  if (held === wanted || held === 'X') return true
  if (wanted === 'IS') return true
  if (held === 'SIX') return wanted === 'S' || wanted === 'IX'
  return false
}

/** The weakest mode that gives both. */
export function join(a: LockMode, b: LockMode): LockMode {
  if (covers(a, b)) return a
  if (covers(b, a)) return b
  return RANK[a] === 1 && RANK[b] === 1 ? 'SIX' : 'X'
}

function mergeRequests(requests: LockRequest[]): Map<string, LockMode> {
  const merged = new Map<string, LockMode>()
  for (const r of requests) {
    const m = merged.get(r.resource)
    merged.set(r.resource, m ? join(m, r.mode) : r.mode)
  }
  return merged
}

export class LockManager {
  private resources = new Map<string, Resource>()
  /** What each owner holds, for release. */
  private held = new Map<number, Set<string>>()
  /** The resource each owner is waiting on (at most one at a time). */
  private waiting = new Map<number, { resource: string; waiter: Waiter }>()
  waits = 0
  deadlocks = 0

  /**
   * Takes every lock of `requests` for `owner`, in a canonical order so that
   * two multi-lock requests never wait on each other halfway. Resolves when
   * all are held; rejects with DeadlockError (holding what it had before plus
   * what it got so far, for the caller to release) or LockWaitAborted.
   */
  async acquire(owner: LockOwner, requests: LockRequest[]): Promise<void> {
    const merged = mergeRequests(requests)
    const ordered = [...merged.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    for (const [resource, mode] of ordered) {
      if (!this.tryGrant(owner, resource, mode)) await this.wait(owner, resource, mode)
    }
  }

  /**
   * All of `requests` at once, or none: for NOWAIT statements, which must fail
   * at once rather than wait. Returns false (holding nothing new) if any lock
   * would have to wait.
   */
  tryAcquire(owner: LockOwner, requests: LockRequest[]): boolean {
    const merged = mergeRequests(requests)
    for (const [name, mode] of merged) {
      const res = this.resources.get(name)
      if (!res) continue
      const mine = res.holders.get(owner.id)
      if (mine && covers(mine.mode, mode)) continue
      if (!this.grantable(res, owner, mine ? join(mine.mode, mode) : mode, false)) return false
    }
    for (const [name, mode] of merged) if (!this.tryGrant(owner, name, mode)) throw new Error('lock state changed during tryAcquire')
    return true
  }

  /** Releases everything `owner` holds and wakes whoever can now go. */
  releaseAll(owner: LockOwner): void {
    if (this.waiting.has(owner.id)) this.abortWait(owner, new LockWaitAborted('session ended'))
    const names = this.held.get(owner.id)
    if (!names) return
    this.held.delete(owner.id)
    for (const name of names) {
      const res = this.resources.get(name)
      if (!res) continue
      res.holders.delete(owner.id)
      this.wake(name, res)
    }
  }

  /** Rejects a pending wait (cancel request, session closed). */
  abortWait(owner: LockOwner, err: Error): boolean {
    const w = this.waiting.get(owner.id)
    if (!w) return false
    this.waiting.delete(owner.id)
    const res = this.resources.get(w.resource)
    if (res) {
      res.queue = res.queue.filter((q) => q !== w.waiter)
      this.wake(w.resource, res)
    }
    w.waiter.reject(err)
    return true
  }

  isWaiting(owner: LockOwner): boolean {
    return this.waiting.has(owner.id)
  }

  holds(owner: LockOwner): number {
    return this.held.get(owner.id)?.size ?? 0
  }

  /** Holders and waiters of every resource, for SHOW LOCKS and tests. */
  snapshot(): { resource: string; holders: string[]; waiters: string[] }[] {
    return [...this.resources.entries()].map(([resource, r]) => ({
      resource,
      holders: [...r.holders.values()].map((h) => `${h.owner.label}:${h.mode}`),
      waiters: r.queue.map((w) => `${w.owner.label}:${w.mode}`),
    }))
  }

  private res(name: string): Resource {
    let r = this.resources.get(name)
    if (!r) {
      r = { holders: new Map(), queue: [] }
      this.resources.set(name, r)
    }
    return r
  }

  private grantable(res: Resource, owner: LockOwner, mode: LockMode, ignoreQueue: boolean): boolean {
    for (const [id, h] of res.holders) {
      if (id === owner.id) continue
      if (!compatible(h.mode, mode)) return false
    }
    // FIFO: do not overtake a conflicting earlier waiter (no starvation of X).
    if (!ignoreQueue) for (const w of res.queue) if (w.owner.id !== owner.id && !compatible(w.mode, mode)) return false
    return true
  }

  private tryGrant(owner: LockOwner, name: string, mode: LockMode): boolean {
    const res = this.res(name)
    const mine = res.holders.get(owner.id)
    if (mine && covers(mine.mode, mode)) return true
    const target = mine ? join(mine.mode, mode) : mode
    if (!this.grantable(res, owner, target, false)) return false
    this.grant(owner, name, res, target)
    return true
  }

  private grant(owner: LockOwner, name: string, res: Resource, mode: LockMode): void {
    const mine = res.holders.get(owner.id)
    res.holders.set(owner.id, { owner, mode: mine ? join(mine.mode, mode) : mode })
    let set = this.held.get(owner.id)
    if (!set) {
      set = new Set()
      this.held.set(owner.id, set)
    }
    set.add(name)
  }

  private wait(owner: LockOwner, name: string, mode: LockMode): Promise<void> {
    const res = this.res(name)
    return new Promise<void>((resolve, reject) => {
      const mine = res.holders.get(owner.id)
      const waiter: Waiter = { owner, mode: mine ? join(mine.mode, mode) : mode, resolve, reject }
      // An upgrade (S held, X wanted) goes ahead of the queue, as PostgreSQL does.
      if (res.holders.has(owner.id)) res.queue.unshift(waiter)
      else res.queue.push(waiter)
      this.waiting.set(owner.id, { resource: name, waiter })
      this.waits++
      const cycle = this.findCycle(owner)
      if (cycle) {
        this.deadlocks++
        res.queue = res.queue.filter((q) => q !== waiter)
        this.waiting.delete(owner.id)
        reject(new DeadlockError(cycle))
        return
      }
      // An upgrade placed at the head may be grantable right now (sole holder).
      this.wake(name, res)
    })
  }

  /** Owners `id` waits for: conflicting holders and conflicting earlier waiters. */
  private blockers(id: number): LockOwner[] {
    const w = this.waiting.get(id)
    if (!w) return []
    const res = this.resources.get(w.resource)
    if (!res) return []
    const out: LockOwner[] = []
    for (const [hid, h] of res.holders) if (hid !== id && !compatible(h.mode, w.waiter.mode)) out.push(h.owner)
    for (const q of res.queue) {
      if (q === w.waiter) break
      if (q.owner.id !== id && !compatible(q.mode, w.waiter.mode)) out.push(q.owner)
    }
    return out
  }

  private findCycle(start: LockOwner): LockOwner[] | null {
    const path: LockOwner[] = []
    const seen = new Set<number>()
    const dfs = (o: LockOwner): boolean => {
      for (const b of this.blockers(o.id)) {
        if (b.id === start.id) {
          path.push(b)
          return true
        }
        if (seen.has(b.id)) continue
        seen.add(b.id)
        path.push(b)
        if (dfs(b)) return true
        path.pop()
      }
      return false
    }
    path.push(start)
    return dfs(start) ? path : null
  }

  private wake(name: string, res: Resource): void {
    while (res.queue.length) {
      const w = res.queue[0]
      if (!this.grantable(res, w.owner, w.mode, true)) break
      res.queue.shift()
      this.waiting.delete(w.owner.id)
      this.grant(w.owner, name, res, w.mode)
      w.resolve()
      // Several S waiters may go together; an X stops the loop on the next check.
    }
    if (res.holders.size === 0 && res.queue.length === 0) this.resources.delete(name)
  }
}
