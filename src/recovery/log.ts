// The recovery log of one database, as the proxy sees it: the schema is
// ensured on every backend before the first write, and log sequence numbers
// are handed out in the order COMMITs are sent. The next LSN is derived from
// the backends' own logs (the highest LSN any of them has), so a pgraid
// started fresh continues where the last one stopped: nothing is kept on the
// proxy's disk (invariant 7). Late replays (late-replay.ts) and the record of
// the backends' states (backend-states.ts) are their own modules; this class
// owns one of each and keeps the API callers use.

import type pg from 'pg'
import type { Logger } from 'pino'
import type { BackendTarget } from '../backend/connection.ts'
import { ensureSchema } from './schema.ts'
import { controlClient } from '../backend/control-client.ts'
import { applyRecord, NotReplayable, ReplayConnection, ReplayError } from './replay.ts'
import type { LogEntry, LogRecord } from './record.ts'
import type { BackendStates, BackendStatus } from '../cluster/states.ts'
import { restoreRecorded, StateRecorder, type RecordedState, type TakeOut } from './backend-states.ts'
import { LATE_LOCK_TIMEOUT_MS, LateReplay } from './late-replay.ts'

export interface BackendLogState {
  index: number
  backend: string
  /** Highest LSN in this backend's log (0 = empty). */
  maxLsn: number
  records: number
  /** LSNs of its recent records (the window every backend is compared on). */
  recent: Set<number>
  /** Its pgraid schema was created just now (it had none). */
  createdNow: boolean
  /** What it records about the backends' states. */
  states: RecordedState[]
}

/** How far back the logs are compared at startup to find a backend that lacks records. */
const WINDOW = 100_000
/** More missing records than this is a backend that was behind, not commits in doubt. */
const MAX_IN_DOUBT = 10_000
/** LSNs skipped at startup: more than a killed pgraid can have had in flight. */
const LSN_MARGIN = 10_000
const RECHECK_MS = 3_000
/** How long startup waits for sessions that may still commit (a killed pgraid's COMMITs landing). */
const LATE_COMMIT_WAIT_MS = 5_000

export class RecoveryLog {
  private next = 1
  private readying: Promise<void> | null = null
  /** What each reachable backend's log held when pgraid first looked. */
  initial: BackendLogState[] = []

  constructor(
    private readonly targets: BackendTarget[],
    private readonly states: BackendStates,
    private readonly takeOut: TakeOut,
    readonly database: string,
    private readonly log: Logger,
  ) {
    const connect = (t: BackendTarget) => this.connect(t)
    this.late = new LateReplay(targets, database, takeOut, log, connect)
    this.recorder = new StateRecorder(
      targets,
      states,
      connect,
      () => this.readying !== null,
      () => this.last,
    )
  }
  /** Commits and sequence states brought to backends a session lacked (late-replay.ts). */
  private readonly late: LateReplay
  /** The backends' states written into the backends (backend-states.ts). */
  private readonly recorder: StateRecorder

  /** Ensures the schema everywhere and learns the next LSN (once; retried after a failure). */
  ready(): Promise<void> {
    this.readying ??= this.prepare().catch((e) => {
      this.readying = null
      throw e
    })
    return this.readying
  }

  /** prepare() finished: LSNs continue after the backends' highest. */
  isReady = false

  /** The LSN of the next COMMIT to be sent. Synchronous: send order is LSN order. Call settle() when it is over. */
  take(session = 0, waits?: () => string): number {
    // Never an LSN the backends may already hold: a log not prepared (a promotion replaced it) refuses.
    if (!this.isReady) throw new Error(`recovery log of "${this.database}" is not ready`)
    const lsn = this.next++
    this.inFlight.set(lsn, { session, since: Date.now(), waits })
    return lsn
  }

  /** LSNs handed out whose COMMIT is still on its way (at most one per session): which session, since when, waiting for what. */
  private readonly inFlight = new Map<number, { session: number; since: number; waits: (() => string) | undefined }>()

