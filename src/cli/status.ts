// `pgraid status`: asks a running pgraid, through its admin console (the
// reserved database `pgraid`), for the state of every backend, each
// backend's recovery-log position and lag, and the client sessions. Human
// table by default, --json for scripts. Exit codes: 0 every backend in
// service, 1 some backend out of service (degraded), 2 could not ask.

import pg from 'pg'
import type { Config } from '../config/schema.ts'

export interface StatusReport {
  backends: Record<string, string | null>[]
  log: Record<string, string | null>[]
  sessions: number
  stats: Record<string, string | null>
  /** SHOW HA: writer or standby (absent from a pgraid older than the election). */
  ha?: Record<string, string | null>
}

export async function fetchStatus(config: Config, user: string, password: string | undefined): Promise<StatusReport> {
  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host
  const c = new pg.Client({ host, port: config.listen.port, user, password, database: 'pgraid', application_name: 'pgraid status', connectionTimeoutMillis: 10_000 })
  c.on('error', () => {})
  await c.connect()
  try {
    const backends = (await c.query('SHOW BACKENDS')).rows
    const log = (await c.query('SHOW LOG')).rows
    const sessions = (await c.query('SHOW SESSIONS')).rows.length
    const stats = (await c.query('SHOW STATS')).rows[0]
    const ha = (await c.query('SHOW HA')).rows[0]
    return { backends, log, sessions, stats, ha }
  } finally {
    await c.end().catch(() => {})
  }
}

export function renderStatus(r: StatusReport): string {
  const lines: string[] = []
  if (r.ha)
    lines.push(
      r.ha.role === 'writer'
        ? `Role: writer (${r.ha.instance}; writer lock held on ${r.ha.locks_held || 'no backend'}, ${r.ha.locks_needed} needed).`
        : `Role: STANDBY (${r.ha.instance}): reads only, writes refused; the writer is ${r.ha.writer ?? 'unknown'} (writer lock held here on ${r.ha.locks_held || 'no backend'}, ${r.ha.locks_needed} needed).`,
      '',
    )
  lines.push(table(['backend', 'state', 'cause', 'health', 'activity', 'since', 'reason'], r.backends.map((b) => [b.name, b.state, b.cause ?? '', b.health ?? '', b.activity ?? '', b.since, b.reason ?? ''])))
  if (r.log.length) {
    lines.push('')
    lines.push(table(['database', 'backend', 'max LSN', 'records', 'lag (transactions)', 'lag (bytes)'], r.log.map((l) => [l.database, l.backend, l.max_lsn ?? `unreachable: ${l.error}`, l.records ?? '', l.lag_transactions ?? '', l.lag_bytes ?? ''])))
  }
  lines.push('')
  const out = r.backends.filter((b) => b.state !== 'enabled' && b.state !== 'removed')
  lines.push(`${r.sessions} client session(s); writes: ${r.stats.commits_per_s_10s} commits/s (last 10 s), ${r.stats.commits_per_s_60s}/s (last 60 s), ${r.stats.commits_total} since start. ${out.length ? `DEGRADED: ${out.map((b) => `${b.name} is ${b.state}`).join(', ')} (bring it back with pgraid resync or clone)` : 'All backends in service.'}`)
  return lines.join('\n') + '\n'
}

function table(head: string[], rows: (string | null | undefined)[][]): string {
  const cells = [head, ...rows.map((r) => r.map((c) => c ?? ''))]
  const widths = head.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)))
  const fmt = (r: (string | null | undefined)[]) => r.map((c, i) => String(c ?? '').padEnd(widths[i]!)).join('  ').trimEnd()
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n')
}
