// One client session: startup and authentication, one connection per
// backend, and the loop that takes the client's messages batch by batch
// (up to Sync, Flush or a Query), plans them, takes proxy locks, sends them
// and merges the answers. Also COPY FROM STDIN streaming, cancel, and
// cleanup when the client goes away.

import net from 'node:net'
import tls from 'node:tls'
import { randomInt } from 'node:crypto'
import type { Logger } from 'pino'
import { F, B } from '../protocol/codes.ts'
import { Framer, FrameTooLarge, MalformedFrame, RefusedLength, type Frame } from '../protocol/framer.ts'
import { errorFields, textDataRows } from '../protocol/decode.ts'
import { backendKeyData, commandComplete, message, parameterStatus, readyForQuery, type TxStatus } from '../protocol/encode.ts'
import { errors, PgError } from '../errors.ts'
import { Exchange, type PlannedMsg } from '../broadcast/exchange.ts'
import { DeadlockError, LockWaitAborted, type LockOwner } from '../scheduler/lock-manager.ts'
import { ClientStartup } from './startup.ts'
import type { BackendLink, LinkHost } from './backend-link.ts'
import { attachLink, openLinks, type LinkRequest } from './connect-backends.ts'
import { SessionBackends } from './backends.ts'
import { planBatch, type Plan } from '../router/plan.ts'
import { StatementRegistry } from '../router/statements.ts'
import { CopyIn, COPY_TYPES } from './copy-in.ts'
import { carriesBegin, isPlainBegin } from './deferred-begin.ts'
import { takesSnapshot } from '../router/snapshot-point.ts'
import { firstUnreadable, malformedTerminator } from './unreadable.ts'
import { settingFromSet, waitLimit } from './timeouts.ts'
import { TxState } from './tx-state.ts'
import { LogCommits, trackLog } from './log-commit.ts'
import { dropWriteForTest } from './fault-injection.ts'
import { buildCatalog, CATALOG_QUERY, emptyCatalog, type CatalogData } from '../scheduler/catalog.ts'
import { changesData, type LogContext } from '../router/log-plan.ts'
import { recordJson } from '../recovery/record.ts'
import { ADMIN_DATABASE, type AdminConsoleSession, type ClientSession, type ServerContext } from '../server-context.ts'

/** login (startup.ts), connecting to the backends, ready for batches, closed. */
type Phase = 'login' | 'connecting' | 'ready' | 'closed'

/** Describe of a statement that cannot exist: makes a backend fail its transaction on purpose. */
const FORCE_ERROR = message(F.Describe, Buffer.from('S__pgraid_abort__\0', 'binary'))
const SYNC = message(F.Sync)
/** Opens the (failed) transaction a backend must be in when its transaction ended there only (refuse). */
const BEGIN_QUERY = message(F.Query, Buffer.from('BEGIN\0', 'utf8'))
/** Sent after the readable messages of a batch that also holds an unreadable one: their answers come. */
const FLUSH_FRAME: Frame = { type: F.Flush, bytes: message(F.Flush), bodyOffset: 5 }

export class Session implements LinkHost, ClientSession {
  readonly id: number
  readonly pid: number
  readonly secret: number
  readonly owner: LockOwner
  private phase: Phase = 'login'
  private framer: Framer
  private inbox: Frame[] = []
  private inboxBytes = 0
  private running = false
  /** The batch being run (close() lets one that may commit finish, its own COMMIT included). */
  private batch: Promise<void> | null = null
  user = ''
  database = ''
  private readonly backends = new SessionBackends(this)
  get links(): BackendLink[] {
    return this.backends.links
  }
  exchange: Exchange | null = null
  private registry = new StatementRegistry()
  private readonly tx = new TxState()
  private readonly record = new LogCommits(this)
  private pendingNotify: Buffer[] = []
  private copy: CopyIn | null = null
  /** Recovery log: session settings, the open transaction's entries, log statement prepared per backend. */
  private readonly logSettings = new Map<string, string>()
  private logCtx: LogContext = { settings: [], pending: [], pendingWrites: false, prepared: new Set() }
  /** The election term whose recovery log this session has waited for (-1: none yet). */
  private logTerm = -1
  /** The election term this session may write in: taken when it is between transactions. */
  private term = -1
  /** Opened while this pgraid was a standby: its backend connections are read-only, it never writes. */
  readOnly = false
  private pausedBackends = false
  log: Logger


  constructor(
    public socket: net.Socket,
    readonly ctx: ServerContext,
  ) {
    this.id = ctx.nextSessionId()
    this.pid = this.id
    this.secret = randomInt(1, 0x7fffffff)
    this.owner = { id: this.id, label: `session ${this.id}` }
    this.log = ctx.log.child({ session: this.id, client: `${socket.remoteAddress}:${socket.remotePort}` })
    this.framer = new Framer(ctx.config.limits.maxMessageBytes, true)
    this.startup = new ClientStartup(this, this.framer)
    socket.setNoDelay(true)
    this.listen(socket)
    // As PostgreSQL's authentication_timeout: a client that never finishes its TLS handshake,
    // startup or login does not keep a connection forever.
    const authMs = ctx.config.timeouts.authMs
    if (authMs > 0) {
      this.authTimer = setTimeout(() => {
        if (this.phase === 'login') this.close(`no login within ${authMs} ms (timeouts.authMs)`)
      }, authMs)
      this.authTimer.unref()
    }
  }
  private authTimer: NodeJS.Timeout | null = null
  private readonly startup: ClientStartup
  private get startupParams(): Record<string, string> {
    return this.startup.params
  }

  /** TLS protocol of the client connection ('' when plain), for SHOW CLIENTS. */
  get tlsProtocol(): string {
    return this.startup.tlsOn ? ((this.socket as tls.TLSSocket).getProtocol() ?? '') : ''
  }

  listen(socket: net.Socket): void {
    socket.on('data', (c: Buffer) => this.onData(c))
    socket.on('error', () => this.close('client socket error'))
    socket.on('close', () => this.close('client disconnected'))
    socket.on('drain', () => this.resumeBackends())
  }

