// The views operators know from PgBouncer (SHOW POOLS, SERVERS, DATABASES,
// VERSION) and pgpool-II (SHOW POOL_NODES), with their column names where the
// column means something here; docs/admin.md sets them side by side. pgraid
// pools nothing: each client session has its own connection to every backend
// in service (pool_mode `session`), so a "server" is one of those.

import { readFileSync } from 'node:fs'
import { clientSessions, type ClientSession } from '../../server-context.ts'
import type { Call, Result, Row } from './command.ts'

/** package.json's version: three folders up from src/admin/commands (and from dist/admin/commands). */
export const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version

export function version(): Result {
  return { columns: ['version'], rows: [[`pgraid ${VERSION}`]], tag: 'SHOW' }
}

/** Microseconds a session has waited on PAUSE so far (0 when it does not wait). */
function pausedUs(s: ClientSession, now: number): number {
  return s.pausedSince ? Math.max(0, Math.round((now - s.pausedSince.getTime()) * 1000)) : 0
}

/** One row per database and user with sessions, as PgBouncer's SHOW POOLS (a backend connection is active while its session is in a transaction). */
export function pools(call: Call): Result {
  const now = Date.now()
  const groups = new Map<string, ClientSession[]>()
  for (const s of clientSessions(call.ctx)) {
    const key = `${s.database}\0${s.user}`
    groups.set(key, [...(groups.get(key) ?? []), s])
  }
  const rows: Row[] = [...groups.entries()].map(([key, list]) => {
    const [database, user] = key.split('\0') as [string, string]
    const waiting = list.filter((s) => s.pausedSince)
    const maxUs = Math.max(0, ...list.map((s) => pausedUs(s, now)))
    const servers = list.reduce((n, s) => n + s.servers().length, 0)
    const busy = list.filter((s) => s.transactionStatus !== 'idle').reduce((n, s) => n + s.servers().length, 0)
    return [database, user, list.length - waiting.length, waiting.length, busy, servers - busy, 0, Math.floor(maxUs / 1e6), maxUs % 1e6, 'session']
  })
  return { columns: ['database', 'user', 'cl_active', 'cl_waiting', 'sv_active', 'sv_idle', 'sv_used', 'maxwait', 'maxwait_us', 'pool_mode'], rows, tag: 'SHOW' }
}

/** Every backend connection of every client session, as PgBouncer's SHOW SERVERS (plus the backend's name). */
export function servers(call: Call): Result {
  const targets = call.ctx.backends()
  const rows: Row[] = []
  for (const s of clientSessions(call.ctx)) {
    const active = s.transactionStatus !== 'idle'
    for (const v of s.servers()) {
      const t = targets[v.index]
      rows.push([
        'S',
        s.user,
        s.database,
        active ? 'active' : 'idle',
        t?.host ?? null,
        t?.port ?? null,
        v.localAddress,
        v.localPort,
        v.connectedAt.toISOString(),
        v.pid,
        v.tls,
        s.applicationName,
        v.backend,
        s.id,
      ])
    }
  }
  return {
    columns: ['type', 'user', 'database', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'remote_pid', 'tls', 'application_name', 'backend', 'session'],
    rows,
    tag: 'SHOW',
  }
}

/** The databases pgraid serves (with a recovery log, or with sessions now), as PgBouncer's SHOW DATABASES. */
export function databases(call: Call): Result {
  const { ctx } = call
  const sessions = clientSessions(call.ctx)
  const names = [...new Set([...ctx.databases(), ...sessions.map((s) => s.database)])].sort()
  const inService = ctx.states.list
    .filter((b) => b.state === 'enabled')
    .map((b) => b.name)
    .join(',')
  const rows: Row[] = names.map((name) => [
    name,
    name,
    inService,
    'session',
    ctx.config.limits.maxClients,
    sessions.filter((s) => s.database === name).length,
    ctx.paused() ? 1 : 0,
    0,
    ctx.databases().includes(name),
  ])
  return { columns: ['name', 'database', 'backends', 'pool_mode', 'max_connections', 'current_connections', 'paused', 'disabled', 'recovery_log'], rows, tag: 'SHOW' }
}

/** One row per backend, as pgpool-II's SHOW POOL_NODES (native replication: every node a replica). */
export function poolNodes({ ctx }: Call): Result {
  const targets = ctx.backends()
  const list = ctx.states.list.filter((b) => b.state !== 'removed')
  const total = list.reduce((n, b) => n + (b.state === 'enabled' ? (ctx.stats[b.index]?.weight ?? 0) : 0), 0)
  const rows: Row[] = list.map((b) => {
    const h = ctx.health.view(b.index)
    const weight = ctx.stats[b.index]?.weight ?? 0
    const status = b.state === 'enabled' ? 'up' : b.state === 'new' ? 'waiting' : 'down'
    const pgStatus = h.lastError ? 'down' : h.lastOk ? 'up' : 'unknown'
    const share = total > 0 && b.state === 'enabled' ? weight / total : 0
    return [
      b.index,
      targets[b.index]!.host,
      targets[b.index]!.port,
      status,
      pgStatus,
      share.toFixed(6),
      'replica',
      'replica',
      ctx.counters.backend(b.index).reads,
      b.state === 'enabled' && weight > 0,
      b.name,
      b.state,
      b.since.toISOString(),
    ]
  })
  return {
    columns: ['node_id', 'hostname', 'port', 'status', 'pg_status', 'lb_weight', 'role', 'pg_role', 'select_cnt', 'load_balance_node', 'name', 'state', 'last_status_change'],
    rows,
    tag: 'SHOW',
  }
}
