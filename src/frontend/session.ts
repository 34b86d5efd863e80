// One client session: its phases (login -> connecting -> ready -> closed),
// its state, and the hooks the parts it is cut into call back. The client's
// bytes come in here and are cut into messages; login is startup.ts, the
// backend connections connect-backends.ts and backends.ts, the batch loop
// batch.ts -> admit.ts -> execute.ts (with after-batch.ts, tie-safe-commit.ts,
// refuse.ts and own-statements.ts), the client's side client-output.ts,
// cancels cancel.ts, and what a closed session leaves behind close.ts.
// Their state lives here (or in the sub-objects below), each sees it through
// a narrow host interface of its own.

import type net from 'node:net'
import type tls from 'node:tls'
import { randomInt } from 'node:crypto'
import type { Logger } from 'pino'
import { F, B } from '../protocol/codes.ts'
import { Framer, FrameTooLarge, MalformedFrame, RefusedLength, type Frame } from '../protocol/framer.ts'
import { backendKeyData, message, readyForQuery, type TxStatus } from '../protocol/encode.ts'
import { errors, PgError } from '../errors.ts'
import type { Exchange, PlannedMsg } from '../broadcast/exchange.ts'
import type { LockOwner } from '../scheduler/lock-manager.ts'
import { emptyCatalog, type CatalogData } from '../scheduler/catalog.ts'
import type { Plan } from '../router/plan.ts'
import { StatementRegistry } from '../router/statements.ts'
import type { LogContext } from '../router/log-plan.ts'
import { ADMIN_DATABASE, type AdminConsoleSession, type ClientSession, type ServerContext, type ServerView } from '../server-context.ts'
import { applicationName, serverViews, waitingText } from './views.ts'
import { ClientStartup, startupSetStatements } from './startup.ts'
import type { BackendLink, LinkHost } from './backend-link.ts'
import { attachLink, openLinks, startupReport, type LinkRequest } from './connect-backends.ts'
import { SessionBackends } from './backends.ts'
import { TxState } from './tx-state.ts'
import { LogCommits } from './log-commit.ts'
import { CopyIn, COPY_TYPES } from './copy-in.ts'
import { ClientOutput, unsolicited } from './client-output.ts'
import { Cancels } from './cancel.ts'
import { leaveBackends } from './close.ts'
import type { LoginFailure } from '../observe/counters.ts'
import { flushBegin, pump, runFrames } from './batch.ts'
import { runInternal, runOwn } from './own-statements.ts'

/** login (startup.ts), connecting to the backends, ready for batches, closed. */
type Phase = 'login' | 'connecting' | 'ready' | 'closed'

export class Session implements LinkHost, ClientSession {
  readonly id: number
  readonly pid: number
  readonly secret: number
  readonly owner: LockOwner
  user = ''
  database = ''
  /** Opened while this pgraid was a standby: its backend connections are read-only, it never writes. */
  readOnly = false
  log: Logger
  readonly connectedAt = new Date()
  private phase: Phase = 'login'
  private framer: Framer
  private readonly startup: ClientStartup
  private authTimer: NodeJS.Timeout | null = null
  private idleTimer: NodeJS.Timeout | null = null
  private admin: AdminConsoleSession | null = null
  private adminQueue: Promise<unknown> = Promise.resolve()

  readonly backends = new SessionBackends(this)
  private readonly output = new ClientOutput(this)
  readonly cancels = new Cancels(this)
  readonly registry = new StatementRegistry()
  readonly tx = new TxState()
  readonly record = new LogCommits(this)

  // The batch loop's state (batch.ts, admit.ts, execute.ts).
  /** The client's messages not yet taken into a batch, and their size. */
  readonly inbox: Frame[] = []
  inboxBytes = 0
  running = false
  /** The batch being run (close() lets one that may commit finish, its own COMMIT included). */
  batch: Promise<void> | null = null
  /** The batch in flight, if any. */
  plan: Plan | null = null
  /** Where a batch holding an LSN is (the operator's answer when a hold or resync waits for it). */
  step = ''
  exchange: Exchange | null = null
  copy: CopyIn | null = null
  /** The client's BEGIN, answered already and not yet sent to the backends (deferred-begin.ts). */
  pendingBegin: Frame | null = null
  flushingBegin = false
  /** An ERROR a backend sent between batches (see unsolicited). */
  strayError: Record<string, string> | null = null
  /** Releases the hold on commits the batch in flight took for its snapshot. */
  snapshotHold: (() => void) | null = null
  /** The last batch answered an error (or its backends disagreed). */
  batchFailed = false
  catalogSeen: CatalogData = emptyCatalog()
  /** The catalog as this transaction sees it (its own schema changes included), once it changed the schema. */
  txCatalog: CatalogData | null = null
  /** Session state that cannot be rebuilt on another connection: such a session never attaches a backend that came back. */
  pinned = false

