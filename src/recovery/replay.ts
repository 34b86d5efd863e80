// Applies recovery-log records to a backend, exactly as they were first
// executed: the session settings, then the statements in one transaction
// (prepared statements with their original parameter types, formats and
// values, over the raw protocol), then the log row itself, then COMMIT.
// Idempotent by LSN: a record the backend already has is skipped, so a
// replay interrupted half way can simply run again.

import * as fe from '../protocol/frontend-encode.ts'
import { B } from '../protocol/codes.ts'
import { errorFields } from '../protocol/decode.ts'
import { BackendConnection, type BackendTarget } from '../backend/connection.ts'
import type { LogRecord } from './record.ts'

export class ReplayError extends Error {}

/** A record pgraid cannot replay (COPY data is not in the log): the backend must be cloned. */
export class NotReplayable extends ReplayError {}

/**
 * A replayed statement changed a different number of rows than it did when
 * first executed: the backend's data differed before it (it is inconsistent;
 * clone it). Its transaction is committed by then (the pipeline is sent whole).
 */
export class RowCountMismatch extends ReplayError {}

/** What one ReadyForQuery of a replay answers: the first error, and the CommandComplete tags before it. */
export interface ReplayResult {
  error: Record<string, string> | null
  tags: string[]
}

/** Tags whose row count must be the same on replay (the rows a statement changed). */
const COUNTED = /^(INSERT \d+|UPDATE|DELETE|MERGE) \d+$/

/** null when `got` agrees with the tag recorded when the statement first ran. */
export function tagMismatch(recorded: string | undefined, got: string[]): string | null {
  if (!recorded || !COUNTED.test(recorded)) return null
  if (got.length === 1 && got[0] === recorded) return null
  return `first executed as "${recorded}", replayed as ${got.length ? got.map((g) => `"${g}"`).join(', ') : 'nothing'}`
}

/** One raw connection and a request/answer loop: enough to replay records. */
export class ReplayConnection {
  private waiting: { left: number; results: ReplayResult[]; resolve: (r: ReplayResult[]) => void } | null = null
  private error: Record<string, string> | null = null
  private tags: string[] = []
  /** The settings the connection runs under now (a record with the same ones skips them). */
  settings: string | null = null

  private constructor(
    private readonly conn: BackendConnection,
    /** Commits without waiting for the WAL flush (bulk catch-up; see flush()). */
    readonly async: boolean,
  ) {
    conn.attach({
      data() {},
      end: (type, body) => {
        if (type === B.ErrorResponse && body) this.error ??= errorFields(body)
        if (type === B.CommandComplete && body) this.tags.push(body.toString('utf8', 0, body.length - 1))
        if (type === B.ReadyForQuery) {
          const w = this.waiting
          const result = { error: this.error, tags: this.tags }
          this.error = null
          this.tags = []
          if (!w) return
          w.results.push(result)
          if (--w.left === 0) {
            this.waiting = null
            w.resolve(w.results)
          }
        }
      },
    })
    conn.onClose((reason) => {
      const w = this.waiting
      this.waiting = null
      if (w) w.resolve([...w.results, ...Array.from({ length: w.left }, () => ({ error: { C: '08006', M: `connection lost: ${reason}` }, tags: [] }))])
    })
  }

  /**
   * `async`: each replayed transaction commits without waiting for its WAL
   * flush (one fsync per record otherwise bounds replay at the disk's fsync
   * rate). Safe for a backend out of service: a crash loses a suffix of the
   * replayed records, log rows included, and the next resync replays them
   * again. Call flush() before the backend is enabled.
   */
  static async open(target: BackendTarget, database: string, opts: { async?: boolean; lockTimeoutMs?: number } = {}): Promise<ReplayConnection> {
    const conn = await BackendConnection.connect(
      { ...target, database: target.database ?? database },
      { application_name: 'pgraid replay', ...(opts.async ? { synchronous_commit: 'off' } : {}), ...(opts.lockTimeoutMs ? { lock_timeout: String(opts.lockTimeoutMs) } : {}) },
      10_000,
    )
    return new ReplayConnection(conn, !!opts.async)
  }

