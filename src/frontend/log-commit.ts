// A session's side of the recovery log: the LSNs its COMMITs take (in flight
// until settled, on the log they came from), the tie-safe COMMIT with its log
// row, a COMMIT that landed on some backends only, the commit and sequence
// states a backend that came back during the transaction must get, the
// marker of an unlogged change, and the log's view of the session after
// each batch (its settings, the open transaction's entries).

import type { Logger } from 'pino'
import { B, F } from '../protocol/codes.ts'
import { message } from '../protocol/encode.ts'
import { PgError } from '../errors.ts'
import type { Exchange, PlannedMsg } from '../broadcast/exchange.ts'
import type { Plan } from '../router/plan.ts'
import type { LogContext } from '../router/log-plan.ts'
import type { StatementInfo } from '../sql/types.ts'
import { insertText, replayableDatabases, type LogEntry } from '../recovery/record.ts'
import type { RecoveryLog } from '../recovery/log.ts'
import type { ServerContext } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'

/** What the commit path needs from its session. */
export interface CommitHost {
  readonly ctx: ServerContext
  readonly id: number
  readonly database: string
  readonly log: Logger
  readonly links: readonly BackendLink[]
  /** What the session waits for now (named while one of its LSNs is in flight). */
  readonly waiting: string
  /** Sends pgraid's own messages (answers swallowed) and waits until every backend answered. */
  runOwn(msgs: PlannedMsg[]): Promise<Exchange>
  runInternal(msg: Buffer, targets: number[]): Promise<{ diverged: string | null; errorCode: string | null }>
  /** Backends in service the session has no connection to. */
  lateBackends(): number[]
  /** lateBackends() and any backend a resync is aligning the sequences of. */
  lateForSequences(): number[]
  /** This pgraid is the writer in the session's term. */
  mayWrite(): boolean
}

/** Statements outside a transaction block that change what a replica holds (VACUUM, ANALYZE, REINDEX do not). */
const SCHEMA_OUTSIDE_TX = new Set(['CREATE DATABASE', 'DROP DATABASE', 'CREATE INDEX', 'DROP INDEX', 'CREATE TABLESPACE', 'DROP TABLESPACE'])

export class LogCommits {
  /**
   * LSNs this session took, and the log each came from: it is settled there even when a promotion
   * has replaced the database's log meanwhile (the new writer's log waits for the old one's).
   */
  private readonly taken = new Map<number, RecoveryLog>()
  /** Sequences the open transaction (or autocommit statement) may have drawn from. */
  private readonly txSeqs = new Set<string>()
  /** The replay of a commit whose client went away (close() waits for it before letting the locks go). */
  pendingLate: Promise<void> = Promise.resolve()

  constructor(private readonly host: CommitHost) {}

  /** The LSN of the next COMMIT; in flight until settle(). */
  take(): number {
    const log = this.host.ctx.recovery(this.host.database)
    const lsn = log.take(this.host.id, () => this.host.waiting)
    this.taken.set(lsn, log)
    return lsn
  }

  settle(lsn: number): void {
    ;(this.taken.get(lsn) ?? this.host.ctx.recovery(this.host.database)).settle(lsn)
    this.taken.delete(lsn)
  }

  /**
   * The tie-safe COMMIT: the log row and COMMIT in one Query, on `live`; where it committed and where
   * it failed. Where no error came back, the COMMIT ran (a multi-statement Query stops at its first
   * error), whatever the others answered.
   */
  async commitDeferred(lsn: number, at: string, json: string, live: number[]) {
    const ex = await this.host.runOwn([{ code: F.Query, bytes: message(F.Query, Buffer.from(`${insertText(lsn, at, json)};COMMIT\0`, 'utf8')), targets: live, swallow: true }])
    const here = new Set(this.host.links.map((l) => l.index))
    const failed = live.filter((t) => ex.answered(0, t, B.ErrorResponse))
    const committed = live.filter((t) => here.has(t) && !failed.includes(t))
    return { commit: { diverged: ex.outcome.diverged, errorCode: failed.length ? '40000' : null }, committed, failed }
  }

