// Prometheus metrics and health (issue 8, item 4; issue 21, item 5): pgraid started from a config
// file without metrics, turned on by RELOAD in the admin console; then, with real clients (node-postgres,
// fetch, curl), every series after some traffic: version, per-backend reads/writes/errors/connections,
// login failures by reason, takeouts by cause, clients waiting on PAUSE, lag in transactions and bytes,
// batch durations; /health and /health/read as backends leave and come back; every metric the Grafana
// dashboard (contrib/grafana/pgraid.json) uses is in the scrape; the endpoint moved, refused on a taken
// port (old one kept) and turned off by reload.

import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import pg from 'pg'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, client, freePort, waitFor } from '../harness/stack.ts'
import { exec } from '../harness/proc.ts'
import { VERSION } from '../../src/admin/commands/pooler.ts'

async function scrape(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`)
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`)
  return r.text()
}

function value(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

/** GET with curl, as a load balancer's check would: status and parsed JSON body. */
async function health(port: number, path: string): Promise<{ status: number; body: { ok: boolean; reason: string; inService: string[]; writeQuorum: number; role: string } }> {
  const r = await exec('curl', ['-s', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`])
  const cut = r.out.lastIndexOf('\n')
  return { status: Number(r.out.slice(cut + 1)), body: JSON.parse(r.out.slice(0, cut)) as never }
}

/** curl's exit code for GET /metrics on a fresh connection (7: could not connect). */
const curlExit = async (port: number) => (await exec('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${port}/metrics`])).code

/** Every metric name a PromQL expression of the dashboard uses (all of pgraid's start with pgraid_). */
function dashboardMetrics(dashboard: unknown): { exprs: string[]; names: Set<string> } {
  const exprs: string[] = []
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk)
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        if ((k === 'expr' || k === 'definition') && typeof x === 'string') exprs.push(x)
        else walk(x)
      }
  }
  walk(dashboard)
  return { exprs, names: new Set(exprs.flatMap((e) => e.match(/\bpgraid_[A-Za-z0-9_]+/g) ?? [])) }
}

