// Key access: which rows of its target table an INSERT, UPDATE, DELETE or
// SELECT ... FOR UPDATE/SHARE can touch, when the text alone proves it
// (equalities in a top-level AND of the WHERE clause, or the VALUES rows). The
// lock manager then locks those keys instead of the table. Anything not
// understood yields no answer, never a smaller one: the caller locks the whole
// table. See docs/sql.md "Key access".
import type {
  A_ArrayExpr,
  A_Const,
  A_Expr,
  BoolExpr,
  DeleteStmt,
  InsertStmt,
  LockingClause,
  Node,
  RangeVar,
  ResTarget,
  SelectStmt,
  TypeCast,
  TypeName,
  UpdateStmt,
} from '@pgsql/types'
import { tableName } from './collector.ts'
import type { KeyAccess, KeyValue } from './types.ts'

/** More candidate rows than this (a product of IN lists, a huge VALUES) gives no keys. */
export const MAX_KEY_ROWS = 1000

type Obj = Record<string, unknown>
type Row = Map<string, KeyValue>
/** A disjunction of rows, all over the same columns. */
interface RowSet {
  cols: Set<string>
  rows: Row[]
}
type ConstType = Extract<KeyValue, { kind: 'const' }>['type']

/** Thrown when the row count passes MAX_KEY_ROWS: the statement gets no keys. */
class TooMany extends Error {}

/**
 * Where each literal key value came from, recorded while tracing: the byte
 * offset of its constant and whether a sign was applied to it. The shape
 * cache (shape-cache.ts) uses it to reuse one analysis for texts that differ
 * only in literals. `valueDependent`: the result depended on the values
 * themselves (duplicate rows were merged), not only on where they stand.
 */
export interface ConstTrace {
  sources: Map<KeyValue, { at: number; neg: boolean }>
  valueDependent: boolean
}

let tracing: ConstTrace | null = null

/** Runs `fn` (an analysis) recording where its literal key values came from. */
export function traceConsts<T>(fn: () => T): { result: T; trace: ConstTrace } {
  const prev = tracing
  const trace: ConstTrace = { sources: new Map(), valueDependent: false }
  tracing = trace
  try {
    return { result: fn(), trace }
  } finally {
    tracing = prev
  }
}

/** How column references name the target: its alias, or else its (optionally schema-qualified) name. */
interface Target {
  ref: string
  schema: string | null
}

/** The key accesses of one raw statement; undefined when nothing is provable. */
export function statementKeys(type: string, stmt: unknown): KeyAccess[] | undefined {
  let k: KeyAccess | null = null
  try {
    if (type === 'InsertStmt') k = insertKeys(stmt as InsertStmt)
    else if (type === 'UpdateStmt') k = updateKeys(stmt as UpdateStmt)
    else if (type === 'DeleteStmt') k = deleteKeys(stmt as DeleteStmt)
    else if (type === 'SelectStmt') k = lockKeys(stmt as SelectStmt)
  } catch {
    // TooMany, or a stack overflow on an absurdly deep expression
    return undefined
  }
  return k ? [k] : undefined
}

