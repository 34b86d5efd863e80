// Bringing a backend that was taken out back into service, online (issue 6):
// the records it lacks are replayed from a backend in service, in LSN order,
// while clients keep writing; when few are left, new COMMITs are held for a
// bounded moment, the tail is replayed and the backend is enabled. Open
// transactions are not waited for: a session whose transaction began before
// the backend came back replays its commit there itself, under its locks
// (frontend/log-commit.ts commitToLate, recovery applyLate), so later conflicting work is ordered after it.

import pg from 'pg'
import type { BackendTarget } from '../backend/connection.ts'
import { controlClient } from '../backend/control-client.ts'
import type { ServerContext } from '../server-context.ts'
import { applyRecords, ReplayConnection, RowCountMismatch } from '../recovery/replay.ts'
import { ensureSchema } from '../recovery/schema.ts'
import { hasLog, logTop } from '../recovery/log-presence.ts'
import type { LogRecord } from '../recovery/record.ts'

/** How far below the target's highest LSN records are compared. */
const WINDOW = 100_000
/** Under the hold, LSNs this far below the last full comparison's top are compared (commits in flight then). */
const TAIL_WINDOW = 5_000
/** Catch-up rounds end when fewer records than this are missing. */
const TAIL = 20

export class ResyncRefused extends Error {}

/** The activity a backend shows while the health monitor compares its log (src/lifecycle/reconcile.ts). */
export const RECONCILING = 'checking its log'

export interface ResyncResult {
  applied: number
  databases: string[]
  heldMs: number
  /** Time spent fetching and replaying records (the replay rate is applied / replayMs). */
  replayMs: number
}

function clientFor(t: BackendTarget, database: string): pg.Client {
  return controlClient(t, database, 'resync')
}

