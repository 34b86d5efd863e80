// The batch loop: the client's messages taken from the inbox batch by batch
// (up to a Sync, Flush, Query or a message only PostgreSQL's reader would
// reject), one batch at a time per session; each batch planned (router/plan.ts)
// after what a session does between transactions (drained backends left,
// PAUSE, backends that came back attached), with the deferred BEGIN
// answered, carried or sent alone (deferred-begin.ts). admit.ts takes it on.

import type net from 'node:net'
import { F } from '../protocol/codes.ts'
import type { Frame } from '../protocol/framer.ts'
import { commandComplete, readyForQuery } from '../protocol/encode.ts'
import { errors, PgError } from '../errors.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import { planBatch, type Plan } from '../router/plan.ts'
import { admit, type AdmitHost } from './admit.ts'
import { batchClock } from './clock.ts'
import { BEGIN_FRAME, carriesBegin, extendedCarriesBegin, extendedPlainBegin, isPlainBegin } from './deferred-begin.ts'
import { catalogInTx } from './own-statements.ts'
import { refuse, refuseFrom } from './refuse.ts'
import { firstUnreadable, malformedTerminator } from './unreadable.ts'
import { alreadySet, answerAlreadySet } from './known-settings.ts'

/** Every message type a client may send after login; anything else is a protocol violation. */
const KNOWN = new Set<number>([F.Bind, F.Close, F.Describe, F.Execute, F.Flush, F.Parse, F.Query, F.Sync, F.Terminate, F.CopyData, F.CopyDone, F.CopyFail, F.FunctionCall])
const SNAPSHOT_LEVELS = new Set(['repeatable read', 'serializable'])
const BEGIN_COMPLETE = commandComplete('BEGIN')

/** What the batch loop needs from its session. */
export interface BatchHost extends AdmitHost {
  readonly socket: net.Socket
  /** The client's messages not yet taken into a batch, and their size (the client is paused above 64 MiB). */
  readonly inbox: Frame[]
  inboxBytes: number
  /** The loop is running (one batch at a time). */
  running: boolean
  /** The batch being run (close() lets one that may commit finish, its own COMMIT included). */
  batch: Promise<void> | null
  /** An ERROR a backend sent between batches (client-output.ts, unsolicited). */
  strayError: Record<string, string> | null
  /** The election term this session may write in: taken when it is between transactions. */
  term: number
  /** Since when it waits for RESUME (PAUSE): SHOW POOLS cl_waiting. */
  pausedSince: Date | null
  logTerm: number
  /** The catalog the batch was planned with. */
  catalogSeen: CatalogData
  /** The deferred BEGIN is being sent alone (flushBegin does not run twice). */
  flushingBegin: boolean
  /** Between transactions: connects to the backends that came back into service. */
  attachLate(): Promise<void>
  /** Nothing more to do: the idle timeouts start. */
  armIdleTimer(): void
  close(reason: string): void
  fatal(err: PgError): void
}

/** Runs the batches in the inbox, one at a time, until it holds no complete one. */
export async function pump(host: BatchHost): Promise<void> {
  if (host.running || !host.ready) return
  host.running = true
  try {
    for (;;) {
      if (!host.ready) return
      const end = batchEnd(host)
      if (!end) {
        host.armIdleTimer()
        break
      }
      host.step = 'loss checks'
      if ((host.backends.lossChecks.length || host.backends.endError) && !(await host.settleLosses())) return
      host.step = 'batch'
      const frames = host.inbox.splice(0, end)
      for (const f of frames) host.inboxBytes -= f.bytes.length
      if (host.inboxBytes < 16 * 1024 * 1024 && host.socket.isPaused()) host.socket.resume()
      // A terminator PostgreSQL cannot read is answered here as PostgreSQL answers it (ERROR 08P01;
      // ReadyForQuery after a Query or Sync), after the batch's readable messages; no backend receives it.
      const bad = malformedTerminator(frames[frames.length - 1]!)
      const batch = bad ? refuseFrom(host, frames, { index: frames.length - 1, error: bad }) : runFrames(host, frames)
      host.batch = batch
      try {
        await batch
      } finally {
        host.batch = null
        host.step = ''
      }
    }
  } catch (e) {
    host.log.error({ err: e }, 'session failed')
    host.fatal(e instanceof PgError ? e : errors.internal((e as Error).message))
  } finally {
    host.running = false
  }
}

