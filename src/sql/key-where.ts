// WHERE-clause keys: the rows of the target table a WHERE clause can match,
// when its top-level AND holds equalities (col = v, col IN (...), (a, b) =
// (...), col = ANY(ARRAY[...]), and ORs of those) on the target's columns.
// Conjuncts not understood only narrow the match, so they are skipped; the
// rows found are then a superset of those touched, which is what locking needs.
import type { A_ArrayExpr, A_Const, A_Expr, BoolExpr, Node, TypeCast } from '@pgsql/types'
import { activeTrace } from './key-trace.ts'
import { castFamily, castKeeps, constant, strings, value } from './key-literals.ts'
import type { KeyValue } from './types.ts'

/** More candidate rows than this (a product of IN lists, a huge VALUES) gives no keys. */
export const MAX_KEY_ROWS = 1000

type Row = Map<string, KeyValue>
/** A disjunction of rows, all over the same columns. */
interface RowSet {
  cols: Set<string>
  rows: Row[]
}

/** Thrown when the row count passes MAX_KEY_ROWS: the statement gets no keys. */
class TooMany extends Error {}

/** How column references name the target: its alias, or else its (optionally schema-qualified) name. */
export interface Target {
  ref: string
  schema: string | null
}

/** The rows the WHERE clause allows, as column -> value; null when it binds no column of the target. */
export function whereRows(where: Node, target: Target): Record<string, KeyValue>[] | null {
  const set = conjunction([where], target)
  if (!set || set.cols.size === 0 || set.rows.length === 0) return null
  return set.rows.map((r) => Object.fromEntries(r))
}

/**
 * The rows allowed by an AND of the given expressions: the product of what each
 * usable conjunct allows. Conjuncts not understood only narrow further and are
 * skipped, as is one on a column an earlier conjunct already bound.
 */
function conjunction(nodes: Node[], target: Target): RowSet | null {
  let acc: RowSet | null = null
  for (const n of flattenAnd(nodes)) {
    const s = atom(n, target)
    if (!s) continue
    if (acc && [...s.cols].some((c) => acc!.cols.has(c))) continue
    acc = acc ? product(acc, s) : s
  }
  return acc
}

function flattenAnd(nodes: Node[], out: Node[] = []): Node[] {
  for (const n of nodes) {
    const b = (n as { BoolExpr?: BoolExpr }).BoolExpr
    if (b?.boolop === 'AND_EXPR') flattenAnd(b.args ?? [], out)
    else out.push(n)
  }
  return out
}

function atom(n: Node, target: Target): RowSet | null {
  const o = n as { BoolExpr?: BoolExpr; A_Expr?: A_Expr }
  if (o.BoolExpr) return o.BoolExpr.boolop === 'OR_EXPR' ? disjunction(o.BoolExpr.args ?? [], target) : null
  if (o.A_Expr) return comparison(o.A_Expr, target)
  return null
}

/** An OR: each branch must bind columns; the result keeps the columns all branches bind. */
function disjunction(args: Node[], target: Target): RowSet | null {
  const sets: RowSet[] = []
  for (const a of args) {
    const s = conjunction([a], target)
    if (!s || s.cols.size === 0) return null
    sets.push(s)
  }
  if (sets.length === 0) return null
  const cols = new Set([...sets[0]!.cols].filter((c) => sets.every((s) => s.cols.has(c))))
  if (cols.size === 0) return null
  const rows: Row[] = []
  for (const s of sets) for (const r of s.rows) rows.push(new Map([...r].filter(([c]) => cols.has(c))))
  return rowSet(rows)
}

function product(a: RowSet, b: RowSet): RowSet {
  if (a.rows.length * b.rows.length > MAX_KEY_ROWS) throw new TooMany()
  const rows: Row[] = []
  for (const x of a.rows) for (const y of b.rows) rows.push(new Map([...x, ...y]))
  return { cols: new Set([...a.cols, ...b.cols]), rows }
}