  // ---- client input -------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.phase === 'closed') return
    this.ctx.counters.bytesFromClients += chunk.length
    try {
      this.framer.push(chunk, (f) => this.onFrame(f))
      this.copy?.flush()
    } catch (e) {
      // PostgreSQL closes without a word on a length it refuses; so does pgraid (no backend sees it).
      if (e instanceof RefusedLength) this.close(e.message)
      else if (e instanceof FrameTooLarge) this.fatal(errors.messageTooLarge(e.length, e.max))
      else if (e instanceof MalformedFrame) this.fatal(errors.protocolViolation(e.message))
      else this.fatal(errors.internal((e as Error).message))
    }
  }

  private onFrame(f: Frame): void {
    if (this.phase === 'closed') return
    if (this.phase === 'login') return this.startup.onFrame(f)
    if (this.admin) {
      // One command at a time, in order (SHOW LOG waits for the backends).
      const admin = this.admin
      this.adminQueue = this.adminQueue.then(() => admin.onFrame(f)).then((more) => more || this.close('client sent Terminate'))
      return
    }
    if (this.copy?.take(f)) return
    // Terminate during COPY FROM STDIN: the client leaves; close() fails the COPY on every backend.
    if (f.type === F.Terminate && this.copy?.active) return this.close('client sent Terminate during COPY')
    if (this.idleTimer) {
      clearTimeout(this.idleTimer)
      this.idleTimer = null
    }
    this.inbox.push(f)
    this.inboxBytes += f.bytes.length
    if (this.inboxBytes > 64 * 1024 * 1024) this.socket.pause()
    void this.pump()
  }

  /** Login done: the admin console, or connections to the backends. */
  loggedIn(): void {
    if (this.database !== ADMIN_DATABASE) return void this.connectBackends()
    if (!this.ctx.config.users.find((u) => u.name === this.user)?.admin)
      return this.fatal(new PgError('42501', `user "${this.user}" is not a pgraid admin`, 'FATAL', undefined, 'set "admin": true for the user in the pgraid configuration'))
    this.admin = this.ctx.openConsole(this.socket, this.ctx, this.user, this.pid, this.secret)
    this.phase = 'ready'
    this.admin.start()
  }
  private admin: AdminConsoleSession | null = null
  private adminQueue: Promise<unknown> = Promise.resolve()

  readonly connectedAt = new Date()

  get applicationName(): string {
    return this.logSettings.get('application_name')?.replace(/^SET application_name = '(.*)'$/s, '$1').replace(/''/g, "'") ?? this.startupParams.application_name ?? ''
  }

  get clientAddress(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`
  }

  get transactionStatus(): string {
    return this.admin ? 'admin' : this.tx.status === 'I' ? 'idle' : this.tx.status === 'T' ? 'in transaction' : 'failed transaction'
  }

  /** What the session is doing or waiting for now (SHOW SESSIONS; a commit in flight names it). */
  get waiting(): string {
    return this.admin ? '' : this.waits()
  }

  get backendNames(): string[] {
    return this.links.map((l) => l.name)
  }

  private async connectBackends(): Promise<void> {
    this.phase = 'connecting'
    await this.ctx.haReady
    if ((this.phase as Phase) === 'closed') return
    // A standby's sessions read only; their backend connections say so too (SHOW transaction_read_only,
    // and PostgreSQL itself refuses a write pgraid's classification would miss).
    this.readOnly = !this.ctx.ha.isWriter()
    // Settings the client gave at startup change what statements mean (TimeZone, DateStyle,
    // search_path via options): a replay must run under them too.
    for (const [k, v] of startupSettings(this.startupParams)) this.logSettings.set(k, `SET ${k} = ${quoteLiteral(v)}`)
    this.logCtx = { ...this.logCtx, settings: [...this.logSettings.values()] }
    const opened = await openLinks(this.linkRequest())
    if (!opened) return
    if ('asIs' in opened) {
      this.socket.write(message(B.ErrorResponse, opened.asIs.body!))
      return this.close(`every backend refused: ${opened.asIs.message}`, true)
    }
    if ('error' in opened) return this.fatal(opened.error)
    this.backends.links = opened.links
    this.ctx.states.on('out', this.backends.onOut)
    const primary = this.links[0].conn
    // What libpq's target_session_attrs=read-write and pgjdbc's targetServerType=primary look at.
    const reported = new Map(primary.params)
    reported.set('default_transaction_read_only', this.readOnly ? 'on' : (primary.params.get('default_transaction_read_only') ?? 'off'))
    reported.set('in_hot_standby', this.readOnly ? 'on' : 'off')
    for (const [k, v] of reported) this.socket.write(parameterStatus(k, v))
    this.socket.write(backendKeyData(this.pid, this.secret))
    this.socket.write(readyForQuery('I'))
    this.phase = 'ready'
    this.log.debug('session ready')
    void this.pump()
  }

  // ---- batches ------------------------------------------------------------

  /** Index just past the end of the first complete batch in the inbox, or 0. */
  private batchEnd(): number {
    for (let i = 0; i < this.inbox.length; i++) {
      const t = this.inbox[i].type
      if (t === F.Sync || t === F.Flush || t === F.Query || t === F.FunctionCall || t === F.Terminate) return i + 1
      if (t === F.CopyData || t === F.CopyDone || t === F.CopyFail) return i + 1
      if (!KNOWN.has(t)) return i + 1
    }
    return 0
  }

  private async pump(): Promise<void> {
    if (this.running || this.phase !== 'ready') return
    this.running = true
    try {
      for (;;) {
        if (this.phase !== 'ready') return
        const end = this.batchEnd()
        if (!end) {
          this.armIdleTimer()
          break
        }
        this.step = 'loss checks'
        if ((this.backends.lossChecks.length || this.backends.endError) && !(await this.settleLosses())) return
        this.step = 'batch'
        const frames = this.inbox.splice(0, end)
        for (const f of frames) this.inboxBytes -= f.bytes.length
        if (this.inboxBytes < 16 * 1024 * 1024 && this.socket.isPaused()) this.socket.resume()
        // A terminator PostgreSQL cannot read is answered here as PostgreSQL answers it (ERROR 08P01;
        // ReadyForQuery after a Query or Sync), after the batch's readable messages; no backend receives it.
        const bad = malformedTerminator(frames[frames.length - 1]!)
        const batch = bad ? this.refuseFrom(frames, { index: frames.length - 1, error: bad }) : this.runFrames(frames)
        this.batch = batch
        try {
          await batch
        } finally {
          this.batch = null
          this.step = ''
        }
      }
    } catch (e) {
      this.log.error({ err: e }, 'session failed')
      this.fatal(e instanceof PgError ? e : errors.internal((e as Error).message))
    } finally {
      this.running = false
    }
  }

  private async runFrames(frames: Frame[], withBegin = false): Promise<void> {
    // A read whose only backend was lost before any byte reached the client runs again elsewhere
    // (and a batch planned for a backend lost while it waited for locks is planned again).
    for (let attempt = 0; attempt <= this.ctx.backends().length; attempt++) {
      if ((await this.runOnce(frames, withBegin)) !== 'retry') return
      this.log.info({ attempt }, 'read retried on another backend')
    }
  }

  /** The client's BEGIN, answered already and not yet sent to the backends (deferred-begin.ts). */
  private pendingBegin: Frame | null = null
  private flushingBegin = false

  /** Sends the deferred BEGIN alone, its answers swallowed (the client has had them). */
  private async flushBegin(): Promise<void> {
    if (this.flushingBegin) return
    this.flushingBegin = true
    try {
      if (this.pendingBegin) await this.runFrames([this.pendingBegin], true)
    } finally {
      this.flushingBegin = false
    }
  }

  /** `withBegin`: frames[0] is the deferred BEGIN, whose answers the client must not get again. */
  private async runOnce(frames: Frame[], withBegin = false): Promise<'retry' | void> {
    const last = frames[frames.length - 1]
    switch (last.type) {
      case F.Terminate:
        this.close('client sent Terminate')
        return
      case F.CopyData:
      case F.CopyDone:
      case F.CopyFail:
        // Outside COPY, PostgreSQL accepts and ignores these (a COPY that failed early).
        frames.pop()
        if (frames.length) this.inbox.unshift(...frames)
        return
      case F.FunctionCall:
        return this.refuse(errors.functionCallUnsupported(), true)
    }
    if (!KNOWN.has(last.type)) {
      this.fatal(errors.protocolViolation(`unknown message type '${printable(last.type)}'`))
      return
    }
    if (this.strayError) {
      const f = this.strayError
      this.strayError = null
      if (this.tx.status !== 'I' && this.links.some((l) => l.txStatus === 'E')) return this.refuse(new PgError(f.C ?? '57014', f.M ?? 'canceling statement', 'ERROR', f.D, f.H), last.type === F.Sync || last.type === F.Query)
    }
    if (this.tx.between(!!this.copy)) this.backends.dropDrained()
    // PAUSE (admin console): a new transaction or autocommit statement waits until RESUME.
    if (this.tx.between(!!this.copy)) while (this.ctx.paused()) await this.ctx.waitPause()
    if (this.phase !== 'ready') return
    if (this.tx.between(!!this.copy) && !this.pinned && this.lateBackends().length) {
      this.step = 'attaching late backends'
      await this.attachLate()
    }
    let plan: Plan
    let catalog: CatalogData
    const between = this.tx.between(!!this.copy)
    if (between) this.term = this.ctx.ha.term
    if (!withBegin && this.pendingBegin) {
      if (frames.length === 1 && carriesBegin(frames[0]!, await this.ctx.catalog(this.database).get())) {
        frames = [this.pendingBegin, ...frames]
        withBegin = true
      } else {
        await this.flushBegin()
        if (this.phase !== 'ready') return
      }
    } else if (between && !withBegin && !this.tx.clientSkipping && frames.length === 1 && !SNAPSHOT_LEVELS.has(this.tx.defaultIsolation) && isPlainBegin(frames[0]!)) {
      this.pendingBegin = frames[0]!
      this.tx.startedAt = performance.timeOrigin + performance.now()
      this.setStatus('T')
      this.out(commandComplete('BEGIN'))
      this.beforeReady()
      this.out(readyForQuery('T'))
      return
    }
    try {
      // The writer's recovery log for this database, prepared once per term (a promotion prepares it anew).
      if (!this.readOnly && this.ctx.ha.isWriter() && this.logTerm !== this.ctx.ha.term) {
        const term = this.ctx.ha.term
        await this.ctx.recovery(this.database).ready()
        this.logTerm = term
      }
      catalog = (this.tx.ddl && this.tx.status === 'T' && !this.tx.sinceSync.size && !this.copy ? await this.catalogInTx() : null) ?? (await this.ctx.catalog(this.database).get())
      this.catalogSeen = catalog
      plan = planBatch(frames, {
        registry: this.registry,
        catalog,
        all: this.links.map((l) => l.index),
        inTransaction: this.tx.status !== 'I',
        pickRead: () => this.pickRead(),
        clientSkipping: this.tx.clientSkipping,
        sinceSync: this.tx.sinceSync,
        clock: this.clock(),
        allowFunctions: this.ctx.config.determinism.allowFunctions,
        allowTriggers: this.ctx.config.determinism.allowTriggers,
        snapshotEverywhere: this.tx.status !== 'I' && SNAPSHOT_LEVELS.has(this.tx.isolation ?? this.tx.defaultIsolation),
        // A failed transaction commits nothing: its COMMIT (a ROLLBACK) gets no log row.
        log: !this.ctx.config.recovery.log ? null : this.tx.status === 'E' ? { ...this.logCtx, pendingWrites: false } : this.logCtx,
        tieSafe: this.links.length % 2 === 0,
        beginApart: this.cutsPossible(),
        snapshot: this.links.length > 1 && this.ctx.config.recovery.log ? this.tx.snapshotState() : null,
      })
    } catch (e) {
      // A message PostgreSQL cannot read is an ERROR there (the session goes on, skipping to Sync), not a FATAL.
      if (e instanceof RangeError) return this.refuseFrom(frames, firstUnreadable(frames) ?? { index: 0, error: new PgError('08P01', 'insufficient data left in message') })
      throw e
    }
    if (this.phase !== 'ready') return
    if (withBegin) {
      const begin = plan.msgs[0]
      if (begin?.code !== F.Query) throw new Error('pgraid: the deferred BEGIN is not the first message of its batch')
      begin.swallow = true
      begin.surfaceErrors = true
    }
    if (plan.nonDeterministic) return this.refuse(plan.nonDeterministic, plan.endsWithSync)
    const enabled = this.ctx.states.enabled()
    if (plan.everywhere && enabled.length < this.ctx.writeQuorum && (plan.commit || plan.executed.some((s) => changesData(s, catalog)))) {
      const missing = this.ctx.states.list.filter((b) => b.state !== 'enabled' && b.state !== 'removed').map((b) => `${b.name} (${b.state}: ${b.reason})`).join(', ')
      return this.refuse(errors.writeQuorum(enabled.length, this.ctx.writeQuorum, missing), plan.endsWithSync)
    }
    if (plan.everywhere && !this.mayWrite() && writesSomething(plan, catalog, this.logCtx.pendingWrites)) return this.refuse(this.readOnlyError(plan, catalog), plan.endsWithSync)
    if (!plan.everywhere && plan.executed.length && this.mustSeeLanded()) {
      // Realtime order across backends: a commit in flight may be visible on one backend and not yet
      // on another. A read (a new snapshot on one backend) waits until the commits taken so far have
      // landed everywhere, as a read that follows a commit on one PostgreSQL server sees it.
      this.step = 'commits landing'
      if (!(await this.ctx.recovery(this.database).landed(LANDED_WAIT_MS))) this.log.warn({ ms: LANDED_WAIT_MS, inFlight: this.ctx.describeInFlight() }, 'a read went ahead while commits were still landing')
      if (this.phase !== 'ready') return
    }
    if (plan.locks.length && plan.nowait && !this.ctx.locks.tryAcquire(this.owner, plan.locks)) {
      // pgraid's locks are per table: another transaction holding the table makes NOWAIT fail,
      // even where PostgreSQL would find the rows free. Never a wait, as NOWAIT promises.
      return this.refuse(errors.lockNotAvailable(), plan.endsWithSync)
    }
    if (plan.locks.length) {
      // The client's statement_timeout / lock_timeout bound this wait too: no backend's timer runs yet.
      const limit = this.tx.localTimeouts.size || this.logSettings.has('statement_timeout') || this.logSettings.has('lock_timeout') ? waitLimit(this.timeoutMs('statement_timeout'), this.timeoutMs('lock_timeout')) : null
      const timer = limit ? setTimeout(() => this.ctx.locks.abortWait(this.owner, new LockWaitAborted(limit.code)), limit.ms) : null
      try {
        this.step = 'pgraid locks'
        await this.ctx.locks.acquire(this.owner, plan.locks)
      } catch (e) {
        if (this.phase !== 'ready') return
        if (e instanceof DeadlockError) {
          const detail = `pgraid lock order: ${e.cycle.map((o) => o.label).join(' waits for ')}`
          this.log.info({ detail }, 'deadlock victim')
          return this.refuse(errors.deadlock(detail), plan.endsWithSync)
        }
        if (e instanceof LockWaitAborted) return this.refuse(limit && e.message === limit.code ? new PgError(limit.code, limit.message) : errors.canceled(), plan.endsWithSync)
        throw e
      } finally {
        if (timer) clearTimeout(timer)
      }
    }
    if (this.phase !== 'ready') {
      // The client went away while we waited: close() already released, release again what we got since.
      this.ctx.locks.releaseAll(this.owner)
      return
    }
    // A backend lost while we waited for locks: plan again for the backends that are left.
    if (plan.msgs.some((m) => m.targets.some((t) => !this.backends.at(t)))) return 'retry'
    // A resync finishing: new COMMITs wait (briefly) until the rejoining backend is in service.
    if (plan.commit) {
      this.step = 'commits held'
      while (this.ctx.held()) await this.ctx.waitHold()
      if (this.phase !== 'ready') return
      if (plan.msgs.some((m) => m.targets.some((t) => !this.backends.at(t)))) return 'retry'
      // Fenced (or promoted anew) while this batch waited for its locks: it must not commit.
      if (!this.mayWrite() || !this.ctx.recovery(this.database).isReady) return this.refuse(this.readOnlyError(plan, catalog), plan.endsWithSync)
      // LSNs in the order COMMITs are sent, after the locks: conflicting transactions commit in LSN order.
      plan.commit.fill(this.record.take(), isoMicros(performance.timeOrigin + performance.now()))
    }
    // An LSN taken is in flight until settled: one that never reaches execute() is settled here, or
    // every resync, clone and snapshot point would wait for it for ever.
    let started = false
    try {
      this.step = 'begin'
      if (plan.beginFirst && !(await this.beginEverywhere(plan))) return
      this.step = 'snapshot point'
      if (this.links.length > 1) dropWriteForTest(plan, this.links[this.links.length - 1]?.index)
      // A REPEATABLE READ / SERIALIZABLE snapshot is taken at one point of the commit order everywhere:
      // new commits held, those in flight landed, until it is taken (execute releases it then).
      const snapshotHold = plan.snapshotAt ? await this.holdForSnapshot(plan.commit?.lsn !== undefined ? 1 : 0) : null
      if (plan.snapshotAt && !snapshotHold) return this.refuse(errors.noSnapshotPoint(), plan.endsWithSync)
      started = true
      return await this.run(plan, snapshotHold, withBegin)
    } finally {
      if (!started && plan.commit?.lsn !== undefined) this.record.settle(plan.commit.lsn)
    }
  }

  /** Where a batch holding an LSN is (the operator's answer when a hold or resync waits for it). */
  private step = ''
  private waits(): string {
    const ex = this.exchange
    const names = (ids: number[]) => ids.map((i) => this.ctx.backends()[i]?.name ?? i).join(',')
    return [
      this.phase,
      `step ${this.step || '-'}`,
      `links ${names(this.links.map((l) => l.index)) || 'none'}`,
      ex ? `exchange ${ex.complete ? 'complete' : `pending on ${names(ex.pendingBackends()) || 'none'}`}` : '',
      this.backends.lossChecks.length ? `${this.backends.lossChecks.length} loss check(s)` : '',
    ]
      .filter(Boolean)
      .join(', ')
  }

  /** The batch, once its locks, LSN and snapshot point are in place. */
  private async run(plan: Plan, snapshotHold: (() => void) | null, withBegin: boolean): Promise<void | 'retry'> {
    this.snapshotHold = snapshotHold
    // CREATE / DROP / ALTER DATABASE: pgraid's own connections to those databases go first.
    const names = plan.everywhere ? databasesNamed(plan) : null
    const releaseDatabases = names ? await this.ctx.holdDatabases(names).catch((e: unknown) => {
      if (plan.commit?.lsn !== undefined) this.record.settle(plan.commit.lsn)
      throw e
    }) : null
    this.plan = plan
    if (withBegin) this.pendingBegin = null // on its way to the backends
    try {
      return await this.execute(plan)
    } finally {
      releaseDatabases?.(!this.batchFailed)
      this.snapshotHold = null
      snapshotHold?.()
      if (!this.tx.snapshotTaken && this.tx.status !== 'I' && plan.executed.some(takesSnapshot)) this.tx.snapshotTaken = true
      this.plan = null
      if (plan.commit?.lsn !== undefined) {
        this.record.settle(plan.commit.lsn)
        this.ctx.commits.mark()
      }
    }
  }

  /**
   * Tie-safe autocommit (router/plan.ts, tieSafe): the client's batch ran inside
   * pgraid's BEGIN and its answers were compared. Agreed and no error: the
   * log row and COMMIT go out now (its LSN taken under the batch's locks);
   * otherwise ROLLBACK everywhere, so a tie leaves nothing committed. Then
   * the client gets the ReadyForQuery 'I' an autocommit statement ends with.
   */
  private async finishDeferred(plan: Plan, ex: Exchange): Promise<void> {
    const outcome = ex.outcome
    this.afterBatch(plan, ex)
    const live = this.links.map((l) => l.index)
    // Written now, with the tags the statements answered: a replay changing other rows is caught.
    const json = recordJson(plan.deferredCommit!.settings, plan.deferredCommit!.entries)
    // A client-caused failure on some backends (a timeout, a cancel) is the client's error, rolled back everywhere.
    const ce = outcome.clientError
    let err: PgError | null = ce ? new PgError(ce.C ?? '57014', ce.M ?? 'canceling statement', 'ERROR', ce.D, ce.H) : outcome.diverged ? errors.divergence('a statement', outcome.diverged) : null
    if (!err && (!this.mayWrite() || !this.ctx.recovery(this.database).isReady)) err = this.readOnlyError(plan, this.catalogSeen)
    const ok = !err && outcome.errored.size === 0 && this.links.every((l) => l.txStatus === 'T')
    // pgraid's own log INSERT and COMMIT must not be cut by the client's timeouts: lifted first, apart.
    if (ok && plan.beginFirst && (await this.runInternal(queryMessage(LIFT_BEFORE_COMMIT), live)).errorCode) err = errors.canceled()
    if (ok && !err) {
      this.step = 'commits held'
      while (this.ctx.held()) await this.ctx.waitHold()
      let lsn: number | undefined
      try {
        lsn = this.record.take()
        const at = isoMicros(performance.timeOrigin + performance.now())
        this.step = 'tie-safe commit'
        const { commit, committed, failed } = await this.record.commitDeferred(lsn, at, json, live)
        this.step = 'tie-safe commit to late backends'
        if (commit.diverged && committed.length) err = this.record.commitSplit(committed, failed, commit.diverged)
        else if (commit.diverged) err = errors.divergence('the COMMIT', commit.diverged)
        else if (commit.errorCode) err = new PgError(commit.errorCode, 'pgraid could not commit the statement', 'ERROR')
        const late = this.lateBackends()
        if (!err && late.length && this.links.length) await this.ctx.recovery(this.database).applyLate(this.links[0]!.index, lsn, at, json, late)
      } finally {
        if (lsn !== undefined) {
          this.step = ''
          this.record.settle(lsn)
          this.ctx.commits.mark()
        }
      }
    } else await this.rollbackEverywhere(live)
    for (const l of this.links) l.txStatus = 'I'
    this.setStatus('I')
    if (err?.severity === 'FATAL') return this.closeWith(err)
    if (err) {
      if (ce) this.log.info({ error: ce.C }, 'a client-caused failure on some backends only: rolled back everywhere')
      else this.log.error({ divergence: err.detail ?? err.message }, 'backends disagreed (no majority): rolled back everywhere')
      this.out(err.toMessage())
    }
    this.beforeReady()
    this.out(readyForQuery('I'))
  }

  /**
   * pgraid's log INSERT and COMMIT of a tie-safe write, in one Query: where no error came back, the
   * COMMIT ran (a multi-statement Query stops at its first error), whatever the others answered.
   */
  /** The last batch answered an error (or its backends disagreed). */
  private batchFailed = false

  /** An ERROR a backend sent between batches (see unsolicited). */
  private strayError: Record<string, string> | null = null

  /** Releases the hold on commits the batch in flight took for its snapshot. */
  private snapshotHold: (() => void) | null = null

  /**
   * Holds new commits and waits until those in flight have landed on every backend: the point of
   * the commit order where this session's snapshot is taken. Null when none comes (refused: 40001).
   */
  private async holdForSnapshot(own: number): Promise<(() => void) | null> {
    const release = this.ctx.holdCommits()
    const until = performance.now() + SNAPSHOT_WAIT_MS
    // `own`: this batch's own COMMIT (BEGIN ISOLATION LEVEL REPEATABLE READ; ...; COMMIT in one Query) is not waited for.
    while (this.ctx.commitsInFlight() > own) {
      if (performance.now() > until || this.phase !== 'ready') {
        release()
        return null
      }
      await new Promise((r) => setTimeout(r, 1))
    }
    return release
  }

  /** Timeouts and cancels may cut this session's statements: it set a timeout, or one has cut a statement. */
  private cutsPossible(): boolean {
    return this.cutSeen || CUTTING.some((k) => this.logSettings.has(k))
  }
  private cutSeen = false

  /**
   * Opens pgraid's transaction for an undoable autocommit write on every backend, each checked: a
   * BEGIN cut by a timeout or a cancel is sent again (the client's statement must not run outside it).
   */
  private async beginEverywhere(plan: Plan): Promise<boolean> {
    const lift = LIFT_IN_TRANSACTION.filter((k) => this.logSettings.has(k)).map((k) => `;SET LOCAL ${k} = 0`).join('')
    const text = queryMessage(`BEGIN${lift}`)
    let todo = this.links.map((l) => l.index)
    for (let attempt = 0; attempt < 5 && todo.length; attempt++) {
      // One message per backend: their answers are not compared (a cut on one is expected here).
      const ex = await this.runOwn(todo.map((i) => ({ code: F.Query, bytes: text, targets: [i], swallow: true })))
      const failed = todo.filter((i) => ex.outcome.status.get(i) !== 'T')
      await this.rollbackEverywhere(failed.filter((i) => ex.outcome.status.get(i) === 'E'))
      todo = failed.filter((i) => this.backends.at(i))
    }
    if (this.phase !== 'ready') return false
    if (!todo.length) {
      for (const l of this.links) l.txStatus = 'T'
      return true
    }
    await this.rollbackEverywhere(this.links.map((l) => l.index))
    await this.refuse(errors.canceled(), plan.endsWithSync)
    return false
  }

  /** ROLLBACK where a transaction of pgraid's is open, sent again where a timeout or cancel cut it. */
  private async rollbackEverywhere(targets: number[]): Promise<void> {
    for (let attempt = 0; attempt < 5 && targets.length; attempt++) {
      const ex = await this.runOwn(targets.map((i) => ({ code: F.Query, bytes: ROLLBACK_QUERY, targets: [i], swallow: true })))
      targets = targets.filter((i) => this.backends.at(i) && ex.outcome.status.get(i) !== 'I')
    }
    // Still inside a transaction after five tries: that connection is replaced (its transaction ends with it).
    for (const i of targets) this.backends.drop(i)
  }

  /** The catalog as this transaction sees it (its own schema changes included), once it changed the schema. */
  private txCatalog: CatalogData | null = null

  /**
   * pgraid's catalog connection cannot see a schema change this transaction
   * has not committed: a table it created, a default it added. Its writes
   * then read the catalog inside the transaction, on one of its backends
   * (all have run the same DDL), within a savepoint so that a failure leaves
   * the client's transaction as it was. Null when that is not possible.
   */
  private async catalogInTx(): Promise<CatalogData | null> {
    if (this.txCatalog) return this.txCatalog
    const link = this.links.find((l) => l.txStatus === 'T')
    if (!link) return null
    const collect: Buffer[] = []
    const sql = `SAVEPOINT pgraid_catalog; ${CATALOG_QUERY}; RELEASE SAVEPOINT pgraid_catalog`
    const ex = await this.runOwn([{ code: F.Query, bytes: message(F.Query, Buffer.from(`${sql}\0`, 'utf8')), targets: [link.index], swallow: true, collect }])
    if (ex.answered(0, link.index, B.ErrorResponse)) {
      await this.runInternal(message(F.Query, Buffer.from('ROLLBACK TO SAVEPOINT pgraid_catalog; RELEASE SAVEPOINT pgraid_catalog\0', 'utf8')), [link.index])
      this.log.warn('could not read the catalog inside the transaction; using the committed one')
      return null
    }
    this.txCatalog = buildCatalog(textDataRows(Buffer.concat(collect)).map(([k, a, b]) => ({ k: k ?? '', a: a ?? '', b: b ?? null })))
    return this.txCatalog
  }

  /** A message of pgraid's own to the session's backends, answers consumed. */
  async runInternal(msg: Buffer, targets: number[]): Promise<{ diverged: string | null; errorCode: string | null }> {
    const ex = await this.runOwn([{ code: F.Query, bytes: msg, targets, swallow: true }])
    let code: string | null = null
    for (const t of targets) if (ex.answered(0, t, B.ErrorResponse)) code ??= '40000'
    return { diverged: ex.outcome.diverged, errorCode: code }
  }

  /**
   * Targets whose link was dropped after the messages were planned (a backend lost or taken out while
   * the session waited for locks, a hold or its own statements): nothing is sent there and nothing
   * waits for their answers, which would never come. A read that only such a backend was to answer
   * is lost, as when the connection ends under it.
   */
  private unlinkedOut(ex: Exchange, payloads: Map<number, Buffer[]>): void {
    // Deleting the current key while iterating a Map is safe: no copy of the keys per batch.
    for (const idx of payloads.keys()) {
      if (this.backends.at(idx)) continue
      payloads.delete(idx)
      if (!ex.dropBackend(idx)) continue
      ex.outcome.lostRead = true
      this.backends.lostReadBackend = this.ctx.backends()[idx]?.name ?? String(idx)
      this.backends.lostReadReason = `${this.backends.lostReadBackend}: its connection ended before the batch was sent`
      ex.abort(`backend ${this.backends.lostReadBackend} lost`)
    }
  }

  /** Sends pgraid's own messages (answers swallowed) and waits until every backend answered them. */
  async runOwn(msgs: PlannedMsg[]): Promise<Exchange> {
    if (this.cancelling.length) await this.cancelsDelivered()
    const ex = new Exchange(msgs, this, (idx) => this.backends.at(idx)?.skipping ?? false)
    this.exchange = ex
    this.ownExchange = true
    const payloads = ex.payloads()
    this.unlinkedOut(ex, payloads)
    for (const [idx, bufs] of payloads) this.backends.at(idx)?.conn.write(bufs)
    try {
      await ex.done
    } finally {
      this.exchange = null
      this.ownExchange = false
    }
    return ex
  }

  /** The CommandComplete tag of each statement the batch logged (recorded with it where the record is written later). */
  private learnTags(plan: Plan, ex: Exchange): void {
    for (const e of plan.tagged) {
      if (e.unit === undefined || e.entry.n) continue
      const tag = ex.statementTag(e.msg, e.unit)
      if (tag) e.entry.n = tag
    }
  }

  /** Backends in service this session has no connection to (they came back after it started, or it is pinned). */
  lateBackends(): number[] {
    return this.backends.late()
  }

  private catalogSeen: CatalogData = emptyCatalog()

  /** Session state that cannot be rebuilt on another connection: such a session never attaches a backend that came back. */
  private pinned = false

  /**
   * Between transactions, connect to backends that came back into service
   * and bring the connection to the session's settings; prepared statements
   * follow lazily (router/statements.ts).
   */
  private async attachLate(): Promise<void> {
    for (const idx of this.lateBackends()) {
      const link = await attachLink(this.linkRequest(), idx, this.logSettings.values())
      if (!link) continue
      this.backends.links = [...this.links, link].sort((a, b) => a.index - b.index)
      this.log.info({ backend: link.name }, 'attached a backend that came back into service')
    }
  }

  private linkRequest(): LinkRequest {
    return {
      ctx: this.ctx,
      log: this.log,
      database: this.database,
      startupParams: this.startupParams,
      readOnly: this.readOnly,
      host: this,
      onClose: (link, reason) => this.backends.lose(link.index, reason),
      closed: () => this.phase === 'closed',
    }
  }

  /** The batch in flight, if any. */
  private plan: Plan | null = null


  /**
   * now() is fixed when a transaction starts; statement_timestamp() per batch.
   * Only the instant is taken here: the text is formatted if a statement needs it.
   */
  private clock(): { tx: string; stmt: string } {
    const stmt = performance.timeOrigin + performance.now()
    if (this.tx.status === 'I' || !this.tx.startedAt) this.tx.startedAt = stmt
    const tx = this.tx.startedAt
    return {
      get tx() {
        return isoMicros(tx)
      },
      get stmt() {
        return isoMicros(stmt)
      },
    }
  }

  private idleTimer: NodeJS.Timeout | null = null

  /**
   * PostgreSQL's idle_in_transaction_session_timeout (an idle open transaction
   * holds locks everywhere) and idle_session_timeout (PgBouncer's
   * client_idle_timeout), at the proxy.
   */
  private armIdleTimer(): void {
    const inTx = this.tx.status !== 'I'
    const ms = inTx ? this.ctx.config.timeouts.clientIdleInTransactionMs : this.ctx.config.timeouts.clientIdleMs
    if (!ms || this.idleTimer || this.phase !== 'ready' || this.admin) return
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null
      if (this.running || this.inbox.length || (this.tx.status !== 'I') !== inTx) return
      this.log.info({ ms, inTx }, inTx ? 'idle in transaction timeout' : 'idle session timeout')
      this.fatal(inTx ? errors.idleInTransactionTimeout(ms) : errors.idleSessionTimeout(ms))
    }, ms)
    this.idleTimer.unref()
  }

  private pickRead(): number {
    if (this.tx.status !== 'I' && this.tx.sticky !== null) return this.tx.sticky
    const idx = this.ctx.balancer.pick(this.links.map((l) => l.index))
    if (this.tx.status !== 'I') this.tx.sticky = idx
    return idx
  }

  private async execute(plan: Plan): Promise<'retry' | void> {
    if (this.cancelling.length) {
      await this.cancelsDelivered()
      if (this.phase !== 'ready') return
    }
    const ex = new Exchange(plan.msgs, this, (idx) => this.backends.at(idx)?.skipping ?? false)
    ex.holdPreamble = !plan.everywhere && plan.endsWithSync
    ex.completeOnExcuse = !!plan.commit
    // pgraid's snapshot statement answered by every backend: the snapshot is taken, commits go on.
    if (plan.snapshotAt === 'before' && this.snapshotHold) ex.onPassed = { index: 0, fn: this.snapshotHold }
    // A commit that a backend back in service must also get: acknowledged only once it has it.
    ex.deferReady = (!!plan.commit && this.lateBackends().length > 0) || !!plan.deferredCommit
    this.exchange = ex
    const stats = this.ctx.stats
    const payloads = ex.payloads()
    this.unlinkedOut(ex, payloads)
    for (const [idx, bufs] of payloads) {
      stats[idx].outstanding++
      this.backends.at(idx)?.conn.write(bufs)
    }
    const stallMs = this.ctx.config.timeouts.stallMs
    const watch = stallMs && payloads.size > 1 ? this.backends.watchStall(ex, [...payloads.keys()], stallMs) : null
    let outcome
    const sentAt = performance.now()
    try {
      this.step = 'exchange'
      outcome = await ex.done
      const took = performance.now() - sentAt
      this.ctx.counters.batchBy[plan.commit || plan.deferredCommit ? 'commit' : plan.everywhere ? 'write' : 'read'].observe(took / 1000)
      const slow = this.ctx.config.log.slowMs
      if (slow && took > slow)
        this.log.warn({ ms: Math.round(took), backends: [...payloads.keys()].map((i) => this.ctx.backends()[i]?.name), statements: plan.executed.map((s) => s.text.slice(0, 500)) }, 'slow batch')
    } finally {
      if (watch) clearInterval(watch)
      this.exchange = null
      this.copy = null
      for (const idx of payloads.keys()) stats[idx].outstanding--
    }
    if (this.backends.lossChecks.length || this.backends.endError || !this.links.length) {
      // A connection of this batch ended: what the health monitor finds decides whether the session goes on.
      this.step = 'loss checks'
      await this.backends.checksDone()
      if (this.backends.endError || !this.links.length) {
        // The session ends; a COMMIT it sent may have landed on some backends only: the others get it
        // replayed from the log, still under this transaction's locks (DESIGN: nothing half-committed).
        const c = plan.commit
        this.step = 'completing the commit of an ending session'
        if (c?.lsn !== undefined && c.at)
          await this.ctx
            .recovery(this.database)
            .completeCommit(c.lsn, c.at, c.json, this.ctx.states.enabled(), c.entries)
            .catch((e: Error) => this.log.error({ lsn: c.lsn, err: e.message }, 'could not complete a commit whose session ended'))
        // Committed everywhere in service now: the client hears of it, then the session ends.
        if (ex.deferred.length && ex.atBoundary()) {
          this.beforeReady()
          for (const b of ex.deferred) this.out(b)
          ex.deferred = []
        }
        await this.settleLosses(errors.backendLost(this.backends.lostReadBackend || 'any', this.backends.lostReadReason || 'no backend connection left'))
        return
      }
    }
    this.batchFailed = outcome.errored.size > 0 || !!outcome.diverged
    if (outcome.clientError || outcome.excused.length) this.cutSeen = true
    if (outcome.excused.length) {
      // A client-caused failure (timeout, cancel, lock_timeout, 40001, 40P01) on some backends while the
      // others committed: never voted on; the commit is replayed where it failed (one outcome, invariant 6).
      const c = plan.commit
      const names = outcome.excused.map((i) => this.ctx.backends()[i]?.name)
      this.log.info({ backends: names, error: outcome.clientError?.C, lsn: plan.commit?.lsn }, 'a client-caused failure on some backends only: completing the commit there')
      // Its connection still owes the rest of this batch's answers, and which of the batch's Parses ran
      // there is unknown: it is replaced. The backend stays in service; the session connects to it again
      // between transactions (attachLate), with its settings, and prepares statements there lazily.
      // Its server session may still be running the batch: the completion waits until it has ended.
      const ended = new Map<number, number>()
      for (const i of outcome.excused) {
        const pid = this.backends.at(i)?.conn.pid
        if (pid) ended.set(i, pid)
        this.backends.drop(i)
      }
      this.step = 'completing an excused commit'
      if (c?.lsn !== undefined && c.at) await this.ctx.recovery(this.database).completeCommit(c.lsn, c.at, c.json, this.ctx.states.enabled(), c.entries, ended)
      for (const i of outcome.excused) ex.outcome.status.set(i, 'I')
    }
    this.learnTags(plan, ex)
    if (this.phase !== 'ready') {
      // The client went away with its COMMIT in flight: the commit still happened on the backends, so a
      // backend back in service must get it too, under this transaction's locks (close() waits for this).
      this.step = 'commit to late backends (client gone)'
      this.record.pendingLate = this.record.commitToLate(plan)
      await this.record.pendingLate
      return
    }
    if (outcome.lostRead) {
      // Other backends were sent part of this batch (writes, a COMMIT): running it again would repeat
      // them, and their answers are still on the way. The session ends, as on a lost connection.
      if (plan.everywhere) return this.closeWith(errors.backendLost(this.backends.lostReadBackend, `${this.backends.lostReadReason}; it was answering a read of a batch that also went to the other backends`))
      if (!ex.relayed && this.links.length) return 'retry'
      ex.completeMessage()
      await this.refuse(errors.readLost(this.backends.lostReadReason, 'connection lost'), plan.endsWithSync, true)
      return
    }
    if (plan.deferredCommit) return this.finishDeferred(plan, ex)
    await this.record.markUnlogged(plan, ex, this.logSettings.values(), () => isoMicros(performance.timeOrigin + performance.now()))
    const late = this.lateBackends()
    if (late.length && this.links.length) {
      if (plan.commit?.lsn !== undefined && plan.commit.at) {
        // Still under this transaction's locks, and before the client hears of it: the backend
        // that came back gets this commit first.
        this.step = 'commit to late backends'
        await this.record.commitToLate(plan)
      } else if (plan.everywhere && !plan.commit && this.tx.status === 'I' && plan.executed.some((s) => changesData(s, this.catalogSeen))) {
        // A change without a log record (autocommit COPY, CREATE DATABASE...) cannot follow.
        for (const i of late) this.ctx.takeOut(i, 'disabled', `session ${this.id} made a change that is not in the recovery log while it came back; resync again`, false, 'unlogged-change')
      }
    }
    this.step = 'sequences to late backends'
    await this.record.sequencesToLate(plan, ex)
    this.step = ''
    if (ex.deferred.length) {
      this.beforeReady()
      for (const b of ex.deferred) this.out(b)
    }
    this.afterBatch(plan, ex)
    if (outcome.diverged && plan.commit) {
      // The COMMIT landed on some backends only: it happened there, so it is never reported as failed.
      const committed = ex.committedOn()
      const failed = this.links.map((l) => l.index).filter((i) => !committed.includes(i))
      if (committed.length && failed.length) {
        const lacking = this.record.commitSplit(committed, failed, outcome.diverged)
        // The others' answers were held back at the disagreement and cannot be told apart from here:
        // the connection ends, as a server's does when it fails during a COMMIT.
        return this.closeWith(lacking ?? new PgError('08006', `pgraid: the COMMIT succeeded on ${committed.length} backend(s) and failed on the others (taken out, behind); the transaction is committed, but its answers cannot be relayed`, 'FATAL', outcome.diverged))
      }
    }
    if (outcome.diverged) {
      const ce = outcome.clientError
      if (ce) {
        // Not a divergence: what the client asked for (a timeout, a cancel) hit some backends only. The
        // transaction fails everywhere with that error, as it would on one server; nothing is taken out.
        this.log.info({ error: ce.C, detail: outcome.diverged, lsn: plan.commit?.lsn, excused: outcome.excused }, 'a client-caused failure on some backends only: failing it everywhere')
        await this.refuse(new PgError(ce.C ?? '57014', ce.M ?? 'canceling statement', 'ERROR', ce.D, ce.H), plan.endsWithSync, true)
        return
      }
      this.log.error({ divergence: outcome.diverged }, 'backends disagreed')
      await this.refuse(errors.divergence('a statement', outcome.diverged), plan.endsWithSync, true)
      return
    }
    if (plan.endsWithSync) await this.align()
  }

  /** Ends the session with `err`; mid-relay the client stream may be inside a message, so only then is the error skipped. */
  private closeWith(err: PgError): void {
    if (this.phase === 'closed') return
    if (!this.exchange || this.exchange.atBoundary()) this.out(err.toMessage())
    this.close(err.message, true)
  }

  /** Bookkeeping after the answers: statements, portals, status, locks. */
  private afterBatch(plan: Plan, ex: Exchange): void {
    for (const [i, st] of plan.parses) {
      for (const t of plan.msgs[i].targets) if (!ex.answered(i, t, B.ParseComplete)) st.on.delete(t)
      // A backend dropped during the batch (or before it was sent) never got the Parse: a connection made
      // there later must be sent it again (lazy Parse), not assumed to have it (26000 on that backend alone).
      for (const t of st.on) if (!this.backends.at(t)) st.on.delete(t)
      if (st.on.size || st.name === '') this.registry.define(st)
    }
    for (const [i, portal] of plan.binds) {
      if (plan.msgs[i].targets.some((t) => ex.answered(i, t, B.BindComplete))) this.registry.portals.set(portal.name, portal)
    }
    for (const [, c] of plan.closes) {
      if (c.kind === 'S') {
        const st = this.registry.statements.get(c.name)
        if (st) this.registry.forget(c.name)
      } else this.registry.portals.delete(c.name)
    }
    plan.msgs.forEach((m) => {
      if (m.code === F.Query) this.registry.unnamedGoneOn(m.targets)
    })
    for (const s of plan.executed) {
      this.tx.track(s)
      if (s.session?.op === 'deallocate') {
        if (s.session.name) this.registry.forget(s.session.name)
      }
      if (s.session?.op === 'discard_all') this.registry.clearAll()
    }
    for (const link of this.links) {
      const st = ex.outcome.status.get(link.index)
      if (st) link.txStatus = st
      const sk = ex.skippingAfter(link.index)
      if (sk !== undefined) link.skipping = sk
    }
    if (plan.ddl || plan.executed.some((s) => s.tx?.op === 'rollback_to')) this.txCatalog = null
    if (plan.ddl) {
      this.ctx.catalog(this.database).invalidate()
      // Inside a transaction the change is not visible to the catalog's own connection until COMMIT:
      // a reload before then (any session's next batch) caches the old catalog, so reload again at the end.
      this.tx.ddl = true
    }
    const tracked = trackLog(this.logCtx, this.logSettings, plan, ex)
    this.logCtx = tracked.context
    if (tracked.pin) this.pinned = true
    if (plan.endsWithSync) {
      this.tx.sinceSync.clear()
      this.tx.clientSkipping = false
      const final = plan.msgs[plan.msgs.length - 1]
      const primary = final.targets[0]
      const st = primary !== undefined ? ex.outcome.status.get(primary) : undefined
      if (st === 'I' || st === 'T' || st === 'E') this.setStatus(st)
    } else {
      for (const m of plan.msgs) for (const t of m.targets) this.tx.sinceSync.add(t)
      if (ex.outcome.errored.size) this.tx.clientSkipping = true
    }
  }

  /** statement_timeout / lock_timeout in force, in ms (SET LOCAL first, then the session's). */
  private timeoutMs(name: 'statement_timeout' | 'lock_timeout'): number {
    return this.tx.localTimeouts.get(name) ?? settingFromSet(this.logSettings.get(name))
  }

  private setStatus(st: TxStatus): void {
    this.tx.status = st
    if (st !== 'I') return
    if (this.tx.end()) {
      // Inside the transaction its schema change was invisible to the catalog's own connection.
      this.txCatalog = null
      this.ctx.catalog(this.database).invalidate()
    }
    this.ctx.locks.releaseAll(this.owner)
    this.registry.endTransaction()
  }

  /**
   * After a Sync every backend must be in the client's transaction state. A
   * read that failed on the one backend it ran on leaves the others in a
   * healthy transaction: make them fail too, so COMMIT cannot commit anywhere.
   */
  private async align(): Promise<void> {
    if (this.tx.status !== 'E') return
    const healthy = this.links.filter((l) => l.txStatus === 'T').map((l) => l.index)
    if (healthy.length) await this.forceError(healthy, true)
  }

  /** Makes `targets` fail their current transaction (and skip to Sync unless `withSync`). */
  private async forceError(targets: number[], withSync: boolean): Promise<void> {
    const msgs: PlannedMsg[] = [{ code: F.Describe, bytes: FORCE_ERROR, targets, swallow: true, describeStatement: true }]
    if (withSync) msgs.push({ code: F.Sync, bytes: SYNC, targets, swallow: true })
    const ex = await this.runOwn(msgs)
    for (const t of targets) {
      const link = this.backends.at(t)
      if (!link) continue
      const st = ex.outcome.status.get(t)
      if (st) link.txStatus = st
      link.skipping = !withSync
    }
  }

  /**
   * The batch's message `bad.index` cannot be read: the messages before it run (with a Flush of
   * pgraid's, so their answers come), then the client gets PostgreSQL's error for it; what follows
   * is skipped to the Sync, and the implicit transaction the readable ones opened fails with it.
   */
  private async refuseFrom(frames: Frame[], bad: { index: number; error: PgError }): Promise<void> {
    const f = frames[bad.index]!
    // Where the session stands after it: a Query or Sync ends the batch; anything else skips to a Sync.
    const endsWithSync = f.type === F.Query || f.type === F.Sync || frames.slice(bad.index + 1).some((x) => x.type === F.Sync)
    if (bad.index > 0) {
      await this.runFrames([...frames.slice(0, bad.index), FLUSH_FRAME])
      if (this.phase !== 'ready') return
      // An error among the readable ones skips the rest to the Sync already, the unreadable one too.
      if (this.tx.clientSkipping) return this.runFrames(frames.slice(bad.index))
    }
    await this.refuse(bad.error, endsWithSync)
  }

  /**
   * Answers the batch with `err` as if its first message had failed, keeping
   * every backend in the state PostgreSQL would be in after that error.
   */
  private async refuse(err: PgError, endsWithSync: boolean, alreadyRan = false): Promise<void> {
    // The backends must be in the transaction the client was told it is in, to fail it there too.
    if (this.pendingBegin) await this.flushBegin()
    const inTx = this.tx.status !== 'I' || this.links.some((l) => l.txStatus !== 'I')
    if (inTx) {
      // The transaction ended on some backends only (a timeout or a late cancel stopped the statements
      // before its ROLLBACK or COMMIT elsewhere): the client is told it is in a failed transaction, so
      // those backends open one to fail too; left idle they would accept what the others refuse (25P02).
      const ended = this.links.filter((l) => l.txStatus === 'I').map((l) => l.index)
      if (ended.length) {
        const ex = await this.runOwn([{ code: F.Query, bytes: BEGIN_QUERY, targets: ended, swallow: true }])
        for (const t of ended) {
          const link = this.backends.at(t)
          const st = ex.outcome.status.get(t)
          if (link && st) link.txStatus = st
        }
      }
      const targets = this.links.filter((l) => l.txStatus === 'T' || !endsWithSync).map((l) => l.index)
      if (targets.length) await this.forceError(targets, endsWithSync)
      if (this.tx.savepoints === 0) this.ctx.locks.releaseAll(this.owner)
    } else {
      // Messages since the last Sync opened an implicit transaction there: it fails with this error.
      const open = this.links.filter((l) => this.tx.sinceSync.has(l.index)).map((l) => l.index)
      if (open.length) await this.forceError(open, endsWithSync)
      if (!alreadyRan) this.ctx.locks.releaseAll(this.owner)
    }
    this.out(err.toMessage())
    if (endsWithSync) {
      this.setStatus(inTx ? 'E' : 'I')
      this.beforeReady()
      this.out(readyForQuery(this.tx.status))
      this.tx.clientSkipping = false
      this.tx.sinceSync.clear()
    } else this.tx.clientSkipping = true
  }

  // ---- ExchangeHost ---------------------------------------------------------

  get names(): string[] {
    return this.links.map((l) => l.name)
  }

  out(slice: Buffer): void {
    if (this.phase === 'closed') return
    this.ctx.counters.bytesToClients += slice.length
    if (!this.corked) {
      // One answer is many small messages (and slices): send them as one segment per tick.
      this.corked = true
      this.socket.cork()
      process.nextTick(this.uncork)
    }
    if (!this.socket.write(slice) && !this.pausedBackends) {
      // A slow client: stop reading backends rather than buffer their results.
      this.pausedBackends = true
      for (const l of this.links) l.conn.socket.pause()
    }
  }

  private corked = false
  private readonly uncork = () => {
    this.corked = false
    this.socket.uncork()
  }

  private resumeBackends(): void {
    if (!this.pausedBackends) return
    this.pausedBackends = false
    for (const l of this.links) l.conn.socket.resume()
  }

  beforeReady(): void {
    if (!this.pendingNotify.length) return
    for (const n of this.pendingNotify) this.out(n)
    this.pendingNotify = []
  }

  enterCopyIn(targets: number[], extended: boolean): void {
    const copy = new CopyIn(
      targets.flatMap((t) => this.backends.at(t)?.conn.socket ?? []),
      extended,
      this.socket,
    )
    this.copy = copy
    // Data the client pipelined behind the COPY command.
    while (copy.active && this.inbox.length && COPY_TYPES.has(this.inbox[0].type)) {
      const f = this.inbox.shift()!
      this.inboxBytes -= f.bytes.length
      copy.take(f)
    }
    copy.flush()
  }

  inconsistent(idx: number, detail: string): void {
    this.log.error({ backend: this.backends.at(idx)?.name, detail }, 'backend disagreed with the majority: taking it out as inconsistent')
    this.ctx.takeOut(idx, 'inconsistent', `disagreed with the majority: ${detail}`)
  }

  backendFatal(idx: number, what: string, fields: Record<string, string>): void {
    this.backends.lose(idx, `FATAL ${what}`, fields)
  }

  // ---- LinkHost ---------------------------------------------------------------

  unsolicited(link: BackendLink, type: number, body: Buffer | null, bytes: Buffer[]): void {
    if (type === B.ErrorResponse && body) {
      const f = errorFields(body)
      if (f.S === 'FATAL' || f.S === 'PANIC') {
        // The backend ended this session (terminated, timed out, shut down): loseBackend asks the
        // health monitor whether the server or only this session is gone.
        this.log.warn({ backend: link.name, code: f.C, message: f.M }, 'backend session ended')
        return this.backends.lose(link.index, `FATAL ${f.C}: ${f.M}`, f)
      }
      // An ERROR between batches: a statement_timeout that fired while a commit held interrupts off is
      // reported by PostgreSQL once idle, with a ReadyForQuery of its own. Inside a transaction it
      // failed that transaction on this backend alone: the next batch fails it everywhere.
      this.strayError ??= f
      return
    }
    if (type === B.ReadyForQuery && body?.length) {
      link.txStatus = String.fromCharCode(body[0]!)
      return
    }
    // A backend announcing its own shutdown (57P01-57P03) is about to be taken out: not the client's news.
    if (type === B.NoticeResponse && body && /^57P0[123]$/.test(errorFields(body).C ?? '')) return
    if ((type === B.NoticeResponse || type === B.ParameterStatus) && link.index === this.links[0]?.index && !this.running) for (const b of bytes) this.out(b)
  }

  notification(link: BackendLink, body: Buffer): void {
    // LISTEN ran on every backend; deliver exactly one copy: the first backend's.
    if (link.index !== this.links[0]?.index) return
    this.pendingNotify.push(message(B.NotificationResponse, body))
    if (!this.running && !this.exchange) this.beforeReady()
  }

  /**
   * Waits for the health checks of lost connections; true when the session
   * may go on (every lost backend was out of service, and one is left). Else
   * it is closed here, with the error the backend gave, or `orElse`.
   */
  async settleLosses(orElse?: PgError): Promise<boolean> {
    await this.backends.checksDone()
    if (this.phase === 'closed') return false
    const err = this.backends.endError ?? (this.links.length ? null : (orElse ?? errors.backendLost('any', 'no backend connection left')))
    if (!err) return true
    this.closeWith(err)
    return false
  }

  // ---- cancel and close -------------------------------------------------------

  cancelRequested(): void {
    if (this.ctx.locks.abortWait(this.owner, new LockWaitAborted('canceled'))) return
    const ex = this.exchange
    // pgraid's own statements (the commit of an undoable write, a catalog read) are never cut: the
    // client's have been answered then, as a cancel arriving after a statement finished is on PostgreSQL.
    if (!ex || this.ownExchange) return
    this.cutSeen = true
    for (const idx of ex.cancelTargets()) this.cancel(idx)
  }

  /** Cancel requests sent and not yet delivered; nothing more is sent to a backend until they are. */
  private cancelling: Promise<void>[] = []
  private ownExchange = false

  cancel(idx: number): void {
    const link = this.backends.at(idx)
    if (link) this.cancelling.push(link.conn.cancel())
  }

  /**
   * A cancel still on its way could land on whatever the backend runs next, on that backend alone:
   * the next batch waits until every cancel sent has been delivered.
   */
  private async cancelsDelivered(): Promise<void> {
    while (this.cancelling.length) {
      const pending = this.cancelling
      this.cancelling = []
      await Promise.all(pending)
    }
  }

  /** Between transactions with nothing in flight or queued: it can be closed without losing any work. */
  idle(): boolean {
    return this.phase !== 'closed' && (this.admin !== null || (this.tx.between(!!this.copy) && !this.exchange && !this.inbox.length))
  }

  // ---- BackendsHost ---------------------------------------------------------

  get gone(): boolean {
    return this.phase === 'closed'
  }
  get committing(): boolean {
    return !!this.plan?.commit
  }
  get quiet(): boolean {
    return !this.running && !this.exchange
  }
  get busy(): boolean {
    return !!(this.exchange || this.tx.sinceSync.size || this.copy || this.tx.status !== 'I')
  }
  forgetBackend(idx: number): void {
    this.registry.forgetBackend(idx)
    this.tx.sinceSync.delete(idx)
    this.logCtx.prepared.delete(idx)
    if (this.tx.sticky === idx) this.tx.sticky = null
  }

  /** A cancel request was passed on: the connection ends, as PostgreSQL ends it, without a word. */
  endQuietly(): void {
    this.phase = 'closed'
    this.socket.end()
  }

  /** Shutdown: a FATAL 57P01 (as PostgreSQL's own shutdown sends), then the connection is closed. */
  terminate(): void {
    this.fatal(errors.shuttingDown())
  }

  /** Ends the session with a FATAL of pgraid's own (a standby session after promotion). */
  terminateWith(err: PgError): void {
    this.fatal(err)
  }

  /**
   * A read must wait for the commits in flight: this pgraid writes (its recovery log is prepared),
   * some are in flight, and the read takes a new snapshot. A transaction that wrote holds row locks
   * a landing commit's replay may need, and a REPEATABLE READ snapshot is already fixed: no wait.
   */
  private mustSeeLanded(): boolean {
    if (this.readOnly || this.logTerm !== this.ctx.ha.term || this.logCtx.pendingWrites || this.tx.snapshotTaken || this.tx.ddl) return false
    return this.ctx.recovery(this.database).inFlightCount > 0
  }

  /** This session may write now: this pgraid is the writer, in the term the session's transaction began in. */
  mayWrite(): boolean {
    return !this.readOnly && this.ctx.ha.isWriter() && this.term === this.ctx.ha.term
  }

  /** 25006 for a write on a pgraid that is not the writer, worded as PostgreSQL's hot standby words it. */
  private readOnlyError(plan: Plan, catalog: CatalogData): PgError {
    const s = plan.executed.find((x) => changesData(x, catalog) || x.session?.op === 'notify')
    const what = s ? (s.sequences?.length && s.kind === 'read' ? 'nextval()' : s.command) : 'COMMIT'
    const ha = this.ctx.ha
    const writer = ha.writerHint && ha.writerHint !== ha.identity ? `pgraid ${ha.writerHint}` : 'another pgraid instance'
    const detail = this.readOnly
      ? ha.isWriter()
        ? `this session was opened while pgraid ${ha.identity} was a standby; it has since become the writer: reconnect`
        : `pgraid ${ha.identity} is a standby: ${writer} holds the writer lock on a majority of the backends and orders the writes`
      : ha.isWriter()
        ? `pgraid ${ha.identity} lost its writer lock majority while this transaction was open; the transaction cannot commit`
        : `pgraid ${ha.identity} lost the writer lock on a majority of its backends (holds ${ha.heldBy().length}, needs ${ha.needed}) and stopped accepting writes`
    return errors.readOnly(what, detail, 'connect to the writer: with every pgraid host in the connection string, libpq target_session_attrs=read-write or pgjdbc targetServerType=primary finds it')
  }

  fatal(err: PgError): void {
    if (this.phase === 'closed') return
    this.socket.write(err.toMessage())
    this.close(err.message, true)
  }

  close(reason: string, endClient = false): void {
    if (this.phase === 'closed') return
    this.phase = 'closed'
    this.startup.abandon()
    if (this.authTimer) clearTimeout(this.authTimer)
    this.ctx.states.off('out', this.backends.onOut)
    this.admin?.abort(reason)
    this.log.debug({ reason }, 'session closed')
    this.ctx.release(this)
    if (endClient) this.socket.end()
    else this.socket.destroy()
    const ex = this.exchange
    // Mid-COPY a Terminate is a protocol violation to the server (FATAL 08P01): the connection is
    // dropped instead, and the server sees the client gone as it would without pgraid.
    const inCopy = !!this.copy?.active
    const finish = () => {
      for (const l of this.links) if (inCopy) l.conn.destroy()
      else l.conn.close()
      this.ctx.locks.releaseAll(this.owner)
    }
    // A COPY FROM STDIN still taking data cannot commit: nothing waits for data that will never come.
    // A tie-safe write's own COMMIT comes after its exchange (finishDeferred): the batch is waited for too.
    if ((ex ? !ex.complete : this.batch) && this.mayCommit() && !this.copy?.active) {
      // A write that may commit is already running on every backend: cancelling it now could
      // stop it on a slow backend after it committed on the others. Let it finish everywhere,
      // then close (an open transaction is rolled back by the backends when we disconnect).
      const lost = this.links.some((l) => l.conn.closed)
      if (!lost) {
        this.step ||= 'closing after the batch'
        void Promise.resolve(ex?.done)
          .then(() => this.batch)
          .then(() => this.record.pendingLate)
          .then(finish, finish)
        return
      }
    }
    // Otherwise stop what the client started, so nothing keeps running for nobody.
    if (ex) {
      // A COPY FROM STDIN is ended by closing its connections (the server sees the client gone, as it
      // would without pgraid); a cancel arriving mid-CopyData costs a FATAL 08P01 there instead.
      if (!inCopy) for (const idx of ex.pendingBackends()) void this.backends.at(idx)?.conn.cancel()
      ex.abort('session closed')
    }
    finish()
  }

  /** Could the batch in flight commit something (autocommit write, or COMMIT)? */
  private mayCommit(): boolean {
    const plan = this.plan
    if (!plan || !plan.everywhere) return false
    if (this.tx.status === 'I' || plan.deferredCommit) return true
    return plan.executed.some((s) => s.tx?.op === 'commit' || s.tx?.op === 'commit_prepared' || s.tx?.op === 'prepare')
  }
}

const SNAPSHOT_LEVELS = new Set(['repeatable read', 'serializable'])

/** Would this batch write anything (or commit a transaction that did)? Only the writer may run it. */
function writesSomething(plan: Plan, catalog: CatalogData, pendingWrites: boolean): boolean {
  if (plan.commit || plan.deferredCommit) return true
  return plan.executed.some((s) => changesData(s, catalog) || s.session?.op === 'notify' || (pendingWrites && (s.tx?.op === 'commit' || s.tx?.op === 'prepare')))
}


const KNOWN = new Set<number>([F.Bind, F.Close, F.Describe, F.Execute, F.Flush, F.Parse, F.Query, F.Sync, F.Terminate, F.CopyData, F.CopyDone, F.CopyFail, F.FunctionCall])

/** The current time with microseconds, as PostgreSQL's clock has. */
function isoMicros(t: number): string {
  const ms = Math.floor(t)
  const us = Math.min(999, Math.floor((t - ms) * 1000))
  return new Date(ms).toISOString().slice(0, 23) + String(us).padStart(3, '0') + 'Z'
}

/** GUCs set by the startup packet (and its `options` -c switches), as name/value pairs. */
export function startupSettings(params: Record<string, string>): [string, string][] {
  const out: [string, string][] = []
  for (const [k, v] of Object.entries(params)) {
    if (k === 'user' || k === 'database' || k === 'replication' || k === 'application_name' || k.startsWith('_pq_')) continue
    if (k === 'options') {
      // -c name=value or --name=value, space separated; backslash escapes a space.
      const words = v.match(/(?:\\.|[^\s])+/g) ?? []
      for (let i = 0; i < words.length; i++) {
        let w = words[i]!.replace(/\\(.)/g, '$1')
        if (w === '-c' && i + 1 < words.length) w = words[++i]!.replace(/\\(.)/g, '$1')
        else if (w.startsWith('--')) w = w.slice(2)
        else if (w.startsWith('-c')) w = w.slice(2)
        else continue
        const eq = w.indexOf('=')
        if (eq > 0) out.push([w.slice(0, eq).replace(/-/g, '_').toLowerCase(), w.slice(eq + 1)])
      }
      continue
    }
    if (/^[a-z_][a-z0-9_.]*$/i.test(k)) out.push([k.toLowerCase(), v])
  }
  return out
}

function quoteLiteral(v: string): string {
  return `'${v.replace(/'/g, "''")}'`
}

