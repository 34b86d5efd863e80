// The session's clock as PostgreSQL's: now() fixed when a transaction
// starts, statement_timestamp() per batch, both with microseconds.

import type { TxState } from './tx-state.ts'

/** The ISO text of the last whole second formatted: every commit formats the time, most in the same second. */
let cachedSecond = -1
let cachedPrefix = ''

/** The current time with microseconds, as PostgreSQL's clock has. */
export function isoMicros(t: number): string {
  const ms = Math.floor(t)
  const us = Math.min(999, Math.floor((t - ms) * 1000))
  const second = Math.floor(ms / 1000)
  if (second !== cachedSecond) {
    cachedSecond = second
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 20) // 'YYYY-MM-DDTHH:MM:SS.'
  }
  const frac = (ms - second * 1000) * 1000 + us
  return cachedPrefix + String(frac).padStart(6, '0') + 'Z'
}

/** Now, as isoMicros formats it. */
export function nowMicros(): string {
  return isoMicros(performance.timeOrigin + performance.now())
}

/**
 * now() is fixed when a transaction starts; statement_timestamp() per batch.
 * Only the instant is taken here: the text is formatted if a statement needs it.
 */
export function batchClock(tx: TxState): BatchClock {
  const stmt = performance.timeOrigin + performance.now()
  if (tx.status === 'I' || !tx.startedAt) tx.startedAt = stmt
  return new BatchClock(tx.startedAt, stmt)
}

/** A class rather than an object literal with getters: no closures made per batch. */
class BatchClock {
  constructor(
    private readonly txAt: number,
    private readonly stmtAt: number,
  ) {}

  get tx(): string {
    return isoMicros(this.txAt)
  }

  get stmt(): string {
    return isoMicros(this.stmtAt)
  }
}