  /**
   * The tie-safe COMMIT landed on some backends and failed on others (one shut down or failed
   * between pgraid's BEGIN and COMMIT): it happened, so it cannot be reported as rolled back (the
   * client would send it again). Those that failed lack it and are taken out (behind: resync
   * replays it from the log). With the write quorum left, the client is told it committed; with
   * fewer, its connection ends as a server's does when it fails in a COMMIT (the outcome unknown).
   */
  commitSplit(committed: number[], failed: number[], detail: string): PgError | null {
    const { ctx, log } = this.host
    for (const t of failed) ctx.takeOut(t, 'disabled', `its COMMIT failed where the others committed: ${detail} (pgraid resync ${ctx.states.list[t]?.name ?? t})`, false, 'behind')
    log.error({ divergence: detail, committed: committed.map((t) => ctx.states.list[t]?.name) }, 'the COMMIT failed on some backends only: taken out, behind')
    if (committed.length >= ctx.writeQuorum) return null
    return new PgError('08006', `pgraid lost the write quorum during COMMIT: it committed on ${committed.length} backend(s), fewer than the quorum of ${ctx.writeQuorum}`, 'FATAL', detail)
  }

  /** Replays the commit `plan` sent (if it happened) on the backends in service this session is not connected to. */
  async commitToLate(plan: Plan): Promise<void> {
    const late = this.host.lateBackends()
    const source = this.host.links.find((l) => !l.conn.closed) ?? this.host.links[0]
    if (!late.length || !source || plan.commit?.lsn === undefined || !plan.commit.at) return
    await this.host.ctx.recovery(this.host.database).applyLate(source.index, plan.commit.lsn, plan.commit.at, plan.commit.json, late, plan.commit.entries)
  }

  /**
   * nextval is not transactional: a transaction that drew values and ended (rolled back, or
   * committed and replayed) while a backend lacked this session leaves that backend's sequences
   * behind. Set them to a source's state now, still under the transaction's locks.
   */
  async sequencesToLate(plan: Plan, ex: Exchange): Promise<void> {
    const { links } = this.host
    for (const e of plan.logEntries) if (e.entry.sq) for (const n of e.entry.sq) this.txSeqs.add(n)
    if (!this.txSeqs.size || ex.outcome.status.get(links[0]?.index ?? -1) !== 'I') return
    const names = [...this.txSeqs]
    this.txSeqs.clear()
    const late = this.host.lateForSequences()
    const source = links.find((l) => !l.conn.closed)
    if (!late.length || !source) return
    await this.host.ctx.recovery(this.host.database).alignLate(source.index, late, names)
  }

  /**
   * The session is closing: an open transaction (or a batch cut short) ends on its backends without
   * passing sequencesToLate. The backends it lacks get the sequences it may have drawn from, from a
   * backend in service it was connected to. Never rejects (the close goes on).
   */
  async sequencesOnClose(plan: Plan | null): Promise<void> {
    if (plan) for (const e of plan.logEntries) if (e.entry.sq) for (const n of e.entry.sq) this.txSeqs.add(n)
    if (!this.txSeqs.size) return
    const names = [...this.txSeqs]
    this.txSeqs.clear()
    const late = this.host.lateForSequences()
    const source = this.host.links.find((l) => this.host.ctx.states.isEnabled(l.index))
    if (!late.length || !source) return
    await this.host.ctx
      .recovery(this.host.database)
      .alignLate(source.index, late, names)
      .catch((e: Error) => this.host.log.error({ err: e.message, sequences: names }, 'could not align the sequences of a closing session on the backends it lacked'))
  }

