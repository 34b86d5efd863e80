// The vote (DESIGN invariant 6): how the answers several backends gave to
// one message are compared, unit by unit (CommandComplete tags, row digests,
// SQLSTATEs, transaction status), which answer wins (a strict majority), and
// which differences are the client's doing (a timeout, a cancel, a lock
// timeout, a serialization failure or deadlock on one backend only) rather
// than a divergence. Pure functions; exchange.ts applies them.

import { B } from '../protocol/codes.ts'
import { errorFields } from '../protocol/decode.ts'

export interface Unit {
  type: number
  body: Buffer | null
  slices: Buffer[]
  /** Rows before the terminator (multi-target messages): count and an order-independent digest. */
  rows?: RowDigest
}

/**
 * Rows compared as a multiset: heap order may differ per backend, content may
 * not. Two 48-bit sums of per-row MD5 prefixes (exact in doubles).
 */
export interface RowDigest {
  count: number
  s1: number
  s2: number
}

/** A unit as a failure message names it. */
export function describeUnit(u: Unit | undefined): string {
  if (!u) return 'nothing'
  if (u.type === B.CommandComplete && u.body) {
    const rows = u.rows ? ` with rows ${u.rows.s1.toString(16)}${u.rows.s2.toString(16)}` : ''
    return `"${u.body.toString('utf8', 0, u.body.length - 1)}"${rows}`
  }
  if (u.type === B.ErrorResponse && u.body) {
    const f = errorFields(u.body)
    return `error ${f.C}: ${f.M}`
  }
  if (u.type === B.ReadyForQuery && u.body) return `ready (transaction status ${String.fromCharCode(u.body[0])})`
  return `message '${String.fromCharCode(u.type)}'`
}

/** SQLSTATEs a client or concurrency causes on one backend and not another: cancel/statement_timeout, lock_timeout/NOWAIT, serialization failure, deadlock. */
export const CLIENT_CAUSED = new Set(['57014', '55P03', '40001', '40P01'])

/** The fields of a client-caused error among units that differ, if there is one. */
export function clientCaused(units: (Unit | undefined)[]): Record<string, string> | null {
  const codes = units.map((u) => (u?.type === B.ErrorResponse && u.body ? errorFields(u.body) : null))
  const found = codes.find((f) => !!f && CLIENT_CAUSED.has(f.C ?? ''))
  if (!found) return null
  // Every backend failed alike: one outcome already, nothing to settle.
  return codes.some((f) => f?.C !== found.C) ? found : null
}

/** The answer more than half of the backends gave (index of one of them) and the others; null when no strict majority. */
export function majority(units: (Unit | undefined)[]): { winner: number; losers: number[] } | null {
  const same = (a: Unit | undefined, b: Unit | undefined) => (!a || !b ? a === b : compareUnits([a, b]) === null)
  const groups: number[][] = []
  units.forEach((u, k) => {
    const g = groups.find((g) => same(units[g[0]!], u))
    if (g) g.push(k)
    else groups.push([k])
  })
  const best = groups.reduce((a, b) => (b.length > a.length ? b : a))
  if (best.length * 2 <= units.length) return null
  return { winner: best[0]!, losers: units.map((_, k) => k).filter((k) => !best.includes(k)) }
}

/** null when the units agree; else a short reason. */
export function compareUnits(units: Unit[]): string | null {
  const a = units[0]
  for (let k = 1; k < units.length; k++) {
    const b = units[k]
    if (a.type !== b.type) return 'different messages'
    if (a.rows?.count !== b.rows?.count || a.rows?.s1 !== b.rows?.s1 || a.rows?.s2 !== b.rows?.s2) return 'different rows'
    if (a.type === B.CommandComplete || a.type === B.ReadyForQuery) {
      if (!a.body || !b.body || !a.body.equals(b.body)) return 'different results'
    } else if (a.type === B.ErrorResponse) {
      if (!a.body || !b.body || errorFields(a.body).C !== errorFields(b.body).C) return 'different errors'
    }
  }
  return null
}
