// The backends a session is connected to, and what happens when one goes:
// taken out of service (the session goes on with the others), its
// connection ended while the backend stays in service (the health monitor
// decides whether the server or only this session is gone: invariant 9),
// DISABLE's drain, and a backend that stalls while the others answered.

import type { Logger } from 'pino'
import { errors, PgError } from '../errors.ts'
import type { Exchange } from '../broadcast/exchange.ts'
import type { ServerContext } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'

/** The longest a session keeps working on a backend DISABLE took out (its open transaction, cursor, batch). */
const DRAIN_MS = 10_000

/** What the backend set needs from its session. */
export interface BackendsHost {
  readonly ctx: ServerContext
  readonly log: Logger
  /** The client is gone (a batch it sent may still be finishing). */
  readonly gone: boolean
  readonly exchange: Exchange | null
  /** The batch in flight carries a COMMIT. */
  readonly committing: boolean
  /** Between batches, nothing in flight: a lost connection can end the session at once. */
  readonly quiet: boolean
  /** Work open on the backends (a batch, an unsynced batch, COPY, a transaction): DISABLE drains. */
  readonly busy: boolean
  /** A connection is no longer used: what the session kept for that backend goes. */
  forgetBackend(idx: number): void
  /** Waits for the loss checks, then ends the session if it must (see Session.settleLosses). */
  settleLosses(orElse?: PgError): Promise<boolean>
}

export class SessionBackends {
  links: BackendLink[] = []
  /** Health checks of backend connections this session lost, still running. */
  lossChecks: Promise<void>[] = []
  /** Set when a connection ended for this session alone: the error the session ends with. */
  endError: PgError | null = null
  /** A read lost with its only backend: where and why (the client's error if it cannot be retried). */
  lostReadReason = ''
  lostReadBackend = ''
  /** Backends DISABLE took out that this session still finishes work on. */
  private readonly draining = new Set<number>()

  constructor(private readonly host: BackendsHost) {}

  at(idx: number): BackendLink | undefined {
    for (const l of this.links) if (l.index === idx) return l
    return undefined
  }

  /** Backends in service this session has no connection to (they came back after it started, or it is pinned). */
  late(): number[] {
    // Asked before every batch: a loop, no intermediate arrays or closures.
    let out: number[] | null = null
    for (const b of this.host.ctx.states.list) if (b.state === 'enabled' && !this.at(b.index)) (out ??= []).push(b.index)
    return out ?? []
  }

  /** Like late(), plus a backend whose resync is aligning its sequences (BackendStatus.joining). */
  lateForSequences(): number[] {
    let out: number[] | null = null
    for (const b of this.host.ctx.states.list) if ((b.state === 'enabled' || b.joining) && !this.at(b.index)) (out ??= []).push(b.index)
    return out ?? []
  }

  /**
   * Another session (or this one) took a backend out: stop using it here too.
   * DISABLE drains: a session busy on that backend (a batch in flight, an
   * extended-protocol batch not yet synced, a cursor being fetched, an open
   * transaction) finishes that work there first; it leaves the backend when
   * it is next idle, or after DRAIN_MS at the latest. Idle sessions leave at once.
   */
  readonly onOut = (b: { index: number; reason: string | null; drain: boolean }) => {
    if (b.drain && this.host.busy && this.at(b.index) && !this.draining.has(b.index)) {
      this.draining.add(b.index)
      setTimeout(() => this.draining.delete(b.index) && this.lose(b.index, 'disabled: still busy there after the drain time'), DRAIN_MS).unref()
    } else this.lose(b.index, b.reason ?? 'taken out of service')
  }

  /** Between transactions: the drained backends are left now. */
  dropDrained(): void {
    if (!this.draining.size) return
    for (const idx of this.draining) this.lose(idx, 'disabled: drained')
    this.draining.clear()
  }

