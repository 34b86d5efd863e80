// Decides where each message of a batch goes and which proxy locks the batch
// needs before it may be sent. Reads go to one backend; everything that
// changes data or session state goes to every backend of the session.

import { F } from '../protocol/codes.ts'
import { bindHead, describeOrClose, executeMsg, parseMsg, queryText, type ExecuteMsg } from '../protocol/decode.ts'
import type { Frame } from '../protocol/framer.ts'
import type { PlannedMsg } from '../broadcast/exchange.ts'
import { analyze, type Analysis, type StatementInfo } from '../sql/analyze.ts'
import type { CatalogData, UniqueIndex } from '../scheduler/catalog.ts'
import { bindParams, canonical, type BindParams } from '../scheduler/key-values.ts'
import type { KeyValue, TableName } from '../sql/types.ts'
import { analyzeForRouting } from '../sql/shape-cache.ts'
import { findCall, findSystemColumn } from '../sql/time-rewrite.ts'
import { nonDeterministicCall, NON_DETERMINISTIC } from '../sql/nondeterministic.ts'
import { errors, type PgError } from '../errors.ts'
import type { LockRequest } from '../scheduler/lock-manager.ts'
import type { Portal, Statement, StatementRegistry } from './statements.ts'
import { ddlEvaluatesVolatile } from './default-fill.ts'
import { snapshotPoint, type SnapshotState } from './snapshot-point.ts'
import { queryMessage, rewriteBind, rewriteOf, rewriteParse, rewriteQueryText, type Clock, type Rewrite } from './time-params.ts'
import { changesData, drawnSequences, isCommit, logged, statementSpans, type BatchLogEntry, type LogCommit, type LogContext } from './log-plan.ts'
import { entryFromBind, insertText, logBind, logExecute, logParse, recordJson, replayableDatabases, type LogEntry } from '../recovery/record.ts'

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

function unqualified(name: string): string {
  const dot = name.lastIndexOf('.')
  return dot >= 0 ? name.slice(dot + 1) : name
}

/** Does this statement have to run on every backend? */
export function needsAll(a: Analysis, cat: CatalogData, inTx: boolean): boolean {
  if (!a.ok) return inTx // a syntax error must abort the transaction everywhere
  for (const s of a.statements) {
    if (s.kind === 'empty') continue
    if (s.kind !== 'read' && s.kind !== 'copy-out') return true
    if (s.kind === 'copy-out' && s.writes.length) return true
    for (const f of s.functions) if (!cat.nonVolatile.has(unqualified(f)) && !READ_SAFE.has(unqualified(f))) return true
  }
  return false
}

/**
 * Volatile but without side effects: a read calling them may run on one
 * backend. currval()/lastval() answer the session's own last nextval(), which
 * is the same on every backend because nextval() calls are ordered.
 */
const READ_SAFE = new Set([
  ...[...NON_DETERMINISTIC].filter((f) => f !== 'setseed' && f !== 'lo_creat' && f !== 'lo_import'),
  'currval',
  'lastval',
  // The server's own, changing no data pgraid replicates: a plain SELECT of them is a read (one
  // backend, no lock): two sessions' pg_sleep no longer wait for each other.
  'pg_sleep',
  'pg_sleep_for',
  'pg_sleep_until',
  'txid_current',
  'txid_current_if_assigned',
  'pg_current_xact_id',
  'pg_current_xact_id_if_assigned',
])
/** Depend only on the session's own earlier calls: never ordered across sessions. */
const SESSION_LOCAL = new Set(['currval', 'lastval'])
const SEQUENCE_FNS = new Set(['nextval', 'setval'])

/**
 * nextval('s')/setval('s'): X on that sequence, meeting the inserts whose
 * defaults draw from it; a sequence named at run time (nextval($1)) takes X
 * on fn:nextval, which meets every sequence user through their IX.
 */
function sequenceLocks(s: StatementInfo, out: LockRequest[]): void {
  if (!s.functions.some((f) => SEQUENCE_FNS.has(unqualified(f)))) return
  const seqs = s.sequences ?? ['*']
  if (seqs.includes('*')) {
    out.push({ resource: 'fn:nextval', mode: 'X' })
    return
  }
  out.push({ resource: 'fn:nextval', mode: 'IX' })
  for (const q of seqs) out.push({ resource: `seq:${q}`, mode: 'X' })
}