/** Databases on `source` that have a pgraid log. */
export async function loggedDatabases(source: BackendTarget): Promise<string[]> {
  const c = clientFor(source, source.database ?? 'postgres')
  await c.connect()
  try {
    const dbs = (await c.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')).rows.map((r) => r.datname)
    const out: string[] = []
    for (const db of dbs) {
      const d = clientFor(source, db)
      try {
        await d.connect()
        if ((await d.query(`SELECT to_regclass('pgraid.log') IS NOT NULL AS ok`)).rows[0].ok) out.push(db)
      } catch {
        // not reachable with this user: not pgraid's
      } finally {
        await d.end().catch(() => {})
      }
    }
    return out
  } finally {
    await c.end().catch(() => {})
  }
}

async function upgradeSchema(t: BackendTarget, db: string): Promise<void> {
  const c = clientFor(t, db)
  await c.connect()
  try {
    if ((await c.query(`SELECT to_regclass('pgraid.meta') IS NOT NULL AS ok`)).rows[0].ok) await ensureSchema(c)
  } finally {
    await c.end().catch(() => {})
  }
}

/** LSNs the target lacks (in order) and LSNs only the target has. */
export async function compareLogs(source: BackendTarget, target: BackendTarget, database: string): Promise<{ missing: number[]; extra: number[]; top: number }> {
  const s = clientFor(source, database)
  const t = clientFor(target, database)
  await Promise.all([s.connect(), t.connect()])
  try {
    const hasLog = (await t.query(`SELECT to_regclass('pgraid.log') IS NOT NULL AS ok`)).rows[0].ok
    const tmax = hasLog ? Number((await t.query<{ m: string }>('SELECT coalesce(max(lsn), 0) AS m FROM pgraid.log')).rows[0]!.m) : 0
    const floor = tmax - WINDOW
    const mine = hasLog ? new Set((await t.query<{ lsn: string }>('SELECT lsn FROM pgraid.log WHERE lsn > $1', [floor])).rows.map((r) => Number(r.lsn))) : new Set<number>()
    const theirs = (await s.query<{ lsn: string }>('SELECT lsn FROM pgraid.log WHERE lsn > $1 ORDER BY lsn', [floor])).rows.map((r) => Number(r.lsn))
    const theirSet = new Set(theirs)
    if (tmax > 0) {
      const oldest = Number((await s.query<{ m: string | null }>('SELECT min(lsn) AS m FROM pgraid.log')).rows[0]!.m ?? 0)
      if (oldest > tmax + 1 && !mine.has(oldest))
        throw new ResyncRefused(`the log on ${source.name} no longer reaches back to ${target.name}'s position (LSN ${tmax}; oldest kept ${oldest}): clone it`)
    }
    return { missing: theirs.filter((l) => !mine.has(l)), extra: [...mine].filter((l) => !theirSet.has(l)).sort((a, b) => a - b), top: Math.max(tmax, theirs[theirs.length - 1] ?? 0) }
  } finally {
    await Promise.all([s.end().catch(() => {}), t.end().catch(() => {})])
  }
}

/** Replays `lsns` from source on target, committing asynchronously (the Tail's flush makes it all durable). */
async function applyMissing(source: BackendTarget, target: BackendTarget, database: string, lsns: number[], progress: (done: number) => void, signal: AbortSignal | undefined): Promise<number> {
  if (!lsns.length) return 0
  const r = await ReplayConnection.open(target, database, { async: true })
  const s = clientFor(source, database)
  await s.connect()
  let done = 0
  try {
    for (let i = 0; i < lsns.length; i += 500) {
      if (signal?.aborted) throw signal.reason
      const batch = lsns.slice(i, i + 500)
      const rows = (
        await s.query<{ lsn: string; at: string; record: string; seqs: string | null }>(
          'SELECT lsn, at::text AS at, record::text AS record, seqs::text AS seqs FROM pgraid.log WHERE lsn = ANY($1::bigint[]) ORDER BY lsn',
          [batch],
        )
      ).rows
      done += await applyRecords(
        r,
        rows.map((row) => ({ lsn: Number(row.lsn), at: row.at, record: JSON.parse(row.record) as LogRecord, json: row.record, seqs: row.seqs })),
      )
      progress(done)
    }
    return done
  } finally {
    r.close()
    await s.end().catch(() => {})
  }
}

/** Why a backend cannot simply be enabled (null = it has every record the others have). */
export async function behindReason(ctx: ServerContext, index: number): Promise<string | null> {
  const targets = ctx.backends()
  const source = ctx.states.enabled()[0]
  if (source === undefined) return null
  for (const db of await loggedDatabases(targets[source]!)) {
    const { missing, extra } = await compareLogs(targets[source]!, targets[index]!, db)
    if (extra.length) return `it has ${extra.length} committed transaction(s) in database "${db}" the backends in service lack: clone it`
    if (missing.length) return `it lacks ${missing.length} committed transaction(s) in database "${db}": resync it`
  }
  return null
}

export async function resync(
  ctx: ServerContext,
  index: number,
  notice: (msg: string, progress?: { done: number; total: number; unit: string }) => void,
  holdMs = ctx.config.lifecycle.holdMs,
  signal?: AbortSignal,
): Promise<ResyncResult> {
  const targets = ctx.backends()
  const b = ctx.states.list[index]
  if (!b) throw new ResyncRefused(`no backend ${index}`)
  if (b.activity === RECONCILING) {
    // The health monitor is comparing its log right now (it came back up): wait for that, then resync if still needed.
    notice(`resync ${b.name}: the health monitor is checking it; waiting`)
    const until = Date.now() + 30_000
    while (b.activity === RECONCILING && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
    if (b.state === 'enabled' && b.activity === null) {
      notice(`resync ${b.name}: back in service already (${b.reason ?? ''})`)
      return { applied: 0, databases: [], heldMs: 0, replayMs: 0 }
    }
  }
  if (b.state === 'enabled') {
    // Nothing to do (the health monitor may have brought it back since the operator looked): not an error.
    notice(`resync ${b.name}: in service already (${b.reason ?? 'enabled'}); nothing to do`)
    return { applied: 0, databases: [], heldMs: 0, replayMs: 0 }
  }
  if (b.state === 'removed') throw new ResyncRefused(`${b.name} was removed from the configuration`)
  if (b.state === 'new') throw new ResyncRefused(`${b.name} is new (${b.reason}): clone it`)
  if (b.state === 'inconsistent') throw new ResyncRefused(`${b.name} is inconsistent (${b.reason}): its data cannot be trusted to replay onto; clone it`)
  const sourceIdx = ctx.states.enabled()[0]
  if (sourceIdx === undefined) throw new ResyncRefused('no backend in service to resync from')
  if (b.activity) throw new ResyncRefused(`${b.name} is busy: ${b.activity}`)
  // Its home database without the log the source has records in: wiped or replaced, nothing to replay onto.
  const home = targets[sourceIdx]!.database ?? 'postgres'
  if (!(await hasLog(targets[index]!, home)) && (await logTop(targets[sourceIdx]!, home)) > 0) {
    const why = `database "${home}" has no pgraid recovery log there while ${targets[sourceIdx]!.name} has one: wiped or replaced; clone it (pgraid clone ${b.name})`
    ctx.markOut(index, 'new', why, 'new-system')
    throw new ResyncRefused(`${b.name}: ${why}`)
  }
  b.activity = 'catching up'
  try {
    return await catchUpAndEnable(ctx, index, sourceIdx, notice, holdMs, signal)
  } catch (e) {
    // Its data differed before a replayed statement: the log cannot fix that.
    if (e instanceof RowCountMismatch) ctx.markOut(index, 'inconsistent', `resync found its data different: ${e.message}`, 'replay-failed')
    ctx.log.warn({ backend: b.name, state: b.state, error: (e as Error).message }, `resync of ${b.name} stopped before it finished: it stays out of service (${b.state})`)
    throw e
  } finally {
    b.activity = null
  }
}

/** Resync's work once the checks are done (clone calls it after its copy). */
export async function catchUpAndEnable(
  ctx: ServerContext,
  index: number,
  sourceIdx: number,
  notice: (msg: string, progress?: { done: number; total: number; unit: string }) => void,
  holdMs: number,
  signal: AbortSignal | undefined,
  enableReason?: string,
): Promise<ResyncResult> {
  const targets = ctx.backends()
  const b = ctx.states.list[index]!
  const source = targets[sourceIdx]!
  const target = targets[index]!
  let applied = 0
  // Databases created, dropped or renamed through pgraid while it was out: those records first, in
  // commit order, so it holds the same databases before each one's own log is replayed.
  applied += await replayDatabaseChanges(source, target, (msg) => notice(`resync ${b.name}: ${msg}`))
  const databases = await loggedDatabases(source)
  // The target's log schema brought to this pgraid's version (it was out when the others were upgraded).
  for (const db of databases) await upgradeSchema(target, db)
  /**
   * Replays what the target lacks: a full comparison first (and last, when
   * nothing commits: it catches records committed out of LSN order), and in
   * between only what the source logged since the previous round.
   */
  const tops = new Map<string, number>()
  let replayMs = 0
  /**
   * 'rounds': a full comparison, then what the source logged since, round
   * after round; 'compare': a full comparison again just before the hold (it
   * catches records committed out of LSN order while the rounds ran). The
   * hold itself only looks at the LSNs near the top (Tail), so the pause
   * stays short whatever the log's size.
   */
  /**
   * Only records below the log's settled mark are replayed before the hold:
   * above it a COMMIT may still be landing, and a record that conflicts with
   * it (a DELETE of the row it inserts) comes after it. Replaying past such a
   * gap and filling it later would apply the DELETE first.
   */
  const settled = (db: string) => (ctx.databases().includes(db) ? ctx.recovery(db).settledBelow() : Infinity)
  const catchUp = async (db: string, mode: 'rounds' | 'compare') => {
    const started = Date.now()
    let below = settled(db)
    const { missing: all, extra, top } = await compareLogs(source, target, db)
    const missing = all.filter((l) => l < below)
    tops.set(db, top)
    if (extra.length) throw new ResyncRefused(`${b.name} has ${extra.length} committed transaction(s) in "${db}" that ${source.name} lacks (LSN ${extra[0]}..): clone it`)
    let t0 = performance.now()
    let done = await applyMissing(source, target, db, missing, (n) => notice(`resync ${b.name}: database "${db}": replaying`, { done: n, total: missing.length, unit: 'records' }), signal)
    applied += done
    replayMs += performance.now() - t0
    if (mode !== 'rounds') return
    // Everything below `below` the target lacked is replayed; later rounds start there.
    let high = Number.isFinite(below) ? below - 1 : missing.length ? missing[missing.length - 1]! : 0
    const s = clientFor(source, db)
    await s.connect()
    const r = await ReplayConnection.open(target, db, { async: true })
    try {
      for (let round = 0; ; round++) {
        if (signal?.aborted) throw signal.reason
        below = settled(db)
        const rows = (
          await s.query<{ lsn: string; at: string; record: string; seqs: string | null }>(
            'SELECT lsn, at::text AS at, record::text AS record, seqs::text AS seqs FROM pgraid.log WHERE lsn > $1 AND lsn < $2 ORDER BY lsn LIMIT 5000',
            [high, Number.isFinite(below) ? below : Number.MAX_SAFE_INTEGER],
          )
        ).rows
        const rate = done / Math.max(0.001, (Date.now() - started) / 1000)
        notice(`resync ${b.name}: database "${db}": ${done} records replayed (${rate.toFixed(0)}/s), ${rows.length} new since the last round`)
        if (rows.length < TAIL) return
        if (round >= 200) throw new ResyncRefused(`clients write faster than ${b.name} can replay (still ${rows.length}+ records behind after ${round} rounds); try again when the load is lower`)
        t0 = performance.now()
        applied += await applyRecords(
          r,
          rows.map((row) => ({ lsn: Number(row.lsn), at: row.at, record: JSON.parse(row.record) as LogRecord, json: row.record, seqs: row.seqs })),
        )
        replayMs += performance.now() - t0
        done += rows.length
        // A full page: more below the mark; else everything below it is replayed.
        high = rows.length === 5000 || !Number.isFinite(below) ? Number(rows[rows.length - 1]!.lsn) : below - 1
      }
    } finally {
      r.close()
      await s.end().catch(() => {})
    }
  }
  notice(`resync ${b.name} from ${source.name}: databases ${databases.join(', ') || '(none)'}`)
  for (const db of databases) await catchUp(db, 'rounds')
  for (const db of databases) await catchUp(db, 'compare')
  // The tail: connections opened first, so the pause is only queries. Then hold new COMMITs, let those in
  // flight finish, replay what they wrote, make it durable, enable.
  const tails = await Promise.all(databases.map((db) => Tail.open(source, target, db, (tops.get(db) ?? 0) - TAIL_WINDOW)))
  const heldAt = Date.now()
  const release = ctx.holdCommits()
  try {
    while (ctx.commitsInFlight() > 0 && Date.now() - heldAt < holdMs) await new Promise((r) => setTimeout(r, 2))
    if (ctx.commitsInFlight() > 0) throw new ResyncRefused(`commits still in flight after holding ${holdMs} ms (${ctx.describeInFlight()}); try again`)
    const now = await loggedDatabases(source)
    if (now.join('\0') !== databases.join('\0')) throw new ResyncRefused(`databases were created or dropped during the resync (${databases.join(', ')} -> ${now.join(', ')}); run it again`)
    for (const tail of tails) applied += await tail.run(b.name, source.name)
    // From here a transaction that drew without it and ends before the enable aligns it too (it would
    // miss the draw otherwise: rolled back, so no record); each alignment is one task in its late chain.
    b.joining = true
    for (const tail of tails) {
      const align = () => tail.alignSequences()
      await (ctx.databases().includes(tail.db) ? ctx.recovery(tail.db).serialOn(index, align) : align())
    }
    if (!b.joining) throw new ResyncRefused(`a session could not set ${b.name}'s sequences during the resync's last step; run it again`)
    ctx.enable(index, enableReason ? (applied ? `${enableReason}; ${applied} records replayed` : enableReason) : `resynced from ${source.name} (${applied} records)`)
  } finally {
    b.joining = false
    release()
    await Promise.all(tails.map((tail) => tail.close()))
  }
  const heldMs = Date.now() - heldAt
  notice(`resync ${b.name}: enabled after ${applied} records; new commits were held ${heldMs} ms`)
  return { applied, databases, heldMs, replayMs }
}

/**
 * Replays on `target` the records of CREATE / DROP DATABASE and ALTER DATABASE ... RENAME it lacks,
 * from every logged database of `source`, in commit order. A database created from another as a
 * template is not among them (its records are not replayable: clone instead).
 */
async function replayDatabaseChanges(source: BackendTarget, target: BackendTarget, notice: (msg: string) => void): Promise<number> {
  const present = new Set(await targetDatabases(target))
  const todo: { db: string; lsn: number; at: string; order: number; record: string; seqs: string | null }[] = []
  for (const db of await loggedDatabases(source)) {
    const s = clientFor(source, db)
    await s.connect()
    try {
      const rows = (
        await s.query<{ lsn: string; at: string; t: number; record: string; seqs: string | null }>(
          "SELECT lsn, at::text AS at, extract(epoch FROM at)::float8 AS t, record::text AS record, seqs::text AS seqs FROM pgraid.log WHERE jsonb_path_exists(record, '$.stmts[*].db') ORDER BY lsn",
        )
      ).rows
      if (!rows.length) continue
      let have = new Set<string>()
      if (present.has(db)) {
        const t = clientFor(target, db)
        await t.connect()
        try {
          if ((await t.query(`SELECT to_regclass('pgraid.log') IS NOT NULL AS ok`)).rows[0].ok)
            have = new Set((await t.query<{ lsn: string }>('SELECT lsn FROM pgraid.log WHERE lsn = ANY($1::bigint[])', [rows.map((r) => r.lsn)])).rows.map((r) => r.lsn))
        } finally {
          await t.end().catch(() => {})
        }
      }
      for (const r of rows) if (!have.has(r.lsn)) todo.push({ db, lsn: Number(r.lsn), at: r.at, order: r.t, record: r.record, seqs: r.seqs })
    } finally {
      await s.end().catch(() => {})
    }
  }
  todo.sort((a, b) => a.order - b.order || a.lsn - b.lsn)
  let applied = 0
  for (const r of todo) {
    const record = JSON.parse(r.record) as LogRecord
    notice(`database "${r.db}": replaying ${record.stmts.map((s) => s.q).join('; ')} (record ${r.lsn})`)
    const c = await ReplayConnection.open(target, r.db)
    try {
      applied += await applyRecords(c, [{ lsn: r.lsn, at: r.at, record, json: r.record, seqs: r.seqs }])
    } finally {
      c.close()
    }
    // A database it created gets pgraid's schema now: its own log is replayed into it next, from its first record.
    for (const name of record.stmts.flatMap((st) => st.db ?? [])) await ensureTargetSchema(target, name)
  }
  return applied
}

/** Databases on the target that accept connections. */
async function targetDatabases(target: BackendTarget): Promise<string[]> {
  const c = clientFor(target, target.database ?? 'postgres')
  await c.connect()
  try {
    return (await c.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn')).rows.map((r) => r.datname)
  } finally {
    await c.end().catch(() => {})
  }
}

/** pgraid's schema in database `db` of the target, if that database exists (a dropped one does not). */
async function ensureTargetSchema(target: BackendTarget, db: string): Promise<void> {
  const c = clientFor(target, db)
  try {
    await c.connect()
  } catch (e) {
    if ((e as { code?: string }).code === '3D000') return
    throw e
  }
  try {
    await ensureSchema(c)
  } finally {
    await c.end().catch(() => {})
  }
}

/** The last step of a resync, under the commit hold: only the top of the log, on connections opened beforehand. */
class Tail {
  private constructor(
    private readonly s: pg.Client,
    private readonly t: pg.Client,
    private readonly r: ReplayConnection,
    readonly db: string,
    private readonly floor: number,
  ) {}

  static async open(source: BackendTarget, target: BackendTarget, db: string, floor: number): Promise<Tail> {
    const s = clientFor(source, db)
    const t = clientFor(target, db)
    await Promise.all([s.connect(), t.connect()])
    return new Tail(s, t, await ReplayConnection.open(target, db, { async: true }), db, floor)
  }

  /**
   * Every sequence of the target set to the source's state (under the hold): values drawn by
   * transactions that rolled back leave no record. A session still open with draws the target
   * lacks replays its commit with the sequence check, or sets its sequences at rollback (frontend/log-commit.ts).
   */
  async alignSequences(): Promise<void> {
    const st = (await this.s.query<{ st: string | null }>("SELECT pgraid.seq_states(ARRAY['*'])::text AS st")).rows[0]!.st
    if (st) await this.t.query('SELECT pgraid.seq_set($1::jsonb)', [st])
  }

  async run(name: string, sourceName: string): Promise<number> {
    const q = 'SELECT lsn FROM pgraid.log WHERE lsn > $1'
    const [theirs, mine] = await Promise.all([this.s.query<{ lsn: string }>(q, [this.floor]), this.t.query<{ lsn: string }>(q, [this.floor])])
    const have = new Set(mine.rows.map((x) => x.lsn))
    const theirSet = new Set(theirs.rows.map((x) => x.lsn))
    const extra = mine.rows.filter((x) => !theirSet.has(x.lsn))
    if (extra.length) throw new ResyncRefused(`${name} has ${extra.length} committed transaction(s) in "${this.db}" that ${sourceName} lacks: clone it`)
    const missing = theirs.rows.filter((x) => !have.has(x.lsn)).map((x) => x.lsn)
    let applied = 0
    if (missing.length) {
      const rows = (
        await this.s.query<{ lsn: string; at: string; record: string; seqs: string | null }>(
          'SELECT lsn, at::text AS at, record::text AS record, seqs::text AS seqs FROM pgraid.log WHERE lsn = ANY($1::bigint[]) ORDER BY lsn',
          [missing],
        )
      ).rows
      applied = await applyRecords(
        this.r,
        rows.map((row) => ({ lsn: Number(row.lsn), at: row.at, record: JSON.parse(row.record) as LogRecord, json: row.record, seqs: row.seqs })),
      )
    }
    await this.r.flush()
    return applied
  }

  async close(): Promise<void> {
    this.r.close()
    await Promise.all([this.s.end().catch(() => {}), this.t.end().catch(() => {})])
  }
}
