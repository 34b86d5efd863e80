// Where each backend stands in the recovery log of each database pgraid has served, read from
// the backends now: highest LSN, records kept, and the lag behind the most advanced backend in
// transactions and bytes. For SHOW LOG and the Prometheus lag gauges.

import { controlClient } from '../backend/control-client.ts'
import type { BackendTarget } from '../backend/connection.ts'
import type { ServerContext } from '../server-context.ts'

export interface LogPosition {
  database: string
  backend: string
  state: string
  maxLsn: number | null
  records: number | null
  lagTransactions: number | null
  lagBytes: number | null
  error: string | null
}

export async function logPositions(ctx: ServerContext, timeoutMs = 5000): Promise<LogPosition[]> {
  const targets = ctx.backends()
  const out: LogPosition[] = []
  for (const database of ctx.databases()) {
    const per = await Promise.all(
      targets.map(async (t, i) => {
        if (ctx.states.list[i]!.state === 'removed') return { max: null, n: null, error: 'removed from the configuration' }
        const c = controlClient(t, database, 'log positions', timeoutMs)
        try {
          await c.connect()
          const r = await c.query<{ max: string; n: string }>('SELECT coalesce(max(lsn), 0) AS max, count(*) AS n FROM pgraid.log')
          return { max: Number(r.rows[0]!.max), n: Number(r.rows[0]!.n), error: null as string | null }
        } catch (e) {
          return { max: null, n: null, error: (e as Error).message }
        } finally {
          await c.end().catch(() => {})
        }
      }),
    )
    // Lag: the records the most advanced backend has beyond this one's highest LSN (LSNs have gaps).
    const top = per.reduce((best, p, i) => ((p.max ?? -1) > (per[best]!.max ?? -1) ? i : best), 0)
    const lags = await lagsFrom(
      targets[top]!,
      database,
      per.map((p) => p.max),
      timeoutMs,
    )
    per.forEach((p, i) => {
      const state = ctx.states.list[i]!.state
      if (state === 'removed') return
      out.push({ database, backend: targets[i]!.name, state, maxLsn: p.max, records: p.n, lagTransactions: lags[i]?.n ?? null, lagBytes: lags[i]?.bytes ?? null, error: p.error })
    })
  }
  return out
}

async function lagsFrom(top: BackendTarget, database: string, maxes: (number | null)[], timeoutMs: number): Promise<({ n: number; bytes: number } | null)[]> {
  const c = controlClient(top, database, 'log positions', timeoutMs)
  try {
    await c.connect()
    // One query at a time on one client (pg queues overlapping ones, with a deprecation warning on stderr).
    const out: ({ n: number; bytes: number } | null)[] = []
    for (const m of maxes) {
      if (m === null) {
        out.push(null)
        continue
      }
      const r = await c.query<{ n: string; bytes: string }>('SELECT count(*) AS n, coalesce(sum(pg_column_size(record)), 0) AS bytes FROM pgraid.log WHERE lsn > $1', [m])
      out.push({ n: Number(r.rows[0]!.n), bytes: Number(r.rows[0]!.bytes) })
    }
    return out
  } catch {
    return maxes.map(() => null)
  } finally {
    await c.end().catch(() => {})
  }
}
