// What the torture harness records: every client operation with its
// invocation and completion times and its outcome, and a seeded random
// source so that `--seed` replays the same schedule of operations and faults.

export type Outcome = 'ok' | 'failed' | 'indeterminate'

export interface Op {
  id: number
  client: number
  kind: 'transfer' | 'enqueue' | 'dequeue' | 'register' | 'txn' | 'vanish'
  /** The client library that ran it. */
  driver?: string
  /** What it asked for: transfer [from, to, amount]; enqueue: its body; dequeue: how many; register: how it draws and whether it commits; txn: list-append micro-ops; vanish: how the client vanishes. */
  args: unknown
  invokedAt: number
  completedAt: number
  outcome: Outcome
  /** enqueue, register: the id it was given; dequeue: the ids it took. */
  result?: unknown
  error?: string
}

export class History {
  readonly ops: Op[] = []
  private next = 1
  private readonly t0 = performance.now()

  now(): number {
    return Math.round(performance.now() - this.t0)
  }

  begin(client: number, kind: Op['kind'], args: unknown): Op {
    const op: Op = { id: this.next++, client, kind, args, invokedAt: this.now(), completedAt: -1, outcome: 'indeterminate' }
    this.ops.push(op)
    return op
  }

  end(op: Op, outcome: Outcome, result?: unknown, error?: string): void {
    op.completedAt = this.now()
    op.outcome = outcome
    if (result !== undefined) op.result = result
    if (error) op.error = error
  }

  count(outcome?: Outcome): number {
    return outcome ? this.ops.filter((o) => o.outcome === outcome).length : this.ops.length
  }
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export class Rng {
  private s: number
  constructor(seed: number) {
    this.s = seed >>> 0
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!
  }
}

/**
 * How a failed call ended: a server's answer (the statement failed, nothing committed) or a lost
 * connection (a commit may have happened). Only the second makes a write indeterminate.
 */
export function classify(e: unknown): { outcome: Outcome; error: string } {
  const err = e as { code?: string; message?: string }
  const code = err.code ?? ''
  const lost = !code || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || /terminated|ECONNRESET|closed|timeout/i.test(err.message ?? '')
  return { outcome: lost ? 'indeterminate' : 'failed', error: `${code || 'no code'} ${err.message ?? ''}`.trim() }
}
