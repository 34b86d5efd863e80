// Prometheus metrics over HTTP (issue 8, item 4; issue 21, item 5): `metrics.port` in the config,
// docs/admin.md lists every series. Gauges and counters are read from the running proxy when
// scraped (sessions, backend states and counts, lock manager, commits); the data path only bumps
// plain numbers and one FastHistogram (batch duration per kind), so an unscraped pgraid pays
// almost nothing. The same HTTP server answers /health and /health/read (health.ts).

import http from 'node:http'
import type { AddressInfo } from 'node:net'
import client from 'prom-client'
import { clientSessions, type ServerContext } from '../server-context.ts'
import type { OutCause } from '../cluster/states.ts'
import { logPositions, type LogPosition } from './log-positions.ts'
import { VERSION } from './commands/pooler.ts'
import { healthAnswer } from './health.ts'

/** Every takeout cause, so each series exists from 0 (the compiler checks the list is complete). */
const OUT_CAUSES = Object.keys({
  unreachable: 1,
  refused: 1,
  restarted: 1,
  behind: 1,
  'new-system': 1,
  stalled: 1,
  diverged: 1,
  'replay-failed': 1,
  'unlogged-change': 1,
  operator: 1,
  recorded: 1,
  removed: 1,
  other: 1,
} satisfies Record<OutCause, 1>) as OutCause[]

const BACKEND_STATES = ['enabled', 'disabled', 'inconsistent', 'new'] as const

export function metricsRegistry(ctx: ServerContext): client.Registry {
  const r = new client.Registry()
  // A custom metric: prom-client's registry only reads name and calls get() (observe/histogram.ts).
  r.registerMetric(ctx.counters.batch as unknown as client.Metric)
  // Every series is read from pgraid's state when scraped: reset, then filled by `collect`.
  type Collect<M> = (m: M) => void | Promise<void>
  const scraped = <M extends { reset(): void }>(name: string, help: string, labelNames: string[], collect: Collect<M>) => ({
    name,
    help,
    labelNames,
    registers: [],
    collect(this: M) {
      this.reset()
      return collect(this)
    },
  })
  const gauge = (name: string, help: string, labelNames: string[], collect: Collect<client.Gauge>) => r.registerMetric(new client.Gauge(scraped(name, help, labelNames, collect)))
  const counter = (name: string, help: string, labelNames: string[], collect: Collect<client.Counter>) => r.registerMetric(new client.Counter(scraped(name, help, labelNames, collect)))
  const backends = () => ctx.states.list.filter((b) => b.state !== 'removed')
  const clients = () => clientSessions(ctx)

  gauge('pgraid_info', 'Always 1; the label says which pgraid runs', ['version'], (g) => g.set({ version: VERSION }, 1))
  gauge('pgraid_sessions', 'Client sessions (admin console sessions not counted)', [], (g) => g.set(clients().length))
  gauge('pgraid_clients_waiting', 'Client sessions waiting on PAUSE for RESUME (PgBouncer cl_waiting)', [], (g) => g.set(clients().filter((s) => s.pausedSince).length))
  gauge('pgraid_clients_waiting_max_seconds', 'Longest wait on PAUSE of a client session now, 0 when none waits (PgBouncer maxwait)', [], (g) => {
    const since = clients().reduce((min, s) => Math.min(min, s.pausedSince?.getTime() ?? Infinity), Infinity)
    g.set(since === Infinity ? 0 : Math.max(0, (Date.now() - since) / 1000))
  })
  gauge('pgraid_backend_up', 'Backend state: 1 for the state it is in (enabled, disabled, inconsistent, new), 0 for the others', ['backend', 'state'], (g) => {
    for (const b of backends()) for (const s of BACKEND_STATES) g.set({ backend: b.name, state: s }, b.state === s ? 1 : 0)
  })
  gauge('pgraid_backend_reads_in_flight', 'Batches in flight per backend', ['backend'], (g) => backends().forEach((b) => g.set({ backend: b.name }, ctx.stats[b.index]?.outstanding ?? 0)))
  const perBackend = (name: string, help: string, pick: (i: number) => number) => counter(name, help, ['backend'], (c) => backends().forEach((b) => c.inc({ backend: b.name }, pick(b.index))))
  perBackend('pgraid_backend_reads_total', 'Batches balanced to this backend alone (reads), since start', (i) => ctx.counters.backend(i).reads)
  perBackend('pgraid_backend_writes_total', 'Batches sent to this backend with the others (writes, and everything inside a write transaction), since start', (i) => ctx.counters.backend(i).writes)
  perBackend('pgraid_backend_errors_total', "ErrorResponses this backend answered to clients' statements, since start", (i) => ctx.counters.backend(i).errors)
  perBackend('pgraid_backend_connections_total', 'Session connections opened to this backend (login completed), since start', (i) => ctx.counters.backend(i).connections)
  counter(
    'pgraid_backend_takeouts_total',
    'Backends taken out of service, by cause (unreachable, refused, restarted, behind, new-system, stalled, diverged, replay-failed, unlogged-change, operator, recorded, removed, other)',
    ['cause'],
    (c) => {
      for (const cause of OUT_CAUSES) c.inc({ cause }, ctx.counters.takeouts.get(cause) ?? 0)
    },
  )
  counter(
    'pgraid_login_failures_total',
    'Client logins refused, by reason (password, unknown-user, hba, cert, tls, not-admin, database, too-many, unavailable, protocol, timeout)',
    ['reason'],
    (c) => {
      for (const [reason, n] of ctx.counters.loginFailures) c.inc({ reason }, n)
    },
  )
  gauge('pgraid_writer', '1 while this instance is the writer (holds the writer lock on a majority of the backends), 0 while it is a standby', [], (g) => g.set(ctx.ha.isWriter() ? 1 : 0))
  gauge('pgraid_writer_locks_held', 'Backends on which this instance holds the writer lock', [], (g) => g.set(ctx.ha.heldBy().length))
  gauge('pgraid_write_quorum', 'Backends that must be in service for a write to be accepted (writeQuorum)', [], (g) => g.set(ctx.writeQuorum))
  // Read from the backends at scrape time (a few short queries per database), once for both lag
  // gauges: a backend out of service shows what a resync would replay.
  let reading: Promise<LogPosition[]> | null = null
  const positions = () => (reading ??= logPositions(ctx, 2000).finally(() => (reading = null)))
  const lag = (name: string, help: string, pick: (p: LogPosition) => number | null) =>
    gauge(name, help, ['database', 'backend'], async (g) => {
      for (const p of await positions()) {
        const v = pick(p)
        if (v !== null) g.set({ database: p.database, backend: p.backend }, v)
      }
    })
  lag(
    'pgraid_recovery_lag_transactions',
    'Committed write transactions in the recovery log that this backend lacks (0 for a backend in step), per database pgraid has served; absent when the backend could not be read',
    (p) => p.lagTransactions,
  )
  lag(
    'pgraid_recovery_lag_bytes',
    'Size of the recovery-log records this backend lacks (0 for a backend in step), per database pgraid has served; absent when the backend could not be read',
    (p) => p.lagBytes,
  )
  gauge('pgraid_commits_in_flight', 'COMMITs sent and not yet finished', [], (g) => g.set(ctx.commitsInFlight()))
  gauge('pgraid_commits_held', '1 while new COMMITs are held (resync, clone, verify)', [], (g) => g.set(ctx.held() ? 1 : 0))
  const total = (name: string, help: string, value: () => number) => counter(name, help, [], (c) => c.inc(value()))
  total('pgraid_commits_total', 'Committed write transactions (with a recovery-log record)', () => ctx.commits.total)
  total('pgraid_lock_waits_total', "Requests that waited in pgraid's lock manager", () => ctx.locks.waits)
  total('pgraid_deadlocks_total', "Deadlocks pgraid's lock manager resolved (a victim got 40P01)", () => ctx.locks.deadlocks)
  total('pgraid_divergences_total', 'Answers from a backend that disagreed with the majority (it was taken out as inconsistent)', () => ctx.counters.divergences)
  total('pgraid_client_bytes_received_total', 'Bytes received from clients', () => ctx.counters.bytesFromClients)
  total('pgraid_client_bytes_sent_total', 'Bytes sent to clients', () => ctx.counters.bytesToClients)
  client.collectDefaultMetrics({ register: r, prefix: 'pgraid_' })
  return r
}