/**
 * Key locks for a write to `table` when the analysis proves which rows it
 * touches: IX on the table plus X on each key. null = lock the whole table.
 * Updates, deletes and row locks are keyed by the primary key only, so two
 * statements reaching one row through different unique indexes still meet on
 * one resource; inserts lock every unique key they create. A delete from a
 * table with other unique indexes, or an update assigning a unique column,
 * frees or moves keys pgraid cannot name: table lock.
 */
export function keyLocks(info: StatementInfo, table: TableName, cat: CatalogData, params: BindParams | null): LockRequest[] | null {
  const access = info.keys?.find((k) => k.table.name === table.name && (k.table.schema ?? null) === (table.schema ?? null))
  if (!access || !access.rows.length || cat.complexUnique.has(table.name) || cat.family.has(table.name)) return null
  const uniques = cat.uniques.get(table.name) ?? []
  const uniqueCols = new Set(uniques.flatMap((u) => u.columns))
  if (access.setColumns?.some((c) => uniqueCols.has(c))) return null
  const out: LockRequest[] = [{ resource: `rel:${table.name}`, mode: 'IX' }]
  const keyOf = (u: UniqueIndex, row: Record<string, KeyValue>): string | null => {
    const vals: string[] = []
    for (let i = 0; i < u.columns.length; i++) {
      const v = row[u.columns[i]]
      const c = v ? canonical(v, u.types[i], params) : null
      if (c === null) return null
      vals.push(c)
    }
    return `key:${table.name}:${u.columns.join(',')}=${vals.join('\u0001')}`
  }
  if (access.op === 'insert') {
    for (const row of access.rows) {
      for (const u of uniques) {
        const k = keyOf(u, row)
        if (!k) return null
        out.push({ resource: k, mode: 'X' })
      }
    }
    return out
  }
  const pk = uniques.find((u) => u.primary)
  if (!pk) return null
  if (access.op === 'delete' && uniques.length > 1) return null
  for (const row of access.rows) {
    const k = keyOf(pk, row)
    if (!k) return null
    out.push({ resource: k, mode: 'X' })
  }
  return out
}

/** Proxy locks for one executed statement: per key where provable, else per table. */
export function locksFor(s: StatementInfo, cat: CatalogData, out: LockRequest[], params: BindParams | null = null): void {
  if (s.kind === 'read' || s.kind === 'copy-out' || s.kind === 'empty') {
    let volatile = false
    for (const f of s.functions) {
      const n = unqualified(f)
      if (!cat.nonVolatile.has(n) && !SESSION_LOCAL.has(n)) {
        if (!SEQUENCE_FNS.has(n)) out.push({ resource: `fn:${n}`, mode: 'X' })
        volatile = true
      }
    }
    if (volatile) sequenceLocks(s, out)
    if (volatile) {
      out.push({ resource: 'db', mode: 'S' })
      for (const r of s.reads) out.push({ resource: `rel:${r.name}`, mode: 'S' })
    }
    return
  }
  if (s.kind === 'transaction' || (s.kind === 'session' && !s.session?.cursorQuery)) return
  const info = s.session?.cursorQuery ?? s
  out.push({ resource: 'db', mode: 'S' })
  const keyed = new Set<string>()
  for (const w of info.writes) {
    const keys = keyLocks(info, w, cat, params)
    if (keys) {
      out.push(...keys)
      keyed.add(w.name)
    } else out.push({ resource: `rel:${w.name}`, mode: 'X' })
    // Partitions and inheritance: a row written through one member lives in another.
    for (const m of cat.family.get(w.name) ?? []) out.push({ resource: `rel:${m}`, mode: 'X' })
    if (cat.indirect.has(w.name)) out.push({ resource: 'db', mode: 'X' })
    for (const c of cat.children.get(w.name) ?? []) out.push({ resource: `rel:${c}`, mode: 'X' })
    for (const p of cat.parents.get(w.name) ?? []) out.push({ resource: `rel:${p}`, mode: 'S' })
    if (cat.triggers.has(w.name)) out.push({ resource: 'db', mode: 'X' })
    if (cat.sequenceDefaults.has(w.name)) {
      // Each sequence orders its own users; an explicit nextval() call (X on fn:nextval,
      // sequence unknown) still meets every one of them through the IX.
      const seqs = cat.sequencesOf.get(w.name)
      if (seqs?.size) {
        out.push({ resource: 'fn:nextval', mode: 'IX' })
        for (const q of seqs) out.push({ resource: `seq:${q}`, mode: 'X' })
      } else out.push({ resource: 'fn:nextval', mode: 'X' })
    }
  }
  // A keyed statement reads its own target only through the keys it locks.
  for (const r of info.reads) {
    if (!keyed.has(r.name)) out.push({ resource: `rel:${r.name}`, mode: 'S' })
    for (const m of cat.family.get(r.name) ?? []) out.push({ resource: `rel:${m}`, mode: 'S' })
  }
  for (const f of info.functions) {
    const n = unqualified(f)
    if (!cat.nonVolatile.has(n) && !SESSION_LOCAL.has(n) && !SEQUENCE_FNS.has(n)) out.push({ resource: `fn:${n}`, mode: 'X' })
  }
  sequenceLocks(info, out)
  // ALTER SEQUENCE ... RESTART meets the inserts that draw from it.
  if (info.kind === 'ddl') for (const w of info.writes) out.push({ resource: `seq:${w.name}`, mode: 'X' })
  if (info.unknownWrites) out.push({ resource: info.kind === 'ddl' ? 'ddl' : 'db', mode: 'X' })
  if (info.kind === 'ddl') out.push({ resource: 'ddl', mode: 'X' })
}