  /** The commits in flight, as an operator reads them (a hold that waits too long names them, and what they wait for). */
  describeInFlight(): string[] {
    const late = this.late.describe()
    return [...this.inFlight].map(
      ([lsn, f]) =>
        `LSN ${lsn} of session ${f.session} in "${this.database}" for ${Date.now() - f.since} ms${f.waits ? ` (${f.waits()})` : ''}${late.length ? `; late replays: ${late.join(', ')}` : ''}`,
    )
  }

  /** The COMMIT carrying `lsn` is over on every backend it was sent to (committed or not). */
  settle(lsn: number): void {
    this.inFlight.delete(lsn)
    if (!this.landWaiters.size) return
    const low = this.settledBelow()
    for (const w of this.landWaiters) if (low >= w.lsn) w.done(true)
  }

  /**
   * Resolves true once every COMMIT taken so far has landed on every backend it was sent to, false
   * after `ms` if one has not. A read that starts after a commit became visible on one backend must
   * see it on any other (PostgreSQL's visibility is all at once): Session waits here before a read.
   */
  landed(ms: number): Promise<boolean> {
    const lsn = this.next
    if (this.settledBelow() >= lsn) return Promise.resolve(true)
    return new Promise((resolve) => {
      const w = {
        lsn,
        done: (ok: boolean) => {
          clearTimeout(timer)
          this.landWaiters.delete(w)
          resolve(ok)
        },
      }
      const timer = setTimeout(() => w.done(false), ms)
      this.landWaiters.add(w)
    })
  }
  private readonly landWaiters = new Set<{ lsn: number; done: (ok: boolean) => void }>()

  /** COMMITs of this database in flight (a resync's or snapshot's hold waits for none). */
  get inFlightCount(): number {
    return this.inFlight.size
  }

  /**
   * Every record below this LSN is final: committed on the backends in
   * service, or never to be. A record above it may still appear, and a
   * record conflicting with one still in flight comes after it: catching up
   * past this point could replay a later record before an earlier one it
   * depends on (resync replays only below it). Infinity when this pgraid has
   * not written (nothing of its own in flight).
   */
  settledBelow(): number {
    if (!this.isReady) return Infinity
    let low = this.next
    for (const l of this.inFlight.keys()) if (l < low) low = l
    return low
  }

  /**
   * LSNs that are final and this pgraid's own: every backend in service must hold each of them that
   * committed (the health monitor compares the logs' tops in this range). null before the log is ready.
   */
  ownFinal(): { from: number; below: number } | null {
    if (!this.isReady) return null
    return { from: this.firstOwn, below: this.settledBelow() }
  }

  /** The first LSN this pgraid hands out (records below it were written by earlier instances). */
  private get firstOwn(): number {
    return this.initialNext
  }
  private initialNext = Infinity

  /** Highest LSN handed out so far. */
  get last(): number {
    return this.next - 1
  }

  /** Waited for before preparing (a promotion: the previous term's commits of this process land first). */
  gate: (() => Promise<void>) | null = null

