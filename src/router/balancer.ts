// Picks the backend for a read: fewest outstanding requests relative to its
// weight, ties broken round-robin so idle clusters still spread the load.

export interface BalancedBackend {
  index: number
  weight: number
  outstanding: number
}

export class Balancer {
  private rr = 0
  constructor(readonly backends: BalancedBackend[]) {}

  /** Chooses among `allowed` (indexes); falls back to any allowed if all weights are 0. */
  pick(allowed: number[]): number {
    let best = -1
    let bestScore = Infinity
    const n = allowed.length
    const start = this.rr++ % Math.max(n, 1)
    for (let k = 0; k < n; k++) {
      const idx = allowed[(start + k) % n]
      const b = this.backends[idx]
      if (!b || b.weight <= 0) continue
      const score = (b.outstanding + 1) / b.weight
      if (score < bestScore) {
        bestScore = score
        best = idx
      }
    }
    return best >= 0 ? best : allowed[start % n]
  }
}
