// Dispatches one raw statement node to its handler and assembles the
// StatementInfo. Unknown node types and handler failures fall back to the
// conservative answer: a write of unknown tables.
import type { Node } from '@pgsql/types'
import { Collector } from './collector.ts'
import type { StatementInfo } from './types.ts'
import { walkAny } from './walk.ts'
import { conservative, type Draft, type Inner, type StmtHandler } from './draft.ts'
import { FIXED_TAGS } from './tags.ts'
import { QUERY_HANDLERS } from './query.ts'
import { SESSION_HANDLERS } from './session-commands.ts'
import { DDL_HANDLERS } from './ddl.ts'
import { MAINTENANCE_HANDLERS } from './maintenance.ts'
import { statementKeys } from './keys.ts'

const HANDLERS: Record<string, StmtHandler> = {
  ...QUERY_HANDLERS,
  ...SESSION_HANDLERS,
  ...DDL_HANDLERS,
  ...MAINTENANCE_HANDLERS,
}

export function classifyNode(node: Node, text: string): StatementInfo {
  const type = Object.keys(node)[0] ?? ''
  const stmt = (node as Record<string, unknown>)[type]
  const c = new Collector()
  try {
    const h = HANDLERS[type]
    const draft = h ? h(stmt, c, inner) : unknownStatement(type, stmt, c)
    const info = finalize(draft, c, text)
    // only for DML / locking SELECT; a failure there only loses the keys (statementKeys catches)
    if (info.kind === 'write') {
      const keys = statementKeys(type, stmt)
      if (keys) info.keys = keys
    }
    return info
  } catch {
    // e.g. a JS stack overflow on a pathologically deep expression: never guess "read"
    return conservative(text, FIXED_TAGS[type] ?? 'UNKNOWN')
  }
}

const inner: Inner = (node) => (node ? classifyNode(node, '') : conservative('', 'UNKNOWN'))

function unknownStatement(type: string, stmt: unknown, c: Collector): Draft {
  c.withMode('write', () => walkAny(stmt, c))
  c.unknownWrites = true
  return { kind: 'write', command: FIXED_TAGS[type] ?? 'UNKNOWN' }
}

function finalize(d: Draft, c: Collector, text: string): StatementInfo {
  const info: StatementInfo = {
    kind: d.kind,
    command: d.command,
    text,
    reads: [...c.reads.values()],
    writes: [...c.writes.values()],
    unknownWrites: c.unknownWrites,
    functions: [...c.functions],
    sqlValueFunctions: [...c.sqlValueFunctions],
    noTransactionBlock: d.noTransactionBlock ?? false,
    temp: c.temp,
    lockingClause: c.lockingClause,
  }
  if (c.lockWait) info.lockWait = c.lockWait
  if (c.sequences.size) info.sequences = [...c.sequences]
  if (d.tx) info.tx = d.tx
  if (d.session) info.session = d.session
  if (d.copy) info.copy = d.copy
  if (d.databases) info.databases = d.databases
  if (d.force) info.force = true
  return info
}