  /** Recovery log: session settings, the open transaction's entries, log statement prepared per backend. */
  readonly logSettings = new Map<string, string>()
  logCtx: LogContext = { settings: [], pending: [], pendingWrites: false, prepared: new Set() }
  /** The election term whose recovery log this session has waited for (-1: none yet). */
  logTerm = -1
  /** The election term this session may write in: taken when it is between transactions. */
  term = -1

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
        if (this.phase !== 'login') return
        ctx.counters.loginFailed('timeout')
        this.close(`no login within ${authMs} ms (timeouts.authMs)`)
      }, authMs)
      this.authTimer.unref()
    }
  }

  get links(): BackendLink[] {
    return this.backends.links
  }

  private get startupParams(): Record<string, string> {
    return this.startup.params
  }

  // ---- client input -------------------------------------------------------

  listen(socket: net.Socket): void {
    socket.on('data', (c: Buffer) => this.onData(c))
    socket.on('error', () => this.close('client socket error'))
    socket.on('close', () => this.close('client disconnected'))
    socket.on('drain', () => this.output.resumeBackends())
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'closed') return
    this.ctx.counters.bytesFromClients += chunk.length
    try {
      this.framer.push(chunk, (f) => this.onFrame(f))
      this.copy?.flush()
    } catch (e) {
      // PostgreSQL closes without a word on a length it refuses; so does pgraid (no backend sees it).
      if (e instanceof RefusedLength) this.close(e.message)
      else if (e instanceof FrameTooLarge) this.fatal(errors.messageTooLarge(e.length, e.max), this.phase === 'login' ? 'protocol' : undefined)
      else if (e instanceof MalformedFrame) this.fatal(errors.protocolViolation(e.message), this.phase === 'login' ? 'protocol' : undefined)
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
    void pump(this)
  }

  // ---- login and backend connections ---------------------------------------

  /** Login done: the admin console, or connections to the backends. */
  loggedIn(): void {
    if (this.database !== ADMIN_DATABASE) return void this.connectBackends()
    if (!this.ctx.config.users.find((u) => u.name === this.user)?.admin)
      return this.fatal(new PgError('42501', `user "${this.user}" is not a pgraid admin`, 'FATAL', undefined, 'set "admin": true for the user in the pgraid configuration'), 'not-admin')
    this.admin = this.ctx.openConsole(this.socket, this.ctx, this.user, this.pid, this.secret)
    this.phase = 'ready'
    this.admin.start()
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
    for (const [k, set] of startupSetStatements(this.startupParams)) this.logSettings.set(k, set)
    this.logCtx = { ...this.logCtx, settings: [...this.logSettings.values()] }
    const opened = await openLinks(this.linkRequest())
    if (!opened) return
    if ('asIs' in opened) {
      this.ctx.counters.loginFailed('database')
      this.socket.write(message(B.ErrorResponse, opened.asIs.body!))
      return this.close(`every backend refused: ${opened.asIs.message}`, true)
    }
    if ('error' in opened) return this.fatal(opened.error, opened.error.code === '53300' ? 'too-many' : 'unavailable')
    this.backends.links = opened.links
    this.ctx.states.on('out', this.backends.onOut)
    this.socket.write(Buffer.concat([...startupReport(this.links[0].conn, this.readOnly), backendKeyData(this.pid, this.secret), readyForQuery('I')]))
    this.phase = 'ready'
    this.log.debug('session ready')
    void pump(this)
  }

  /**
   * Between transactions, connect to backends that came back into service
   * and bring the connection to the session's settings; prepared statements
   * follow lazily (router/statements.ts).
   */
  async attachLate(): Promise<void> {
    for (const idx of this.lateBackends()) {
      const link = await attachLink(this.linkRequest(), idx, this.logSettings.values())
      if (!link) continue
      this.backends.links = [...this.links, link].sort((a, b) => a.index - b.index)
      this.tx.knownSettings.clear() // a new connection: what the others hold is not known of it
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

  /** Backends in service this session has no connection to (they came back after it started, or it is pinned). */
  lateBackends(): number[] {
    return this.backends.late()
  }

  readonly lateForSequences = (): number[] => this.backends.lateForSequences()

  // ---- what the admin console and the shared state see (ClientSession) -----

  /** TLS protocol of the client connection ('' when plain), for SHOW CLIENTS. */
  get tlsProtocol(): string {
    return this.startup.tlsOn ? ((this.socket as tls.TLSSocket).getProtocol() ?? '') : ''
  }

  get applicationName(): string {
    return applicationName(this.logSettings, this.startupParams)
  }

  get clientAddress(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`
  }

  get transactionStatus(): string {
    return this.admin ? 'admin' : this.tx.status === 'I' ? 'idle' : this.tx.status === 'T' ? 'in transaction' : 'failed transaction'
  }

  /** What the session is doing or waiting for now (SHOW SESSIONS; a commit in flight names it). */
  get waiting(): string {
    return this.admin ? '' : waitingText(this, this.phase)
  }

  /** Since when it waits for RESUME (PAUSE on the admin console); set by the batch loop. */
  pausedSince: Date | null = null

  servers(): ServerView[] {
    return serverViews(this.links)
  }

  get backendNames(): string[] {
    return this.links.map((l) => l.name)
  }

  /** Between transactions with nothing in flight or queued: it can be closed without losing any work. */
  idle(): boolean {
    return this.phase !== 'closed' && (this.admin !== null || (this.tx.between(!!this.copy) && !this.exchange && !this.inbox.length))
  }

  // ---- the batch loop's hooks ------------------------------------------------

  runFrames(frames: Frame[], withBegin = false): Promise<void> {
    return runFrames(this, frames, withBegin)
  }

  /** Sends the deferred BEGIN alone, its answers swallowed (the client has had them). */
  flushBegin(): Promise<void> {
    return flushBegin(this)
  }

  /** Sends pgraid's own messages (answers swallowed) and waits until every backend answered them. */
  runOwn(msgs: PlannedMsg[]): Promise<Exchange> {
    return runOwn(this, msgs)
  }

  /** A message of pgraid's own to the session's backends, answers consumed. */
  runInternal(msg: Buffer, targets: number[]): Promise<{ diverged: string | null; errorCode: string | null }> {
    return runInternal(this, msg, targets)
  }

  /** This session may write now: this pgraid is the writer, in the term the session's transaction began in. */
  mayWrite(): boolean {
    return !this.readOnly && this.ctx.ha.isWriter() && this.term === this.ctx.ha.term
  }

  setStatus(st: TxStatus): void {
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
   * PostgreSQL's idle_in_transaction_session_timeout (an idle open transaction
   * holds locks everywhere) and idle_session_timeout (PgBouncer's
   * client_idle_timeout), at the proxy.
   */
  armIdleTimer(): void {
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

  // ---- ExchangeHost and LinkHost ------------------------------------------------

  /** Backend names by backend index (not by link: a session without pg2 named pg3 "2"). */
  get names(): string[] {
    return this.ctx.backends().map((b) => b.name)
  }

  out(slice: Buffer): void {
    this.output.out(slice)
  }

  beforeReady(): void {
    this.output.beforeReady()
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
    this.ctx.takeOut(idx, 'inconsistent', `disagreed with the majority: ${detail}`, false, 'diverged')
  }

  backendFatal(idx: number, what: string, fields: Record<string, string>): void {
    this.backends.lose(idx, `FATAL ${what}`, fields)
  }

  cancel(idx: number): void {
    this.cancels.send(idx)
  }

  unsolicited(link: BackendLink, type: number, body: Buffer | null, bytes: Buffer[]): void {
    unsolicited(this, link, type, body, bytes)
  }

  notification(link: BackendLink, body: Buffer): void {
    this.output.notification(link, body)
  }

  // ---- BackendsHost ---------------------------------------------------------

  get gone(): boolean {
    return this.phase === 'closed'
  }
  get ready(): boolean {
    return this.phase === 'ready'
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

  // ---- cancel and close -------------------------------------------------------

  cancelRequested(): void {
    this.cancels.requested()
  }

  /** A cancel request was passed on: the connection ends, as PostgreSQL ends it, without a word. */
  endQuietly(): void {
    this.output.flush()
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

  /** `failed`: a login refused, counted by reason (pgraid_login_failures_total). */
  fatal(err: PgError, failed?: LoginFailure): void {
    if (this.phase === 'closed') return
    if (failed) this.ctx.counters.loginFailed(failed)
    this.output.flush()
    this.socket.write(err.toMessage())
    this.close(err.message, true)
  }

  /** Ends the session with `err`; mid-relay the client stream may be inside a message, so only then is the error skipped. */
  closeWith(err: PgError): void {
    if (this.phase === 'closed') return
    if (!this.exchange || this.exchange.atBoundary()) this.out(err.toMessage())
    this.close(err.message, true)
  }

  close(reason: string, endClient = false): void {
    if (this.phase === 'closed') return
    // What the client was already sent goes before the end (as a corked socket's end() wrote it).
    if (endClient) this.output.flush()
    this.phase = 'closed'
    this.startup.abandon()
    if (this.authTimer) clearTimeout(this.authTimer)
    this.ctx.states.off('out', this.backends.onOut)
    this.admin?.abort(reason)
    this.log.debug({ reason }, 'session closed')
    this.ctx.release(this)
    if (endClient) this.socket.end()
    else this.socket.destroy()
    leaveBackends(this)
  }
}