  /**
   * Looks at every backend in service: unreachable ones are taken out; states
   * the others recorded are restored (a backend recorded as out never comes
   * back by itself); a backend lacking committed records the others have is
   * behind and taken out. Then LSNs continue after the highest anywhere.
   */
  private async prepare(): Promise<void> {
    await this.gate?.()
    const enabled = this.states.enabled()
    const settled = await this.awaitLateCommits(enabled)
    const results = await Promise.allSettled(enabled.map((i) => this.inspect(i)))
    const found: BackendLogState[] = []
    results.forEach((r, k) => {
      if (r.status === 'fulfilled') found.push(r.value)
      else this.takeOut(enabled[k]!, 'disabled', `unreachable: ${(r.reason as Error).message}`, 'unreachable')
    })
    if (!found.length) throw new Error(`no backend reachable for database "${this.database}"`)
    restoreRecorded(found, this.targets, this.takeOut, this.log, this.database)
    // A database without a pgraid schema next to ones that have a log was added (or replaced): it lacks
    // everything written before pgraid and the log cannot rebuild that. It waits to be cloned.
    const known = found.filter((s) => !s.createdNow)
    if (known.length)
      for (const s of found)
        if (s.createdNow && this.states.isEnabled(s.index))
          this.takeOut(
            s.index,
            'new',
            `no pgraid recovery log in database "${this.database}" while ${known[0]!.backend} has one (${known[0]!.records} records): a new or replaced database; clone it`,
            'new-system',
          )
    await this.complete(found.filter((s) => this.states.isEnabled(s.index)))
    await this.alignSequences(found.filter((s) => this.states.isEnabled(s.index)).map((s) => s.index))
    this.initial = found
    // A killed pgraid may have COMMITs still landing (its backend sessions finish what they
    // received): its LSNs are at most a few thousand beyond what is visible now, so skip past them.
    this.next = Math.max(this.next, ...found.map((s) => s.maxLsn + 1 + LSN_MARGIN))
    this.initialNext = this.next
    this.isReady = true
    this.log.debug({ database: this.database, next: this.next }, 'recovery log ready')
    // Sessions that could still commit outlived the wait: look again once they have landed, to complete
    // any that reached some backends only (a window: this pgraid's own writes may run meanwhile).
    if (!settled) {
      const again = setTimeout(() => void this.recheck(), RECHECK_MS)
      again.unref()
    }
  }

  /**
   * A pgraid killed mid-transaction may have sent a statement that draws from a sequence to some
   * backends only (the kill fell between its writes to them); the transaction rolled back, but
   * nextval() is not transactional, so those backends' sequences are ahead and the next INSERT
   * would get other ids there (the torture harness found it: a backend voted out after a pgraid
   * crash). Before this pgraid writes, every in-service backend's sequences are set to the highest
   * state any of them holds: values are never handed out twice, and gaps are allowed.
   */
  private async alignSequences(indexes: number[]): Promise<void> {
    if (indexes.length < 2) return
    const states = await Promise.all(
      indexes.map(async (i) => {
        const c = await this.connect(this.targets[i]!)
        try {
          return (await c.query<{ s: Record<string, number | null> | null }>("SELECT pgraid.seq_states(ARRAY['*']) AS s")).rows[0]!.s ?? {}
        } finally {
          await c.end().catch(() => {})
        }
      }),
    )
    const high: Record<string, number | null> = {}
    for (const st of states)
      for (const [name, v] of Object.entries(st)) {
        const cur = high[name]
        if (cur === undefined || (v !== null && (cur === null || Number(v) > Number(cur)))) high[name] = v
      }
    await Promise.all(
      indexes.map(async (i, k) => {
        const behind = Object.fromEntries(Object.entries(high).filter(([name, v]) => v !== null && states[k]![name] !== undefined && states[k]![name] !== v))
        if (!Object.keys(behind).length) return
        this.log.warn(
          { database: this.database, backend: this.targets[i]!.name, sequences: behind },
          'sequences behind the other backends (drawn by a transaction a killed pgraid left half-sent): set to the highest state',
        )
        const c = await this.connect(this.targets[i]!)
        try {
          await c.query('SELECT pgraid.seq_set($1::jsonb)', [JSON.stringify(behind)])
        } finally {
          await c.end().catch(() => {})
        }
      }),
    )
  }

