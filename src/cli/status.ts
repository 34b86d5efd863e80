// `pgraid status`: asks a running pgraid, through its admin console (the
// reserved database `pgraid`), for the state of every backend, each
// backend's recovery-log position and lag, and the client sessions. Human
// table by default, --json for scripts (typed: numbers, booleans and nulls,
// docs/admin.md has its JSON schema). Exit codes: 0 every backend in
// service, 1 some backend out of service (degraded), 2 could not ask.

import type pg from 'pg'
import { CONSOLE_DATABASE } from './target.ts'

type Value = string | number | boolean | null
type Row = Record<string, Value>

export interface StatusReport {
  backends: Row[]
  log: Row[]
  /** Client sessions: the admin console's own (this command's among them) are not counted. */
  sessions: number
  stats: Row
  /** SHOW HA: writer or standby (absent from a pgraid older than the election). */
  ha?: Row
}

/** Columns of the console's answers that are numbers or booleans (the console sends every value as text). */
const NUMBERS = new Set([
  'port',
  'weight',
  'reads_in_flight',
  'max_lsn',
  'records',
  'lag_transactions',
  'lag_bytes',
  'sessions',
  'commits_total',
  'commits_per_s_10s',
  'commits_per_s_60s',
  'commits_in_flight',
  'locks_needed',
  'term',
])
const BOOLEANS = new Set(['commits_held'])

/** A console row with its numbers and booleans typed; other columns stay text (or null). */
export function typed(row: Record<string, unknown>): Row {
  const out: Row = {}
  for (const [k, v] of Object.entries(row)) {
    if (v === null || v === undefined) out[k] = null
    else if (NUMBERS.has(k) && v !== '' && Number.isFinite(Number(v))) out[k] = Number(v)
    else if (BOOLEANS.has(k)) out[k] = v === true || v === 'true' || v === 't'
    else out[k] = typeof v === 'number' || typeof v === 'boolean' ? v : String(v)
  }
  return out
}

export async function fetchStatus(c: pg.Client): Promise<StatusReport> {
  const backends = (await c.query('SHOW BACKENDS')).rows.map(typed)
  const log = (await c.query('SHOW LOG')).rows.map(typed)
  const sessions = (await c.query<{ database: string }>('SHOW SESSIONS')).rows.filter((s) => s.database !== CONSOLE_DATABASE).length
  const stats = typed((await c.query('SHOW STATS')).rows[0] ?? {})
  const ha = typed((await c.query('SHOW HA')).rows[0] ?? {})
  return { backends, log, sessions, stats, ha }
}

const str = (v: Value | undefined): string => (v === null || v === undefined ? '' : String(v))

export function renderStatus(r: StatusReport): string {
  const lines: string[] = []
  if (r.ha)
    lines.push(
      r.ha.role === 'writer'
        ? `Role: writer (${str(r.ha.instance)}; writer lock held on ${str(r.ha.locks_held) || 'no backend'}, ${str(r.ha.locks_needed)} needed).`
        : `Role: STANDBY (${str(r.ha.instance)}): reads only, writes refused; the writer is ${str(r.ha.writer) || 'unknown'} (writer lock held here on ${str(r.ha.locks_held) || 'no backend'}, ${str(r.ha.locks_needed)} needed).`,
      '',
    )
  lines.push(
    table(
      ['backend', 'state', 'cause', 'health', 'activity', 'since', 'reason'],
      r.backends.map((b) => [b.name, b.state, b.cause, b.health, b.activity, b.since, b.reason].map(str)),
    ),
  )
  if (r.log.length) {
    lines.push('')
    lines.push(
      table(
        ['database', 'backend', 'max LSN', 'records', 'lag (transactions)', 'lag (bytes)'],
        r.log.map((l) => [str(l.database), str(l.backend), l.max_lsn ?? logError(l.error), l.records, l.lag_transactions, l.lag_bytes].map(str)),
      ),
    )
  }
  lines.push('')
  const out = r.backends.filter((b) => b.state !== 'enabled' && b.state !== 'removed')
  lines.push(
    `${r.sessions} client session(s); writes: ${str(r.stats.commits_per_s_10s)} commits/s (last 10 s), ${str(r.stats.commits_per_s_60s)}/s (last 60 s), ${str(r.stats.commits_total)} since start. ${out.length ? `DEGRADED: ${out.map((b) => `${str(b.name)} is ${str(b.state)}`).join(', ')} (bring it back with pgraid resync or clone)` : 'All backends in service.'}`,
  )
  return lines.join('\n') + '\n'
}

/** Why a backend's log position is missing: no log there (to be cloned), or the error reading it. */
function logError(e: Value): string {
  const text = str(e)
  return /relation "pgraid\.log" does not exist/.test(text) ? 'no recovery log (clone it)' : `not read: ${text}`
}

/** 0 every backend in service (or removed, draining), 1 degraded. */
export function statusExit(r: StatusReport): number {
  return r.backends.every((b) => b.state === 'enabled' || b.state === 'removed') ? 0 : 1
}

function table(head: string[], rows: string[][]): string {
  const cells = [head, ...rows]
  const widths = head.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)))
  const fmt = (r: string[]) =>
    r
      .map((c, i) => String(c ?? '').padEnd(widths[i]!))
      .join('  ')
      .trimEnd()
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n')
}
