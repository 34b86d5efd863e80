// How far one backend has got through its share of a batch: the queue of
// messages it must answer, the unit it is assembling, whether it is skipping
// to the Sync after an error, and the digest of the rows it returned (so
// several backends' rows can be compared without keeping them). Plain data
// and functions, no object of their own: the exchange calls them from its
// data callbacks, which run for every message a backend sends.

import type { Hash } from 'node:crypto'
import { F } from '../protocol/codes.ts'
import type { ResponseTracker } from './tracker.ts'
import type { RowDigest } from './vote.ts'
import type { PlannedMsg } from './exchange-types.ts'

export interface LinkProgress {
  queue: number[]
  qpos: number
  tracker: ResponseTracker | null
  slices: Buffer[]
  skipping: boolean
  /** The DataRow being hashed, and the rows of the current unit. */
  row: Hash | null
  rows: RowDigest | null
}

/** Every link built here, so all have one shape. */
export function newLink(skipping: boolean): LinkProgress {
  return { queue: [], qpos: 0, tracker: null, slices: [], skipping, row: null, rows: null }
}

const MOD48 = 2 ** 48

/** A DataRow ended: its digest joins the unit's row sums (order-independent, see RowDigest). */
export function rowEnded(lp: LinkProgress | undefined): void {
  if (!lp?.row) return
  const d = lp.row.digest()
  lp.row = null
  const r = (lp.rows ??= { count: 0, s1: 0, s2: 0 })
  r.count++
  r.s1 = (r.s1 + d.readUIntBE(0, 6)) % MOD48
  r.s2 = (r.s2 + d.readUIntBE(6, 6)) % MOD48
}

/** Messages a skipping backend will ignore are answered with nothing; so is a Flush. */
export function settle(idx: number, lp: LinkProgress, msgs: PlannedMsg[], finished: Set<number>[]): void {
  while (lp.qpos < lp.queue.length) {
    const m = lp.queue[lp.qpos]
    const code = msgs[m].code
    if (lp.skipping && code !== F.Sync) {
      finished[m].add(idx)
      lp.qpos++
      continue
    }
    if (code === F.Flush) {
      finished[m].add(idx)
      lp.qpos++
      continue
    }
    break
  }
}
