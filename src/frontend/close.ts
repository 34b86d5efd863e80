// What a closing session does with the work on its backends: a batch that
// may commit is let finish everywhere first (cancelling it could stop it on
// a slow backend after it committed on the others); anything else is
// cancelled and aborted. Then the connections close and the proxy locks go.

import type { Exchange } from '../broadcast/exchange.ts'
import type { LockOwner } from '../scheduler/lock-manager.ts'
import type { Plan } from '../router/plan.ts'
import type { ServerContext } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'
import type { SessionBackends } from './backends.ts'
import type { CopyIn } from './copy-in.ts'
import type { LogCommits } from './log-commit.ts'
import type { TxState } from './tx-state.ts'

/** What leaving the backends needs from the closed session. */
export interface CloseHost {
  readonly ctx: ServerContext
  readonly owner: LockOwner
  readonly links: readonly BackendLink[]
  readonly backends: SessionBackends
  readonly exchange: Exchange | null
  readonly copy: CopyIn | null
  /** The batch being run, and its plan. */
  readonly batch: Promise<void> | null
  readonly plan: Plan | null
  readonly tx: Pick<TxState, 'status'>
  readonly record: Pick<LogCommits, 'pendingLate' | 'sequencesOnClose'>
  /** Where the session is (SHOW SESSIONS). */
  step: string
}

/** The session was closed: its backend connections end, after a batch that may commit has finished. */
export function leaveBackends(host: CloseHost): void {
  const ex = host.exchange
  // Mid-COPY a Terminate is a protocol violation to the server (FATAL 08P01): the connection is
  // dropped instead, and the server sees the client gone as it would without pgraid.
  const inCopy = !!host.copy?.active
  const finish = () => {
    for (const l of host.links)
      if (inCopy) l.conn.destroy()
      else l.conn.close()
    // Its open transaction ends with the connections; what it drew from sequences is brought to the
    // backends it lacked before its locks let anyone else draw (a rollback leaves no record).
    void host.record.sequencesOnClose(host.plan).finally(() => host.ctx.locks.releaseAll(host.owner))
  }
  // A COPY FROM STDIN still taking data cannot commit: nothing waits for data that will never come.
  // A tie-safe write's own COMMIT comes after its exchange (finishDeferred): the batch is waited for too.
  if ((ex ? !ex.complete : host.batch) && mayCommit(host) && !host.copy?.active) {
    // A write that may commit is already running on every backend: cancelling it now could
    // stop it on a slow backend after it committed on the others. Let it finish everywhere,
    // then close (an open transaction is rolled back by the backends when we disconnect).
    const lost = host.links.some((l) => l.conn.closed)
    if (!lost) {
      host.step ||= 'closing after the batch'
      void Promise.resolve(ex?.done)
        .then(() => host.batch)
        .then(() => host.record.pendingLate)
        .then(finish, finish)
      return
    }
  }
  // Otherwise stop what the client started, so nothing keeps running for nobody.
  if (ex) {
    // A COPY FROM STDIN is ended by closing its connections (the server sees the client gone, as it
    // would without pgraid); a cancel arriving mid-CopyData costs a FATAL 08P01 there instead.
    if (!inCopy) for (const idx of ex.pendingBackends()) void host.backends.at(idx)?.conn.cancel()
    ex.abort('session closed')
  }
  finish()
}

/** Could the batch in flight commit something (autocommit write, or COMMIT)? */
function mayCommit(host: CloseHost): boolean {
  const plan = host.plan
  if (!plan || !plan.everywhere) return false
  if (host.tx.status === 'I' || plan.deferredCommit) return true
  return plan.executed.some((s) => s.tx?.op === 'commit' || s.tx?.op === 'commit_prepared' || s.tx?.op === 'prepare')
}