export class PlanError extends Error {}

const EMPTY_BIND = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])
const BEGIN_QUERY = queryMessage('BEGIN')
/** Takes a transaction's snapshot and nothing else. */
const SNAPSHOT_QUERY = queryMessage('SELECT')

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
  const body = (f: Frame) => f.bytes.subarray(f.bodyOffset)
  const batchStatements = new Map<string, Statement>()
  const frameStatements = new Map<Frame, Statement>()
  /** Each simple query's analysis from pass 1, reused in pass 2 (the shape cache costs two regex passes per call). */
  const frameAnalyses = new Map<Frame, Analysis>()
  const batchPortals = new Map<string, Statement | null>()
  const batchParams = new Map<string, BindParams | null>()
  let everywhere = ctx.snapshotEverywhere
  const executes: { analysis: Analysis; params: BindParams | null; text: string; rewrite: () => Rewrite | null }[] = []
  const rewriteText = (text: string) => () => rewriteOf(text, ctx.catalog, ctx.allowFunctions)
  for (const f of frames) {
    switch (f.type) {
      case F.Query: {
        const text = queryText(body(f))
        const a = analyzeForRouting(text)
        frameAnalyses.set(f, a)
        executes.push({ analysis: a, params: null, text, rewrite: rewriteText(text) })
        if (needsAll(a, ctx.catalog, ctx.inTransaction) || anyTxOrSession(a)) everywhere = true
        break
      }
      case F.Parse: {
        const p = parseMsg(body(f))
        const a = analyze(p.query)
        const rewrite = rewriteOf(p.query, ctx.catalog, ctx.allowFunctions)
        const rw = rewriteParse(p, rewrite)
        const st: Statement = { name: p.name, query: p.query, parseBytes: rw?.bytes ?? f.bytes, analysis: a, on: new Set(), time: rw?.time, rewrite, sent: rw?.text ?? p.query, paramTypes: p.paramTypes }
        batchStatements.set(p.name, st)
        frameStatements.set(f, st)
        break
      }
      case F.Bind: {
        const b = bindHead(body(f))
        const st = batchStatements.get(b.statement) ?? ctx.registry.statements.get(b.statement) ?? null
        batchPortals.set(b.portal, st)
        batchParams.set(b.portal, bindParams(body(f)))
        // A portal lives where it is bound, and its Execute may come in a later batch (pg-cursor binds,
        // describes and flushes first): a write's portal is bound on every backend, whatever this batch lacks.
        if (st && (needsAll(st.analysis, ctx.catalog, ctx.inTransaction) || anyTxOrSession(st.analysis))) everywhere = true
        break
      }
      case F.Execute: {
        const e = executeMsg(body(f))
        const st = batchPortals.has(e.portal) ? batchPortals.get(e.portal)! : ctx.registry.portals.get(e.portal)?.statement ?? null
        if (!st) {
          if (!batchPortals.has(e.portal) && ctx.registry.portals.has(e.portal)) break // bound earlier without a known statement
          everywhere = true // unknown portal or statement: the backends will say; be safe
          break
        }
        const rewrite = st.rewrite ?? null
        executes.push({ text: st.query, analysis: st.analysis, params: batchParams.has(e.portal) ? batchParams.get(e.portal)! : ctx.registry.portals.get(e.portal)?.params ?? null, rewrite: () => rewrite })
        if (needsAll(st.analysis, ctx.catalog, ctx.inTransaction) || anyTxOrSession(st.analysis)) everywhere = true
        break
      }
    }
  }
  plan.everywhere = everywhere
  const route = everywhere ? ctx.all : [(plan.readBackend = ctx.pickRead())]
  for (const e of executes) {
    if (!e.analysis.ok) continue
    for (const s of e.analysis.statements) {
      plan.executed.push(s)
      if (s.kind === 'ddl') plan.ddl = true
      if (s.lockWait === 'nowait') plan.nowait = true
      if (everywhere) locksFor(s, ctx.catalog, plan.locks, e.params)
      if (everywhere && !plan.nonDeterministic && s.kind !== 'read' && s.kind !== 'empty' && s.kind !== 'copy-out')
        plan.nonDeterministic = refusal(s, e.text, e.rewrite(), ctx)
    }
  }

  if (ctx.snapshot && everywhere) plan.snapshotAt = snapshotPoint(plan.executed, ctx.snapshot)

  // Pass 2: targets per message, with lazy Parse where a statement is missing.
  const definedHere = new Map<string, Statement>()
  const portalsHere = new Map<string, Portal>()
  const ensure = (st: Statement | undefined, targets: number[]) => {
    if (!st) return
    for (const t of targets) {
      if (st.on.has(t)) continue
      plan.msgs.push({ code: F.Parse, bytes: st.parseBytes, targets: [t], swallow: true })
      st.on.add(t)
    }
  }
  const touched = new Set<number>(ctx.sinceSync)
  const push = (m: PlannedMsg) => {
    for (const t of m.targets) touched.add(t)
    plan.msgs.push(m)
  }
  // Recovery log: the open transaction's entries as the batch proceeds.
  const log = everywhere ? ctx.log : null
  let cur: LogEntry[] = log ? [...log.pending] : []
  let curWrites = log?.pendingWrites ?? false
  const restart = () => {
    cur = []
    curWrites = false
    plan.logEntries = []
    plan.logReset = true
  }
  const add = (msg: number, entry: LogEntry, writes: boolean, unit: number | undefined, stmts: readonly StatementInfo[]) => {
    const sq = writes ? drawnSequences(stmts, ctx.catalog) : undefined
    if (sq) entry.sq = sq
    for (const s of stmts) if (s.databases) (entry.db ??= []).push(...(replayableDatabases(s.command, s.databases) ?? []))
    cur.push(entry)
    curWrites ||= writes
    const e: BatchLogEntry = { msg, entry, writes, unit }
    plan.logEntries.push(e)
    plan.tagged.push(e)
  }
  /** Log INSERT as extended-protocol messages (named statement and portal: the client's unnamed ones stay). */
  const injectExtended = () => {
    const json = recordJson(log!.settings, cur)
    const lacking = route.filter((t) => !log!.prepared.has(t))
    if (lacking.length) {
      plan.logParse = plan.msgs.length
      push({ code: F.Parse, bytes: logParse(), targets: lacking, swallow: true, surfaceErrors: true })
    }
    const idx = plan.msgs.length
    push({ code: F.Bind, bytes: Buffer.alloc(0), targets: route, swallow: true, surfaceErrors: true })
    push({ code: F.Execute, bytes: logExecute(), targets: route, swallow: true, surfaceErrors: true })
    plan.commit = commitAt(json, idx, (lsn, at) => logBind(lsn, at, json))
  }
  /** The log INSERT at message idx, built once the LSN is known. */
  const commitAt = (json: string, idx: number, build: (lsn: number, at: string) => Buffer): LogCommit => {
    const c: LogCommit = {
      json,
      entries: [...cur],
      fill(lsn, at) {
        c.lsn = lsn
        c.at = at
        plan.msgs[idx]!.bytes = build(lsn, at)
      },
    }
    return c
  }
  const txControl = (s: StatementInfo) => s.tx?.op === 'begin' || s.tx?.op === 'rollback' || isCommit(s)
  const batchTx = plan.executed.some(txControl)
  const tieSafe =
    !!log && !!ctx.tieSafe && !ctx.inTransaction && !batchTx && plan.endsWithSync && !ctx.sinceSync.size &&
    plan.executed.some((s) => changesData(s, ctx.catalog)) && !plan.executed.some((s) => s.noTransactionBlock || s.kind === 'copy-in')
  if (plan.snapshotAt === 'before') push({ code: F.Query, bytes: SNAPSHOT_QUERY, targets: route, swallow: true, surfaceErrors: true })
  if (tieSafe && ctx.beginApart) plan.beginFirst = true
  else if (tieSafe) push({ code: F.Query, bytes: BEGIN_QUERY, targets: route, swallow: true, surfaceErrors: true })
  for (const f of frames) {
    switch (f.type) {
      case F.Parse: {
        const p = parseMsg(body(f))
        const st = frameStatements.get(f)!
        const fresh: Statement = { ...st, on: new Set(route) }
        definedHere.set(p.name, fresh)
        plan.parses.set(plan.msgs.length, fresh)
        push({ code: F.Parse, bytes: fresh.parseBytes, targets: route })
        break
      }
      case F.Bind: {
        const b = bindHead(body(f))
        const st = definedHere.get(b.statement) ?? ctx.registry.statements.get(b.statement)
        if (!definedHere.has(b.statement)) ensure(st, route)
        const bytes = st?.time ? rewriteBind(body(f), st.time, ctx.clock) : f.bytes
        const portal: Portal = { name: b.portal, statement: st ?? null, targets: route, params: batchParams.get(b.portal) ?? null, bindBody: bytes.subarray(5) }
        portalsHere.set(b.portal, portal)
        plan.binds.set(plan.msgs.length, portal)
        push({ code: F.Bind, bytes, targets: route })
        break
      }
      case F.Describe: {
        const d = describeOrClose(body(f))
        if (d.kind === 'S') {
          const st = definedHere.get(d.name) ?? ctx.registry.statements.get(d.name)
          if (!definedHere.has(d.name)) ensure(st, route)
          push({ code: F.Describe, bytes: f.bytes, targets: route, describeStatement: true })
        } else {
          const portal = portalsHere.get(d.name) ?? ctx.registry.portals.get(d.name)
          push({ code: F.Describe, bytes: f.bytes, targets: portal ? portal.targets : route })
        }
        break
      }
      case F.Execute: {
        const e: ExecuteMsg = executeMsg(body(f))
        const portal = portalsHere.get(e.portal) ?? ctx.registry.portals.get(e.portal)
        const targets = portal ? portal.targets : route
        const a = portal?.statement?.analysis
        const st = a?.ok ? a.statements[0] : undefined
        if (log && st && portal?.statement) {
          if (isCommit(st)) {
            if (curWrites) injectExtended()
            restart()
          } else if (st.tx?.op === 'begin' || st.tx?.op === 'rollback') restart()
          else if (logged(st, ctx.catalog)) add(plan.msgs.length, entryFromBind(portal.statement.sent, portal.statement.paramTypes, portal.bindBody ?? EMPTY_BIND), changesData(st, ctx.catalog), 0, [st])
        }
        const perServer = targets.length > 1 && !!a && perServerRead(a, ctx.catalog)
        push({ code: F.Execute, bytes: f.bytes, targets, rowsMayDiffer: perServer || (targets.length > 1 && !!a && plainRead(a, ctx.catalog)), perServer })
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
        push({ code: F.Close, bytes: f.bytes, targets })
        break
      }
      case F.Query: {
        plan.hasQuery = true
        // Reads get the transaction's clock too: now() must read the same value the writes stored.
        const text = queryText(body(f))
        const sent = rewriteQueryText(text, rewriteOf(text, everywhere ? ctx.catalog : null, ctx.allowFunctions), ctx.clock)
        const a = frameAnalyses.get(f) ?? analyzeForRouting(text)
        const idx = plan.msgs.length
        const perServer = everywhere && perServerRead(a, ctx.catalog)
        const m: PlannedMsg = { code: F.Query, bytes: sent === text ? f.bytes : queryMessage(sent), targets: route, rowsMayDiffer: perServer || (everywhere && plainRead(a, ctx.catalog)), perServer }
        if (log && a.ok) logQuery(a.statements.filter((s) => s.kind !== 'empty'), sent, idx, m)
        push(m)
        break
      }
      case F.Sync: {
        // An autocommit extended batch that wrote: the log row joins its implicit transaction.
        if (log && !ctx.inTransaction && !batchTx && curWrites && !tieSafe) {
          injectExtended()
          restart()
        }
        // Sync goes wherever this batch (or an earlier Flush batch) did work.
        const targets = touched.size ? [...touched].sort((a, b) => a - b) : route
        plan.msgs.push({ code: F.Sync, bytes: f.bytes, targets })
        break
      }
      case F.Flush:
        plan.msgs.push({ code: F.Flush, bytes: f.bytes, targets: [] })
        break
    }
  }
  /** A simple query's statements into the log: the INSERT added to the text where the transaction commits. */
  function logQuery(stmts: StatementInfo[], sent: string, idx: number, m: PlannedMsg): void {
    if (!stmts.some(txControl)) {
      const writes = stmts.some((s) => changesData(s, ctx.catalog))
      const copy = stmts.some((s) => s.kind === 'copy-in')
      // One statement in the text: its CommandComplete is the message's first.
      const unit = stmts.length === 1 ? 0 : undefined
      if (ctx.inTransaction) {
        if (stmts.some((s) => logged(s, ctx.catalog))) add(idx, copy ? { q: sent, copy: true } : { q: sent }, writes, unit, stmts)
        return
      }
      // Autocommit: the text is one implicit transaction; the INSERT is its last statement.
      // COPY (data not in the record) and statements refusing a transaction block are not logged.
      if (!writes || copy || stmts.some((s) => s.noTransactionBlock)) return
      add(idx, { q: sent }, writes, unit, stmts)
      if (tieSafe) return // committed by the session after the answers agreed
      const json = recordJson(log!.settings, cur)
      plan.commit = commitAt(json, idx, (lsn, at) => queryMessage(`${sent}\n;${insertText(lsn, at, json)}`))
      m.dropUnit = stmts.length
      restart()
      return
    }
    const spans = statementSpans(sent)
    if (!spans || spans.length !== stmts.length) return
    const bytes = Buffer.from(sent, 'utf8')
    let spliced = false
    stmts.forEach((s, k) => {
      const span = spans[k]!
      if (s.tx?.op === 'begin' || s.tx?.op === 'rollback') restart()
      else if (isCommit(s)) {
        if (curWrites && !spliced) {
          // One INSERT per text: it goes just before the (first) COMMIT, and its answer is not relayed.
          spliced = true
          const json = recordJson(log!.settings, cur)
          const head = bytes.toString('utf8', 0, span.start)
          const tail = bytes.toString('utf8', span.start)
          plan.commit = commitAt(json, idx, (lsn, at) => queryMessage(`${head}${insertText(lsn, at, json)};\n${tail}`))
          m.dropUnit = k
        }
        restart()
      } else if (logged(s, ctx.catalog)) add(idx, { q: bytes.toString('utf8', span.start, span.end) }, changesData(s, ctx.catalog), k, [s])
    })
  }

  if (tieSafe) {
    plan.deferredCommit = { settings: [...log!.settings], entries: cur }
    restart()
  }

  // A Flush must reach the backends so they send what they have.
  if (last?.type === F.Flush) {
    const flushTargets = touched.size ? [...touched].sort((a, b) => a - b) : route
    plan.msgs[plan.msgs.length - 1] = { code: F.Flush, bytes: last.bytes, targets: flushTargets }
  }
  return plan
}

