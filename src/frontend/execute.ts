// The batch on its way: sent to its backends once its locks, LSN and
// snapshot point are in place, its answers merged, and what happened on the
// way dealt with (a connection lost, a client-caused failure on some
// backends, a commit a backend that came back must get, a divergence).

import { errors, PgError } from '../errors.ts'
import { Exchange } from '../broadcast/exchange.ts'
import type { Frame } from '../protocol/framer.ts'
import type { Plan } from '../router/plan.ts'
import { changesData } from '../router/log-plan.ts'
import { takesSnapshot } from '../router/snapshot-point.ts'
import type { CopyIn } from './copy-in.ts'
import { afterBatch } from './after-batch.ts'
import { unlinkedOut } from './own-statements.ts'
import { align, refuse, type RefuseHost } from './refuse.ts'
import { finishDeferred, type TieSafeHost } from './tie-safe-commit.ts'
import { nowMicros } from './clock.ts'

/** What running a batch needs from its session. */
export interface ExecuteHost extends TieSafeHost, RefuseHost {
  readonly id: number
  /** The batch in flight (close() and the backend set look at it). */
  plan: Plan | null
  /** The client's BEGIN, answered already: cleared once it is on its way in a batch. */
  pendingBegin: Frame | null
  /** COPY FROM STDIN in progress (set when its CopyInResponse is relayed). */
  copy: CopyIn | null
  /** Releases the hold on commits the batch in flight took for its snapshot. */
  snapshotHold: (() => void) | null
  /** The last batch answered an error (or its backends disagreed). */
  batchFailed: boolean
  /** Waits for the loss checks, then ends the session if it must. */
  settleLosses(orElse?: PgError): Promise<boolean>
}

/** The batch, once its locks, LSN and snapshot point are in place. */
export async function run(host: ExecuteHost, plan: Plan, snapshotHold: (() => void) | null, withBegin: boolean): Promise<void | 'retry'> {
  host.snapshotHold = snapshotHold
  // CREATE / DROP / ALTER DATABASE: pgraid's own connections to those databases go first.
  const names = plan.everywhere ? databasesNamed(plan) : null
  const releaseDatabases = names
    ? await host.ctx.holdDatabases(names).catch((e: unknown) => {
        if (plan.commit?.lsn !== undefined) host.record.settle(plan.commit.lsn)
        throw e
      })
    : null
  host.plan = plan
  if (withBegin) host.pendingBegin = null // on its way to the backends
  try {
    return await execute(host, plan)
  } finally {
    releaseDatabases?.(!host.batchFailed)
    host.snapshotHold = null
    snapshotHold?.()
    if (!host.tx.snapshotTaken && host.tx.status !== 'I' && plan.executed.some(takesSnapshot)) host.tx.snapshotTaken = true
    host.plan = null
    if (plan.commit?.lsn !== undefined) {
      host.record.settle(plan.commit.lsn)
      host.ctx.commits.mark()
    }
  }
}

