// Applies the value rewrites to protocol messages: clock calls and random
// calls (src/sql/time-rewrite.ts) and volatile column defaults made explicit
// (src/router/default-fill.ts). A Parse gets the rewritten text with a new
// parameter per slot, each Bind of that statement gets the values as extra
// text parameters, and a simple Query gets literals.

import { F } from '../protocol/codes.ts'
import { message } from '../protocol/encode.ts'
import { parseBind, type ParseMsg } from '../protocol/decode.ts'
import { timeSitesByShape } from '../sql/shape-cache.ts'
import { siteValue, slotsOf, withLiterals, withParams, type Edit, type Slot } from '../sql/time-rewrite.ts'
import { fillDefaults, NONE, type Refusal } from './default-fill.ts'
import type { CatalogData } from '../scheduler/catalog.ts'

export interface TimeParams {
  slots: Slot[]
}

export interface Clock {
  tx: string
  stmt: string
}

export interface Rewrite {
  edits: Edit[]
  maxParam: number
  /** Random functions every call of which the edits replace. */
  covered: ReadonlySet<string>
  /** The statement relies on a default pgraid cannot supply. */
  refusal: Refusal | null
}

const NO_COVER: ReadonlySet<string> = new Set()

/** Every value rewrite of one statement text, or null when it needs none. */
export function rewriteOf(sql: string, cat: CatalogData | null, allowed: readonly string[]): Rewrite | null {
  const t = timeSitesByShape(sql)
  const d = cat ? fillDefaults(sql, cat, allowed) : NONE
  if (!d.edits.length && !d.refusal) return t && { edits: t.edits, maxParam: t.maxParam, covered: t.covered, refusal: null }
  const edits = t ? [...t.edits, ...d.edits].sort((a, b) => a.start - b.start || a.end - b.end) : d.edits
  return { edits, maxParam: Math.max(t?.maxParam ?? 0, d.maxParam), covered: t?.covered ?? NO_COVER, refusal: d.refusal }
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8')
}

/** A Parse with the slots turned into parameters, or null if it needs no rewrite. */
export function rewriteParse(p: ParseMsg, rw: Rewrite | null): { bytes: Buffer; time: TimeParams; text: string } | null {
  if (!rw || !rw.edits.length) return null
  const first = Math.max(p.paramTypes.length, rw.maxParam) + 1
  const text = withParams(p.query, rw.edits, first)
  const types = Buffer.alloc(2 + 4 * p.paramTypes.length)
  types.writeInt16BE(p.paramTypes.length, 0)
  p.paramTypes.forEach((oid, i) => types.writeInt32BE(oid, 2 + 4 * i))
  return { bytes: message(F.Parse, Buffer.concat([cstr(p.name), cstr(text), types])), time: { slots: slotsOf(rw.edits) }, text }
}

/** The Bind with the slot values appended as text parameters. */
export function rewriteBind(body: Buffer, time: TimeParams, clock: Clock): Buffer {
  const { portal, statement, formats: fmts, values: params, paramsAt, resultsAt } = parseBind(body)
  const nFmt = fmts.length
  const nParams = params.length
  const values = body.subarray(paramsAt + 2, resultsAt)
  const rest = body.subarray(resultsAt)
  // A fresh random value per slot and per execution, the same for every backend.
  const extra = time.slots.map((s) => Buffer.from(siteValue(s, clock.tx, clock.stmt), 'utf8'))
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

/** A simple Query's text with the slots replaced by literals (the text itself if it needs no rewrite). */
export function rewriteQueryText(sql: string, rw: Rewrite | null, clock: Clock): string {
  if (!rw || !rw.edits.length) return sql
  return withLiterals(sql, rw.edits, clock.tx, clock.stmt)
}

export function queryMessage(text: string): Buffer {
  return message(F.Query, cstr(text))
}
