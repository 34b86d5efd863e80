// Handlers for plannable statements and their wrappers: SELECT/VALUES/TABLE,
// INSERT/UPDATE/DELETE/MERGE, COPY, EXPLAIN and CREATE TABLE AS.
import type { CopyStmt, CreateTableAsStmt, DefElem, DeleteStmt, ExplainStmt, InsertStmt, MergeStmt, Node, SelectStmt, UpdateStmt } from '@pgsql/types'
import { tableName, type Collector } from './collector.ts'
import { absorb, effectiveKind, type Draft, type Inner, type StmtHandler } from './draft.ts'
import type { SessionInfo } from './types.ts'
import { walkAny, walkDelete, walkInsert, walkMerge, walkSelect, walkUpdate } from './walk.ts'

/** pg_notify() makes a statement deliver a notification from every backend. */
function notifySession(c: Collector): SessionInfo | undefined {
  if (!c.notify) return undefined
  return c.notify.channel !== undefined ? { op: 'notify', name: c.notify.channel } : { op: 'notify' }
}

function dml(command: string, c: Collector): Draft {
  const session = notifySession(c)
  return session ? { kind: 'write', command, session } : { kind: 'write', command }
}

function select(s: SelectStmt, c: Collector): Draft {
  walkSelect(s, c)
  const session = notifySession(c)
  // SELECT INTO creates a table; FOR UPDATE/SHARE writes row locks; WITH may hold INSERT/UPDATE/DELETE
  if (c.selectInto || c.lockingClause || c.dataModifying) {
    return session ? { kind: 'write', command: 'SELECT', session } : { kind: 'write', command: 'SELECT' }
  }
  if (session) return { kind: 'session', command: 'SELECT', session }
  return { kind: 'read', command: 'SELECT' }
}

function copy(s: CopyStmt, c: Collector, inner: Inner): Draft {
  const direction = s.is_from ? 'in' : 'out'
  const stdio = !s.filename && !s.is_program
  let kind: Draft['kind'] = stdio ? (s.is_from ? 'copy-in' : 'copy-out') : 'not-replicable'
  const info: NonNullable<Draft['copy']> = { direction, stdio }
  if (s.relation) {
    info.table = tableName(s.relation)
    if (s.is_from) c.write(s.relation)
    else c.read(s.relation)
  }
  if (s.query) {
    info.query = true
    const q = inner(s.query)
    absorb(c, q)
    // COPY (INSERT ... RETURNING) TO STDOUT writes: it cannot be served like a read
    if (effectiveKind(q) !== 'read') kind = 'not-replicable'
  }
  c.withMode('read', () => walkAny(s.whereClause, c))
  if (isBinary(s.options)) info.binary = true
  return { kind, command: 'COPY', copy: info }
}

function isBinary(options: Node[] | undefined): boolean {
  for (const o of options ?? []) {
    const d = (o as { DefElem?: DefElem }).DefElem
    if (d?.defname === 'format' && optionText(d)?.toLowerCase() === 'binary') return true
  }
  return false
}

function optionText(d: DefElem): string | undefined {
  const a = d.arg as { String?: { sval?: string } } | undefined
  return a?.String?.sval
}

/** EXPLAIN's ANALYZE option as defGetBoolean() reads it; the last one wins. */
export function explainAnalyzes(options: Node[] | undefined): boolean {
  let analyze = false
  for (const o of options ?? []) {
    const d = (o as { DefElem?: DefElem }).DefElem
    if (d?.defname === 'analyze') analyze = defBoolean(d)
  }
  return analyze
}

function defBoolean(d: DefElem): boolean {
  const a = d.arg as { String?: { sval?: string }; Integer?: { ival?: number }; Boolean?: { boolval?: boolean } } | undefined
  if (!a) return true
  if (a.Integer) return (a.Integer.ival ?? 0) !== 0
  if (a.Boolean) return a.Boolean.boolval ?? false
  const s = a.String?.sval?.toLowerCase()
  if (s === 'false' || s === 'off' || s === '0' || s === 'no') return false
  // anything unrecognised makes PostgreSQL fail; assume it would run
  return true
}

function explain(s: ExplainStmt, c: Collector, inner: Inner): Draft {
  const q = inner(s.query)
  if (!explainAnalyzes(s.options)) {
    // planning only: nothing is executed, but the planner locks what the statement names
    absorb(c, q, true)
    return { kind: 'read', command: 'EXPLAIN' }
  }
  absorb(c, q)
  const kind = effectiveKind(q)
  if (kind === 'session' && q.session) return { kind, command: 'EXPLAIN', session: q.session }
  return { kind, command: 'EXPLAIN' }
}

function createTableAs(s: CreateTableAsStmt, c: Collector, inner: Inner): Draft {
  absorb(c, inner(s.query))
  if (s.into?.rel) c.create(s.into.rel)
  if (s.objtype === 'OBJECT_MATVIEW') return { kind: 'ddl', command: 'CREATE MATERIALIZED VIEW' }
  // the raw grammar yields SelectStmt for SELECT INTO; kept for completeness
  if (s.is_select_into) return { kind: 'write', command: 'SELECT' }
  return { kind: 'ddl', command: 'CREATE TABLE AS' }
}

export const QUERY_HANDLERS: Record<string, StmtHandler> = {
  SelectStmt: (s: SelectStmt, c) => select(s, c),
  InsertStmt: (s: InsertStmt, c) => (walkInsert(s, c), dml('INSERT', c)),
  UpdateStmt: (s: UpdateStmt, c) => (walkUpdate(s, c), dml('UPDATE', c)),
  DeleteStmt: (s: DeleteStmt, c) => (walkDelete(s, c), dml('DELETE', c)),
  MergeStmt: (s: MergeStmt, c) => (walkMerge(s, c), dml('MERGE', c)),
  CopyStmt: copy,
  ExplainStmt: explain,
  CreateTableAsStmt: createTableAs,
}
