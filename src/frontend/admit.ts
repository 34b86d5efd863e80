// What a planned batch must pass before it is sent: the refusals that need
// no backend (a non-deterministic statement, no write quorum, a write on a
// pgraid that is not the writer), a read waiting for the commits in flight
// to land, the proxy locks (bounded by the client's timeouts, a deadlock
// victim refused), the commit hold and the COMMIT's LSN, pgraid's BEGIN of
// an undoable write, and the point of the commit order where a REPEATABLE
// READ snapshot is taken.

import { errors, PgError } from '../errors.ts'
import { DeadlockError, LockWaitAborted, type LockOwner } from '../scheduler/lock-manager.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import type { Plan } from '../router/plan.ts'
import { changesData, type LogContext } from '../router/log-plan.ts'
import { settingFromSet, waitLimit } from './timeouts.ts'
import { dropWriteForTest } from './fault-injection.ts'
import { beginEverywhere } from './own-statements.ts'
import { readOnlyError, refuse } from './refuse.ts'
import { run, type ExecuteHost } from './execute.ts'
import { nowMicros } from './clock.ts'

/** What a batch's way to its backends needs from its session. */
export interface AdmitHost extends ExecuteHost {
  readonly owner: LockOwner
  /** The election term whose recovery log this session has waited for (-1: none yet). */
  readonly logTerm: number
  /** The recovery log's view of the open transaction. */
  logCtx: LogContext
}

/** How long a read waits for the commits in flight to land before it goes ahead anyway (logged). */
const LANDED_WAIT_MS = 10_000
/** How long a snapshot waits for the commits in flight to land before the transaction is refused (40001). */
const SNAPSHOT_WAIT_MS = 10_000

/**
 * A planned batch, up to the point it is sent: refused (non-deterministic, no write quorum, not the
 * writer), a read waiting for the commits in flight, the proxy locks, the commit hold and its LSN,
 * pgraid's BEGIN, the snapshot point. Then run.
 */
export async function admit(host: AdmitHost, plan: Plan, catalog: CatalogData, withBegin: boolean): Promise<'retry' | void> {
  if (plan.nonDeterministic) return refuse(host, plan.nonDeterministic, plan.endsWithSync)
  const enabled = host.ctx.states.enabled()
  if (plan.everywhere && enabled.length < host.ctx.writeQuorum && (plan.commit || plan.executed.some((s) => changesData(s, catalog)))) {
    const missing = host.ctx.states.list
      .filter((b) => b.state !== 'enabled' && b.state !== 'removed')
      .map((b) => `${b.name} (${b.state}: ${b.reason})`)
      .join(', ')
    return refuse(host, errors.writeQuorum(enabled.length, host.ctx.writeQuorum, missing), plan.endsWithSync)
  }
  if (plan.everywhere && !host.mayWrite() && writesSomething(plan, catalog, host.logCtx.pendingWrites)) return refuse(host, readOnlyError(host, plan, catalog), plan.endsWithSync)
  if (!plan.everywhere && plan.executed.length && mustSeeLanded(host)) {
    // Realtime order across backends: a commit in flight may be visible on one backend and not yet
    // on another. A read (a new snapshot on one backend) waits until the commits taken so far have
    // landed everywhere, as a read that follows a commit on one PostgreSQL server sees it.
    host.step = 'commits landing'
    if (!(await host.ctx.recovery(host.database).landed(LANDED_WAIT_MS)))
      host.log.warn({ ms: LANDED_WAIT_MS, inFlight: host.ctx.describeInFlight() }, 'a read went ahead while commits were still landing')
    if (!host.ready) return
  }
  if (plan.locks.length && plan.nowait && !host.ctx.locks.tryAcquire(host.owner, plan.locks)) {
    // pgraid's locks are per table: another transaction holding the table makes NOWAIT fail,
    // even where PostgreSQL would find the rows free. Never a wait, as NOWAIT promises.
    return refuse(host, errors.lockNotAvailable(), plan.endsWithSync)
  }
  if (plan.locks.length) {
    // The client's statement_timeout / lock_timeout bound this wait too: no backend's timer runs yet.
    const limit =
      host.tx.localTimeouts.size || host.logSettings.has('statement_timeout') || host.logSettings.has('lock_timeout')
        ? waitLimit(timeoutMs(host, 'statement_timeout'), timeoutMs(host, 'lock_timeout'))
        : null
    const timer = limit ? setTimeout(() => host.ctx.locks.abortWait(host.owner, new LockWaitAborted(limit.code)), limit.ms) : null
    try {
      host.step = 'pgraid locks'
      await host.ctx.locks.acquire(host.owner, plan.locks)
    } catch (e) {
      if (!host.ready) return
      if (e instanceof DeadlockError) {
        const detail = `pgraid lock order: ${e.cycle.map((o) => o.label).join(' waits for ')}`
        host.log.info({ detail }, 'deadlock victim')
        return refuse(host, errors.deadlock(detail), plan.endsWithSync)
      }
      if (e instanceof LockWaitAborted) return refuse(host, limit && e.message === limit.code ? new PgError(limit.code, limit.message) : errors.canceled(), plan.endsWithSync)
      throw e
    } finally {
      if (timer) clearTimeout(timer)
    }
  }
  if (!host.ready) {
    // The client went away while we waited: close() already released, release again what we got since.
    host.ctx.locks.releaseAll(host.owner)
    return
  }
  // A backend lost while we waited for locks: plan again for the backends that are left.
  if (plan.msgs.some((m) => m.targets.some((t) => !host.backends.at(t)))) return 'retry'
  // A resync finishing: new COMMITs wait (briefly) until the rejoining backend is in service.
  if (plan.commit) {
    host.step = 'commits held'
    while (host.ctx.held()) await host.ctx.waitHold()
    if (!host.ready) return
    if (plan.msgs.some((m) => m.targets.some((t) => !host.backends.at(t)))) return 'retry'
    // Fenced (or promoted anew) while this batch waited for its locks: it must not commit.
    if (!host.mayWrite() || !host.ctx.recovery(host.database).isReady) return refuse(host, readOnlyError(host, plan, catalog), plan.endsWithSync)
    // LSNs in the order COMMITs are sent, after the locks: conflicting transactions commit in LSN order.
    plan.commit.fill(host.record.take(), nowMicros())
  }
  // An LSN taken is in flight until settled: one that never reaches execute() is settled here, or
  // every resync, clone and snapshot point would wait for it for ever.
  let started = false
  try {
    host.step = 'begin'
    if (plan.beginFirst && !(await beginEverywhere(host, plan))) return
    host.step = 'snapshot point'
    if (host.links.length > 1) dropWriteForTest(plan, host.links[host.links.length - 1]?.index)
    // A REPEATABLE READ / SERIALIZABLE snapshot is taken at one point of the commit order everywhere:
    // new commits held, those in flight landed, until it is taken (execute releases it then).
    const snapshotHold = plan.snapshotAt ? await holdForSnapshot(host, plan.commit?.lsn !== undefined ? 1 : 0) : null
    if (plan.snapshotAt && !snapshotHold) return refuse(host, errors.noSnapshotPoint(), plan.endsWithSync)
    started = true
    return await run(host, plan, snapshotHold, withBegin)
  } finally {
    if (!started && plan.commit?.lsn !== undefined) host.record.settle(plan.commit.lsn)
  }
}