function printable(code: number): string {
  return code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : `\\x${code.toString(16).padStart(2, '0')}`
}

/** Session settings by which a backend may cut a statement by itself. */
const CUTTING = ['statement_timeout', 'lock_timeout', 'transaction_timeout', 'idle_in_transaction_session_timeout']
/** Lifted for the rest of pgraid's transaction once the client's statements ran (SET LOCAL ends with it). */
const LIFT_BEFORE_COMMIT = 'SET LOCAL statement_timeout = 0;SET LOCAL lock_timeout = 0'
/** Lifted at pgraid's BEGIN, where the session set them: pgraid's round trips are not the client idling. */
const LIFT_IN_TRANSACTION = ['idle_in_transaction_session_timeout', 'transaction_timeout']
const ROLLBACK_QUERY = message(F.Query, Buffer.from('ROLLBACK\0', 'utf8'))
/** How long a read waits for the commits in flight to land before it goes ahead anyway (logged). */
const LANDED_WAIT_MS = 10_000
/** How long a snapshot waits for the commits in flight to land before the transaction is refused (40001). */
const SNAPSHOT_WAIT_MS = 10_000

function queryMessage(text: string): Buffer {
  return message(F.Query, Buffer.from(`${text}\0`, 'utf8'))
}

/** Databases the batch creates, drops, renames or copies (null: none; the common case costs a scan of its statements). */
function databasesNamed(plan: Plan): string[] | null {
  let out: string[] | null = null
  for (const s of plan.executed) if (s.databases?.length) (out ??= []).push(...s.databases)
  return out
}
