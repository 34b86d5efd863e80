// Analysis of simple-protocol statements without a parse per distinct text.
// Clients that inline literals (psql, pgbench -M simple, psycopg2, many ORMs)
// send a new text for every execution, and the analysis cache keyed by exact
// text never hits. Texts that differ only in their string and number literals
// share a "shape" (the text with the literals masked), and so the analysis of
// one of them answers for all:
// - a read's analysis does not depend on its literal values at all;
// - a write's does only through its key values (keys.ts). The first text of a
//   shape is analysed with the source of every literal key value traced, and
//   a later text of the shape gets that analysis with its own literals put in
//   their places (converted exactly as keys.ts converts constants).
// Texts the simple literal scanner cannot cut safely (quoted identifiers,
// dollar quotes, backslashes, comments, E''/U&''/B''/X''/N'' strings, a
// string continued on the next line) always take the exact path, and so does
// anything whose analysis a literal could change: sequence names
// (nextval('s')), statements other than SELECT/INSERT/UPDATE/DELETE (SET
// values, EXPLAIN and COPY options), several statements in one text, and a
// write whose keys merged equal values.

import { analyze, analyzeTraced, type Analysis, type KeyAccess, type KeyValue, type StatementInfo } from './analyze.ts'
import { negate, numeric, type ConstTrace } from './keys.ts'
import { findTimeSites, HINT, type Edit, type TimeAnalysis } from './time-rewrite.ts'

const MAX = 10_000
const MAX_TEXT = 8192
const UNSAFE = /["$\\&]|--|\/\*|\b[eEuUbBxXnN]'/
/** 'a'<newline>'b' is one constant 'ab' in PostgreSQL, two literals to the scanner. */
const CONTINUED = /'\s*\n\s*'/
const LITERAL = /'(?:[^']|'')*'|\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b/g
const ASCII = /^[\x00-\x7f]*$/
const DML = new Set(['INSERT', 'UPDATE', 'DELETE'])

/** A literal's span in the text, and the span of its mask in the shape. */
interface Literal {
  start: number
  end: number
  shapeStart: number
  shapeEnd: number
}

/** A literal key value of the template: which literal of the text gives it, and whether negated. */
interface Slot {
  value: Extract<KeyValue, { kind: 'const' }>
  literal: number
  neg: boolean
}

type Entry = { kind: 'read'; analysis: Analysis } | { kind: 'write'; statement: StatementInfo; slots: Slot[]; head: number; tail: number } | { kind: 'none' }

const shapes = new Map<string, Entry>()
const NONE: Entry = { kind: 'none' }

/** The last text scanned: the planner analyses a simple Query, then looks for its clock calls. */
let lastScan: { sql: string; result: { shape: string; literals: Literal[] } | null } | null = null

function scan(sql: string): { shape: string; literals: Literal[] } | null {
  if (lastScan?.sql === sql) return lastScan.result
  const result = scanText(sql)
  lastScan = { sql, result }
  return result
}

function scanText(sql: string): { shape: string; literals: Literal[] } | null {
  if (sql.length > MAX_TEXT || UNSAFE.test(sql)) return null
  const literals: Literal[] = []
  let delta = 0
  const shape = sql.replace(LITERAL, (m: string, at: number) => {
    const mask = m[0] === "'" ? "''" : '0'
    literals.push({ start: at, end: at + m.length, shapeStart: at + delta, shapeEnd: at + delta + mask.length })
    delta += mask.length - m.length
    return mask
  })
  return { shape, literals }
}

export function shapeOf(sql: string): string | null {
  return scan(sql)?.shape ?? null
}

/** The analysis of `sql`, from the shape cache when a text of the same shape was seen. */
export function analyzeForRouting(sql: string): Analysis {
  const scanned = scan(sql)
  if (scanned === null) return analyze(sql)
  const hit = shapes.get(scanned.shape)
  if (hit?.kind === 'read') return hit.analysis
  if (hit?.kind === 'write') {
    const a = instantiate(hit, sql, scanned.literals)
    if (a) return a
    return analyze(sql)
  }
  if (hit?.kind === 'none') return analyze(sql)
  const { analysis, trace } = analyzeTraced(sql)
  remember(scanned.shape, entryFor(analysis, trace, sql, scanned.literals))
  return analysis
}

/**
 * The clock and random calls of `sql` (time-rewrite.ts findTimeSites), found
 * on its shape: a call is never inside a literal, so the shape's parse has the
 * same calls, shifted by the literals' change in length before them. A call
 * with a literal inside (CURRENT_TIMESTAMP(3)) takes the exact path.
 */