t.test('metrics and health: turned on by RELOAD, every series after traffic, /health follows the quorum', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-metrics-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'pgraid.json')
  let cfg: Record<string, unknown> = {}
  const save = () => writeFile(file, JSON.stringify(cfg))
  // Every backend must be in service for a write: one DISABLE puts /health at 503.
  const stack = await stackFor(t, {
    configFile: async (g) => {
      cfg = { ...g, users: [...g.users, { name: 'ops', password: 'ops-secret', admin: true }], writeQuorum: 3 }
      await save()
      return file
    },
  })
  t.equal(stack.proxy.metricsPort, null, 'no metrics endpoint at start')
  const connect = async (user: string, password: string, database: string) => {
    const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user, password, database })
    c.on('error', () => {})
    await c.connect()
    return c
  }
  const admin = await connect('ops', 'ops-secret', 'pgraid')
  t.teardown(() => admin.end().catch(() => {}))
  const reload = async (edit: Record<string, unknown>) => {
    cfg = { ...cfg, ...edit }
    await save()
    return (await admin.query<{ changed: string }>('RELOAD')).rows.map((r) => r.changed)
  }

  const port = await freePort()
  t.same(await reload({ metrics: { port } }), [`metrics.port: null -> ${port}`], 'RELOAD turns metrics on')
  t.equal(stack.proxy.metricsPort, port, 'served on the port asked for')
  const first = await scrape(port)
  t.equal(value(first, `pgraid_info{version="${VERSION}"}`), 1, `pgraid_info{version="${VERSION}"}`)
  t.equal(value(first, 'pgraid_sessions'), 0, 'the admin session is not a client session')
  t.equal(value(first, 'pgraid_write_quorum'), 3)

  // Traffic: DDL, a transaction, a read, an error on every backend (a duplicate key).
  const c = await client(stack)
  t.teardown(() => c.end().catch(() => {}))
  await c.query('CREATE TABLE m (id int PRIMARY KEY, v int)')
  await c.query('BEGIN')
  await c.query('INSERT INTO m (id, v) VALUES (1, 1)')
  await c.query('COMMIT')
  await c.query('SELECT * FROM m')
  await c.query('INSERT INTO m (id, v) VALUES (1, 1)').catch(() => {})
  // Refused logins, one per reason a client can cause here.
  const refused = async (user: string, password: string, database: string) => {
    const e = await connect(user, password, database).then(
      (x) => x.end().then(() => null),
      (err: Error) => err,
    )
    t.ok(e, `login as ${user} to ${database} refused`)
  }
  await refused('app', 'wrong', 'postgres')
  await refused('nobody', 'x', 'postgres')
  await refused('app', 'app-secret', 'pgraid')
  await refused('app', 'app-secret', 'no_such_db')

  const r = await scrape(port)
  t.equal(value(r, 'pgraid_sessions'), 1, 'one client session')
  t.equal(value(r, 'pgraid_clients_waiting'), 0)
  t.equal(value(r, 'pgraid_writer'), 1, 'a lone pgraid is the writer')
  t.equal(value(r, 'pgraid_writer_locks_held'), 3, 'holding the writer lock on its three backends')
  for (const b of ['pg1', 'pg2', 'pg3']) {
    t.equal(value(r, `pgraid_backend_up{backend="${b}",state="enabled"}`), 1, `${b} enabled`)
    t.equal(value(r, `pgraid_backend_up{backend="${b}",state="disabled"}`), 0)
    t.ok((value(r, `pgraid_backend_writes_total{backend="${b}"}`) ?? 0) >= 3, `${b}: writes counted (CREATE, INSERT, COMMIT...)`)
    t.ok((value(r, `pgraid_backend_errors_total{backend="${b}"}`) ?? 0) >= 1, `${b}: the duplicate key counted as an error`)
    t.ok((value(r, `pgraid_backend_connections_total{backend="${b}"}`) ?? 0) >= 1, `${b}: the session's connection counted`)
    t.ok(value(r, `pgraid_backend_reads_total{backend="${b}"}`) !== undefined, `${b}: reads series`)
    t.equal(value(r, `pgraid_recovery_lag_transactions{database="postgres",backend="${b}"}`), 0, `${b}: in step, no lag in transactions`)
    t.equal(value(r, `pgraid_recovery_lag_bytes{database="postgres",backend="${b}"}`), 0, `${b}: nor in bytes`)
  }
  t.equal(['pg1', 'pg2', 'pg3'].reduce((n, b) => n + (value(r, `pgraid_backend_reads_total{backend="${b}"}`) ?? 0), 0) >= 1, true, 'the read was balanced to one backend')
  t.equal(value(r, 'pgraid_login_failures_total{reason="password"}'), 1, 'a wrong password')
  t.equal(value(r, 'pgraid_login_failures_total{reason="unknown-user"}'), 1, 'an unknown user')
  t.equal(value(r, 'pgraid_login_failures_total{reason="not-admin"}'), 1, 'the console for a user without admin')
  t.equal(value(r, 'pgraid_login_failures_total{reason="database"}'), 1, 'a database that does not exist')
  t.equal(value(r, 'pgraid_login_failures_total{reason="hba"}'), 0, 'other reasons present from 0')
  t.equal(value(r, 'pgraid_backend_takeouts_total{cause="operator"}'), 0, 'takeout causes present from 0')
  t.ok((value(r, 'pgraid_commits_total') ?? 0) >= 2, 'commits counted (CREATE TABLE and the transaction)')
  t.ok((value(r, 'pgraid_batch_duration_seconds_count{kind="read"}') ?? 0) >= 1, 'a read batch timed')
  t.ok((value(r, 'pgraid_batch_duration_seconds_count{kind="commit"}') ?? 0) >= 1, 'a commit batch timed')
  t.ok((value(r, 'pgraid_batch_duration_seconds_bucket{le="+Inf",kind="write"}') ?? 0) >= 1, 'write batches timed, with buckets')
  t.ok((value(r, 'pgraid_client_bytes_received_total') ?? 0) > 0, 'client bytes counted')
  t.ok(value(r, 'pgraid_lock_waits_total') !== undefined && value(r, 'pgraid_deadlocks_total') !== undefined)
  t.equal(value(r, 'pgraid_divergences_total'), 0)
  t.match(r, /pgraid_process_cpu_user_seconds_total/, 'process metrics')

  await t.test('the Grafana dashboard uses only metrics the scrape has', async (t) => {
    const dashboard: unknown = JSON.parse(await readFile(join(import.meta.dirname, '../../contrib/grafana/pgraid.json'), 'utf8'))
    const { exprs, names } = dashboardMetrics(dashboard)
    t.ok(exprs.length >= 20, `${exprs.length} expressions`)
    for (const e of exprs) t.match(e, /\bpgraid_/, `uses a pgraid metric: ${e.slice(0, 60)}`)
    const scraped = new Set(
      r
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => l.split(/[{ ]/)[0]!),
    )
    const histograms = new Set([...r.matchAll(/^# TYPE (\S+) (?:histogram|summary)$/gm)].map((m) => m[1]!))
    for (const n of [...names].sort()) {
      const base = n.replace(/_(bucket|sum|count)$/, '')
      t.ok(scraped.has(n) || histograms.has(base), `${n} is in the scrape`)
    }
    for (const n of [
      'pgraid_backend_up',
      'pgraid_backend_reads_total',
      'pgraid_backend_writes_total',
      'pgraid_backend_errors_total',
      'pgraid_batch_duration_seconds_bucket',
      'pgraid_commits_total',
      'pgraid_commits_in_flight',
      'pgraid_recovery_lag_transactions',
      'pgraid_recovery_lag_bytes',
      'pgraid_sessions',
      'pgraid_clients_waiting',
      'pgraid_login_failures_total',
      'pgraid_backend_takeouts_total',
    ])
      t.ok(names.has(n), `the dashboard shows ${n}`)
    t.ok(
      exprs.some((e) => /histogram_quantile\(0\.99, .*pgraid_batch_duration_seconds_bucket/.test(e)),
      'latency quantiles from the histogram',
    )
  })

  await t.test('login failures: hba, too-many, protocol, timeout', async (t) => {
    const users = cfg.users as { name: string }[]
    // hba rules for the console and app only: md5user matches none.
    await reload({ hba: ['host pgraid ops 127.0.0.1/32 scram-sha-256', 'host all app 127.0.0.1/32 scram-sha-256'] })
    await refused('md5user', 'md5-secret', 'postgres')
    // app has one session (c) already.
    await reload({ hba: [], users: users.map((u) => (u.name === 'app' ? { ...u, maxConnections: 1 } : u)) })
    await refused('app', 'app-secret', 'postgres')
    await reload({ users, timeouts: { authMs: 200 } })
    // A startup packet for protocol 2.0; then a connection that never logs in.
    const raw = (bytes: Buffer | null) =>
      new Promise<void>((resolve) => {
        const s = net.connect(stack.port, '127.0.0.1', () => bytes && s.write(bytes))
        s.on('error', () => {})
        s.on('close', () => resolve())
        s.resume()
      })
    await raw(Buffer.from([0, 0, 0, 8, 0, 2, 0, 0]))
    await raw(null)
    await reload({ timeouts: {} })
    const m = await scrape(port)
    for (const reason of ['hba', 'too-many', 'protocol', 'timeout']) t.equal(value(m, `pgraid_login_failures_total{reason="${reason}"}`), 1, reason)
    t.equal(value(m, 'pgraid_login_failures_total{reason="password"}'), 1, 'the others unchanged')
  })

  await t.test('/health and /health/read follow the backends in service and the write quorum', async (t) => {
    const ok = await health(port, '/health')
    t.equal(ok.status, 200, 'writer with every backend: 200')
    t.same([ok.body.ok, ok.body.role, ok.body.inService, ok.body.writeQuorum], [true, 'writer', ['pg1', 'pg2', 'pg3'], 3])
    t.equal((await health(port, '/health/read')).status, 200)
    t.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404, 'other paths: 404')
    await admin.query('DISABLE pg3')
    const down = await health(port, '/health')
    t.equal(down.status, 503, 'two backends in service, quorum three: 503')
    t.match(down.body.reason, /2 backend\(s\) in service, fewer than the write quorum of 3/)
    t.same(down.body.inService, ['pg1', 'pg2'])
    const read = await health(port, '/health/read')
    t.equal(read.status, 200, 'reads are still served')
    t.ok(read.body.ok)
    const m = await scrape(port)
    t.equal(value(m, 'pgraid_backend_takeouts_total{cause="operator"}'), 1, 'DISABLE counted as an operator takeout')
    t.equal(value(m, 'pgraid_backend_up{backend="pg3",state="disabled"}'), 1)
    await admin.query('ENABLE pg3')
    t.equal((await health(port, '/health')).status, 200, 'back to 200 once pg3 is enabled')
  })

  await t.test('clients waiting on PAUSE are counted', async (t) => {
    await admin.query('PAUSE')
    const q = c.query('SELECT 1 AS resumed')
    await waitFor('the client to wait on PAUSE', async () => value(await scrape(port), 'pgraid_clients_waiting') === 1, 20_000)
    t.pass('pgraid_clients_waiting 1 while the client waits')
    t.ok((value(await scrape(port), 'pgraid_clients_waiting_max_seconds') ?? -1) >= 0, 'its wait is measured')
    await admin.query('RESUME')
    t.same((await q).rows, [{ resumed: 1 }])
    t.equal(value(await scrape(port), 'pgraid_clients_waiting'), 0, 'none waits after RESUME')
  })

  await t.test('a backend taken out lags in transactions and bytes', async (t) => {
    // A majority quorum again, so writes go on while pg2 is out.
    t.same(await reload({ writeQuorum: undefined }), ['writeQuorum: 3 -> 2'])
    const d = await stack.cluster.backends[1]!.client()
    await d.query('UPDATE m SET v = 99 WHERE id = 1')
    await d.end()
    await c.query('UPDATE m SET v = v + 1 WHERE id = 1 RETURNING v')
    const after = await scrape(port)
    t.equal(value(after, 'pgraid_divergences_total'), 1)
    t.equal(value(after, 'pgraid_backend_up{backend="pg2",state="inconsistent"}'), 1)
    t.equal(value(after, 'pgraid_backend_takeouts_total{cause="diverged"}'), 1, 'counted as a takeout by divergence')
    await c.query('INSERT INTO m (id, v) VALUES (2, 2)')
    const lagging = await scrape(port)
    t.ok((value(lagging, 'pgraid_recovery_lag_transactions{database="postgres",backend="pg2"}') ?? 0) >= 1, 'the backend taken out lags by the commits it missed')
    t.ok((value(lagging, 'pgraid_recovery_lag_bytes{database="postgres",backend="pg2"}') ?? 0) > 0, 'and by their size in bytes')
    t.equal(value(lagging, 'pgraid_recovery_lag_transactions{database="postgres",backend="pg1"}'), 0)
    t.equal(value(lagging, 'pgraid_recovery_lag_bytes{database="postgres",backend="pg1"}'), 0)
    const h = await health(port, '/health')
    t.equal(h.status, 200, 'two of three in service meet a majority quorum')
  })

  await t.test('RELOAD moves the endpoint, refuses a port in use (the old one serves on), turns it off', async (t) => {
    const next = await freePort()
    t.same(await reload({ metrics: { port: next } }), [`metrics.port: ${port} -> ${next}`])
    t.equal(stack.proxy.metricsPort, next)
    t.equal(value(await scrape(next), 'pgraid_writer'), 1, 'served on the new port')
    t.equal(await curlExit(port), 7, 'the old port is closed (curl: could not connect)')
    // A port someone else listens on: the reload is refused and nothing changes.
    const squatter = http.createServer()
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve))
    t.teardown(() => squatter.close())
    const taken = (squatter.address() as { port: number }).port
    const e = await reload({ metrics: { port: taken } }).then(
      () => null,
      (err: Error & { code?: string; detail?: string }) => err,
    )
    t.equal(e?.code, 'F0000', 'refused')
    t.match(e?.detail ?? '', new RegExp(`metrics\\.port: cannot listen on 127\\.0\\.0\\.1:${taken}`), 'naming metrics.port')
    t.equal(stack.proxy.metricsPort, next, 'the endpoint did not move')
    t.equal(value(await scrape(next), 'pgraid_writer'), 1, 'and still serves')
    t.same(await reload({ metrics: { port: null } }), [`metrics.port: ${next} -> null`], 'turned off')
    t.equal(stack.proxy.metricsPort, null)
    t.equal(await curlExit(next), 7, 'nothing listens any more')
  })
})

t.test('slow batch log: statements, backends and duration of a batch over log.slowMs', async (t) => {
  const cluster = (await import('../../src/embedded/cluster.ts')).startCluster
  const { startPgraid } = await import('../../src/server.ts')
  const { parseConfig } = await import('../../src/config/schema.ts')
  const { createLogger } = await import('../../src/observe/logger.ts')
  const c = await cluster({ count: 2 })
  t.teardown(() => c.stop())
  const lines: string[] = []
  const config = parseConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      backends: c.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })),
      users: [{ name: 'app', password: 'app-secret' }],
      log: { level: 'warn', slowMs: 100 },
    },
    'slow',
  )
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
