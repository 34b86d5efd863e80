// A client's cancel request and what it leaves behind: a proxy lock wait is
// aborted, a batch in flight is cancelled on its backends (never pgraid's
// own statements), and the next batch waits until every cancel sent has
// been delivered. Once a cancel or a timeout has cut a statement, the
// session's autocommit writes open their transaction apart (router/plan.ts,
// beginApart).

import type { Exchange } from '../broadcast/exchange.ts'
import { LockWaitAborted, type LockOwner } from '../scheduler/lock-manager.ts'
import type { ServerContext } from '../server-context.ts'
import type { SessionBackends } from './backends.ts'

/** Session settings by which a backend may cut a statement by itself. */
const CUTTING = ['statement_timeout', 'lock_timeout', 'transaction_timeout', 'idle_in_transaction_session_timeout']

/** What cancels need from their session. */
export interface CancelHost {
  readonly ctx: ServerContext
  readonly owner: LockOwner
  readonly exchange: Exchange | null
  readonly backends: SessionBackends
  /** The session's SET settings (the recovery log's view). */
  readonly logSettings: Map<string, string>
}

export class Cancels {
  /** Cancel requests sent and not yet delivered; nothing more is sent to a backend until they are. */
  private sending: Promise<void>[] = []
  /** The exchange in flight is pgraid's own (runOwn): never cut. */
  own = false
  /** A cancel or a timeout has cut one of this session's statements. */
  cutSeen = false

  constructor(private readonly host: CancelHost) {}

  requested(): void {
    const { host } = this
    if (host.ctx.locks.abortWait(host.owner, new LockWaitAborted('canceled'))) return
    const ex = host.exchange
    // pgraid's own statements (the commit of an undoable write, a catalog read) are never cut: the
    // client's have been answered then, as a cancel arriving after a statement finished is on PostgreSQL.
    if (!ex || this.own) return
    this.cutSeen = true
    for (const idx of ex.cancelTargets()) this.send(idx)
  }

  /** Forwards the client's cancel to backend `idx`. */
  send(idx: number): void {
    const link = this.host.backends.at(idx)
    if (link) this.sending.push(link.conn.cancel())
  }

  /** Cancels sent and not yet delivered. */
  get pending(): boolean {
    return this.sending.length > 0
  }

  /**
   * A cancel still on its way could land on whatever the backend runs next, on that backend alone:
   * the next batch waits until every cancel sent has been delivered.
   */
  async delivered(): Promise<void> {
    while (this.sending.length) {
      const pending = this.sending
      this.sending = []
      await Promise.all(pending)
    }
  }

  /** Timeouts and cancels may cut this session's statements: it set a timeout, or one has cut a statement. */
  cutsPossible(): boolean {
    return this.cutSeen || CUTTING.some((k) => this.host.logSettings.has(k))
  }
}
