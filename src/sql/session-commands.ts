// Handlers for transaction control and per-connection session state: BEGIN/
// COMMIT/SAVEPOINT..., SET/RESET/SHOW, DISCARD, PREPARE/EXECUTE/DEALLOCATE,
// LISTEN/UNLISTEN/NOTIFY, cursors, LOAD. The proxy replays or fans these out,
// so the details it needs (names, values, options) are extracted here.
import type {
  ClosePortalStmt,
  DeallocateStmt,
  DeclareCursorStmt,
  DefElem,
  DiscardStmt,
  ExecuteStmt,
  FetchStmt,
  ListenStmt,
  LoadStmt,
  Node,
  NotifyStmt,
  PrepareStmt,
  TransactionStmt,
  TransactionStmtKind,
  UnlistenStmt,
  VariableSetStmt,
} from '@pgsql/types'
import type { Collector } from './collector.ts'
import { absorb, type Draft, type Inner, type StmtHandler } from './draft.ts'
import type { Isolation, SessionInfo, TxInfo } from './types.ts'
import { walkAny } from './walk.ts'

const TX: Record<TransactionStmtKind, [TxInfo['op'], string]> = {
  TRANS_STMT_BEGIN: ['begin', 'BEGIN'],
  TRANS_STMT_START: ['begin', 'START TRANSACTION'],
  TRANS_STMT_COMMIT: ['commit', 'COMMIT'],
  TRANS_STMT_ROLLBACK: ['rollback', 'ROLLBACK'],
  TRANS_STMT_SAVEPOINT: ['savepoint', 'SAVEPOINT'],
  TRANS_STMT_RELEASE: ['release', 'RELEASE'],
  TRANS_STMT_ROLLBACK_TO: ['rollback_to', 'ROLLBACK'],
  TRANS_STMT_PREPARE: ['prepare', 'PREPARE TRANSACTION'],
  TRANS_STMT_COMMIT_PREPARED: ['commit_prepared', 'COMMIT PREPARED'],
  TRANS_STMT_ROLLBACK_PREPARED: ['rollback_prepared', 'ROLLBACK PREPARED'],
}

const ISOLATIONS = new Set<string>(['read uncommitted', 'read committed', 'repeatable read', 'serializable'])

function transaction(s: TransactionStmt): Draft {
  const entry = s.kind && TX[s.kind]
  if (!entry) throw new Error(`unknown transaction statement ${String(s.kind)}`)
  const [op, command] = entry
  const tx: TxInfo = { op, ...txOptions(s.options) }
  // older parser versions carried the savepoint name as an option
  const name = s.savepoint_name ?? s.gid ?? defString(s.options, 'savepoint_name')
  if (name !== undefined) tx.name = name
  if (s.chain) tx.chain = true
  // COMMIT/ROLLBACK PREPARED call PreventInTransactionBlock()
  const noTransactionBlock = op === 'commit_prepared' || op === 'rollback_prepared'
  return { kind: 'transaction', command, tx, noTransactionBlock }
}

/** BEGIN / SET TRANSACTION options (transaction_isolation, _read_only, _deferrable DefElems). */
function txOptions(options: Node[] | undefined): Omit<TxInfo, 'op'> {
  const out: Omit<TxInfo, 'op'> = {}
  for (const o of options ?? []) {
    const d = (o as { DefElem?: DefElem }).DefElem
    if (!d) continue
    const v = constText(d.arg)
    if (d.defname === 'transaction_isolation' && v && ISOLATIONS.has(v)) out.isolation = v as Isolation
    else if (d.defname === 'transaction_read_only') out.readOnly = v !== '0'
    else if (d.defname === 'transaction_deferrable') out.deferrable = v !== '0'
  }
  return out
}

function defString(options: Node[] | undefined, name: string): string | undefined {
  for (const o of options ?? []) {
    const d = (o as { DefElem?: DefElem }).DefElem
    if (d?.defname === name) return constText(d.arg)
  }
  return undefined
}

/** Renders a constant (A_Const, String, Integer, or a cast of one) as text. */
export function constText(n: unknown): string | undefined {
  if (!n || typeof n !== 'object') return undefined
  const o = n as Record<string, Record<string, unknown> | undefined>
  if (o.TypeCast) return constText(o.TypeCast.arg)
  const c = (o.A_Const ?? o) as {
    sval?: { sval?: string }
    ival?: { ival?: number }
    fval?: { fval?: string }
    boolval?: { boolval?: boolean }
    String?: { sval?: string }
    Integer?: { ival?: number }
    Float?: { fval?: string }
  }
  // zero-valued fields are omitted by the parser's JSON output: {"ival":{}} is 0
  if (c.sval) return c.sval.sval ?? ''
  if (c.ival) return String(c.ival.ival ?? 0)
  if (c.fval) return c.fval.fval ?? '0'
  if (c.boolval) return c.boolval.boolval ? 'on' : 'off'
  if (c.String) return c.String.sval ?? ''
  if (c.Integer) return String(c.Integer.ival ?? 0)
  if (c.Float) return c.Float.fval ?? '0'
  return undefined
}

// SET SESSION CHARACTERISTICS AS TRANSACTION ... sets these session defaults
const SESSION_DEFAULTS: Record<string, string> = {
  transaction_isolation: 'default_transaction_isolation',
  transaction_read_only: 'default_transaction_read_only',
  transaction_deferrable: 'default_transaction_deferrable',
}

