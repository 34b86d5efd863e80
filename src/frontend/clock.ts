// The session's clock as PostgreSQL's: now() fixed when a transaction
// starts, statement_timestamp() per batch, both with microseconds.

import type { TxState } from './tx-state.ts'

/** The current time with microseconds, as PostgreSQL's clock has. */
export function isoMicros(t: number): string {
  const ms = Math.floor(t)
  const us = Math.min(999, Math.floor((t - ms) * 1000))
  return new Date(ms).toISOString().slice(0, 23) + String(us).padStart(3, '0') + 'Z'
}

/** Now, as isoMicros formats it. */
export function nowMicros(): string {
  return isoMicros(performance.timeOrigin + performance.now())
}

/**
 * now() is fixed when a transaction starts; statement_timestamp() per batch.
 * Only the instant is taken here: the text is formatted if a statement needs it.
 */
export function batchClock(tx: TxState): { tx: string; stmt: string } {
  const stmt = performance.timeOrigin + performance.now()
  if (tx.status === 'I' || !tx.startedAt) tx.startedAt = stmt
  const txAt = tx.startedAt
  return {
    get tx() {
      return isoMicros(txAt)
    },
    get stmt() {
      return isoMicros(stmt)
    },
  }
}