  /**
   * A killed (or fenced) pgraid's backend sessions finish what they received:
   * a COMMIT being processed lands after pgraid is gone, on some backends
   * maybe later than the look below. Such a session is active and holds a
   * transaction id; one waiting for its next command has nothing left to
   * commit and ends as soon as its socket closes. So wait, up to
   * LATE_COMMIT_WAIT_MS, until no other session on the backends is active
   * with a transaction id: then every commit that will ever land has, and the
   * in-doubt completion below sees all of them before this pgraid writes.
   * False when some were still there (or a backend did not answer).
   */
  private async awaitLateCommits(indexes: number[]): Promise<boolean> {
    const deadline = Date.now() + LATE_COMMIT_WAIT_MS
    const waited = await Promise.allSettled(
      indexes.map(async (i) => {
        const client = await this.connect(this.targets[i]!)
        try {
          for (;;) {
            const r = await client.query<{ pid: number }>(
              "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active' AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
            )
            if (!r.rows.length) return true
            if (Date.now() >= deadline) {
              this.log.warn(
                { database: this.database, backend: this.targets[i]!.name, pids: r.rows.map((x) => x.pid) },
                'sessions that may still commit outlived the startup wait; the recovery log is checked again later',
              )
              return false
            }
            await new Promise((res) => setTimeout(res, 50))
          }
        } finally {
          await client.end().catch(() => {})
        }
      }),
    )
    return waited.every((w) => w.status === 'fulfilled' && w.value)
  }

