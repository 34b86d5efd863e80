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

/** One raw connection and a request/answer loop: enough to replay records. */
export class ReplayConnection {
  private waiting: { resolve: (e: Record<string, string> | null) => void } | null = null
  private error: Record<string, string> | null = null

  private constructor(private readonly conn: BackendConnection) {
    conn.attach({
      data() {},
      end: (type, body) => {
        if (type === B.ErrorResponse && body) this.error ??= errorFields(body)
        if (type === B.ReadyForQuery) {
          const w = this.waiting
          this.waiting = null
          const e = this.error
          this.error = null
          w?.resolve(e)
        }
      },
    })
    conn.onClose((reason) => {
      const w = this.waiting
      this.waiting = null
      w?.resolve({ C: '08006', M: `connection lost: ${reason}` })
    })
  }

  static async open(target: BackendTarget, database: string): Promise<ReplayConnection> {
    const conn = await BackendConnection.connect({ ...target, database: target.database ?? database }, { application_name: 'pgraid replay' }, 10_000)
    return new ReplayConnection(conn)
  }

  /** Sends messages ending in Sync or a Query; resolves with the first error, if any. */
  run(msgs: Buffer[]): Promise<Record<string, string> | null> {
    return new Promise((resolve) => {
      this.waiting = { resolve }
      this.conn.write(msgs)
    })
  }

  async must(msgs: Buffer[], what: string): Promise<void> {
    const e = await this.run(msgs)
    if (e) throw new ReplayError(`${what}: ${e.C} ${e.M}`)
  }

  close(): void {
    this.conn.close()
  }
}

/** Applies one record unless the backend has its LSN already. Returns false when it was there. */
export async function applyRecord(c: ReplayConnection, lsn: number, at: string, record: LogRecord, json: string): Promise<boolean> {
  if (record.stmts.some((s) => s.copy)) throw new NotReplayable(`record ${lsn} holds a COPY whose data is not in the log`)
  await c.must([fe.query('RESET ALL')], 'RESET ALL')
  for (const s of record.settings) await c.must([fe.query(s)], `setting of record ${lsn}`)
  await c.must([fe.query('BEGIN')], 'BEGIN')
  try {
    // The log row first: if the LSN is there already, the primary key says so before anything runs.
    const ins = await c.run([
      fe.parse('INSERT INTO pgraid.log (lsn, at, record) VALUES ($1, $2, $3)', [20, 1184, 3802]),
      fe.bind([0, 0, 0], [Buffer.from(String(lsn)), Buffer.from(at), Buffer.from(json)]),
      fe.execute(),
      fe.SYNC,
    ])
    if (ins?.C === '23505') {
      await c.must([fe.query('ROLLBACK')], 'ROLLBACK')
      return false
    }
    if (ins) throw new ReplayError(`log row of record ${lsn}: ${ins.C} ${ins.M}`)
    for (const [k, s] of record.stmts.entries()) {
      const what = `statement ${k + 1} of record ${lsn}`
      if (!s.t && !s.p) await c.must([fe.query(s.q)], what)
      else {
        const values = (s.p ?? []).map((v, i) => (v === null ? null : s.f?.[i] === 1 ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8')))
        await c.must([fe.parse(s.q, s.t ?? []), fe.bind(s.f ?? [], values), fe.execute(), fe.SYNC], what)
      }
    }
    await c.must([fe.query('COMMIT')], `COMMIT of record ${lsn}`)
    return true
  } catch (e) {
    await c.run([fe.query('ROLLBACK')]).catch(() => {})
    throw e
  }
}
