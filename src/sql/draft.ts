// The contract between statement handlers and the dispatcher: the Draft a
// handler returns, the conservative fallback, and helpers for folding a
// nested statement's analysis into the outer one.
import type { Node } from '@pgsql/types'
import type { Collector } from './collector.ts'
import type { CopyInfo, Kind, SessionInfo, StatementInfo, TxInfo } from './types.ts'

/** What a handler decides; tables, functions and flags live in the Collector. */
export interface Draft {
  kind: Kind
  command: string
  noTransactionBlock?: boolean
  tx?: TxInfo
  session?: SessionInfo
  copy?: CopyInfo
  databases?: string[]
  force?: boolean
}

/** Analyses a nested statement (EXPLAIN, PREPARE, DECLARE, COPY (query)...). */
export type Inner = (node: Node | undefined) => StatementInfo

// handlers get the statement body untyped: each narrows it to its own @pgsql/types interface
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StmtHandler = (stmt: any, c: Collector, inner: Inner) => Draft

/** The answer when we cannot know better: a write that may touch anything. */
export function conservative(text: string, command: string): StatementInfo {
  return {
    kind: 'write',
    command,
    text,
    reads: [],
    writes: [],
    unknownWrites: true,
    functions: [],
    sqlValueFunctions: [],
    noTransactionBlock: false,
    temp: false,
    lockingClause: false,
  }
}

export function emptyStatement(text: string): StatementInfo {
  return { ...conservative(text, ''), kind: 'empty', unknownWrites: false }
}

/**
 * Folds a nested statement's findings into the outer collector. With
 * `asReads`, its writes count as reads (plain EXPLAIN plans but never runs).
 */
export function absorb(c: Collector, info: StatementInfo, asReads = false): void {
  for (const t of info.reads) c.addRead(t)
  for (const t of info.writes) {
    if (asReads) c.addRead(t)
    else c.addWrite(t)
  }
  for (const f of info.functions) c.addFunction(f)
  for (const f of info.sqlValueFunctions) c.sqlValueFunctions.add(f)
  for (const q of info.sequences ?? []) c.sequences.add(q)
  if (info.lockingClause) c.lockingClause = true
  if (info.lockWait) c.noteLockWait(info.lockWait)
  if (!asReads) {
    if (info.unknownWrites) c.unknownWrites = true
    if (info.temp) c.temp = true
  }
}

/** A nested statement's kind as if it ran on its own (DECLARE runs its query). */
export function effectiveKind(info: StatementInfo): Kind {
  if (info.session?.op === 'declare_cursor' && info.session.cursorQuery) return effectiveKind(info.session.cursorQuery)
  if (info.kind === 'read') return 'read'
  if (info.kind === 'session' && info.session?.op === 'notify') return 'session'
  return 'write'
}
