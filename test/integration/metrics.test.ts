// Prometheus metrics (issue 8, item 4): GET /metrics on metrics.port serves
// sessions, backend states, batch durations per kind, commits, lock waits,
// divergences and client bytes, read from the running proxy; other paths 404.

import t from 'tap'
import http from 'node:http'
import pg from 'pg'
import { stackFor, client } from '../harness/stack.ts'

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

function value(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('metrics endpoint', async (t) => {
  const stack = await stackFor(t, { config: { metrics: { port: 0 }, users: [{ name: 'app', auth: 'scram-sha-256', password: 'app-secret' }, { name: 'ops', password: 'ops-secret', admin: true }] } })
  const port = stack.proxy.metricsPort!
  t.ok(port > 0, 'a metrics port was chosen')
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE m (id int PRIMARY KEY, v int)')
  await c.query('BEGIN')
  await c.query('INSERT INTO m (id, v) VALUES (1, 1)')
  await c.query('COMMIT')
  await c.query('SELECT * FROM m')
  const r = await get(port, '/metrics')
  t.equal(r.status, 200)
  t.equal(value(r.body, 'pgraid_sessions'), 1, 'one session')
  t.equal(value(r.body, 'pgraid_backend_up{backend="pg2",state="enabled"}'), 1)
  t.equal(value(r.body, 'pgraid_backend_up{backend="pg2",state="disabled"}'), 0)
  t.equal(value(r.body, 'pgraid_writer'), 1, 'a lone pgraid is the writer')
  t.equal(value(r.body, 'pgraid_writer_locks_held'), 3, 'holding the writer lock on its three backends')
  t.ok((value(r.body, 'pgraid_commits_total') ?? 0) >= 2, 'commits counted (CREATE TABLE and the transaction)')
  t.ok((value(r.body, 'pgraid_batch_duration_seconds_count{kind="read"}') ?? 0) >= 1, 'a read batch timed')
  t.ok((value(r.body, 'pgraid_batch_duration_seconds_count{kind="commit"}') ?? 0) >= 1, 'a commit batch timed')
  t.ok((value(r.body, 'pgraid_client_bytes_received_total') ?? 0) > 0, 'client bytes counted')
  t.ok(value(r.body, 'pgraid_lock_waits_total') !== undefined && value(r.body, 'pgraid_deadlocks_total') !== undefined)
  t.equal(value(r.body, 'pgraid_divergences_total'), 0)
  t.match(r.body, /pgraid_process_cpu_user_seconds_total/, 'process metrics')
  t.equal(value(r.body, 'pgraid_recovery_lag_transactions{database="postgres",backend="pg2"}'), 0, 'a backend in step lags by nothing')

  // A backend whose data differs is outvoted: the divergence and its state show up.
  const d = await stack.cluster.backends[1]!.client()
  await d.query('UPDATE m SET v = 99 WHERE id = 1')
  await d.end()
  await c.query('UPDATE m SET v = v + 1 WHERE id = 1 RETURNING v')
  const after = await get(port, '/metrics')
  t.equal(value(after.body, 'pgraid_divergences_total'), 1)
  t.equal(value(after.body, 'pgraid_backend_up{backend="pg2",state="inconsistent"}'), 1)
  await c.query('INSERT INTO m (id, v) VALUES (2, 2)')
  const lagging = await get(port, '/metrics')
  t.ok((value(lagging.body, 'pgraid_recovery_lag_transactions{database="postgres",backend="pg2"}') ?? 0) >= 1, 'the backend taken out lags by the commits it missed')
  t.equal(value(lagging.body, 'pgraid_recovery_lag_transactions{database="postgres",backend="pg1"}'), 0)
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.equal(value((await get(port, '/metrics')).body, 'pgraid_sessions'), 2, 'the admin session counts')
  await admin.end()

  const other = await get(port, '/')
  t.equal(other.status, 404)
})

t.test('slow batch log: statements, backends and duration of a batch over log.slowMs', async (t) => {
  const cluster = (await import('../../src/embedded/cluster.ts')).startCluster
  const { startPgraid } = await import('../../src/server.ts')
  const { parseConfig } = await import('../../src/config/schema.ts')
  const { createLogger } = await import('../../src/observe/logger.ts')
  const c = await cluster({ count: 2 })
  t.teardown(() => c.stop())
  const lines: string[] = []
  const config = parseConfig({ listen: { host: '127.0.0.1', port: 0 }, backends: c.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })), users: [{ name: 'app', password: 'app-secret' }], log: { level: 'warn', slowMs: 100 } }, 'slow')
  const proxy = await startPgraid(config, createLogger('warn', { write: (s: string) => void lines.push(s) }))
  t.teardown(() => proxy.close())
  const p = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app', password: 'app-secret', database: 'postgres' })
  await p.connect()
  t.teardown(() => p.end())
  await p.query('SELECT 1 AS fast')
  await p.query('SELECT pg_sleep(0.3) AS slow')
  const slow = lines.map((l) => JSON.parse(l) as { msg: string; ms: number; statements: string[]; backends: string[] }).filter((l) => l.msg === 'slow batch')
  t.equal(slow.length, 1, 'one slow batch logged')
  t.same(slow[0]?.statements, ['SELECT pg_sleep(0.3) AS slow'])
  t.ok((slow[0]?.ms ?? 0) >= 100, 'with its duration')
  t.ok((slow[0]?.backends.length ?? 0) >= 1, 'and its backends')
})
