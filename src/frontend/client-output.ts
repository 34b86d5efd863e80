// What a session writes to its client: answers queued and written as one
// buffer per tick, a slow client pausing the backends' sockets, notifications held
// until the next ReadyForQuery, and what a backend sends between batches
// (a notice, a ParameterStatus, an ERROR or FATAL of its own).

import type net from 'node:net'
import type { Logger } from 'pino'
import { B } from '../protocol/codes.ts'
import { errorFields } from '../protocol/decode.ts'
import { message } from '../protocol/encode.ts'
import type { ServerContext } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'
import type { SessionBackends } from './backends.ts'

/** What the client output needs from its session. */
export interface OutputHost {
  readonly ctx: ServerContext
  /** Read at each write: the TLS socket replaces the plain one after the upgrade. */
  readonly socket: net.Socket
  readonly links: readonly BackendLink[]
  /** The session is closed: nothing more goes to the client. */
  readonly gone: boolean
  /** Between batches, nothing in flight. */
  readonly quiet: boolean
}

/** Above this many bytes waiting for the tick's write, they go out now (and a slow client is noticed). */
const FLUSH_BYTES = 64 * 1024

export class ClientOutput {
  private pendingNotify: Buffer[] = []
  private pausedBackends = false
  /** The tick's answer: many small messages and slices, written as one buffer (one write call, one segment). */
  private queued: Buffer[] = []
  private queuedBytes = 0

  constructor(private readonly host: OutputHost) {}

  out(slice: Buffer): void {
    const { host } = this
    if (host.gone) return
    host.ctx.counters.bytesToClients += slice.length
    if (this.queued.length === 0) process.nextTick(this.flushQueued)
    this.queued.push(slice)
    this.queuedBytes += slice.length
    if (this.queuedBytes > FLUSH_BYTES) this.flush()
  }

  /**
   * Writes what is queued now: before anything written to the socket directly (a FATAL, the end), so
   * the order holds. Cheaper than cork/uncork, whose writev path costs per slice in JavaScript.
   */
  flush(): void {
    const q = this.queued
    if (q.length === 0) return
    this.queued = []
    this.queuedBytes = 0
    const { host } = this
    if (host.gone) return
    if (!host.socket.write(q.length === 1 ? q[0]! : Buffer.concat(q)) && !this.pausedBackends) {
      // A slow client: stop reading backends rather than buffer their results.
      this.pausedBackends = true
      for (const l of host.links) l.conn.socket.pause()
    }
  }

  private readonly flushQueued = () => this.flush()

  /** The client drained: the backends are read again. */
  resumeBackends(): void {
    if (!this.pausedBackends) return
    this.pausedBackends = false
    for (const l of this.host.links) l.conn.socket.resume()
  }

  /** Delivers the notifications held, before a ReadyForQuery. */
  beforeReady(): void {
    if (!this.pendingNotify.length) return
    for (const n of this.pendingNotify) this.out(n)
    this.pendingNotify = []
  }

  notification(link: BackendLink, body: Buffer): void {
    // LISTEN ran on every backend; deliver exactly one copy: the first backend's.
    if (link.index !== this.host.links[0]?.index) return
    this.pendingNotify.push(message(B.NotificationResponse, body))
    if (this.host.quiet) this.beforeReady()
  }
}

/** What a message a backend sent between batches needs from its session. */
export interface UnsolicitedHost {
  readonly log: Logger
  readonly links: readonly BackendLink[]
  /** A batch is being run (the batch loop holds the session). */
  readonly running: boolean
  /** An ERROR a backend sent between batches: the next batch deals with it. */
  strayError: Record<string, string> | null
  readonly backends: SessionBackends
  out(slice: Buffer): void
}

/** A whole message `link`'s backend sent unasked, between batches. */
export function unsolicited(host: UnsolicitedHost, link: BackendLink, type: number, body: Buffer | null, bytes: Buffer[]): void {
  if (type === B.ErrorResponse && body) {
    const f = errorFields(body)
    if (f.S === 'FATAL' || f.S === 'PANIC') {
      // The backend ended this session (terminated, timed out, shut down): backends.lose asks the
      // health monitor whether the server or only this session is gone.
      host.log.warn({ backend: link.name, code: f.C, message: f.M }, 'backend session ended')
      return host.backends.lose(link.index, `FATAL ${f.C}: ${f.M}`, f)
    }
    // An ERROR between batches: a statement_timeout that fired while a commit held interrupts off is
    // reported by PostgreSQL once idle, with a ReadyForQuery of its own. Inside a transaction it
    // failed that transaction on this backend alone: the next batch fails it everywhere.
    host.strayError ??= f
    return
  }
  if (type === B.ReadyForQuery && body?.length) {
    link.txStatus = String.fromCharCode(body[0]!)
    return
  }
  // A backend announcing its own shutdown (57P01-57P03) is about to be taken out: not the client's news.
  if (type === B.NoticeResponse && body && /^57P0[123]$/.test(errorFields(body).C ?? '')) return
  if ((type === B.NoticeResponse || type === B.ParameterStatus) && link.index === host.links[0]?.index && !host.running) for (const b of bytes) host.out(b)
}