  /**
   * An autocommit change the log cannot hold atomically (COPY FROM STDIN,
   * whose data is not recorded, or a statement that refuses a transaction
   * block) still gets a record, right after it and before the locks go: a
   * marker that a resync across it must refuse (clone instead), so a backend
   * never silently misses it.
   */
  async markUnlogged(plan: Plan, ex: Exchange, settings: Iterable<string>, at: () => string): Promise<void> {
    const { ctx, links } = this.host
    if (plan.commit || !plan.everywhere || !ctx.config.recovery.log || ex.outcome.errored.size || ex.outcome.diverged) return
    const final = plan.msgs[plan.msgs.length - 1]
    if (!plan.endsWithSync || ex.outcome.status.get(final?.targets[0] ?? -1) !== 'I') return
    const marks = plan.executed.filter((s) => s.kind === 'copy-in' || (s.noTransactionBlock && SCHEMA_OUTSIDE_TX.has(s.command)))
    if (!marks.length || !links.length || !this.host.mayWrite() || !ctx.recovery(this.host.database).isReady) return
    const entry = (s: StatementInfo): LogEntry => {
      if (s.kind === 'copy-in') return { q: s.text, copy: true }
      const db = replayableDatabases(s.command, s.databases)
      return db ? { q: s.text, noTx: true, db } : { q: s.text, noTx: true }
    }
    const json = JSON.stringify({ v: 1, settings: [...settings], stmts: marks.map(entry) })
    while (ctx.held()) await ctx.waitHold()
    // In flight like a COMMIT until settled: a resync's hold waits for the marker, so its tail sees it.
    const lsn = this.take()
    const r = await this.host
      .runInternal(
        message(F.Query, Buffer.from(`${insertText(lsn, at(), json)}\0`, 'utf8')),
        this.host.links.map((l) => l.index),
      )
      .finally(() => this.settle(lsn))
    if (r.diverged || r.errorCode) this.host.log.error({ lsn, diverged: r.diverged }, 'could not write the log marker of an unlogged change')
  }
}

/**
 * The recovery log's view after a batch: the open transaction's entries, the session's settings
 * (`settings`, updated in place), the backends where the log statement is prepared. `pin`: the
 * session now holds state no other connection can rebuild (a temporary table, LISTEN, a cursor...).
 */
export function trackLog(c: LogContext, settings: Map<string, string>, plan: Plan, ex: Exchange): { context: LogContext; pin: boolean } {
  let pending = plan.logReset ? [] : [...c.pending]
  let writes = plan.logReset ? false : c.pendingWrites
  let pin = false
  for (const e of plan.logEntries) {
    const targets = plan.msgs[e.msg]?.targets ?? []
    if (targets.some((t) => ex.answered(e.msg, t, B.ErrorResponse))) continue
    pending.push(e.entry)
    writes ||= e.writes
  }
  if (plan.logParse !== null) for (const t of plan.msgs[plan.logParse]!.targets) if (ex.answered(plan.logParse, t, B.ParseComplete)) c.prepared.add(t)
  const ok = ex.outcome.errored.size === 0
  for (const s of plan.executed) {
    const op = s.session?.op
    if (s.temp || op === 'listen' || op === 'prepare' || op === 'declare_cursor' || s.functions.some((f) => /advisory_lock/.test(f))) pin = true
    if (op === 'discard_all' || (op === 'deallocate' && !s.session?.name)) c.prepared.clear()
    if (!ok || !plan.everywhere) continue
    if (op === 'set' && s.session?.name) settings.set(s.session.name, s.text)
    else if (op === 'reset' && s.session?.name) settings.delete(s.session.name)
    else if (op === 'reset_all' || op === 'discard_all') settings.clear()
  }
  if (plan.endsWithSync) {
    const final = plan.msgs[plan.msgs.length - 1]
    const st = final?.targets[0] !== undefined ? ex.outcome.status.get(final.targets[0]) : undefined
    if (st === 'I') {
      pending = []
      writes = false
    }
  }
  return { context: { settings: [...settings.values()], pending, pendingWrites: writes, prepared: c.prepared }, pin }
}