function variableSet(s: VariableSetStmt): Draft {
  const name = (s.name ?? '').toLowerCase()
  switch (s.kind) {
    case 'VAR_SET_MULTI':
      return setMulti(s)
    case 'VAR_RESET':
      return { kind: 'session', command: 'RESET', session: { op: 'reset', name } }
    case 'VAR_RESET_ALL':
      return { kind: 'session', command: 'RESET', session: { op: 'reset_all' } }
    default: {
      const session: SessionInfo = { op: s.is_local ? 'set_local' : 'set', name }
      // DEFAULT and FROM CURRENT carry no value
      if (s.kind === 'VAR_SET_VALUE') {
        const parts = (s.args ?? []).map((a) => constText(a) ?? '')
        session.value = parts.join(', ')
      }
      return { kind: 'session', command: 'SET', session }
    }
  }
}

function setMulti(s: VariableSetStmt): Draft {
  if (s.name === 'TRANSACTION') {
    return { kind: 'transaction', command: 'SET', tx: { op: 'set_transaction', ...txOptions(s.args) } }
  }
  if (s.name === 'SESSION CHARACTERISTICS') {
    const settings: { name: string; value: string }[] = []
    for (const a of s.args ?? []) {
      const d = (a as { DefElem?: DefElem }).DefElem
      if (!d?.defname) continue
      let value = constText(d.arg) ?? ''
      if (d.defname !== 'transaction_isolation') value = value === '0' ? 'off' : 'on'
      settings.push({ name: SESSION_DEFAULTS[d.defname] ?? `default_${d.defname}`, value })
    }
    const first = settings[0]
    const session: SessionInfo = first ? { op: 'set', name: first.name, value: first.value, settings } : { op: 'set', settings }
    return { kind: 'session', command: 'SET', session }
  }
  // SET TRANSACTION SNAPSHOT: snapshot ids are local to one server
  if (s.name === 'TRANSACTION SNAPSHOT') return { kind: 'not-replicable', command: 'SET' }
  throw new Error(`unknown SET form ${String(s.name)}`)
}

const DISCARD: Record<string, string> = {
  DISCARD_ALL: 'DISCARD ALL',
  DISCARD_PLANS: 'DISCARD PLANS',
  DISCARD_SEQUENCES: 'DISCARD SEQUENCES',
  DISCARD_TEMP: 'DISCARD TEMP',
}

function discard(s: DiscardStmt): Draft {
  const command = (s.target && DISCARD[s.target]) || 'DISCARD'
  if (s.target === 'DISCARD_ALL') {
    // DISCARD ALL calls PreventInTransactionBlock()
    return { kind: 'session', command, session: { op: 'discard_all' }, noTransactionBlock: true }
  }
  return { kind: 'session', command, session: { op: 'discard_other' } }
}

function named(op: SessionInfo['op'], name: string | undefined): SessionInfo {
  return name !== undefined ? { op, name } : { op }
}

const CURSOR_OPT_HOLD = 0x0020 // parsenodes.h

function declareCursor(s: DeclareCursorStmt, c: Collector, inner: Inner): Draft {
  const q = inner(s.query)
  // the cursor's query runs on FETCH (or at COMMIT for WITH HOLD): count its tables here
  absorb(c, q)
  const session: SessionInfo = {
    ...named('declare_cursor', s.portalname),
    withHold: ((s.options ?? 0) & CURSOR_OPT_HOLD) !== 0,
    cursorQuery: q,
  }
  // a cursor over SELECT ... FOR UPDATE (or a data-modifying WITH) locks or writes rows
  const kind = q.kind === 'read' || q.kind === 'session' ? 'session' : 'write'
  return { kind, command: 'DECLARE CURSOR', session }
}

export const SESSION_HANDLERS: Record<string, StmtHandler> = {
  TransactionStmt: transaction,
  VariableSetStmt: variableSet,
  VariableShowStmt: () => ({ kind: 'read', command: 'SHOW' }),
  ConstraintsSetStmt: () => ({ kind: 'session', command: 'SET CONSTRAINTS', session: { op: 'other' } }),
  DiscardStmt: discard,
  PrepareStmt: (s: PrepareStmt, _c, inner) => ({
    kind: 'session',
    command: 'PREPARE',
    session: { ...named('prepare', s.name), prepared: inner(s.query) },
  }),
  ExecuteStmt: (s: ExecuteStmt, c) => {
    // what runs depends on the prepared statement, which only the caller knows
    c.withMode('read', () => walkAny(s.params, c))
    c.unknownWrites = true
    return { kind: 'write', command: 'EXECUTE', session: named('other', s.name) }
  },
  DeallocateStmt: (s: DeallocateStmt) => ({
    kind: 'session',
    command: s.name === undefined || s.isall ? 'DEALLOCATE ALL' : 'DEALLOCATE',
    session: named('deallocate', s.isall ? undefined : s.name),
  }),
  ListenStmt: (s: ListenStmt) => ({ kind: 'session', command: 'LISTEN', session: named('listen', s.conditionname) }),
  UnlistenStmt: (s: UnlistenStmt) => ({ kind: 'session', command: 'UNLISTEN', session: named('unlisten', s.conditionname) }),
  NotifyStmt: (s: NotifyStmt) => {
    const session = named('notify', s.conditionname)
    if (s.payload !== undefined) session.value = s.payload
    return { kind: 'session', command: 'NOTIFY', session }
  },
  DeclareCursorStmt: declareCursor,
  FetchStmt: (s: FetchStmt) => ({
    kind: 'session',
    command: s.ismove ? 'MOVE' : 'FETCH',
    session: named('fetch', s.portalname),
  }),
  ClosePortalStmt: (s: ClosePortalStmt) => ({
    kind: 'session',
    command: s.portalname === undefined ? 'CLOSE CURSOR ALL' : 'CLOSE CURSOR',
    session: named('close_cursor', s.portalname),
  }),
  LoadStmt: (s: LoadStmt) => ({ kind: 'session', command: 'LOAD', session: named('other', s.filename) }),
}