  /** Makes every commit of this backend so far durable: a synchronous commit flushes the WAL up to it. */
  async flush(): Promise<void> {
    await this.must([fe.query('SET synchronous_commit = on; BEGIN; SELECT txid_current(); COMMIT')], 'flushing the replayed records')
  }

  /** Sends a pipeline producing `readies` ReadyForQuery; resolves with the first error before each (null = none). */
  runMany(msgs: Buffer[], readies: number): Promise<ReplayResult[]> {
    if (this.conn.closed) return Promise.resolve(Array.from({ length: readies }, () => ({ error: { C: '08006', M: 'connection closed' }, tags: [] })))
    return new Promise((resolve) => {
      this.waiting = { left: readies, results: [], resolve }
      this.conn.write(msgs)
    })
  }

  /** Sends messages ending in one Sync or Query; resolves with its error, if any. */
  async run(msgs: Buffer[]): Promise<Record<string, string> | null> {
    return (await this.runMany(msgs, 1))[0]?.error ?? null
  }

  async must(msgs: Buffer[], what: string): Promise<void> {
    const e = await this.run(msgs)
    if (e) throw new ReplayError(`${what}: ${e.C} ${e.M}`)
  }

  close(): void {
    this.conn.close()
  }
}

export interface RecordToApply {
  lsn: number
  at: string
  record: LogRecord
  json: string
  /** The source's sequence states after it (its log row's `seqs`, as text); null: none recorded. */
  seqs?: string | null
}

/** The states recorded with a record, when there are any to check. */
function seqsOf(r: RecordToApply): string | null {
  return r.seqs && r.seqs !== '{}' && r.seqs !== 'null' ? r.seqs : null
}