/**
 * Why a write executed on every backend would leave them different, as the
 * error to send: a per-backend function pgraid cannot supply, a volatile
 * default it cannot place, or a trigger computing per-backend values.
 */
function refusal(s: StatementInfo, text: string, rw: Rewrite | null, ctx: PlanContext): PgError | null {
  if (s.kind === 'ddl' && s.command !== 'CREATE TABLE AS') {
    // Defining a default or a function body calls nothing; filling existing rows does.
    if (!/\badd\b|materialized/i.test(text)) return null
    const r = ddlEvaluatesVolatile(text, (f) => NON_DETERMINISTIC.has(f) && !ctx.allowFunctions.includes(f))
    return r && errors.volatileDefault(r.message, r.hint, charPosition(text, r.position))
  }
  const fn = nonDeterministicCall(s.functions, rw ? [...ctx.allowFunctions, ...rw.covered] : ctx.allowFunctions)
  if (fn) return errors.nonDeterministic(fn, charPosition(text, findCall(text, fn)))
  const sys = findSystemColumn(text)
  if (sys) return errors.systemColumn(sys.name, charPosition(text, sys.at))
  if (rw?.refusal) return errors.volatileDefault(rw.refusal.message, rw.refusal.hint, charPosition(text, rw.refusal.position))
  for (const w of s.writes) {
    for (const tr of ctx.catalog.volatileTriggers.get(w.name) ?? []) {
      if (!ctx.allowTriggers.includes(tr.trigger) && !ctx.allowTriggers.includes('*')) return errors.volatileTrigger(w.name, tr.trigger, tr.function, tr.reason)
    }
  }
  return null
}