/** Index just past the end of the first complete batch in the inbox, or 0. */
function batchEnd(host: BatchHost): number {
  for (let i = 0; i < host.inbox.length; i++) {
    const t = host.inbox[i].type
    if (t === F.Sync || t === F.Flush || t === F.Query || t === F.FunctionCall || t === F.Terminate) return i + 1
    if (t === F.CopyData || t === F.CopyDone || t === F.CopyFail) return i + 1
    if (!KNOWN.has(t)) return i + 1
  }
  return 0
}

/** One batch (`withBegin`: frames[0] is the deferred BEGIN, whose answers the client must not get again). */
export async function runFrames(host: BatchHost, frames: Frame[], withBegin = false): Promise<void> {
  // A read whose only backend was lost before any byte reached the client runs again elsewhere
  // (and a batch planned for a backend lost while it waited for locks is planned again).
  for (let attempt = 0; attempt <= host.ctx.backends().length; attempt++) {
    if ((await runOnce(host, frames, withBegin)) !== 'retry') return
    host.log.info({ attempt }, 'read retried on another backend')
  }
}

/** Sends the deferred BEGIN alone, its answers swallowed (the client has had them). */
export async function flushBegin(host: BatchHost): Promise<void> {
  if (host.flushingBegin) return
  host.flushingBegin = true
  try {
    if (host.pendingBegin) await runFrames(host, [host.pendingBegin], true)
  } finally {
    host.flushingBegin = false
  }
}

