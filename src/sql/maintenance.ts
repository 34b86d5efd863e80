// Handlers for utility statements that write (or lock) without changing the
// schema: TRUNCATE, LOCK, VACUUM/ANALYZE, CLUSTER, REINDEX, REFRESH
// MATERIALIZED VIEW, CHECKPOINT, DO and CALL. All are kind 'write' so that
// they reach every backend in the global write order.
import type { CallStmt, ClusterStmt, DefElem, LockStmt, Node, RangeVar, RefreshMatViewStmt, ReindexStmt, TruncateStmt, VacuumStmt } from '@pgsql/types'
import type { Collector } from './collector.ts'
import type { StmtHandler } from './draft.ts'
import { walkAny, walkFuncCall } from './walk.ts'

function writeRels(rels: Node[] | undefined, c: Collector): void {
  for (const r of rels ?? []) {
    const rv = (r as { RangeVar?: RangeVar }).RangeVar
    if (rv) c.write(rv)
  }
}

/** A boolean DefElem in a parenthesised option list (VACUUM (FULL), REINDEX (CONCURRENTLY)). */
export function hasOption(params: Node[] | undefined, name: string): boolean {
  for (const p of params ?? []) {
    const d = (p as { DefElem?: DefElem }).DefElem
    if (d?.defname !== name) continue
    const a = d.arg as { String?: { sval?: string }; Integer?: { ival?: number }; Boolean?: { boolval?: boolean } } | undefined
    if (!a) return true
    if (a.Integer) return (a.Integer.ival ?? 0) !== 0
    if (a.Boolean) return a.Boolean.boolval ?? false
    const s = a.String?.sval?.toLowerCase()
    return !(s === 'false' || s === 'off' || s === '0' || s === 'no')
  }
  return false
}

function truncate(s: TruncateStmt, c: Collector) {
  writeRels(s.relations, c)
  // CASCADE also empties every table referencing these through foreign keys
  if (s.behavior === 'DROP_CASCADE') c.unknownWrites = true
  return { kind: 'write' as const, command: 'TRUNCATE TABLE' }
}

function lock(s: LockStmt, c: Collector) {
  writeRels(s.relations, c)
  if (s.nowait) c.noteLockWait('nowait')
  return { kind: 'write' as const, command: 'LOCK TABLE' }
}

function vacuum(s: VacuumStmt, c: Collector) {
  const vacuumCmd = s.is_vacuumcmd ?? false
  let any = false
  for (const r of s.rels ?? []) {
    const rel = (r as { VacuumRelation?: { relation?: RangeVar } }).VacuumRelation?.relation
    if (rel) {
      c.write(rel)
      any = true
    }
  }
  // without a list it processes every table of the database
  if (!any) c.unknownWrites = true
  // VACUUM refuses to run in a transaction block; ANALYZE alone does not
  return { kind: 'write' as const, command: vacuumCmd ? 'VACUUM' : 'ANALYZE', noTransactionBlock: vacuumCmd }
}

function cluster(s: ClusterStmt, c: Collector) {
  if (s.relation) c.write(s.relation)
  else c.unknownWrites = true
  // CLUSTER without a table re-clusters all tables and cannot run in a transaction block
  return { kind: 'write' as const, command: 'CLUSTER', noTransactionBlock: !s.relation }
}

function reindex(s: ReindexStmt, c: Collector) {
  const concurrently = hasOption(s.params, 'concurrently')
  let wide = false
  if (s.kind === 'REINDEX_OBJECT_TABLE' && s.relation) c.write(s.relation)
  else if (s.kind === 'REINDEX_OBJECT_INDEX' && s.relation) {
    // the index's table is not named: the lock on it cannot be listed
    c.write(s.relation)
    c.unknownWrites = true
  } else {
    wide = true
    c.unknownWrites = true
  }
  // REINDEX SCHEMA/DATABASE/SYSTEM and any CONCURRENTLY refuse a transaction block
  return { kind: 'write' as const, command: 'REINDEX', noTransactionBlock: wide || concurrently }
}

function refresh(s: RefreshMatViewStmt, c: Collector) {
  if (s.relation) c.write(s.relation)
  return { kind: 'write' as const, command: 'REFRESH MATERIALIZED VIEW' }
}

function call(s: CallStmt, c: Collector) {
  c.withMode('read', () => {
    if (s.funccall) walkFuncCall(s.funccall, c)
    else walkAny(s.funcexpr, c)
  })
  // a procedure may do anything, including COMMIT
  c.unknownWrites = true
  return { kind: 'write' as const, command: 'CALL' }
}

export const MAINTENANCE_HANDLERS: Record<string, StmtHandler> = {
  TruncateStmt: truncate,
  LockStmt: lock,
  VacuumStmt: vacuum,
  ClusterStmt: cluster,
  ReindexStmt: reindex,
  RefreshMatViewStmt: refresh,
  CheckPointStmt: () => ({ kind: 'write', command: 'CHECKPOINT' }),
  DoStmt: (_s: unknown, c) => {
    c.unknownWrites = true
    return { kind: 'write', command: 'DO' }
  },
  CallStmt: call,
}
