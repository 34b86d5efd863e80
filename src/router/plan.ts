// Decides where each message of a batch goes and which proxy locks the batch
// needs before it may be sent. Reads go to one backend; everything that
// changes data or session state goes to every backend of the session.

import { F } from '../protocol/codes.ts'
import { bindHead, describeOrClose, executeMsg, parseMsg, queryText, type BindHead, type ExecuteMsg } from '../protocol/decode.ts'
import type { Frame } from '../protocol/framer.ts'
import type { PlannedMsg } from '../broadcast/exchange.ts'
import { analyze, type Analysis, type StatementInfo } from '../sql/analyze.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import { bindParams, type BindParams } from '../scheduler/key-values.ts'
import { locksFor } from '../scheduler/locks-for.ts'
import { analyzeForRouting } from '../sql/shape-cache.ts'
import type { PgError } from '../errors.ts'
import type { LockRequest } from '../scheduler/lock-manager.ts'
import type { Portal, Statement, StatementRegistry } from './statements.ts'
import { anyTxOrSession, needsAll, perServerRead, plainRead } from './read-kinds.ts'
import { refusal } from './refusal.ts'
import { snapshotPoint, type SnapshotState } from './snapshot-point.ts'
import { queryMessage, rewriteBind, rewriteOf, rewriteParse, rewriteQueryText, type Clock, type Rewrite } from './time-params.ts'
import { changesData, isCommit, logged, type BatchLogEntry, type LogCommit, type LogContext } from './log-plan.ts'
import { BatchLog, txControl } from './batch-log.ts'
import { entryFromBind, type LogEntry } from '../recovery/record.ts'

export interface PlanContext {
  registry: StatementRegistry
  catalog: CatalogData
  /** Backends of the session (indexes). */
  all: number[]
  inTransaction: boolean
  /** Chooses the backend for reads in this batch (sticky inside a transaction). */
  pickRead: () => number
  /** After an error in extended mode, until Sync, messages are not executed. */
  clientSkipping: boolean
  /** Backends that got messages since the last Sync (earlier Flush batches). */
  sinceSync: Set<number>
  /** The values clock functions take in this batch. */
  clock: Clock
  /** determinism.allowFunctions */
  allowFunctions: readonly string[]
  /** determinism.allowTriggers */
  allowTriggers: readonly string[]
  /**
   * The open transaction is REPEATABLE READ or SERIALIZABLE: its reads go to
   * every backend too, so each takes its snapshot at the same statement
   * (design trap "Snapshots").
   */
  snapshotEverywhere: boolean
  /** The recovery log's view of the session; null = do not log (tests of the planner alone). */
  log: LogContext | null
  /**
   * An even number of backends in service: a disagreement can be a tie with
   * no majority. Autocommit writes then run inside BEGIN and are committed
   * only after their answers agreed (one more round trip), so a tie rolls
   * back everywhere instead of staying committed.
   */
  tieSafe?: boolean
  /**
   * A timeout or cancel may cut any statement, pgraid's BEGIN too (the client's statement would then
   * commit on that backend alone): the session sends the BEGIN first and checks it (`Plan.beginFirst`).
   */
  beginApart?: boolean
  /** The transaction's snapshot state (snapshot-point.ts), when its snapshot must be ordered. */
  snapshot?: SnapshotState | null
}

