// Applies the clock rewrite (src/sql/time-rewrite.ts) to protocol messages:
// a Parse gets the rewritten text, each Bind of that statement gets the
// transaction's (or statement's) timestamp as extra text parameters, and a
// simple Query gets literals.

import { F } from '../protocol/codes.ts'
import { message } from '../protocol/encode.ts'
import { Reader, type ParseMsg } from '../protocol/decode.ts'
import { findTimeSites, siteValue, withLiterals, withParams, type TimeSite } from '../sql/time-rewrite.ts'

export interface TimeParams {
  per: TimeSite['per'][]
  sites: TimeSite[]
}

export interface Clock {
  tx: string
  stmt: string
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8')
}

/** A Parse with the clock calls turned into parameters, or null if it has none. */
export function rewriteParse(p: ParseMsg): { bytes: Buffer; time: TimeParams } | null {
  const t = findTimeSites(p.query)
  if (!t) return null
  const first = Math.max(p.paramTypes.length, t.maxParam) + 1
  const text = withParams(p.query, t, first)
  const types = Buffer.alloc(2 + 4 * p.paramTypes.length)
  types.writeInt16BE(p.paramTypes.length, 0)
  p.paramTypes.forEach((oid, i) => types.writeInt32BE(oid, 2 + 4 * i))
  return { bytes: message(F.Parse, Buffer.concat([cstr(p.name), cstr(text), types])), time: { per: t.sites.map((s) => s.per), sites: t.sites } }
}

/** The Bind with the clock values appended as text parameters. */
export function rewriteBind(body: Buffer, time: TimeParams, clock: Clock): Buffer {
  const r = new Reader(body)
  const portal = r.cstring()
  const statement = r.cstring()
  const nFmt = r.int16()
  const fmts: number[] = []
  for (let i = 0; i < nFmt; i++) fmts.push(r.int16())
  const nParams = r.int16()
  const valuesStart = r.off
  for (let i = 0; i < nParams; i++) {
    const len = r.int32()
    if (len > 0) r.bytes(len)
  }
  const values = body.subarray(valuesStart, r.off)
  const rest = body.subarray(r.off)
  // A fresh random value per site and per execution, the same for every backend.
  const extra = time.sites.map((s) => Buffer.from(siteValue(s, clock.tx, clock.stmt), 'utf8'))
  // Format codes: none or one code covering all stays valid only if it is text (0).
  let newFmts: number[]
  if (nFmt === 0 || (nFmt === 1 && fmts[0] === 0)) newFmts = fmts
  else if (nFmt === 1) newFmts = [...Array(nParams).fill(fmts[0]), ...extra.map(() => 0)]
  else newFmts = [...fmts, ...extra.map(() => 0)]
  const head = Buffer.alloc(2 + 2 * newFmts.length + 2)
  head.writeInt16BE(newFmts.length, 0)
  newFmts.forEach((f, i) => head.writeInt16BE(f, 2 + 2 * i))
  head.writeInt16BE(nParams + extra.length, 2 + 2 * newFmts.length)
  const extraBytes = extra.map((e) => {
    const b = Buffer.alloc(4 + e.length)
    b.writeInt32BE(e.length, 0)
    e.copy(b, 4)
    return b
  })
  return message(F.Bind, Buffer.concat([cstr(portal), cstr(statement), head, values, ...extraBytes, rest]))
}

/** A simple Query with the clock calls replaced by literals, or null if it has none. */
export function rewriteQuery(sql: string, clock: Clock): Buffer | null {
  const t = findTimeSites(sql)
  if (!t) return null
  return message(F.Query, cstr(withLiterals(sql, t, clock.tx, clock.stmt)))
}
