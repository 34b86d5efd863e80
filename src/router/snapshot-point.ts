// Where a REPEATABLE READ or SERIALIZABLE transaction takes its snapshot.
// PostgreSQL takes it at the transaction's first statement that needs one
// (not BEGIN, SET, SAVEPOINT...). Each backend takes its own; unless every
// backend takes it at the same point of the commit order, a write committing
// at that moment is inside one backend's snapshot and outside another's, and
// whatever the transaction writes from what it read differs silently. The
// session therefore holds new commits and lets those in flight land while the
// snapshot is taken (frontend/admit.ts and execute.ts, DESIGN trap "Snapshots").

import type { Isolation, StatementInfo } from '../sql/types.ts'

const SNAPSHOT_LEVELS = new Set<string>(['repeatable read', 'serializable'])

/** Kinds of statement that run with a snapshot. */
const NEEDS_SNAPSHOT = new Set<string>(['read', 'write', 'ddl', 'copy-in', 'copy-out', 'not-replicable'])

export interface SnapshotState {
  /** The backends are inside a transaction block (txStatus 'T'). */
  inTransaction: boolean
  /** That transaction has taken its snapshot already. */
  taken: boolean
  /** The transaction's isolation level, or the session's default. */
  isolation: string
  defaultIsolation: string
}

/**
 * 'before': the batch's first statement takes the open transaction's snapshot (the session takes it
 * first, on its own, with commits held an instant). 'during': a later statement of the batch does
 * (BEGIN in the same batch): commits are held while the batch runs. null: no snapshot to order.
 */
export function snapshotPoint(executed: readonly StatementInfo[], st: SnapshotState): 'before' | 'during' | null {
  let inTx = st.inTransaction
  let taken = st.taken
  let level = st.isolation
  let began = false
  for (const s of executed) {
    const op = s.tx?.op
    if (op === 'begin') {
      began = true
      inTx = true
      taken = false
      level = s.tx!.isolation ?? st.defaultIsolation
      continue
    }
    if (op === 'set_transaction') {
      if (s.tx!.isolation) level = s.tx!.isolation
      continue
    }
    if (op === 'commit' || op === 'rollback' || op === 'prepare') {
      inTx = false
      continue
    }
    if (!takesSnapshot(s)) continue
    if (inTx && !taken && SNAPSHOT_LEVELS.has(level)) return began ? 'during' : 'before'
    if (inTx) taken = true
  }
  return null
}

/** Whether this statement runs with a snapshot (the first such statement fixes a transaction's). */
export function takesSnapshot(s: StatementInfo): boolean {
  // LOCK TABLE runs without one: "BEGIN; LOCK t; SELECT" takes the snapshot after the lock, by design.
  if (s.command === 'LOCK TABLE') return false
  if (NEEDS_SNAPSHOT.has(s.kind)) return true
  const op = s.session?.op
  return op === 'declare_cursor' || op === 'notify'
}

export function isSnapshotLevel(level: Isolation | string): boolean {
  return SNAPSHOT_LEVELS.has(level)
}
