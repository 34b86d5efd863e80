// Key access: which rows of its target table an INSERT, UPDATE, DELETE or
// SELECT ... FOR UPDATE/SHARE can touch, when the text alone proves it
// (equalities in a top-level AND of the WHERE clause, or the VALUES rows). The
// lock manager then locks those keys instead of the table. Anything not
// understood yields no answer, never a smaller one: the caller locks the whole
// table. See docs/sql.md "Key access". This file handles the statements;
// key-where.ts the WHERE clause, key-literals.ts the values, key-trace.ts the
// literal tracing for the shape cache.
import type { DeleteStmt, InsertStmt, LockingClause, Node, RangeVar, ResTarget, SelectStmt, UpdateStmt } from '@pgsql/types'
import { tableName } from './collector.ts'
import { MAX_KEY_ROWS, whereRows, type Target } from './key-where.ts'
import { value } from './key-literals.ts'
import type { KeyAccess, KeyValue } from './types.ts'

export { MAX_KEY_ROWS } from './key-where.ts'
export { negate, numeric } from './key-literals.ts'
export { traceConsts, type ConstTrace } from './key-trace.ts'

type Obj = Record<string, unknown>

/** The key accesses of one raw statement; undefined when nothing is provable. */
export function statementKeys(type: string, stmt: unknown): KeyAccess[] | undefined {
  let k: KeyAccess | null = null
  try {
    if (type === 'InsertStmt') k = insertKeys(stmt as InsertStmt)
    else if (type === 'UpdateStmt') k = updateKeys(stmt as UpdateStmt)
    else if (type === 'DeleteStmt') k = deleteKeys(stmt as DeleteStmt)
    else if (type === 'SelectStmt') k = lockKeys(stmt as SelectStmt)
  } catch {
    // TooMany (key-where.ts), or a stack overflow on an absurdly deep expression
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
