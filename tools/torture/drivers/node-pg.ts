// node-postgres sessions for the torture workloads: the extended protocol
// (parameters bound, as most applications send them) and the simple protocol
// (parameters inlined as literals, as psql and many ORMs' raw queries do).

import pg from 'pg'
import { DriverError, inline, type ClientSession, type Endpoint, type Result } from './driver.ts'

function connectWith(extended: boolean) {
  return async (ep: Endpoint): Promise<ClientSession> => {
    const c = new pg.Client({ ...ep, database: 'postgres', statement_timeout: 0, connectionTimeoutMillis: 5000 })
    let lost: Error | null = null
    c.on('error', (e) => (lost = e))
    try {
      await c.connect()
    } catch (e) {
      throw asDriverError(e)
    }
    const key = c as unknown as { processID: number; secretKey: number }
    return {
      driver: extended ? 'pg-extended' : 'pg-simple',
      async query<R>(sql: string, params?: unknown[]): Promise<Result<R>> {
        if (lost) throw new DriverError(`connection lost: ${(lost as Error).message}`)
        try {
          const r = extended && params?.length ? await c.query(sql, params) : await c.query(inline(sql, params))
          return { rows: r.rows as R[], rowCount: r.rowCount }
        } catch (e) {
          throw asDriverError(e)
        }
      },
      cancelKey: () => (key.processID ? { pid: key.processID, secret: key.secretKey } : null),
      end: () => c.end().catch(() => {}),
      destroy() {
        ;(c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
      },
    }
  }
}

function asDriverError(e: unknown): DriverError {
  const err = e as { code?: string; message?: string }
  // node-postgres puts errno strings (ECONNRESET) in `code` too: only a SQLSTATE counts as an answer.
  const code = err.code && /^[0-9A-Z]{5}$/.test(err.code) ? err.code : undefined
  return new DriverError(err.message ?? String(e), code)
}

export const pgExtended = connectWith(true)
export const pgSimple = connectWith(false)