function insertKeys(s: InsertStmt): KeyAccess | null {
  const rv = s.relation
  if (!rv?.relname || s.withClause || !s.cols?.length) return null
  // OVERRIDING USER VALUE replaces the given values of identity columns (which we cannot name)
  if (s.override === 'OVERRIDING_USER_VALUE') return null
  const sel = (s.selectStmt as { SelectStmt?: SelectStmt } | undefined)?.SelectStmt
  // only VALUES (ORDER BY / LIMIT on it can only drop rows); not INSERT ... SELECT
  if (!sel?.valuesLists?.length || sel.withClause || sel.fromClause?.length || sel.targetList?.length) return null
  if (sel.larg || sel.rarg) return null
  if (sel.valuesLists.length > MAX_KEY_ROWS) return null
  // a value computed from other rows of the table depends on the order of writes to them
  if (mentions([s.selectStmt, s.onConflictClause, s.returningClause], rv.relname)) return null
  // null: a column we do not key on (a subfield or element assignment: a[1], b.c)
  const cols: (string | null)[] = []
  const seen = new Set<string>()
  for (const n of s.cols) {
    const rt = (n as { ResTarget?: ResTarget }).ResTarget
    if (!rt?.name) return null
    if (rt.indirection?.length) {
      cols.push(null)
      continue
    }
    if (seen.has(rt.name)) return null // PostgreSQL rejects it
    seen.add(rt.name)
    cols.push(rt.name)
  }
  const rows: Record<string, KeyValue>[] = []
  for (const l of sel.valuesLists) {
    const items = (l as { List?: { items?: Node[] } }).List?.items ?? []
    if (items.length !== cols.length) return null
    const row: [string, KeyValue][] = []
    items.forEach((item, i) => {
      const col = cols[i]
      const v = col ? value(item) : null
      if (col && v) row.push([col, v])
    })
    rows.push(Object.fromEntries(row))
  }
  const k: KeyAccess = { table: tableName(rv), op: 'insert', rows }
  const oc = s.onConflictClause
  if (oc) {
    if (oc.action === 'ONCONFLICT_NOTHING') k.onConflict = 'nothing'
    else if (oc.action === 'ONCONFLICT_UPDATE') k.onConflict = 'update'
    else return null
    const conflict = conflictColumns(oc.infer?.indexElems)
    if (conflict) k.conflict = conflict
    if (k.onConflict === 'update') k.setColumns = setColumns(oc.targetList)
  }
  return k
}

/** ON CONFLICT (a, b): the column names, or null for expressions / ON CONSTRAINT / none. */
function conflictColumns(elems: Node[] | undefined): string[] | null {
  if (!elems?.length) return null
  const out: string[] = []
  for (const n of elems) {
    const name = (n as { IndexElem?: { name?: string; expr?: Node } }).IndexElem?.name
    if (!name) return null
    out.push(name)
  }
  return out
}

function setColumns(targetList: Node[] | undefined): string[] {
  const out = new Set<string>()
  for (const n of targetList ?? []) {
    const name = (n as { ResTarget?: ResTarget }).ResTarget?.name
    if (name) out.add(name)
  }
  return [...out]
}

function updateKeys(s: UpdateStmt): KeyAccess | null {
  const rv = s.relation
  // with FROM, an unqualified column may belong to another table (and rows may repeat)
  if (!rv?.relname || s.withClause || s.fromClause?.length || !s.whereClause) return null
  if (mentions([s.targetList, s.whereClause, s.returningClause], rv.relname)) return null
  const rows = whereRows(s.whereClause, targetOf(rv))
  if (!rows) return null
  return { table: tableName(rv), op: 'update', rows, setColumns: setColumns(s.targetList) }
}

function deleteKeys(s: DeleteStmt): KeyAccess | null {
  const rv = s.relation
  if (!rv?.relname || s.withClause || s.usingClause?.length || !s.whereClause) return null
  if (mentions([s.whereClause, s.returningClause], rv.relname)) return null
  const rows = whereRows(s.whereClause, targetOf(rv))
  if (!rows) return null
  return { table: tableName(rv), op: 'delete', rows }
}

/** SELECT ... FROM one_table WHERE ... FOR UPDATE/SHARE (top-level locking clause only). */
function lockKeys(s: SelectStmt): KeyAccess | null {
  if (!s.lockingClause?.length || s.withClause || s.larg || s.rarg || s.valuesLists?.length) return null
  if (s.fromClause?.length !== 1 || !s.whereClause) return null
  const rv = (s.fromClause[0] as { RangeVar?: RangeVar }).RangeVar
  // FROM t AS x(a, b) renames the columns
  if (!rv?.relname || rv.alias?.colnames?.length) return null
  const target = targetOf(rv)
  for (const n of s.lockingClause) {
    const lc = (n as { LockingClause?: LockingClause }).LockingClause
    if (!lc) return null
    for (const r of lc.lockedRels ?? []) {
      const named = (r as { RangeVar?: RangeVar }).RangeVar
      if (!named || named.schemaname || named.relname !== target.ref) return null
    }
  }
  const rest: unknown[] = []
  for (const k in s) if (k !== 'fromClause' && k !== 'lockingClause' && k !== 'intoClause') rest.push((s as Obj)[k])
  if (mentions(rest, rv.relname)) return null
  const rows = whereRows(s.whereClause, target)
  if (!rows) return null
  return { table: tableName(rv), op: 'lock', rows }
}

