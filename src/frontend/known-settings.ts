// A connection pool sets the same transaction defaults on every borrow
// (commons-dbcp2's defaultTransactionIsolation: ActiveMQ's JDBC store sends
// `SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED`
// before every message it stores). Sent on, each costs a round trip to every
// backend. When this session itself set exactly that value, outside a
// transaction, and nothing since can have changed it, the SET changes nothing
// on any backend: pgraid answers it as PostgreSQL would and sends nothing.
// Only these settings, learnt only from the session's own successful SET;
// anything that could change a setting unseen (another SET, RESET, DISCARD,
// a function call, DO/CALL, a SET inside a transaction) forgets them all.

import { B, F } from '../protocol/codes.ts'
import { commandComplete, message, parseComplete, readyForQuery } from '../protocol/encode.ts'
import { describeOrClose, type Target } from '../protocol/decode.ts'
import type { Plan } from '../router/plan.ts'
import type { StatementRegistry } from '../router/statements.ts'
import type { StatementInfo } from '../sql/types.ts'
import type { Exchange } from '../broadcast/exchange.ts'
import type { TxState } from './tx-state.ts'

const POOL_SETTINGS = new Set(['default_transaction_isolation', 'default_transaction_read_only', 'default_transaction_deferrable'])
const ANSWERABLE = new Set<number>([F.Parse, F.Bind, F.Describe, F.Execute, F.Sync, F.Query])

const PARSE_COMPLETE = parseComplete()
const BIND_COMPLETE = message(B.BindComplete)
const NO_DATA = message(B.NoData)
const NO_PARAMETERS = message(B.ParameterDescription, Buffer.from([0, 0]))
const SET_COMPLETE = commandComplete('SET')
const READY_IDLE = readyForQuery('I')

/** The (setting, value) pairs of a SET of transaction defaults only, with explicit values; else null. */
function poolSettings(s: StatementInfo): { name: string; value: string }[] | null {
  if (s.kind !== 'session' || s.session?.op !== 'set') return null
  const { name, value, settings } = s.session
  const list = settings ?? (name !== undefined && value !== undefined ? [{ name, value }] : null)
  if (!list?.length || list.some((x) => !POOL_SETTINGS.has(x.name))) return null
  return list
}

/** Cannot change a session setting: plain DML and queries without function calls, transaction control. */
function innocuous(s: StatementInfo): boolean {
  if (s.kind === 'empty' || s.kind === 'transaction') return true
  return (s.kind === 'read' || s.kind === 'write') && !s.unknownWrites && s.functions.length === 0
}

/** After a batch's answers: learn what its SET set (idle before and after, every backend agreed), or forget. */
export function learnSettings(tx: TxState, plan: Plan, ex: Exchange, idleBefore: boolean): void {
  const known = tx.knownSettings
  const ok = !ex.outcome.errored.size && !ex.outcome.diverged
  for (const s of plan.executed) {
    const list = poolSettings(s)
    if (list && ok && idleBefore && plan.executed.length === 1 && plan.endsWithSync && tx.status === 'I') {
      for (const x of list) known.set(x.name, x.value)
      continue
    }
    if (!innocuous(s)) {
      known.clear()
      return
    }
  }
}

/** A Describe's kind and name (protocol/decode.ts). */
function describeTarget(m: { bytes: Buffer }): Target {
  return describeOrClose(m.bytes.subarray(5))
}

/** The batch is one SET of values this session already holds everywhere, between transactions. */
export function alreadySet(tx: TxState, plan: Plan, registry: StatementRegistry): boolean {
  if (!tx.knownSettings.size || plan.executed.length !== 1 || !plan.endsWithSync) return false
  if (plan.nonDeterministic || plan.commit || plan.deferredCommit || plan.beginFirst || plan.snapshotAt || plan.closes.size || plan.binds.size > 1) return false
  const list = poolSettings(plan.executed[0]!)
  if (!list || !list.every((x) => tx.knownSettings.get(x.name) === x.value)) return false
  const statements = new Set<string>()
  for (const st of plan.parses.values()) {
    // A named statement that exists is PostgreSQL's error (42P05); declared parameter types show in a Describe.
    if ((st.name !== '' && registry.statements.has(st.name)) || st.paramTypes.length) return false
    statements.add(st.name)
  }
  const portals = new Set([...plan.binds.values()].map((p) => p.name))
  for (const m of plan.msgs) {
    if (m.swallow || !ANSWERABLE.has(m.code)) return false
    if (m.code === F.Describe) {
      const d = describeTarget(m)
      if (!(d.kind === 'S' ? statements : portals).has(d.name)) return false
    }
  }
  return true
}

/**
 * Answers the batch as PostgreSQL would, sending nothing: ParseComplete, BindComplete, NoData (and an
 * empty ParameterDescription for a statement), CommandComplete SET, ReadyForQuery idle. A statement
 * it parsed is prepared on no backend yet: a later Bind prepares it first (lazy Parse).
 */
export function answerAlreadySet(plan: Plan, registry: StatementRegistry, tx: TxState, out: (b: Buffer) => void, beforeReady: () => void): void {
  for (const st of plan.parses.values()) {
    st.on = new Set()
    registry.define(st)
  }
  for (const m of plan.msgs) {
    switch (m.code) {
      case F.Parse:
        out(PARSE_COMPLETE)
        break
      case F.Bind:
        out(BIND_COMPLETE)
        break
      case F.Describe:
        if (describeTarget(m).kind === 'S') out(NO_PARAMETERS)
        out(NO_DATA)
        break
      case F.Execute:
        out(SET_COMPLETE)
        break
      case F.Query:
        out(SET_COMPLETE)
        beforeReady()
        out(READY_IDLE)
        break
      case F.Sync:
        beforeReady()
        out(READY_IDLE)
        break
    }
  }
  tx.sinceSync.clear()
  tx.clientSkipping = false
}
