// The SHOW family: read-only views of pgraid's state, answered from memory
// (SHOW LOG asks the backends). SHOW HELP lives with the table it lists.

import { clientSessions } from '../../server-context.ts'
import { logPositions } from '../log-positions.ts'
import type { Call, Result, Row } from './command.ts'

export function backends({ ctx }: Call): Result {
  const targets = ctx.backends()
  return {
    columns: ['name', 'host', 'port', 'state', 'cause', 'activity', 'reason', 'since', 'weight', 'reads_in_flight', 'health', 'last_check_ok'],
    // A backend removed by a reload is shown until no session uses it any more.
    rows: ctx.states.list
      .filter((b) => b.state !== 'removed' || ctx.sessions().some((s) => s.links.some((l) => l.index === b.index)))
      .map((b) => {
        const h = ctx.health.view(b.index)
        return [
          b.name,
          targets[b.index]!.host,
          targets[b.index]!.port,
          b.state,
          b.cause,
          b.activity,
          b.reason,
          b.since.toISOString(),
          ctx.stats[b.index]!.weight,
          ctx.stats[b.index]!.outstanding,
          h.lastError ?? (h.lastOk ? 'ok' : 'not checked yet'),
          h.lastOk?.toISOString() ?? null,
        ]
      }),
    tag: 'SHOW',
  }
}

export function sessions({ ctx }: Call): Result {
  return {
    columns: ['id', 'user', 'database', 'client', 'transaction', 'backends', 'waiting'],
    rows: ctx.sessions().map((s) => [s.id, s.user, s.database, s.clientAddress, s.transactionStatus, s.backendNames.join(','), s.waiting]),
    tag: 'SHOW',
  }
}

export function clients({ ctx }: Call): Result {
  return {
    columns: ['id', 'user', 'database', 'client', 'application_name', 'connected_at', 'transaction', 'backends', 'tls'],
    rows: ctx.sessions().map((s) => [s.id, s.user, s.database, s.clientAddress, s.applicationName, s.connectedAt.toISOString(), s.transactionStatus, s.backendNames.join(','), s.tlsProtocol]),
    tag: 'SHOW',
  }
}

export function locks({ ctx }: Call): Result {
  return {
    columns: ['resource', 'holders', 'waiters'],
    rows: ctx.locks
      .snapshot()
      .filter((l) => l.holders.length || l.waiters.length)
      .map((l) => [l.resource, l.holders.join(' '), l.waiters.join(' ')]),
    tag: 'SHOW',
  }
}

export function config({ ctx }: Call): Result {
  return { columns: ['key', 'value'], rows: flatten(ctx.config as unknown as Record<string, unknown>), tag: 'SHOW' }
}

/** Each backend's log position per database pgraid has served, read from the backends now. */
export async function log({ ctx }: Call): Promise<Result> {
  const rows = (await logPositions(ctx)).map((p): Row => [p.database, p.backend, p.state, p.maxLsn, p.records, p.lagTransactions, p.lagBytes, p.error])
  return { columns: ['database', 'backend', 'state', 'max_lsn', 'records', 'lag_transactions', 'lag_bytes', 'error'], rows, tag: 'SHOW' }
}

/** The totals, then one row per backend: what it was sent (reads alone, writes with the others), its errors, the session connections opened to it. */
export function stats({ ctx }: Call): Result {
  const sessions = clientSessions(ctx)
  const list = ctx.states.list.filter((b) => b.state !== 'removed')
  const per = list.map((b) => ({ b, c: ctx.counters.backend(b.index) }))
  const sum = (k: 'reads' | 'writes' | 'errors' | 'connections') => per.reduce((n, p) => n + p.c[k], 0)
  return {
    columns: ['sessions', 'commits_total', 'commits_per_s_10s', 'commits_per_s_60s', 'commits_in_flight', 'commits_held', 'backend', 'reads', 'writes', 'errors', 'connections'],
    rows: [
      [
        sessions.length,
        ctx.commits.total,
        round(ctx.commits.perSecond(10)),
        round(ctx.commits.perSecond(60)),
        ctx.commitsInFlight(),
        ctx.held(),
        'all',
        sum('reads'),
        sum('writes'),
        sum('errors'),
        sum('connections'),
      ],
      ...per.map(({ b, c }): Row => [sessions.filter((s) => s.links.some((l) => l.index === b.index)).length, null, null, null, null, null, b.name, c.reads, c.writes, c.errors, c.connections]),
    ],
    tag: 'SHOW',
  }
}

export function ha({ ctx }: Call): Result {
  const ha = ctx.ha
  return {
    columns: ['role', 'instance', 'locks_held', 'locks_needed', 'writer', 'since', 'term'],
    rows: [[ha.role, ha.identity, ha.heldBy().join(','), ha.needed, ha.isWriter() ? ha.identity : ha.writerHint, ha.since.toISOString(), ha.term]],
    tag: 'SHOW',
  }
}

function round(n: number): number {
  return Math.round(n * 10) / 10
}

/** The configuration as dotted keys, one row each; passwords hidden. */
function flatten(o: Record<string, unknown>, prefix = ''): Row[] {
  const out: Row[] = []
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k
    if (k === 'password') out.push([key, '(hidden)'])
    else if (Array.isArray(v)) v.forEach((x, i) => (x && typeof x === 'object' ? out.push(...flatten(x as Record<string, unknown>, `${key}[${i}]`)) : out.push([`${key}[${i}]`, String(x)])))
    else if (v && typeof v === 'object') out.push(...flatten(v as Record<string, unknown>, key))
    else out.push([key, v === undefined ? null : String(v)])
  }
  return out
}