export interface Plan {
  msgs: PlannedMsg[]
  locks: LockRequest[]
  /** Goes to every backend (a write, DDL, session change...). */
  everywhere: boolean
  readBackend: number | null
  ddl: boolean
  /** Statement infos executed by the batch, in order. */
  executed: StatementInfo[]
  /** Parse messages (index in msgs → statement) to confirm after the answers. */
  parses: Map<number, Statement>
  binds: Map<number, Portal>
  closes: Map<number, { kind: 'S' | 'P'; name: string }>
  endsWithSync: boolean
  hasQuery: boolean
  /** A statement says NOWAIT: its locks must be taken at once or fail with 55P03. */
  nowait: boolean
  /** A write whose result would differ per backend (refused, 0A000): the error to send. */
  nonDeterministic: PgError | null
  /** Statements to add to the open transaction's log entries if their messages succeed. */
  logEntries: BatchLogEntry[]
  /** The batch ended or began a transaction: the session's pending entries start over. */
  logReset: boolean
  /** The batch commits a write transaction: its log INSERT, waiting for an LSN. */
  commit: LogCommit | null
  /** Index of the injected Parse of the log statement (the session marks it prepared where it succeeded). */
  logParse: number | null
  /** Tie-safe autocommit: the batch ran inside pgraid's BEGIN; the session commits it (with this record) once the answers agreed. */
  deferredCommit: { settings: readonly string[]; entries: LogEntry[] } | null
  /** The tie-safe BEGIN is not in `msgs`: the session opens the transaction everywhere first. */
  beginFirst: boolean
  /**
   * The batch takes a REPEATABLE READ / SERIALIZABLE snapshot (snapshot-point.ts). 'before': msgs[0]
   * is pgraid's own statement taking it, and commits are held until every backend answered it;
   * 'during': commits are held while the batch runs.
   */
  snapshotAt: 'before' | 'during' | null
  /** Every entry the batch logged, with where its CommandComplete comes (its tag is recorded after the answers). */
  tagged: BatchLogEntry[]
}

export class PlanError extends Error {}

const EMPTY_BIND = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])
const BEGIN_QUERY = queryMessage('BEGIN')
/** Takes a transaction's snapshot and nothing else. */
const SNAPSHOT_QUERY = queryMessage('SELECT')

/**
 * What pass 1 of planBatch decoded from one frame, for pass 2: one per frame, at the frame's
 * index; null for the frames pass 1 does not read (Describe, Close, Sync, Flush).
 */
type Decoded = QueryDecoded | ParseDecoded | BindDecoded | ExecuteDecoded | null

interface QueryDecoded {
  kind: 'query'
  text: string
  analysis: Analysis
  /** rewriteOf with the catalog; undefined until refusal() or pass 2 (when everywhere) needs it: computed once. */
  rewrite: Rewrite | null | undefined
}

interface ParseDecoded {
  kind: 'parse'
  statement: Statement
}

interface BindDecoded {
  kind: 'bind'
  head: BindHead
}

interface ExecuteDecoded {
  kind: 'execute'
  msg: ExecuteMsg
  /** null: nothing known is executed (no locks, no refusal). */
  statement: Statement | null
  params: BindParams | null
}

function body(f: Frame): Buffer {
  return f.bytes.subarray(f.bodyOffset)
}

function queryRewrite(q: QueryDecoded, ctx: PlanContext): Rewrite | null {
  if (q.rewrite === undefined) q.rewrite = rewriteOf(q.text, ctx.catalog, ctx.allowFunctions)
  return q.rewrite
}

/**
 * One executed text's statements into the plan (pass 1): their proxy locks when the batch goes
 * everywhere, and the first refusal. A Query's rewrite (`query`) is computed only if a refusal
 * check needs it; an Execute's (`rw`) came with its Parse.
 */
function noteExecuted(plan: Plan, ctx: PlanContext, everywhere: boolean, a: Analysis, text: string, params: BindParams | null, query: QueryDecoded | null, rw: Rewrite | null): void {
  if (!a.ok) return
  for (const s of a.statements) {
    plan.executed.push(s)
    if (s.kind === 'ddl') plan.ddl = true
    if (s.lockWait === 'nowait') plan.nowait = true
    if (everywhere) locksFor(s, ctx.catalog, plan.locks, params)
    if (everywhere && !plan.nonDeterministic && s.kind !== 'read' && s.kind !== 'empty' && s.kind !== 'copy-out') plan.nonDeterministic = refusal(s, text, query ? queryRewrite(query, ctx) : rw, ctx)
  }
}