export interface MetricsServer {
  port: number
  close(): Promise<void>
}

/** GET /metrics in the Prometheus text format, GET /health and /health/read; anything else 404. */
export async function startMetrics(ctx: ServerContext, host: string, port: number, registry = metricsRegistry(ctx)): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'GET' && path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
      )
      return
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && (path === '/health' || path === '/health/read')) {
      const a = healthAnswer(ctx, path === '/health' ? 'write' : 'read')
      res.writeHead(a.ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : `${JSON.stringify(a)}\n`)
      return
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('pgraid serves GET /metrics, /health and /health/read only\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        // A scraper's keep-alive connection must not keep the port (a reload may reopen it at once).
        server.closeAllConnections()
      }),
  }
}

/**
 * The endpoint as `metrics.host`/`metrics.port` ask for it, reopened by a reload that changes them.
 * One registry for the process (its default metrics observe the event loop and GC from creation).
 */
export class MetricsEndpoint {
  private server: MetricsServer | null = null
  private registry: client.Registry | null = null
  private host = ''

  constructor(private readonly ctx: ServerContext) {}

  /** The port served now (null: none). */
  get port(): number | null {
    return this.server?.port ?? null
  }

  async open(host: string, port: number | null): Promise<void> {
    if (port === null) return
    this.registry ??= metricsRegistry(this.ctx)
    this.server = await startMetrics(this.ctx, host, port, this.registry)
    this.host = host
  }

  /**
   * Reload: serves at `host`/`port` (null: none) from now on. Throws, leaving the old endpoint
   * serving, when the new address cannot be listened on. `undo` puts the old one back (the rest of
   * the reload was refused after all). The old one is closed first when it holds the same port.
   */
  async moveTo(host: string, port: number | null): Promise<{ undo(): Promise<void> }> {
    const old = this.server ? { host: this.host, port: this.server.port, server: this.server } : null
    const clash = old !== null && port !== null && port !== 0 && port === old.port
    if (old && clash) await old.server.close()
    try {
      this.server = null
      await this.open(host, port)
    } catch (e) {
      if (old && clash) await this.open(old.host, old.port).catch((e2: Error) => this.ctx.log.error({ err: e2.message, port: old.port }, 'metrics endpoint could not be reopened at its old address'))
      else this.server = old?.server ?? null
      if (old) this.host = old.host
      throw e
    }
    if (old && !clash) await old.server.close()
    return {
      undo: async () => {
        await this.server?.close()
        this.server = null
        if (old) await this.open(old.host, old.port)
      },
    }
  }

  async close(): Promise<void> {
    await this.server?.close()
    this.server = null
  }
}
