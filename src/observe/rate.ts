// Events per second over a recent window (committed write transactions for
// `pgraid status`): counts in one-second buckets, no timers.

export class RateMeter {
  private readonly buckets: number[]
  private second = 0
  total = 0

  constructor(
    private readonly windowSeconds = 60,
    private readonly now: () => number = Date.now,
  ) {
    this.buckets = new Array<number>(windowSeconds).fill(0)
  }

  mark(n = 1): void {
    this.advance()
    this.buckets[this.second % this.windowSeconds]! += n
    this.total += n
  }

  /** Average per second over the last `seconds` whole seconds (the current, partial one excluded). */
  perSecond(seconds = 10): number {
    this.advance()
    const span = Math.min(seconds, this.windowSeconds - 1)
    let sum = 0
    for (let i = 1; i <= span; i++) sum += this.buckets[(this.second - i + this.windowSeconds * 2) % this.windowSeconds]!
    return sum / span
  }

  private advance(): void {
    const s = Math.floor(this.now() / 1000)
    if (this.second === 0) this.second = s
    // Clear the buckets of the seconds that passed without events.
    for (let k = Math.min(s - this.second, this.windowSeconds); k > 0; k--) this.buckets[(s - k + 1) % this.windowSeconds] = 0
    this.second = Math.max(this.second, s)
  }
}