function targetOf(rv: RangeVar): Target {
  const alias = rv.alias?.aliasname
  // an alias hides the table name: t.col is then an error, not a reference to t
  return alias ? { ref: alias, schema: null } : { ref: rv.relname ?? '', schema: rv.schemaname ?? null }
}

/** Whether any relation named `relname` (in any schema, to be safe) appears in the fragments. */
function mentions(n: unknown, relname: string): boolean {
  if (n === null || typeof n !== 'object') return false
  if (Array.isArray(n)) return n.some((x) => mentions(x, relname))
  const o = n as Obj
  if (typeof o.relname === 'string') return o.relname === relname
  for (const k in o) {
    // lockedRels name FROM items (aliases), not tables
    if (k === 'LockingClause' || k === 'lockingClause') continue
    if (mentions(o[k], relname)) return true
  }
  return false
}

// ---- WHERE clauses ----

function whereRows(where: Node, target: Target): Record<string, KeyValue>[] | null {
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
      if (tracing) tracing.valueDependent = true
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

function strings(list: Node[] | undefined): string[] | null {
  const out: string[] = []
  for (const n of list ?? []) {
    const s = (n as { String?: { sval?: string } }).String
    if (!s) return null
    out.push(s.sval ?? '')
  }
  return out
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

// ---- values ----

/** A bind parameter or a literal, possibly through a value-preserving cast or a sign. */
function value(n: Node): KeyValue | null {
  const o = n as { ParamRef?: { number?: number }; A_Const?: A_Const; TypeCast?: TypeCast; A_Expr?: A_Expr }
  if (o.ParamRef) return param(o.ParamRef)
  if (o.A_Const) return constant(o.A_Const)
  if (o.TypeCast) return castValue(o.TypeCast)
  if (o.A_Expr) {
    // unary minus / plus of a numeric constant (the parser folds -5, but not -5::int)
    const e = o.A_Expr
    if (e.kind !== 'AEXPR_OP' || e.lexpr || !e.rexpr) return null
    const op = strings(e.name)
    if (!op || op.length !== 1 || (op[0] !== '-' && op[0] !== '+')) return null
    const v = value(e.rexpr)
    if (!v || v.kind !== 'const' || (v.type !== 'int' && v.type !== 'float')) return null
    if (op[0] === '+') return v
    const negated: KeyValue = { ...v, text: negate(v.text) }
    const src = tracing?.sources.get(v)
    if (src) tracing!.sources.set(negated, { at: src.at, neg: !src.neg })
    return negated
  }
  return null
}

function param(p: { number?: number }): KeyValue | null {
  const index = p.number ?? 0
  return Number.isInteger(index) && index > 0 ? { kind: 'param', index } : null
}

function constant(c: A_Const): KeyValue | null {
  const v = constantValue(c)
  if (v && tracing && typeof c.location === 'number') tracing.sources.set(v, { at: c.location, neg: false })
  return v
}

function constantValue(c: A_Const): KeyValue | null {
  if (c.isnull) return con('NULL', 'null')
  // zero / false / '' come with the inner field omitted
  if (c.ival !== undefined) return con(String(c.ival.ival ?? 0), 'int')
  if (c.fval !== undefined) return numeric(c.fval.fval ?? '')
  if (c.boolval !== undefined) return con(c.boolval.boolval ? 'true' : 'false', 'bool')
  if (c.sval !== undefined) return con(c.sval.sval ?? '', 'string')
  // bit strings (B'...', X'...') and anything new: not a key value
  return null
}

function con(text: string, type: ConstType): KeyValue {
  return { kind: 'const', text, type }
}

export function negate(text: string): string {
  if (text === '0') return text
  return text.startsWith('-') ? text.slice(1) : `-${text}`
}

/**
 * A numeric literal the parser kept as text (too big for int4, or with a point
 * or exponent), in canonical decimal: integers (also 0x/0o/0b, with _
 * separators) as type int, the rest as type float without exponent, leading or
 * trailing zeros (1.50 -> 1.5, 1e3 -> 1000, 1.0 -> 1).
 */
export function numeric(raw: string): KeyValue | null {
  let t = raw.replace(/_/g, '')
  let neg = false
  if (t.startsWith('-') || t.startsWith('+')) {
    neg = t.startsWith('-')
    t = t.slice(1)
  }
  const sign = (s: string): string => (neg && s !== '0' ? `-${s}` : s)
  if (/^(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)$/.test(t)) return con(sign(BigInt(t).toString()), 'int')
  const m = /^([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$/.exec(t)
  if (!m || (m[1] === '' && !m[2])) return null
  const frac = m[2] ?? ''
  let exp = Number(m[3] ?? '0') - frac.length
  let digits = (m[1] + frac).replace(/^0+/, '')
  if (digits === '') return con('0', 'float')
  const trimmed = digits.replace(/0+$/, '')
  exp += digits.length - trimmed.length
  digits = trimmed
  // absurd exponents: no canonical text worth building
  if (!Number.isSafeInteger(exp) || Math.abs(exp) > 1000) return null
  let text: string
  if (exp >= 0) text = digits + '0'.repeat(exp)
  else {
    const point = digits.length + exp
    text = point > 0 ? `${digits.slice(0, point)}.${digits.slice(point)}` : `0.${'0'.repeat(-point)}${digits}`
  }
  return con(sign(text), 'float')
}

type Family = 'int' | 'numeric' | 'text' | 'bool' | 'uuid'

// casts that give the literal's own value (or fail): no rounding, truncation or
// reinterpretation. float4/float8 round, char(n)/varchar(n)/numeric(p,s) cut,
// date/time types drop parts, domains may be anything: those are not seen through.
const FAMILIES: Record<string, Family> = {
  int2: 'int',
  int4: 'int',
  int8: 'int',
  numeric: 'numeric',
  text: 'text',
  varchar: 'text',
  bool: 'bool',
  uuid: 'uuid',
}

const KEEPS: Record<Family, ReadonlySet<ConstType>> = {
  int: new Set(['int', 'string', 'null']),
  numeric: new Set(['int', 'float', 'string', 'null']),
  // 1.50::text is '1.50' but the canonical float text is '1.5'
  text: new Set(['int', 'string', 'bool', 'null']),
  bool: new Set(['bool', 'string', 'null']),
  uuid: new Set(['string', 'null']),
}

function castFamily(tn: TypeName | undefined, array = false): Family | null {
  if (!tn || tn.setof || tn.pct_type || tn.typmods?.length) return null
  if (!array && tn.arrayBounds?.length) return null
  const names = strings(tn.names)
  if (!names || names.length === 0 || names.length > 2) return null
  if (names.length === 2 && names[0] !== 'pg_catalog') return null
  return Object.hasOwn(FAMILIES, names[names.length - 1]!) ? FAMILIES[names[names.length - 1]!]! : null
}

function castKeeps(family: Family, v: KeyValue): boolean {
  return v.kind === 'param' || KEEPS[family].has(v.type)
}

/** '5'::int, $1::bigint: the inner value, for one cast level to a value-preserving type. */
function castValue(tc: TypeCast): KeyValue | null {
  const family = castFamily(tc.typeName)
  if (!family || !tc.arg) return null
  const inner = tc.arg as { A_Const?: A_Const; ParamRef?: { number?: number } }
  const v = inner.A_Const ? constant(inner.A_Const) : inner.ParamRef ? param(inner.ParamRef) : null
  return v && castKeeps(family, v) ? v : null
}
