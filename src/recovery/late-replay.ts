// Late replays: a commit (or a sequence state) a backend lacks because its
// session connection was missing or ended, brought there while the session
// still holds its locks, so later conflicting work is ordered after it. Per
// backend the work runs in a chain, in the order sessions queued it. Kept
// apart from the log's startup inspection (log.ts), which delegates here.

import type pg from 'pg'
import type { Logger } from 'pino'
import type { BackendTarget } from '../backend/connection.ts'
import { applyRecord, ReplayConnection, ReplayError } from './replay.ts'
import type { LogEntry, LogRecord } from './record.ts'
import type { TakeOut } from './backend-states.ts'

/** How long a late replay waits for a row lock before the backend is taken out as behind (see applyLate). */
export const LATE_LOCK_TIMEOUT_MS = 3000

export class LateReplay {
  /** What each backend's late chain runs now (describe). */
  private readonly lateDoing = new Map<number, { what: string; since: number }>()
  private lateChains = new Map<number, Promise<unknown>>()

  constructor(
    private readonly targets: BackendTarget[],
    private readonly database: string,
    private readonly takeOut: TakeOut,
    private readonly log: Logger,
    private readonly connect: (t: BackendTarget) => Promise<pg.Client>,
  ) {}

  /** What the late chains run now, as an operator reads it (RecoveryLog.describeInFlight). */
  describe(): string[] {
    return [...this.lateDoing].map(([i, d]) => `${this.targets[i]?.name}: ${d.what} for ${Date.now() - d.since} ms`)
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

  /**
   * A transaction that drew from `names` ended (rolled back, or committed and replayed) while
   * backends in `late` lacked this session: nextval is not transactional, so their sequences are
   * set to the source's state, under the transaction's locks (no one else draws from them now).
   */
  async alignLate(source: number, late: number[], names: string[]): Promise<void> {
    await Promise.all(
      late.map((i) =>
        this.onLate(
          i,
          // Read inside the chain: a resync's tail aligning the same backend (serialOn) runs its read and
          // set as one task too, so whichever comes last sets the later state (a sequence only grows).
          async () => {
            const s = await this.connect(this.targets[source]!)
            let st: string | null
            try {
              st = (await s.query<{ st: string | null }>('SELECT pgraid.seq_states($1::text[])::text AS st', [names])).rows[0]!.st
            } finally {
              await s.end().catch(() => {})
            }
            if (!st) return
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

  /** Runs `task` in backend `i`'s chain, after what sessions queued there (its errors are the caller's). */
  serialOn(i: number, task: () => Promise<void>): Promise<void> {
    const next = (this.lateChains.get(i) ?? Promise.resolve()).then(task)
    this.lateChains.set(
      i,
      next.catch(() => {}),
    )
    return next
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
    this.log.warn(
      { database: this.database, lsn, from: this.targets[source]!.name, to: lack.map((i) => this.targets[i]!.name) },
      'completing a commit that reached some backends only (their session connections ended)',
    )
    await this.applyLate(source, lsn, at, json, lack, entries)
  }
}

/**
 * Waits until server session `pid` has exited: whatever it was running is then committed or rolled
 * back. One that is still there after a while (waiting on a lock) is terminated, then waited out.
 */
async function waitSessionGone(c: pg.Client, pid: number): Promise<void> {
  for (let k = 0; ; k++) {
    if (!(await c.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows.length) return
    if (k === 1000) await c.query('SELECT pg_terminate_backend($1)', [pid])
    if (k > 2000) throw new Error(`session ${pid} did not end`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