/** PostgreSQL's error position: 1-based, in characters. */
function charPosition(text: string, byteOffset: number): number | undefined {
  if (byteOffset < 0) return undefined
  return Buffer.from(text, 'utf8').toString('utf8', 0, byteOffset).length + 1
}

/** Only reads (and transaction control), no sequence calls: rows another backend may order or limit differently. */
function plainRead(a: Analysis, cat: CatalogData): boolean {
  return a.ok && a.statements.every((s) => (s.kind === 'read' || s.kind === 'transaction' || s.kind === 'empty') && !s.sequences && s.functions.every((f) => cat.nonVolatile.has(unqualified(f))))
}

/**
 * Volatile built-ins whose answer is the server's own and changes no data pgraid replicates: a
 * SELECT calling them runs everywhere (they act on each server) and its answers are not voted on.
 */
const PER_SERVER_FUNCTIONS = new Set([
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_backend_pid',
  'pg_sleep',
  'pg_sleep_for',
  'pg_sleep_until',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_stat_clear_snapshot',
  'pg_stat_reset',
  'pg_log_backend_memory_contexts',
  'txid_current',
  'txid_current_if_assigned',
  'pg_current_xact_id',
  'pg_current_xact_id_if_assigned',
  'pg_current_wal_lsn',
  'pg_current_wal_insert_lsn',
  'pg_switch_wal',
  'pg_create_restore_point',
  'inet_server_port',
  'inet_server_addr',
])

/** A read (no sequences) whose only volatile calls are PER_SERVER_FUNCTIONS, at least one of them. */
function perServerRead(a: Analysis, cat: CatalogData): boolean {
  if (!a.ok) return false
  let any = false
  for (const s of a.statements) {
    if (s.kind !== 'read' || s.sequences) return false
    for (const f of s.functions) {
      const name = unqualified(f)
      if (PER_SERVER_FUNCTIONS.has(name)) any = true
      else if (!cat.nonVolatile.has(name)) return false
    }
  }
  return any
}

export function anyTxOrSession(a: Analysis): boolean {
  if (!a.ok) return false
  return a.statements.some((s) => s.kind === 'transaction' || s.kind === 'session' || s.kind === 'ddl' || s.kind === 'write' || s.kind === 'copy-in' || s.kind === 'not-replicable')
}