/**
 * A read must wait for the commits in flight: this pgraid writes (its recovery log is prepared),
 * some are in flight, and the read takes a new snapshot. A transaction that wrote holds row locks
 * a landing commit's replay may need, and a REPEATABLE READ snapshot is already fixed: no wait.
 */
function mustSeeLanded(host: AdmitHost): boolean {
  if (host.readOnly || host.logTerm !== host.ctx.ha.term || host.logCtx.pendingWrites || host.tx.snapshotTaken || host.tx.ddl) return false
  return host.ctx.recovery(host.database).inFlightCount > 0
}

/** statement_timeout / lock_timeout in force, in ms (SET LOCAL first, then the session's). */
function timeoutMs(host: AdmitHost, name: 'statement_timeout' | 'lock_timeout'): number {
  return host.tx.localTimeouts.get(name) ?? settingFromSet(host.logSettings.get(name))
}

/**
 * Holds new commits and waits until those in flight have landed on every backend: the point of
 * the commit order where this session's snapshot is taken. Null when none comes (refused: 40001).
 */
async function holdForSnapshot(host: AdmitHost, own: number): Promise<(() => void) | null> {
  const release = host.ctx.holdCommits()
  const until = performance.now() + SNAPSHOT_WAIT_MS
  // `own`: this batch's own COMMIT (BEGIN ISOLATION LEVEL REPEATABLE READ; ...; COMMIT in one Query) is not waited for.
  while (host.ctx.commitsInFlight() > own) {
    if (performance.now() > until || !host.ready) {
      release()
      return null
    }
    await new Promise((r) => setTimeout(r, 1))
  }
  return release
}

/** Would this batch write anything (or commit a transaction that did)? Only the writer may run it. */
function writesSomething(plan: Plan, catalog: CatalogData, pendingWrites: boolean): boolean {
  if (plan.commit || plan.deferredCommit) return true
  return plan.executed.some((s) => changesData(s, catalog) || s.session?.op === 'notify' || (pendingWrites && (s.tx?.op === 'commit' || s.tx?.op === 'prepare')))
}