/** Messages applying one record in its own transaction, and what each ReadyForQuery of them answers. */
function recordMessages(r: RecordToApply, settingsBefore: string | null): { msgs: Buffer[]; what: string[]; logAt: number; settings: string; counted: Map<number, string>; checkAt: number } {
  if (r.record.stmts.some((s) => s.copy)) throw new NotReplayable(`record ${r.lsn} holds a COPY whose data is not in the log`)
  if (r.record.stmts.some((s) => s.noTx && !s.db)) throw new NotReplayable(`record ${r.lsn} holds a statement that ran outside a transaction block`)
  const msgs: Buffer[] = []
  const what: string[] = []
  /** Position in `what` -> the tag recorded when the statement first ran. */
  const counted = new Map<number, string>()
  const settings = JSON.stringify(r.record.settings)
  if (settingsBefore !== settings) {
    // RESET ALL goes back to the startup packet's settings (synchronous_commit for an async connection).
    msgs.push(fe.query('RESET ALL'))
    what.push('RESET ALL')
    for (const s of r.record.settings) {
      msgs.push(fe.query(s))
      what.push(`setting "${s}"`)
    }
    // What committed elsewhere must apply here: the session's own timeouts do not bind a replay.
    msgs.push(fe.query('SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0'))
    what.push('no timeouts')
  }
  msgs.push(fe.query('BEGIN'))
  what.push('BEGIN')
  const logAt = what.length
  const seqs = seqsOf(r)
  msgs.push(
    fe.parse('INSERT INTO pgraid.log (lsn, at, record, seqs) VALUES ($1, $2, $3, $4)', [20, 1184, 3802, 3802]),
    fe.bind([0, 0, 0, 0], [Buffer.from(String(r.lsn)), Buffer.from(r.at), Buffer.from(r.json), seqs === null ? null : Buffer.from(seqs)]),
    fe.execute(),
    fe.SYNC,
  )
  what.push('log row')
  if (seqs !== null) {
    // The target's states before the statements, for the correction if the check below fails.
    msgs.push(
      fe.parse("SELECT set_config('pgraid.seqb', coalesce(pgraid.seq_states(ARRAY(SELECT jsonb_object_keys($1::jsonb))), '{}')::text, true)", [3802]),
      fe.bind([0], [Buffer.from(seqs)]),
      fe.execute(),
      fe.SYNC,
    )
    what.push('sequence states before')
  }
  for (const [k, s] of r.record.stmts.entries()) {
    // Ran outside a transaction block (CREATE/DROP DATABASE): done before, by applyDatabaseRecord.
    if (s.noTx) continue
    if (!s.t && !s.p) msgs.push(fe.query(s.q))
    else {
      const values = (s.p ?? []).map((v, i) => (v === null ? null : s.f?.[i] === 1 ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8')))
      msgs.push(fe.parse(s.q, s.t ?? []), fe.bind(s.f ?? [], values), fe.execute(), fe.SYNC)
    }
    if (s.n) counted.set(what.length, s.n)
    what.push(`statement ${k + 1}`)
  }
  let checkAt = -1
  if (seqs !== null) {
    checkAt = what.length
    msgs.push(fe.parse('SELECT pgraid.seq_check($1::jsonb)', [3802]), fe.bind([0], [Buffer.from(seqs)]), fe.execute(), fe.SYNC)
    what.push('sequence check')
  }
  msgs.push(fe.query('COMMIT'))
  what.push('COMMIT')
  return { msgs, what, logAt, settings, counted, checkAt }
}

/**
 * A replayed record left a sequence at another state than the source recorded: the target's
 * sequence was off before it (pre-logged values after a crash, draws of transactions that rolled
 * back while it was out). The record draws the same values wherever it runs, so the state it
 * needs before is the recorded one minus what it drew here: set that, and the retry matches.
 */
function correction(detail: string, expected: string): string {
  const d = JSON.parse(detail) as { before?: Record<string, number | null> | null; after?: Record<string, number | null> }
  const want = JSON.parse(expected) as Record<string, number | null>
  const lit = (v: number | null | undefined) => (v === null || v === undefined ? 'NULL' : String(Number(v)))
  return Object.keys(want)
    .map((k) => {
      const name = `'${k.replace(/'/g, "''")}'`
      const none = 's.seqstart - s.seqincrement'
      return `SELECT CASE WHEN x.tb = ${none} THEN setval(r.c, s.seqstart, false) ELSE setval(r.c, x.tb, true) END
        FROM (SELECT to_regclass(${name}) AS c) r JOIN pg_sequence s ON s.seqrelid = r.c,
        LATERAL (SELECT coalesce(${lit(want[k])}::bigint, ${none}) - (coalesce(${lit(d.after?.[k])}::bigint, ${none}) - coalesce(${lit(d.before?.[k])}::bigint, ${none})) AS tb) x`
    })
    .join(';\n')
}

/**
 * Applies records in LSN order, each in its own transaction, pipelined (one
 * round trip for the lot): settings when they change, BEGIN, the log row
 * first (an LSN already there fails on the primary key, and the rest of that
 * transaction is skipped and rolled back: nothing is applied twice), the
 * statements as first sent, COMMIT. Returns how many were new.
 */
export async function applyRecords(c: ReplayConnection, records: RecordToApply[]): Promise<number> {
  // A record whose sequence states are checked ends its pipeline: if the check fails it is corrected
  // and run again before any later record. One that creates or drops a database is applied alone.
  let applied = 0
  let from = 0
  for (let k = 0; k < records.length; k++) {
    const r = records[k]!
    if (outsideTransaction(r)) {
      applied += await applyPipeline(c, records.slice(from, k), true)
      applied += await applyDatabaseRecord(c, r)
      from = k + 1
      continue
    }
    if (seqsOf(r) === null && k < records.length - 1) continue
    applied += await applyPipeline(c, records.slice(from, k + 1), true)
    from = k + 1
  }
  return applied + (await applyPipeline(c, records.slice(from), true))
}

/** A record of statements that ran outside a transaction block and can be repeated (LogEntry.db). */
function outsideTransaction(r: RecordToApply): boolean {
  return r.record.stmts.some((s) => s.noTx) && r.record.stmts.every((s) => !s.noTx || !!s.db)
}

/** What a CREATE/DROP DATABASE or RENAME answers when it was applied before (a replay cut after it). */
const ALREADY = new Set(['42P04', '3D000'])

/**
 * CREATE / DROP DATABASE cannot run in the transaction that inserts the log row: unless the row is
 * there already, each statement runs alone first (answered "already exists" / "does not exist" when
 * an earlier replay of it was cut before its row), then the row.
 */
async function applyDatabaseRecord(c: ReplayConnection, r: RecordToApply): Promise<number> {
  const [seen] = await c.runMany([fe.query(`SELECT 1 FROM pgraid.log WHERE lsn = ${Number(r.lsn)}`)], 1)
  if (seen?.error) throw new ReplayError(`looking for record ${r.lsn}: ${seen.error.C} ${seen.error.M}`)
  if (seen?.tags[0] === 'SELECT 1') return 0
  for (const s of r.record.stmts) {
    if (!s.noTx) continue
    const e = await c.run([fe.query(s.q)])
    if (e && !ALREADY.has(e.C ?? '')) throw new ReplayError(`"${s.q}" of record ${r.lsn}: ${e.C} ${e.M}`)
  }
  return applyPipeline(c, [r], false)
}

async function applyPipeline(c: ReplayConnection, records: RecordToApply[], mayCorrect: boolean): Promise<number> {
  if (!records.length) return 0
  const plans: ReturnType<typeof recordMessages>[] = []
  let settings = c.settings
  for (const r of records) {
    const p = recordMessages(r, settings)
    plans.push(p)
    settings = p.settings
  }
  const results = await c.runMany(
    plans.flatMap((p) => p.msgs),
    plans.reduce((n, p) => n + p.what.length, 0),
  )
  let at = 0
  let applied = 0
  c.settings = null
  for (const [k, p] of plans.entries()) {
    const mine = results.slice(at, at + p.what.length)
    at += p.what.length
    if (mine[p.logAt]?.error?.C === '23505') continue // already there
    const check = p.checkAt >= 0 ? mine[p.checkAt]?.error : null
    if (check?.C === 'PGRSQ' && mayCorrect && k === plans.length - 1 && mine.findIndex((r) => r.error !== null) === p.checkAt) {
      // Only the sequence check failed (the transaction rolled back): correct, then run it once more.
      const r = records[k]!
      await c.must([fe.query(correction(check.D ?? '{}', seqsOf(r)!))], `correcting the sequences before record ${r.lsn}`)
      c.settings = p.settings
      applied += await applyPipeline(c, [r], false)
      continue
    }
    const bad = mine.findIndex((r) => r.error !== null)
    if (bad >= 0) {
      await c.run([fe.query('ROLLBACK')]).catch(() => {})
      throw new ReplayError(`${p.what[bad]} of record ${records[k]!.lsn}: ${mine[bad]!.error!.C} ${mine[bad]!.error!.M}`)
    }
    for (const [pos, recorded] of p.counted) {
      const why = tagMismatch(recorded, mine[pos]?.tags ?? [])
      if (why) throw new RowCountMismatch(`${p.what[pos]} of record ${records[k]!.lsn} changed other rows than it did first: ${why}`)
    }
    applied++
    c.settings = p.settings
  }
  return applied
}

/** Applies one record unless the backend has its LSN already (false then). */
export async function applyRecord(c: ReplayConnection, lsn: number, at: string, record: LogRecord, json: string, seqs: string | null = null): Promise<boolean> {
  return (await applyRecords(c, [{ lsn, at, record, json, seqs }])) === 1
}
