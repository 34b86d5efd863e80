// The recovery log of one database, as the proxy sees it: the schema is
// ensured on every backend before the first write, and log sequence numbers
// are handed out in the order COMMITs are sent. The next LSN is derived from
// the backends' own logs (the highest LSN any of them has), so a pgraid
// started fresh continues where the last one stopped: nothing is kept on the
// proxy's disk (invariant 7).

import pg from 'pg'
import type { Logger } from 'pino'
import type { BackendTarget } from '../backend/connection.ts'
import { ensureSchema } from './schema.ts'
import { controlClient } from '../backend/control-client.ts'
import { applyRecord, NotReplayable, ReplayConnection, ReplayError } from './replay.ts'
import type { LogEntry, LogRecord } from './record.ts'
import { SELF_HEALING, type BackendStates, type BackendStatus, type OutCause } from '../cluster/states.ts'

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

/** A row of pgraid.backend_state: what one backend recorded about one backend, and when. */
export interface RecordedState {
  backend: string
  state: string
  reason: string | null
  cause: string | null
  /** When that state began (epoch ms); the latest record of a backend wins. */
  at: number
}

type TakeOut = (index: number, state: 'disabled' | 'inconsistent' | 'new', reason: string, cause?: OutCause) => void

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
  ) {}

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
    const late = [...this.lateDoing].map(([i, d]) => `${this.targets[i]?.name}: ${d.what} for ${Date.now() - d.since} ms`)
    return [...this.inFlight].map(
      ([lsn, f]) => `LSN ${lsn} of session ${f.session} in "${this.database}" for ${Date.now() - f.since} ms${f.waits ? ` (${f.waits()})` : ''}${late.length ? `; late replays: ${late.join(', ')}` : ''}`,
    )
  }

  /** The COMMIT carrying `lsn` is over on every backend it was sent to (committed or not). */
  settle(lsn: number): void {
    this.inFlight.delete(lsn)
  }

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

  /**
   * Looks at every backend in service: unreachable ones are taken out; states
   * the others recorded are restored (a backend recorded as out never comes
   * back by itself); a backend lacking committed records the others have is
   * behind and taken out. Then LSNs continue after the highest anywhere.
   */
  /** Waited for before preparing (a promotion: the previous term's commits of this process land first). */
  gate: (() => Promise<void>) | null = null

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
    for (const { rec, by } of latestStates(found, (names) => this.log.warn({ database: this.database, backends: names }, 'the backends recorded different states: the latest record of each backend wins'))) {
      const i = this.targets.findIndex((t) => t.name === rec.backend)
      if (i < 0 || rec.state === 'enabled') continue
      // A reason that was itself restored from a record is not wrapped again at each restart.
      const why = (rec.reason ?? '').replace(/^(recorded as \w+ by [^:]+: )+/, '')
      this.takeOut(i, rec.state === 'inconsistent' || rec.state === 'new' ? rec.state : 'disabled', `recorded as ${rec.state} by ${by}: ${why}`, rec.cause && SELF_HEALING.has(rec.cause as OutCause) ? (rec.cause as OutCause) : 'recorded')
    }
    // A database without a pgraid schema next to ones that have a log was added (or replaced): it lacks
    // everything written before pgraid and the log cannot rebuild that. It waits to be cloned.
    const known = found.filter((s) => !s.createdNow)
    if (known.length)
      for (const s of found)
        if (s.createdNow && this.states.isEnabled(s.index))
          this.takeOut(s.index, 'new', `no pgraid recovery log in database "${this.database}" while ${known[0]!.backend} has one (${known[0]!.records} records): a new or replaced database; clone it`, 'new-system')
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
        this.log.warn({ database: this.database, backend: this.targets[i]!.name, sequences: behind }, 'sequences behind the other backends (drawn by a transaction a killed pgraid left half-sent): set to the highest state')
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
              this.log.warn({ database: this.database, backend: this.targets[i]!.name, pids: r.rows.map((x) => x.pid) }, 'sessions that may still commit outlived the startup wait; the recovery log is checked again later')
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
      this.states.enabled().map((i) => this.targets[i]!).map(async (t) => {
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

  /**
   * A session that began before a backend came back commits without it: if
   * the commit happened (its record is on `source`), replay it there now,
   * while the session still holds its locks, so later conflicting work is
   * ordered after it.
   */
  async applyLate(source: number, lsn: number, at: string, json: string, late: number[], entries?: readonly LogEntry[]): Promise<void> {
    const c = await this.connect(this.targets[source]!)
    let row: { seqs: string | null } | undefined
    try {
      // The source's row: the commit happened, and the sequence states it left (checked on replay).
      row = (await c.query<{ seqs: string | null }>('SELECT seqs::text AS seqs FROM pgraid.log WHERE lsn = $1', [lsn])).rows[0]
    } finally {
      await c.end().catch(() => {})
    }
    if (!row) return
    // The tags the statements answered, known now even where the record was written before them.
    const record = JSON.parse(json) as LogRecord
    if (entries) record.stmts.forEach((s, k) => (s.n ??= entries[k]?.n))
    await Promise.all(
      late.map((i) =>
        this.onLate(
          i,
          async () => {
            // A replay connection ended or cancelled by someone else (not an answer of the backend's) is tried again.
            for (let attempt = 0; ; attempt++) {
              // The session waiting for this replay holds its pgraid locks; a lock on that backend held by
              // a transaction that waits for those locks would never be released: a lock wait is bounded.
              this.lateDoing.set(i, { what: `connecting to replay commit ${lsn}`, since: Date.now() })
              const r = await ReplayConnection.open(this.targets[i]!, this.database, { lockTimeoutMs: LATE_LOCK_TIMEOUT_MS })
              try {
                this.lateDoing.set(i, { what: `replaying commit ${lsn}`, since: Date.now() })
                await applyRecord(r, lsn, at, record, json, row.seqs)
                return
              } catch (e) {
                if (attempt >= 3 || !(e instanceof ReplayError) || !/(08006|57P01|57P02|57014) /.test(e.message)) throw e
              } finally {
                r.close()
              }
              await new Promise((res) => setTimeout(res, 50 * (attempt + 1)))
            }
          },
          (e) =>
            // A lock it could not get: it lacks this commit, nothing more (resync replays it, in order).
            / 55P03 |lock timeout/.test(` ${e.message} `)
              ? this.takeOut(i, 'disabled', `behind: its replay of commit ${lsn} waited ${LATE_LOCK_TIMEOUT_MS} ms for a lock another transaction holds (pgraid resync)`, 'behind')
              : this.takeOut(i, 'inconsistent', `could not replay commit ${lsn} from a session that began before it came back: ${e.message}`, 'replay-failed'),
        ),
      ),
    )
  }

  /**
   * Work on a backend a session lacks, after what earlier sessions queued for it (in order: a commit
   * replayed there must follow the ones before it); a failure takes the backend out (`fail`).
   */
  private async onLate(i: number, task: () => Promise<void>, fail: (e: Error) => void): Promise<void> {
    const next = (this.lateChains.get(i) ?? Promise.resolve()).then(task)
    const tail = next.catch(() => {})
    this.lateChains.set(i, tail)
    try {
      await next
    } catch (e) {
      fail(e as Error)
    } finally {
      if (this.lateChains.get(i) === tail) this.lateDoing.delete(i)
    }
  }
  /** What each backend's late chain runs now (describeInFlight). */
  private readonly lateDoing = new Map<number, { what: string; since: number }>()
  private lateChains = new Map<number, Promise<unknown>>()

  /**
   * A transaction that drew from `names` ended (rolled back, or committed and replayed) while
   * backends in `late` lacked this session: nextval is not transactional, so their sequences are
   * set to the source's state, under the transaction's locks (no one else draws from them now).
   */
  async alignLate(source: number, late: number[], names: string[]): Promise<void> {
    const s = await this.connect(this.targets[source]!)
    let st: string | null
    try {
      st = (await s.query<{ st: string | null }>('SELECT pgraid.seq_states($1::text[])::text AS st', [names])).rows[0]!.st
    } finally {
      await s.end().catch(() => {})
    }
    if (!st) return
    await Promise.all(
      late.map((i) =>
        this.onLate(
          i,
          async () => {
            const c = await this.connect(this.targets[i]!)
            try {
              await c.query('SELECT pgraid.seq_set($1::jsonb)', [st])
            } finally {
              await c.end().catch(() => {})
            }
          },
          (e) => this.takeOut(i, 'disabled', `could not set its sequences after a transaction that began before it came back: ${e.message}`, 'replay-failed'),
        ),
      ),
    )
  }

  /**
   * A COMMIT whose session saw it end on no backend, or not on all (its
   * connections there ended for the session alone): if any backend in
   * service committed it (its record is there), every other one in
   * `backends` gets it replayed; if none did, nothing committed.
   */
  async completeCommit(lsn: number, at: string, json: string, backends: number[], entries?: readonly LogEntry[], ended?: ReadonlyMap<number, number>): Promise<void> {
    // Whether each backend has it; a check whose connection fails (a client's pg_terminate_backend
    // reaches pgraid's own sessions too) is tried again, and a backend that stays unknown is taken
    // out: the commit is acknowledged only as durable on every backend in service.
    // A session connection the batch was still running on (`ended`: backend -> server pid, closed by
    // the caller) may still commit it: it is waited out first, so the check sees where it landed.
    const have = new Map<number, boolean>()
    let lastError = ''
    for (let attempt = 0; attempt < 5 && have.size < backends.length; attempt++) {
      if (attempt) await new Promise((r) => setTimeout(r, 50 * attempt))
      await Promise.all(
        backends
          .filter((i) => !have.has(i))
          .map(async (i) => {
            try {
              const c = await this.connect(this.targets[i]!)
              try {
                const pid = ended?.get(i)
                if (pid) await waitSessionGone(c, pid)
                have.set(i, (await c.query('SELECT 1 FROM pgraid.log WHERE lsn = $1', [lsn])).rows.length > 0)
              } finally {
                await c.end().catch(() => {})
              }
            } catch (e) {
              lastError = (e as Error).message
            }
          }),
      )
    }
    for (const i of backends) if (!have.has(i)) this.takeOut(i, 'disabled', `could not check whether it has commit ${lsn} after its session connection ended: ${lastError}`, 'replay-failed')
    const source = backends.find((i) => have.get(i) === true)
    const lack = backends.filter((i) => have.get(i) === false)
    if (source === undefined || !lack.length) return
    this.log.warn({ database: this.database, lsn, from: this.targets[source]!.name, to: lack.map((i) => this.targets[i]!.name) }, 'completing a commit that reached some backends only (their session connections ended)')
    await this.applyLate(source, lsn, at, json, lack, entries)
  }

  /**
   * Writes the backends' states into every backend still in service. Writes are queued one after another, each with the states as they are when it runs: a slow
   * earlier write never lands after a later one, and a burst of changes ends in the latest view.
   */
  recordStates(list: readonly BackendStatus[]): Promise<void> {
    if (this.recordQueued) return this.recording
    this.recordQueued = true
    this.recording = this.recording
      .catch(() => {})
      .then(() => {
        this.recordQueued = false
        return this.writeStates(list)
      })
    return this.recording
  }
  /** Resolves once every state change so far is written (ServerContext.statesRecorded). */
  recorded(): Promise<void> {
    return this.recording.catch(() => {})
  }
  private recording: Promise<void> = Promise.resolve()
  private recordQueued = false

  private async writeStates(list: readonly BackendStatus[]): Promise<void> {
    if (!this.readying) return
    await Promise.allSettled(
      this.states.enabled().map(async (i) => {
        const client = await this.connect(this.targets[i]!)
        try {
          // One view, whole: a reader never sees half of it.
          await client.query('BEGIN')
          for (const b of list)
            await client.query(
              `INSERT INTO pgraid.backend_state (backend, state, reason, lsn, at, cause) VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (backend) DO UPDATE SET state = excluded.state, reason = excluded.reason, lsn = excluded.lsn, at = excluded.at, cause = excluded.cause`,
              [b.name, b.state, b.reason, b.state === 'enabled' ? null : this.last, b.since, b.cause],
            )
          await client.query('COMMIT')
        } finally {
          await client.end().catch(() => {})
        }
      }),
    )
  }
}

/**
 * Waits until server session `pid` has exited: whatever it was running is then committed or rolled
 * back. One that is still there after a while (waiting on a lock) is terminated, then waited out.
 */
/** How long a late replay waits for a row lock before the backend is taken out as behind (see applyLate). */
const LATE_LOCK_TIMEOUT_MS = 3000

async function waitSessionGone(c: pg.Client, pid: number): Promise<void> {
  for (let k = 0; ; k++) {
    if (!(await c.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows.length) return
    if (k === 1000) await c.query('SELECT pg_terminate_backend($1)', [pid])
    if (k > 2000) throw new Error(`session ${pid} did not end`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/**
 * One view of the backends' states from the views the backends recorded (each writes the whole list
 * into every backend in service, so a backend that was out holds an older view). Per backend the
 * record with the latest start time wins, whoever holds it. A view itself is evidence: a backend
 * that holds records up to time T was in service at T (pgraid writes only there), which outweighs
 * an older record of it being out; its records about itself count for nothing else (it is never
 * told it is out). On a tie, out wins.
 */
export function latestStates(found: readonly BackendLogState[], disagreed: (names: string[]) => void): { rec: RecordedState; by: string }[] {
  const best = new Map<string, { rec: RecordedState; by: string }>()
  const differ = new Set<string>()
  const offer = (rec: RecordedState, by: string) => {
    const cur = best.get(rec.backend)
    if (cur && cur.rec.state !== rec.state) differ.add(rec.backend)
    if (!cur || rec.at > cur.rec.at || (rec.at === cur.rec.at && cur.rec.state === 'enabled' && rec.state !== 'enabled')) best.set(rec.backend, { rec, by })
  }
  for (const s of found) {
    let seen = 0
    for (const rec of s.states) {
      seen = Math.max(seen, rec.at)
      if (rec.backend !== s.backend) offer(rec, s.backend)
    }
    if (s.states.length) offer({ backend: s.backend, state: 'enabled', reason: null, cause: null, at: seen }, s.backend)
  }
  if (differ.size) disagreed([...differ])
  return [...best.values()]
}
