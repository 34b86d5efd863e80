// Tie-safe autocommit (router/plan.ts, tieSafe): with an even number of
// backends, an autocommit write runs inside pgraid's BEGIN, and its log row
// and COMMIT go out only once its answers agreed; a tie rolls back
// everywhere, so nothing is left committed on half of the backends.

import { readyForQuery } from '../protocol/encode.ts'
import { errors, PgError } from '../errors.ts'
import type { Exchange } from '../broadcast/exchange.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import type { Plan } from '../router/plan.ts'
import { recordJson } from '../recovery/record.ts'
import { afterBatch, type AfterBatchHost } from './after-batch.ts'
import type { LogCommits } from './log-commit.ts'
import { liftTimeouts, rollbackEverywhere, type OwnHost } from './own-statements.ts'
import { readOnlyError } from './refuse.ts'
import { nowMicros } from './clock.ts'

/** What finishing a tie-safe write needs from its session. */
export interface TieSafeHost extends AfterBatchHost, OwnHost {
  readonly readOnly: boolean
  readonly record: LogCommits
  /** The catalog the batch was planned with. */
  readonly catalogSeen: CatalogData
  /** Where the session is (SHOW SESSIONS). */
  step: string
  /** Backends in service the session has no connection to. */
  lateBackends(): number[]
  /** This pgraid is the writer in the session's term. */
  mayWrite(): boolean
  /** Ends the session with `err`. */
  closeWith(err: PgError): void
}

/**
 * Tie-safe autocommit (router/plan.ts, tieSafe): the client's batch ran inside
 * pgraid's BEGIN and its answers were compared. Agreed and no error: the
 * log row and COMMIT go out now (its LSN taken under the batch's locks);
 * otherwise ROLLBACK everywhere, so a tie leaves nothing committed. Then
 * the client gets the ReadyForQuery 'I' an autocommit statement ends with.
 */
export async function finishDeferred(host: TieSafeHost, plan: Plan, ex: Exchange): Promise<void> {
  const outcome = ex.outcome
  afterBatch(host, plan, ex)
  const live = host.links.map((l) => l.index)
  // Written now, with the tags the statements answered: a replay changing other rows is caught.
  const json = recordJson(plan.deferredCommit!.settings, plan.deferredCommit!.entries)
  // A client-caused failure on some backends (a timeout, a cancel) is the client's error, rolled back everywhere.
  const ce = outcome.clientError
  let err: PgError | null = ce ? new PgError(ce.C ?? '57014', ce.M ?? 'canceling statement', 'ERROR', ce.D, ce.H) : outcome.diverged ? errors.divergence('a statement', outcome.diverged) : null
  if (!err && (!host.mayWrite() || !host.ctx.recovery(host.database).isReady)) err = readOnlyError(host, plan, host.catalogSeen)
  const ok = !err && outcome.errored.size === 0 && host.links.every((l) => l.txStatus === 'T')
  // pgraid's own log INSERT and COMMIT must not be cut by the client's timeouts: lifted first, apart.
  if (ok && plan.beginFirst && !(await liftTimeouts(host, live))) err = errors.canceled()
  if (ok && !err) {
    host.step = 'commits held'
    while (host.ctx.held()) await host.ctx.waitHold()
    let lsn: number | undefined
    try {
      lsn = host.record.take()
      const at = nowMicros()
      host.step = 'tie-safe commit'
      const { commit, committed, failed } = await host.record.commitDeferred(lsn, at, json, live)
      host.step = 'tie-safe commit to late backends'
      if (commit.diverged && committed.length) err = host.record.commitSplit(committed, failed, commit.diverged)
      else if (commit.diverged) err = errors.divergence('the COMMIT', commit.diverged)
      else if (commit.errorCode) err = new PgError(commit.errorCode, 'pgraid could not commit the statement', 'ERROR')
      const late = host.lateBackends()
      if (!err && late.length && host.links.length) await host.ctx.recovery(host.database).applyLate(host.links[0]!.index, lsn, at, json, late)
    } finally {
      if (lsn !== undefined) {
        host.step = ''
        host.record.settle(lsn)
        host.ctx.commits.mark()
      }
    }
  } else await rollbackEverywhere(host, live)
  for (const l of host.links) l.txStatus = 'I'
  host.setStatus('I')
  if (err?.severity === 'FATAL') return host.closeWith(err)
  if (err) {
    if (ce) host.log.info({ error: ce.C }, 'a client-caused failure on some backends only: rolled back everywhere')
    else host.log.error({ divergence: err.detail ?? err.message }, 'backends disagreed (no majority): rolled back everywhere')
    host.out(err.toMessage())
  }
  host.beforeReady()
  host.out(readyForQuery('I'))
}