/** Sends the batch, merges the answers, and deals with what happened on the way: lost backends, excused failures, late backends, divergence. */
async function execute(host: ExecuteHost, plan: Plan): Promise<'retry' | void> {
  if (host.cancels.pending) {
    await host.cancels.delivered()
    if (!host.ready) return
  }
  const ex = new Exchange(plan.msgs, host, (idx) => host.backends.at(idx)?.skipping ?? false)
  ex.holdPreamble = !plan.everywhere && plan.endsWithSync
  ex.completeOnExcuse = !!plan.commit
  // pgraid's snapshot statement answered by every backend: the snapshot is taken, commits go on.
  if (plan.snapshotAt === 'before' && host.snapshotHold) ex.onPassed = { index: 0, fn: host.snapshotHold }
  // A commit that a backend back in service must also get: acknowledged only once it has it.
  ex.deferReady = (!!plan.commit && host.lateBackends().length > 0) || !!plan.deferredCommit
  host.exchange = ex
  const stats = host.ctx.stats
  const payloads = ex.payloads()
  unlinkedOut(host, ex, payloads)
  const counts = host.ctx.counters
  const alone = payloads.size === 1
  for (const [idx, bufs] of payloads) {
    stats[idx].outstanding++
    const c = counts.backend(idx)
    if (alone) c.reads++
    else c.writes++
    host.backends.at(idx)?.conn.write(bufs)
  }
  const stallMs = host.ctx.config.timeouts.stallMs
  const watch = stallMs && payloads.size > 1 ? host.backends.watchStall(ex, [...payloads.keys()], stallMs) : null
  let outcome
  const sentAt = performance.now()
  try {
    host.step = 'exchange'
    outcome = await ex.done
    for (const idx of outcome.errored) counts.backend(idx).errors++
    const took = performance.now() - sentAt
    host.ctx.counters.batchBy[plan.commit || plan.deferredCommit ? 'commit' : plan.everywhere ? 'write' : 'read'].observe(took / 1000)
    const slow = host.ctx.config.log.slowMs
    if (slow && took > slow)
      host.log.warn({ ms: Math.round(took), backends: [...payloads.keys()].map((i) => host.ctx.backends()[i]?.name), statements: plan.executed.map((s) => s.text.slice(0, 500)) }, 'slow batch')
  } finally {
    if (watch) clearInterval(watch)
    host.exchange = null
    host.copy = null
    for (const idx of payloads.keys()) stats[idx].outstanding--
  }
  if (host.backends.lossChecks.length || host.backends.endError || !host.links.length) {
    // A connection of this batch ended: what the health monitor finds decides whether the session goes on.
    host.step = 'loss checks'
    await host.backends.checksDone()
    if (host.backends.endError || !host.links.length) {
      // The session ends; a COMMIT it sent may have landed on some backends only: the others get it
      // replayed from the log, still under this transaction's locks (DESIGN: nothing half-committed).
      const c = plan.commit
      host.step = 'completing the commit of an ending session'
      if (c?.lsn !== undefined && c.at)
        await host.ctx
          .recovery(host.database)
          .completeCommit(c.lsn, c.at, c.json, host.ctx.states.enabled(), c.entries)
          .catch((e: Error) => host.log.error({ lsn: c.lsn, err: e.message }, 'could not complete a commit whose session ended'))
      // Committed everywhere in service now: the client hears of it, then the session ends.
      if (ex.deferred.length && ex.atBoundary()) {
        host.beforeReady()
        for (const b of ex.deferred) host.out(b)
        ex.deferred = []
      }
      await host.settleLosses(errors.backendLost(host.backends.lostReadBackend || 'any', host.backends.lostReadReason || 'no backend connection left'))
      return
    }
  }
  host.batchFailed = outcome.errored.size > 0 || !!outcome.diverged
  if (outcome.clientError || outcome.excused.length) host.cancels.cutSeen = true
  if (outcome.excused.length) {
    // A client-caused failure (timeout, cancel, lock_timeout, 40001, 40P01) on some backends while the
    // others committed: never voted on; the commit is replayed where it failed (one outcome, invariant 6).
    const c = plan.commit
    const names = outcome.excused.map((i) => host.ctx.backends()[i]?.name)
    host.log.info({ backends: names, error: outcome.clientError?.C, lsn: plan.commit?.lsn }, 'a client-caused failure on some backends only: completing the commit there')
    // Its connection still owes the rest of this batch's answers, and which of the batch's Parses ran
    // there is unknown: it is replaced. The backend stays in service; the session connects to it again
    // between transactions (attachLate), with its settings, and prepares statements there lazily.
    // Its server session may still be running the batch: the completion waits until it has ended.
    const ended = new Map<number, number>()
    for (const i of outcome.excused) {
      const pid = host.backends.at(i)?.conn.pid
      if (pid) ended.set(i, pid)
      host.backends.drop(i)
    }
    host.step = 'completing an excused commit'
    if (c?.lsn !== undefined && c.at) await host.ctx.recovery(host.database).completeCommit(c.lsn, c.at, c.json, host.ctx.states.enabled(), c.entries, ended)
    for (const i of outcome.excused) ex.outcome.status.set(i, 'I')
  }
  learnTags(plan, ex)
  if (!host.ready) {
    // The client went away with its COMMIT in flight: the commit still happened on the backends, so a
    // backend back in service must get it too, under this transaction's locks (close() waits for this).
    host.step = 'commit to late backends (client gone)'
    host.record.pendingLate = host.record.commitToLate(plan)
    await host.record.pendingLate
    return
  }
  if (outcome.lostRead) {
    // Other backends were sent part of this batch (writes, a COMMIT): running it again would repeat
    // them, and their answers are still on the way. The session ends, as on a lost connection.
    if (plan.everywhere)
      return host.closeWith(errors.backendLost(host.backends.lostReadBackend, `${host.backends.lostReadReason}; it was answering a read of a batch that also went to the other backends`))
    if (!ex.relayed && host.links.length) return 'retry'
    ex.completeMessage()
    await refuse(host, errors.readLost(host.backends.lostReadReason, 'connection lost'), plan.endsWithSync, true)
    return
  }
  if (plan.deferredCommit) return finishDeferred(host, plan, ex)
  await host.record.markUnlogged(plan, ex, host.logSettings.values(), nowMicros)
  const late = host.lateBackends()
  if (late.length && host.links.length) {
    if (plan.commit?.lsn !== undefined && plan.commit.at) {
      // Still under this transaction's locks, and before the client hears of it: the backend
      // that came back gets this commit first.
      host.step = 'commit to late backends'
      await host.record.commitToLate(plan)
    } else if (plan.everywhere && !plan.commit && host.tx.status === 'I' && plan.executed.some((s) => changesData(s, host.catalogSeen))) {
      // A change without a log record (autocommit COPY, CREATE DATABASE...) cannot follow.
      for (const i of late) host.ctx.takeOut(i, 'disabled', `session ${host.id} made a change that is not in the recovery log while it came back; resync again`, false, 'unlogged-change')
    }
  }
  host.step = 'sequences to late backends'
  await host.record.sequencesToLate(plan, ex)
  host.step = ''
  if (ex.deferred.length) {
    host.beforeReady()
    for (const b of ex.deferred) host.out(b)
  }
  afterBatch(host, plan, ex)
  if (outcome.diverged && plan.commit) {
    // The COMMIT landed on some backends only: it happened there, so it is never reported as failed.
    const committed = ex.committedOn()
    const failed = host.links.map((l) => l.index).filter((i) => !committed.includes(i))
    if (committed.length && failed.length) {
      const lacking = host.record.commitSplit(committed, failed, outcome.diverged)
      // The others' answers were held back at the disagreement and cannot be told apart from here:
      // the connection ends, as a server's does when it fails during a COMMIT.
      return host.closeWith(
        lacking ??
          new PgError(
            '08006',
            `pgraid: the COMMIT succeeded on ${committed.length} backend(s) and failed on the others (taken out, behind); the transaction is committed, but its answers cannot be relayed`,
            'FATAL',
            outcome.diverged,
          ),
      )
    }
  }
  if (outcome.diverged) {
    const ce = outcome.clientError
    if (ce) {
      // Not a divergence: what the client asked for (a timeout, a cancel) hit some backends only. The
      // transaction fails everywhere with that error, as it would on one server; nothing is taken out.
      host.log.info({ error: ce.C, detail: outcome.diverged, lsn: plan.commit?.lsn, excused: outcome.excused }, 'a client-caused failure on some backends only: failing it everywhere')
      await refuse(host, new PgError(ce.C ?? '57014', ce.M ?? 'canceling statement', 'ERROR', ce.D, ce.H), plan.endsWithSync, true)
      return
    }
    host.log.error({ divergence: outcome.diverged }, 'backends disagreed')
    await refuse(host, errors.divergence('a statement', outcome.diverged), plan.endsWithSync, true)
    return
  }
  if (plan.endsWithSync) await align(host)
}

/** The CommandComplete tag of each statement the batch logged (recorded with it where the record is written later). */
function learnTags(plan: Plan, ex: Exchange): void {
  for (const e of plan.tagged) {
    if (e.unit === undefined || e.entry.n) continue
    const tag = ex.statementTag(e.msg, e.unit)
    if (tag) e.entry.n = tag
  }
}

/** Databases the batch creates, drops, renames or copies (null: none; the common case costs a scan of its statements). */
function databasesNamed(plan: Plan): string[] | null {
  let out: string[] | null = null
  for (const s of plan.executed) if (s.databases?.length) (out ??= []).push(...s.databases)
  return out
}