  /**
   * A backend of this session is gone. Taken out of service (by the health
   * monitor, a vote, DISABLE): the session continues on the others (issue 5,
   * item 3): what was in flight there is decided by the remaining backends; a
   * read it alone was answering is retried elsewhere if nothing reached the
   * client yet. Its connection ended while it is still in service (a FATAL, a
   * reset, an EOF): only the health monitor may decide that the server
   * failed (invariant 9). Until it has, the session starts nothing new; if
   * the server answers, the connection was ended for this session alone
   * (pg_terminate_backend, a timeout, a message it refused) and the session
   * ends on every backend with that error, as on one PostgreSQL server.
   */
  lose(idx: number, reason: string, fatal?: Record<string, string>): void {
    const { host } = this
    const link = this.at(idx)
    if (!link) return
    if (host.gone) {
      // The client is gone, but a batch it sent may still be finishing everywhere (a commit lands on
      // every backend): it must not wait for this connection any more, or its locks are never freed.
      this.drop(idx)
      const ex = host.exchange
      if (ex && host.committing) ex.deferReady = true
      if (ex?.dropBackend(idx)) ex.abort(`backend ${link.name} lost`)
      if (ex && !this.links.length) ex.abort('no backend connection left')
      return
    }
    this.drop(idx)
    if (host.ctx.states.isEnabled(idx)) {
      host.log.warn({ backend: link.name, reason }, 'backend connection ended: checking the backend itself')
      const err = fatal?.C ? new PgError(fatal.C, fatal.M ?? reason, 'FATAL', fatal.D, fatal.H) : errors.backendLost(link.name, reason)
      const check = host.ctx.health.probe(idx, performance.now()).then((r) => {
        if (!r.healthy) return // out of service now: the session goes on with the others
        host.log.info({ backend: link.name, reason }, 'the backend is healthy: the connection ended for this session alone, which ends on every backend')
        this.endError ??= err
      })
      this.lossChecks.push(check)
      // Idle: ended at once, as PostgreSQL ends a terminated idle session.
      void check.then(() => {
        if (host.quiet) void host.settleLosses()
      })
    } else host.log.warn({ backend: link.name, reason }, 'backend lost: continuing on the others')
    const ex = host.exchange
    // A COMMIT in flight is acknowledged only once every backend in service has it (invariant 2): its
    // final ReadyForQuery waits until the commit is completed (replayed) where this connection ended.
    if (ex && host.committing) ex.deferReady = true
    if (ex && ex.dropBackend(idx)) {
      ex.outcome.lostRead = true
      this.lostReadReason = `${link.name}: ${reason}`
      this.lostReadBackend = link.name
      ex.abort(`backend ${link.name} lost`)
    }
    if (!this.links.length) {
      if (ex)
        ex.abort('no backend connection left') // execute() decides, once the checks are done
      else void host.settleLosses(errors.backendLost(link.name, reason))
    }
  }

  /** Stops using this session's connection to backend `idx` (nothing about the backend itself changes). */
  drop(idx: number): void {
    const link = this.at(idx)
    if (!link) return
    this.links = this.links.filter((l) => l !== link)
    link.conn.destroy()
    this.host.forgetBackend(idx)
  }

  /** Waits until every health check of a lost connection has answered. */
  async checksDone(): Promise<void> {
    while (this.lossChecks.length) {
      const checks = this.lossChecks
      this.lossChecks = []
      await Promise.all(checks)
    }
  }

  /**
   * A stall is relative: a backend is stalled when it is still working on a
   * batch `stallMs` after every other backend answered it. It is taken out
   * (not cancelled: a cancel could stop it after it committed); resync brings it back.
   */
  watchStall(ex: Exchange, targets: number[], stallMs: number): NodeJS.Timeout {
    let othersDoneAt = 0
    const timer = setInterval(
      () => {
        const pending = ex.pendingBackends()
        if (!pending.length || pending.length === targets.length) {
          othersDoneAt = 0
          return
        }
        othersDoneAt ||= Date.now()
        if (Date.now() - othersDoneAt < stallMs) return
        clearInterval(timer)
        const names = pending.map((i) => this.at(i)?.name ?? String(i)).join(', ')
        this.host.log.error({ backends: names, stallMs }, 'backend stalled: taking it out of service')
        for (const i of pending) this.host.ctx.takeOut(i, 'disabled', `stalled: no answer ${stallMs} ms after the other backends answered`, false, 'stalled')
      },
      Math.min(1000, Math.max(10, Math.floor(stallMs / 4))),
    )
    timer.unref()
    return timer
  }
}