/** `withBegin`: frames[0] is the deferred BEGIN, whose answers the client must not get again. */
async function runOnce(host: BatchHost, frames: Frame[], withBegin = false): Promise<'retry' | void> {
  const last = frames[frames.length - 1]
  switch (last.type) {
    case F.Terminate:
      host.close('client sent Terminate')
      return
    case F.CopyData:
    case F.CopyDone:
    case F.CopyFail:
      // Outside COPY, PostgreSQL accepts and ignores these (a COPY that failed early).
      frames.pop()
      if (frames.length) host.inbox.unshift(...frames)
      return
    case F.FunctionCall:
      return refuse(host, errors.functionCallUnsupported(), true)
  }
  if (!KNOWN.has(last.type)) {
    host.fatal(errors.protocolViolation(`unknown message type '${printable(last.type)}'`))
    return
  }
  if (host.strayError) {
    const f = host.strayError
    host.strayError = null
    if (host.tx.status !== 'I' && host.links.some((l) => l.txStatus === 'E'))
      return refuse(host, new PgError(f.C ?? '57014', f.M ?? 'canceling statement', 'ERROR', f.D, f.H), last.type === F.Sync || last.type === F.Query)
  }
  if (host.tx.between(!!host.copy)) host.backends.dropDrained()
  // PAUSE (admin console): a new transaction or autocommit statement waits until RESUME.
  if (host.tx.between(!!host.copy) && host.ctx.paused()) {
    host.pausedSince = new Date()
    while (host.ctx.paused()) await host.ctx.waitPause()
    host.pausedSince = null
  }
  if (!host.ready) return
  if (host.tx.between(!!host.copy) && !host.pinned && host.lateBackends().length) {
    host.step = 'attaching late backends'
    await host.attachLate()
  }
  let plan: Plan
  let catalog: CatalogData
  const between = host.tx.between(!!host.copy)
  if (between) host.term = host.ctx.ha.term
  let extendedBegin: Buffer[] | null = null
  if (!withBegin && host.pendingBegin) {
    const cat = await host.ctx.catalog(host.database).get()
    if (frames.length === 1 ? carriesBegin(frames[0]!, cat) : extendedCarriesBegin(frames, cat, host.registry)) {
      frames = [host.pendingBegin, ...frames]
      withBegin = true
    } else {
      await flushBegin(host)
      if (!host.ready) return
    }
  } else if (
    between &&
    !withBegin &&
    !host.tx.clientSkipping &&
    !SNAPSHOT_LEVELS.has(host.tx.defaultIsolation) &&
    (frames.length === 1 ? isPlainBegin(frames[0]!) : (extendedBegin = extendedPlainBegin(frames, host.registry)))
  ) {
    host.pendingBegin = extendedBegin ? BEGIN_FRAME : frames[0]!
    host.tx.startedAt = performance.timeOrigin + performance.now()
    host.setStatus('T')
    for (const b of extendedBegin ?? [BEGIN_COMPLETE]) host.out(b)
    host.beforeReady()
    host.out(readyForQuery('T'))
    return
  }
  try {
    // The writer's recovery log for this database, prepared once per term (a promotion prepares it anew).
    if (!host.readOnly && host.ctx.ha.isWriter() && host.logTerm !== host.ctx.ha.term) {
      const term = host.ctx.ha.term
      await host.ctx.recovery(host.database).ready()
      host.logTerm = term
    }
    catalog = (host.tx.ddl && host.tx.status === 'T' && !host.tx.sinceSync.size && !host.copy ? await catalogInTx(host) : null) ?? (await host.ctx.catalog(host.database).get())
    host.catalogSeen = catalog
    plan = planBatch(frames, {
      registry: host.registry,
      catalog,
      all: host.links.map((l) => l.index),
      inTransaction: host.tx.status !== 'I',
      pickRead: () => pickRead(host),
      clientSkipping: host.tx.clientSkipping,
      sinceSync: host.tx.sinceSync,
      clock: batchClock(host.tx),
      allowFunctions: host.ctx.config.determinism.allowFunctions,
      allowTriggers: host.ctx.config.determinism.allowTriggers,
      snapshotEverywhere: host.tx.status !== 'I' && SNAPSHOT_LEVELS.has(host.tx.isolation ?? host.tx.defaultIsolation),
      // A failed transaction commits nothing: its COMMIT (a ROLLBACK) gets no log row.
      log: !host.ctx.config.recovery.log ? null : host.tx.status === 'E' ? { ...host.logCtx, pendingWrites: false } : host.logCtx,
      tieSafe: host.links.length % 2 === 0,
      beginApart: host.cancels.cutsPossible(),
      snapshot: host.links.length > 1 && host.ctx.config.recovery.log ? host.tx.snapshotState() : null,
    })
  } catch (e) {
    // A message PostgreSQL cannot read is an ERROR there (the session goes on, skipping to Sync), not a FATAL.
    if (e instanceof RangeError) return refuseFrom(host, frames, firstUnreadable(frames) ?? { index: 0, error: new PgError('08P01', 'insufficient data left in message') })
    throw e
  }
  if (!host.ready) return
  // A pool's SET of transaction defaults this session already holds everywhere: answered here (known-settings.ts).
  if (between && !withBegin && !host.tx.clientSkipping && alreadySet(host.tx, plan, host.registry))
    return answerAlreadySet(
      plan,
      host.registry,
      host.tx,
      (b) => host.out(b),
      () => host.beforeReady(),
    )
  if (withBegin) {
    const begin = plan.msgs[0]
    if (begin?.code !== F.Query) throw new Error('pgraid: the deferred BEGIN is not the first message of its batch')
    begin.swallow = true
    begin.surfaceErrors = true
  }
  return admit(host, plan, catalog, withBegin)
}

/** The backend a read goes to: the balancer's pick, the same one for the rest of a transaction. */
function pickRead(host: BatchHost): number {
  if (host.tx.status !== 'I' && host.tx.sticky !== null) return host.tx.sticky
  const idx = host.ctx.balancer.pick(host.links.map((l) => l.index))
  if (host.tx.status !== 'I') host.tx.sticky = idx
  return idx
}

function printable(code: number): string {
  return code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : `\\x${code.toString(16).padStart(2, '0')}`
}