  /** A second look at the logs after startup (commits of a killed pgraid that landed late). */
  private async recheck(): Promise<void> {
    try {
      const enabled = this.states.enabled()
      const found = (await Promise.allSettled(enabled.map((i) => this.inspect(i)))).flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
      // Only records older than the ones this pgraid writes: ours may be mid-COMMIT right now.
      for (const f of found) for (const l of [...f.recent]) if (l >= this.firstOwn) f.recent.delete(l)
      await this.complete(found.filter((f) => this.states.isEnabled(f.index)))
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'recovery log recheck failed')
    }
  }

  /**
   * In-doubt commits (issue 5, item 6): pgraid stopped (killed) while a
   * COMMIT had reached some backends and not others. The record is in the
   * backends that committed; the others get it replayed, in LSN order, so
   * every backend in service has every committed transaction. A backend
   * lacking more than a handful is behind, not in doubt: it is taken out
   * (resync brings it back).
   */
  private async complete(live: BackendLogState[]): Promise<void> {
    const all = new Set<number>()
    for (const s of live) for (const l of s.recent) all.add(l)
    for (const s of live) {
      const missing = [...all].filter((l) => !s.recent.has(l)).sort((a, b) => a - b)
      if (!missing.length) continue
      if (missing.length > MAX_IN_DOUBT) {
        this.takeOut(s.index, 'disabled', `behind: lacks ${missing.length} committed transaction(s) the others have (LSN ${missing[0]}..${missing[missing.length - 1]})`, 'behind')
        continue
      }
      let target: ReplayConnection | null = null
      try {
        // Bounded lock waits: a session of this pgraid with an open transaction there waits for this log.
        target = await ReplayConnection.open(this.targets[s.index]!, this.database, { lockTimeoutMs: LATE_LOCK_TIMEOUT_MS })
        for (const lsn of missing) {
          const source = live.find((o) => o.recent.has(lsn))!
          const rec = await this.fetch(source.index, lsn)
          await applyRecord(target, lsn, rec.at, JSON.parse(rec.record) as LogRecord, rec.record, rec.seqs)
          s.recent.add(lsn)
          this.log.warn({ database: this.database, backend: s.backend, lsn, from: source.backend }, 'completed an in-doubt commit by replaying its log record')
        }
      } catch (e) {
        if (/ 55P03 /.test(` ${(e as Error).message} `))
          this.takeOut(s.index, 'disabled', `behind: completing in-doubt commits waited ${LATE_LOCK_TIMEOUT_MS} ms for a lock another transaction holds (pgraid resync)`, 'behind')
        else {
          const state = e instanceof ReplayError && !(e instanceof NotReplayable) ? 'inconsistent' : 'disabled'
          this.takeOut(s.index, state, `could not complete in-doubt commits: ${(e as Error).message}`, 'replay-failed')
        }
      } finally {
        target?.close()
      }
    }
  }

  private async fetch(index: number, lsn: number): Promise<{ at: string; record: string; seqs: string | null }> {
    const client = await this.connect(this.targets[index]!)
    try {
      const r = await client.query<{ at: string; record: string; seqs: string | null }>('SELECT at::text AS at, record::text AS record, seqs::text AS seqs FROM pgraid.log WHERE lsn = $1', [lsn])
      if (!r.rows.length) throw new Error(`record ${lsn} vanished from ${this.targets[index]!.name}`)
      return r.rows[0]!
    } finally {
      await client.end().catch(() => {})
    }
  }

  private connect(t: BackendTarget): Promise<pg.Client> {
    const client = controlClient(t, this.database, 'recovery log')
    return client.connect().then(() => client)
  }

  private async inspect(index: number): Promise<BackendLogState> {
    const t = this.targets[index]!
    const client = await this.connect(t)
    try {
      const createdNow = (await ensureSchema(client)) === 0
      const r = await client.query<{ max: string; n: string }>('SELECT coalesce(max(lsn), 0) AS max, count(*) AS n FROM pgraid.log')
      const maxLsn = Number(r.rows[0]!.max)
      return {
        index,
        backend: t.name,
        createdNow,
        maxLsn,
        records: Number(r.rows[0]!.n),
        recent: new Set((await client.query<{ lsn: string }>('SELECT lsn FROM pgraid.log WHERE lsn > $1', [maxLsn - WINDOW])).rows.map((x) => Number(x.lsn))),
        states: (await client.query<RecordedState>('SELECT backend, state, reason, cause, coalesce(extract(epoch FROM at) * 1000, 0)::float8 AS at FROM pgraid.backend_state')).rows,
      }
    } finally {
      await client.end().catch(() => {})
    }
  }

  /**
   * Retention (issue 5, item 8): records more than `retain` below the newest
   * are deleted from every backend, only while every configured backend is in
   * service; a backend out of service may need any of them to catch up. One
   * removed by a reload is no longer configured and no longer holds it back.
   */
  async purge(retain: number): Promise<number> {
    if (!this.readying || this.states.list.some((b) => b.state !== 'enabled' && b.state !== 'removed')) return 0
    const below = this.last - retain
    if (below <= 0) return 0
    const counts = await Promise.allSettled(
      this.states
        .enabled()
        .map((i) => this.targets[i]!)
        .map(async (t) => {
          const client = await this.connect(t)
          try {
            return (await client.query('DELETE FROM pgraid.log WHERE lsn <= $1', [below])).rowCount ?? 0
          } finally {
            await client.end().catch(() => {})
          }
        }),
    )
    return Math.max(0, ...counts.map((c) => (c.status === 'fulfilled' ? c.value : 0)))
  }

  /** A commit a session made without backends `late` (it began before they came back) is replayed there, in order (LateReplay.applyLate). */
  applyLate(source: number, lsn: number, at: string, json: string, late: number[], entries?: readonly LogEntry[]): Promise<void> {
    return this.late.applyLate(source, lsn, at, json, late, entries)
  }

  /** Backends `late` get `source`'s state of sequences `names` a transaction drew from without them (LateReplay.alignLate). */
  alignLate(source: number, late: number[], names: string[]): Promise<void> {
    return this.late.alignLate(source, late, names)
  }

  /** Runs `task` in backend `index`'s late chain, ordered with the sessions' late work there (a resync's sequence alignment). */
  serialOn(index: number, task: () => Promise<void>): Promise<void> {
    return this.late.serialOn(index, task)
  }

  /** A COMMIT that reached some backends only is replayed on the others in `backends` (LateReplay.completeCommit). */
  completeCommit(lsn: number, at: string, json: string, backends: number[], entries?: readonly LogEntry[], ended?: ReadonlyMap<number, number>): Promise<void> {
    return this.late.completeCommit(lsn, at, json, backends, entries, ended)
  }

  /** Writes the backends' states into every backend still in service (queued: see StateRecorder.record). */
  recordStates(list: readonly BackendStatus[]): Promise<void> {
    return this.recorder.record(list)
  }

  /** Resolves once every state change so far is written (ServerContext.statesRecorded). */
  recorded(): Promise<void> {
    return this.recorder.recorded()
  }
}