/** Prepares `st` where it is missing among `targets` (lazy Parse; its answer is not relayed). */
function ensure(msgs: PlannedMsg[], st: Statement | undefined, targets: number[]): void {
  if (!st) return
  for (const t of targets) {
    if (st.on.has(t)) continue
    msgs.push({ code: F.Parse, bytes: st.parseBytes, targets: [t], swallow: true })
    st.on.add(t)
  }
}

export function planBatch(frames: Frame[], ctx: PlanContext): Plan {
  const plan: Plan = {
    msgs: [],
    locks: [],
    everywhere: false,
    readBackend: null,
    ddl: false,
    executed: [],
    parses: new Map(),
    binds: new Map(),
    closes: new Map(),
    endsWithSync: false,
    hasQuery: false,
    nowait: false,
    nonDeterministic: null,
    logEntries: [],
    logReset: false,
    commit: null,
    logParse: null,
    deferredCommit: null,
    beginFirst: false,
    snapshotAt: null,
    tagged: [],
  }
  const last = frames[frames.length - 1]
  plan.endsWithSync = last?.type === F.Sync || last?.type === F.Query

  if (ctx.clientSkipping) {
    // PostgreSQL ignores everything until Sync after an error; so do we.
    for (const f of frames) if (f.type === F.Sync) plan.msgs.push({ code: F.Sync, bytes: f.bytes, targets: ctx.all })
    plan.endsWithSync = frames.some((f) => f.type === F.Sync)
    return plan
  }

  // Pass 1: what does the batch execute, and does any of it need every backend?
  // Each message is decoded here only, into `decoded` (same indexes as `frames`), which pass 2 reads.
  const decoded: Decoded[] = []
  const batchStatements = new Map<string, Statement>()
  const batchPortals = new Map<string, Statement | null>()
  const batchParams = new Map<string, BindParams | null>()
  let everywhere = ctx.snapshotEverywhere
  for (const f of frames) {
    switch (f.type) {
      case F.Query: {
        const text = queryText(body(f))
        const a = analyzeForRouting(text)
        decoded.push({ kind: 'query', text, analysis: a, rewrite: undefined })
        if (needsAll(a, ctx.catalog, ctx.inTransaction) || anyTxOrSession(a)) everywhere = true
        break
      }
      case F.Parse: {
        const p = parseMsg(body(f))
        const a = analyze(p.query)
        const rewrite = rewriteOf(p.query, ctx.catalog, ctx.allowFunctions)
        const rw = rewriteParse(p, rewrite)
        const st: Statement = {
          name: p.name,
          query: p.query,
          parseBytes: rw?.bytes ?? f.bytes,
          analysis: a,
          on: new Set(),
          time: rw?.time,
          rewrite,
          sent: rw?.text ?? p.query,
          paramTypes: p.paramTypes,
        }
        batchStatements.set(p.name, st)
        decoded.push({ kind: 'parse', statement: st })
        break
      }
      case F.Bind: {
        const bb = body(f)
        const b = bindHead(bb)
        const st = batchStatements.get(b.statement) ?? ctx.registry.statements.get(b.statement) ?? null
        batchPortals.set(b.portal, st)
        batchParams.set(b.portal, bindParams(bb))
        decoded.push({ kind: 'bind', head: b })
        // A portal lives where it is bound, and its Execute may come in a later batch (pg-cursor binds,
        // describes and flushes first): a write's portal is bound on every backend, whatever this batch lacks.
        if (st && (needsAll(st.analysis, ctx.catalog, ctx.inTransaction) || anyTxOrSession(st.analysis))) everywhere = true
        break
      }
      case F.Execute: {
        const e = executeMsg(body(f))
        const st = batchPortals.has(e.portal) ? batchPortals.get(e.portal)! : (ctx.registry.portals.get(e.portal)?.statement ?? null)
        if (!st) {
          decoded.push({ kind: 'execute', msg: e, statement: null, params: null })
          if (!batchPortals.has(e.portal) && ctx.registry.portals.has(e.portal)) break // bound earlier without a known statement
          everywhere = true // unknown portal or statement: the backends will say; be safe
          break
        }
        const params = batchParams.has(e.portal) ? batchParams.get(e.portal)! : (ctx.registry.portals.get(e.portal)?.params ?? null)
        decoded.push({ kind: 'execute', msg: e, statement: st, params })
        if (needsAll(st.analysis, ctx.catalog, ctx.inTransaction) || anyTxOrSession(st.analysis)) everywhere = true
        break
      }
      default:
        decoded.push(null)
    }
  }
  plan.everywhere = everywhere
  const route = everywhere ? ctx.all : [(plan.readBackend = ctx.pickRead())]
  for (const d of decoded) {
    if (d?.kind === 'query') noteExecuted(plan, ctx, everywhere, d.analysis, d.text, null, d, null)
    else if (d?.kind === 'execute' && d.statement) noteExecuted(plan, ctx, everywhere, d.statement.analysis, d.statement.query, d.params, null, d.statement.rewrite ?? null)
  }

  if (ctx.snapshot && everywhere) plan.snapshotAt = snapshotPoint(plan.executed, ctx.snapshot)

  // Pass 2: targets per message, with lazy Parse where a statement is missing.
  const definedHere = new Map<string, Statement>()
  const portalsHere = new Map<string, Portal>()
  // Recovery log: the open transaction's entries as the batch proceeds.
  const log = everywhere ? ctx.log : null
  const batchTx = plan.executed.some(txControl)
  const tieSafe =
    !!log &&
    !!ctx.tieSafe &&
    !ctx.inTransaction &&
    !batchTx &&
    plan.endsWithSync &&
    !ctx.sinceSync.size &&
    plan.executed.some((s) => changesData(s, ctx.catalog)) &&
    !plan.executed.some((s) => s.noTransactionBlock || s.kind === 'copy-in')
  const bl = new BatchLog(plan, log, ctx.catalog, ctx.inTransaction, route, ctx.sinceSync, tieSafe)
  if (plan.snapshotAt === 'before') bl.push({ code: F.Query, bytes: SNAPSHOT_QUERY, targets: route, swallow: true, surfaceErrors: true })
  if (tieSafe && ctx.beginApart) plan.beginFirst = true
  else if (tieSafe) bl.push({ code: F.Query, bytes: BEGIN_QUERY, targets: route, swallow: true, surfaceErrors: true })
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]!
    // Each record's kind is its frame's type (pass 1 wrote one per frame).
    switch (f.type) {
      case F.Parse: {
        const st = (decoded[i] as ParseDecoded).statement
        const fresh: Statement = { ...st, on: new Set(route) }
        definedHere.set(st.name, fresh)
        plan.parses.set(plan.msgs.length, fresh)
        bl.push({ code: F.Parse, bytes: fresh.parseBytes, targets: route })
        break
      }
      case F.Bind: {
        const b = (decoded[i] as BindDecoded).head
        const st = definedHere.get(b.statement) ?? ctx.registry.statements.get(b.statement)
        if (!definedHere.has(b.statement)) ensure(plan.msgs, st, route)
        const bytes = st?.time ? rewriteBind(body(f), st.time, ctx.clock) : f.bytes
        const portal: Portal = { name: b.portal, statement: st ?? null, targets: route, params: batchParams.get(b.portal) ?? null, bindBody: bytes.subarray(5) }
        portalsHere.set(b.portal, portal)
        plan.binds.set(plan.msgs.length, portal)
        bl.push({ code: F.Bind, bytes, targets: route })
        break
      }
      case F.Describe: {
        const d = describeOrClose(body(f))
        if (d.kind === 'S') {
          const st = definedHere.get(d.name) ?? ctx.registry.statements.get(d.name)
          if (!definedHere.has(d.name)) ensure(plan.msgs, st, route)
          bl.push({ code: F.Describe, bytes: f.bytes, targets: route, describeStatement: true })
        } else {
          const portal = portalsHere.get(d.name) ?? ctx.registry.portals.get(d.name)
          bl.push({ code: F.Describe, bytes: f.bytes, targets: portal ? portal.targets : route })
        }
        break
      }
      case F.Execute: {
        const e = (decoded[i] as ExecuteDecoded).msg
        const portal = portalsHere.get(e.portal) ?? ctx.registry.portals.get(e.portal)
        const targets = portal ? portal.targets : route
        const a = portal?.statement?.analysis
        const st = a?.ok ? a.statements[0] : undefined
        if (log && st && portal?.statement) {
          if (isCommit(st)) {
            if (bl.curWrites) bl.injectExtended()
            bl.restart()
          } else if (st.tx?.op === 'begin' || st.tx?.op === 'rollback') bl.restart()
          else if (logged(st, ctx.catalog))
            bl.add(plan.msgs.length, entryFromBind(portal.statement.sent, portal.statement.paramTypes, portal.bindBody ?? EMPTY_BIND), changesData(st, ctx.catalog), 0, [st])
        }
        const perServer = targets.length > 1 && !!a && perServerRead(a, ctx.catalog)
        bl.push({ code: F.Execute, bytes: f.bytes, targets, rowsMayDiffer: perServer || (targets.length > 1 && !!a && plainRead(a, ctx.catalog)), perServer })
        break
      }
      case F.Close: {
        const c = describeOrClose(body(f))
        let targets = route
        if (c.kind === 'S') {
          const st = definedHere.get(c.name) ?? ctx.registry.statements.get(c.name)
          if (st && st.on.size) targets = [...new Set([...st.on, ...route])].sort()
        } else {
          const portal = portalsHere.get(c.name) ?? ctx.registry.portals.get(c.name)
          if (portal) targets = portal.targets
        }
        plan.closes.set(plan.msgs.length, c)
        bl.push({ code: F.Close, bytes: f.bytes, targets })
        break
      }
      case F.Query: {
        plan.hasQuery = true
        const q = decoded[i] as QueryDecoded
        const text = q.text
        // Reads get the transaction's clock too: now() must read the same value the writes stored.
        // Everywhere, the rewrite is pass 1's (refusal) when it computed one.
        const sent = rewriteQueryText(text, everywhere ? queryRewrite(q, ctx) : rewriteOf(text, null, ctx.allowFunctions), ctx.clock)
        const a = q.analysis
        const idx = plan.msgs.length
        const perServer = everywhere && perServerRead(a, ctx.catalog)
        const m: PlannedMsg = { code: F.Query, bytes: sent === text ? f.bytes : queryMessage(sent), targets: route, rowsMayDiffer: perServer || (everywhere && plainRead(a, ctx.catalog)), perServer }
        if (log && a.ok)
          bl.query(
            a.statements.filter((s) => s.kind !== 'empty'),
            sent,
            idx,
            m,
          )
        bl.push(m)
        break
      }
      case F.Sync: {
        // An autocommit extended batch that wrote: the log row joins its implicit transaction.
        if (log && !ctx.inTransaction && !batchTx && bl.curWrites && !tieSafe) {
          bl.injectExtended()
          bl.restart()
        }
        // Sync goes wherever this batch (or an earlier Flush batch) did work.
        const targets = bl.touched.size ? [...bl.touched].sort((a, b) => a - b) : route
        plan.msgs.push({ code: F.Sync, bytes: f.bytes, targets })
        break
      }
      case F.Flush:
        plan.msgs.push({ code: F.Flush, bytes: f.bytes, targets: [] })
        break
    }
  }

  if (tieSafe) {
    plan.deferredCommit = { settings: [...log!.settings], entries: bl.cur }
    bl.restart()
  }

  // A Flush must reach the backends so they send what they have.
  if (last?.type === F.Flush) {
    const flushTargets = bl.touched.size ? [...bl.touched].sort((a, b) => a - b) : route
    plan.msgs[plan.msgs.length - 1] = { code: F.Flush, bytes: last.bytes, targets: flushTargets }
  }
  return plan
}