export function timeSitesByShape(sql: string): TimeAnalysis | null {
  if (!HINT.test(sql)) return null
  const scanned = scan(sql)
  if (!scanned || !scanned.literals.length || !ASCII.test(sql)) return findTimeSites(sql)
  const onShape = findTimeSites(scanned.shape)
  if (!onShape) return findTimeSites(sql)
  const lits = scanned.literals
  const edits: Edit[] = []
  let k = 0
  let delta = 0
  for (const e of onShape.edits) {
    for (; k < lits.length && lits[k]!.shapeEnd <= e.start; k++) delta += lits[k]!.end - lits[k]!.start - (lits[k]!.shapeEnd - lits[k]!.shapeStart)
    if (k < lits.length && lits[k]!.shapeStart < e.end) return findTimeSites(sql)
    edits.push({ ...e, start: e.start + delta, end: e.end + delta })
  }
  return { ...onShape, edits }
}

/** Forgets every shape (tests). */
export function clearShapeCache(): void {
  shapes.clear()
}

function remember(shape: string, e: Entry): void {
  if (shapes.size >= MAX) shapes.clear()
  shapes.set(shape, e)
}

function entryFor(a: Analysis, trace: ConstTrace, sql: string, literals: Literal[]): Entry {
  if (!a.ok || !a.statements.length) return NONE
  if (a.statements.every((s) => s.kind === 'read' && s.command === 'SELECT' && !s.lockingClause && !s.sequences)) return { kind: 'read', analysis: a }
  if (a.statements.length !== 1 || trace.valueDependent || CONTINUED.test(sql) || !ASCII.test(sql)) return NONE
  const s = a.statements[0]!
  const locking = s.command === 'SELECT' && s.lockingClause
  if (s.kind !== 'write' || (!DML.has(s.command) && !locking) || s.sequences) return NONE
  // The statement's own text: the whole text less surrounding blanks and a final ';', which hold no literal.
  const head = sql.indexOf(s.text)
  if (head < 0 || sql.slice(0, head).trim() !== '' || !/^\s*;?\s*$/.test(sql.slice(head + s.text.length))) return NONE
  const byStart = new Map(literals.map((l, i) => [l.start, i]))
  const slots: Slot[] = []
  const seen = new Set<KeyValue>()
  for (const k of s.keys ?? []) {
    for (const row of k.rows) {
      for (const v of Object.values(row)) {
        if (v.kind !== 'const' || v.type === 'null' || v.type === 'bool' || seen.has(v)) continue // keywords are part of the shape
        seen.add(v)
        const src = trace.sources.get(v)
        if (!src) return NONE
        let at = src.at
        let neg = src.neg
        if (!byStart.has(at) && sql[at] === '-') {
          // -5 folded by the parser: its location is the sign
          at++
          while (/\s/.test(sql[at] ?? '')) at++
          neg = !neg
        }
        const literal = byStart.get(at)
        if (literal === undefined) return NONE
        slots.push({ value: v, literal, neg })
      }
    }
  }
  const entry: Entry = { kind: 'write', statement: s, slots, head, tail: sql.length - head - s.text.length }
  // The template's own literals must give back exactly its values, or the mapping is wrong.
  const again = instantiate(entry, sql, literals)
  if (!again || !sameKeys(again.ok ? again.statements[0]!.keys : undefined, s.keys)) return NONE
  return entry
}

function instantiate(e: Extract<Entry, { kind: 'write' }>, sql: string, literals: Literal[]): Analysis | null {
  if (!ASCII.test(sql) || CONTINUED.test(sql)) return null
  const values = new Map<KeyValue, KeyValue>()
  for (const slot of e.slots) {
    const lit = literals[slot.literal]
    if (!lit) return null
    const raw = sql.slice(lit.start, lit.end)
    let v = raw[0] === "'" ? ({ kind: 'const', text: raw.slice(1, -1).replaceAll("''", "'"), type: 'string' } as KeyValue) : numeric(raw)
    // The template's decisions (casts seen through, canonical forms) hold for values of its types only.
    if (!v || v.kind !== 'const' || v.type !== slot.value.type) return null
    if (slot.neg) v = { ...v, text: negate(v.text) }
    values.set(slot.value, v)
  }
  const s = e.statement
  const text = sql.slice(e.head, sql.length - e.tail)
  const keys = s.keys?.map((k): KeyAccess => {
    const rows = k.rows.map((row) => Object.fromEntries(Object.entries(row).map(([c, v]) => [c, values.get(v) ?? v])))
    // WHERE rows are a set (keys.ts merges equal ones); VALUES rows are kept as written.
    return { ...k, rows: k.op === 'insert' ? rows : distinct(rows) }
  })
  const statement: StatementInfo = keys ? { ...s, text, keys } : { ...s, text }
  return { ok: true, statements: [statement] }
}

function distinct(rows: Record<string, KeyValue>[]): Record<string, KeyValue>[] {
  const seen = new Set<string>()
  return rows.filter((r) => {
    const k = JSON.stringify(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

function sameKeys(a: KeyAccess[] | undefined, b: KeyAccess[] | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}
