// Prometheus metrics over HTTP (issue 8, item 4): `metrics.port` in the
// config. Gauges are read from the running proxy when scraped (sessions,
// backend states, lock manager, commits); the data path only bumps plain
// counters and one histogram (batch duration per kind), so an unscraped
// pgraid pays almost nothing.

import http from 'node:http'
import type { AddressInfo } from 'node:net'
import client from 'prom-client'
import type { ServerContext } from '../server-context.ts'
import { logPositions } from './log-positions.ts'

export function metricsRegistry(ctx: ServerContext): client.Registry {
  const r = new client.Registry()
  // A custom metric: prom-client's registry only reads name and calls get() (observe/histogram.ts).
  r.registerMetric(ctx.counters.batch as unknown as client.Metric)
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: client.Gauge) => void) =>
    r.registerMetric(new client.Gauge({ name, help, labelNames, registers: [], collect() { this.reset(); collect(this) } }))
  const counter = (name: string, help: string, value: () => number) =>
    r.registerMetric(new client.Counter({ name, help, registers: [], collect() { this.reset(); this.inc(value()) } }))
  gauge('pgraid_sessions', 'Client sessions (admin console sessions included)', [], (g) => g.set(ctx.sessions().length))
  gauge('pgraid_backend_up', 'Backend state: 1 for the state it is in (enabled, disabled, inconsistent, new), 0 for the others', ['backend', 'state'], (g) => {
    for (const b of ctx.states.list) if (b.state !== 'removed') for (const s of ['enabled', 'disabled', 'inconsistent', 'new']) g.set({ backend: b.name, state: s }, b.state === s ? 1 : 0)
  })
  gauge('pgraid_backend_reads_in_flight', 'Batches in flight per backend', ['backend'], (g) => ctx.states.list.forEach((b) => g.set({ backend: b.name }, ctx.stats[b.index]?.outstanding ?? 0)))
  gauge('pgraid_writer', '1 while this instance is the writer (holds the writer lock on a majority of the backends), 0 while it is a standby', [], (g) => g.set(ctx.ha.isWriter() ? 1 : 0))
  gauge('pgraid_writer_locks_held', 'Backends on which this instance holds the writer lock', [], (g) => g.set(ctx.ha.heldBy().length))
  // Read from the backends at scrape time (a few short queries per database): a backend out of
  // service shows how many committed transactions a resync would replay.
  r.registerMetric(
    new client.Gauge({
      name: 'pgraid_recovery_lag_transactions',
      help: 'Committed write transactions in the recovery log that this backend lacks (0 for a backend in step), per database pgraid has served; absent when the backend could not be read',
      labelNames: ['database', 'backend'],
      registers: [],
      async collect() {
        this.reset()
        for (const p of await logPositions(ctx, 2000)) if (p.lagTransactions !== null) this.set({ database: p.database, backend: p.backend }, p.lagTransactions)
      },
    }),
  )
  gauge('pgraid_commits_in_flight', 'COMMITs sent and not yet finished', [], (g) => g.set(ctx.commitsInFlight()))
  gauge('pgraid_commits_held', '1 while new COMMITs are held (resync, clone, verify)', [], (g) => g.set(ctx.held() ? 1 : 0))
  counter('pgraid_commits_total', 'Committed write transactions (with a recovery-log record)', () => ctx.commits.total)
  counter('pgraid_lock_waits_total', "Requests that waited in pgraid's lock manager", () => ctx.locks.waits)
  counter('pgraid_deadlocks_total', "Deadlocks pgraid's lock manager resolved (a victim got 40P01)", () => ctx.locks.deadlocks)
  counter('pgraid_divergences_total', 'Answers from a backend that disagreed with the majority (it was taken out as inconsistent)', () => ctx.counters.divergences)
  counter('pgraid_client_bytes_received_total', 'Bytes received from clients', () => ctx.counters.bytesFromClients)
  counter('pgraid_client_bytes_sent_total', 'Bytes sent to clients', () => ctx.counters.bytesToClients)
  client.collectDefaultMetrics({ register: r, prefix: 'pgraid_' })
  return r
}

export interface MetricsServer {
  port: number
  close(): Promise<void>
}

/** GET /metrics in the Prometheus text format; anything else 404. */
export async function startMetrics(ctx: ServerContext, host: string, port: number): Promise<MetricsServer> {
  const registry = metricsRegistry(ctx)
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('pgraid serves GET /metrics only\n')
      return
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