/** Rows over the same columns, deduplicated; null when empty. */
function rowSet(rows: Row[]): RowSet | null {
  if (rows.length === 0) return null
  const seen = new Set<string>()
  const out: Row[] = []
  for (const r of rows) {
    const k = JSON.stringify([...r].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    if (seen.has(k)) {
      const trace = activeTrace()
      if (trace) trace.valueDependent = true
      continue
    }
    seen.add(k)
    out.push(r)
  }
  if (out.length > MAX_KEY_ROWS) throw new TooMany()
  return { cols: new Set(out[0]!.keys()), rows: out }
}

function comparison(e: A_Expr, target: Target): RowSet | null {
  if (!isEquals(e.name) || !e.lexpr || !e.rexpr) return null
  const lrow = (e.lexpr as { RowExpr?: { args?: Node[] } }).RowExpr
  if (e.kind === 'AEXPR_OP') {
    const rrow = (e.rexpr as { RowExpr?: { args?: Node[] } }).RowExpr
    // (a, b) = (1, 2)
    if (lrow && rrow) {
      const l = lrow.args ?? []
      const r = rrow.args ?? []
      if (l.length !== r.length) return null
      const pairs: [string, KeyValue][] = []
      for (let i = 0; i < l.length; i++) {
        const p = pair(l[i]!, r[i]!, target)
        if (!p) return null
        pairs.push(p)
      }
      const row = tuple(pairs)
      return row ? rowSet([row]) : null
    }
    const p = pair(e.lexpr, e.rexpr, target)
    return p ? rowSet([new Map([p])]) : null
  }
  if (e.kind === 'AEXPR_IN') {
    const items = (e.rexpr as { List?: { items?: Node[] } }).List?.items
    if (!items?.length) return null
    if (items.length > MAX_KEY_ROWS) throw new TooMany()
    if (lrow) {
      // (a, b) IN ((1, 2), (3, 4))
      const cols = (lrow.args ?? []).map((c) => column(c, target))
      if (cols.length === 0 || cols.some((c) => c === null)) return null
      const rows: Row[] = []
      for (const item of items) {
        const vals = (item as { RowExpr?: { args?: Node[] } }).RowExpr?.args
        if (!vals || vals.length !== cols.length) return null
        const pairs: [string, KeyValue][] = []
        for (let i = 0; i < cols.length; i++) {
          const v = value(vals[i]!)
          if (!v) return null
          pairs.push([cols[i]!, v])
        }
        const row = tuple(pairs)
        if (!row) return null
        rows.push(row)
      }
      return rowSet(rows)
    }
    return valueList(e.lexpr, items, target)
  }
  if (e.kind === 'AEXPR_OP_ANY') {
    // col = ANY(ARRAY[...]); an array parameter cannot be enumerated
    const elems = arrayElements(e.rexpr)
    return elems ? valueList(e.lexpr, elems, target) : null
  }
  return null
}

/** col IN (v1, v2, ...) / col = ANY(ARRAY[v1, v2, ...]) */
function valueList(col: Node, items: Node[], target: Target): RowSet | null {
  const c = column(col, target)
  if (c === null || items.length === 0) return null
  if (items.length > MAX_KEY_ROWS) throw new TooMany()
  const rows: Row[] = []
  for (const item of items) {
    const v = value(item)
    if (!v) return null
    rows.push(new Map([[c, v]]))
  }
  return rowSet(rows)
}

function arrayElements(n: Node): Node[] | null {
  const o = n as { A_ArrayExpr?: A_ArrayExpr; TypeCast?: TypeCast }
  if (o.A_ArrayExpr) return o.A_ArrayExpr.elements ?? null
  // ARRAY[1, 2]::int8[]: a one-dimensional array cast, applied to each plain element
  const tc = o.TypeCast
  const arr = (tc?.arg as { A_ArrayExpr?: A_ArrayExpr } | undefined)?.A_ArrayExpr
  if (!tc || !arr || tc.typeName?.arrayBounds?.length !== 1) return null
  const family = castFamily(tc.typeName, true)
  if (!family) return null
  for (const el of arr.elements ?? []) {
    const inner = el as { A_Const?: A_Const; ParamRef?: unknown }
    const v = inner.A_Const ? constant(inner.A_Const) : inner.ParamRef ? value(el) : null
    if (!v || !castKeeps(family, v)) return null
  }
  return arr.elements ?? null
}

/** A row from (column, value) pairs; null if a column repeats. */
function tuple(pairs: [string, KeyValue][]): Row | null {
  const row: Row = new Map()
  for (const [c, v] of pairs) {
    if (row.has(c)) return null
    row.set(c, v)
  }
  return row
}

/** `col = value` or `value = col`. */
function pair(l: Node, r: Node, target: Target): [string, KeyValue] | null {
  const lc = column(l, target)
  if (lc !== null) {
    const v = value(r)
    return v ? [lc, v] : null
  }
  const rc = column(r, target)
  if (rc !== null) {
    const v = value(l)
    return v ? [rc, v] : null
  }
  return null
}

/** `=` or OPERATOR(pg_catalog.=) */
function isEquals(name: Node[] | undefined): boolean {
  const parts = strings(name)
  return parts !== null && parts[parts.length - 1] === '=' && (parts.length === 1 || (parts.length === 2 && parts[0] === 'pg_catalog'))
}

/** The target's column a ColumnRef names (folded), or null (another table, a star, a field...). */
function column(n: Node, target: Target): string | null {
  const fields = strings((n as { ColumnRef?: { fields?: Node[] } }).ColumnRef?.fields)
  if (!fields) return null
  if (fields.length === 1) return fields[0]!
  if (fields.length === 2) return fields[0] === target.ref ? fields[1]! : null
  if (fields.length === 3 && target.schema !== null && fields[0] === target.schema && fields[1] === target.ref) return fields[2]!
  return null
}
