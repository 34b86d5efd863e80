// The lifecycle figures (issue 6, BENCH_LIFECYCLE): on a separate, fresh cluster of three backends with an
// in-process pgraid, a pgbench scale-N database (BENCH_SCALE, 10 = 1M accounts) loaded through pgraid, then:
//  - verify: `VERIFY` of the whole database while pgbench -c 2 writes (wall time);
//  - resync: pg3 disabled, pgbench -c 4 writes for a while, then `RESYNC pg3` while pgbench -c 2 goes on:
//    records replayed per second, the commit hold pgraid reports, and the longest gap between successful
//    writes of a probe client inserting a row every 20 ms (the pause a client really sees);
//  - clone: `CLONE pg3` while pgbench -c 2 writes (wall time, rows copied), against a plain dump-and-restore
//    of the same tables from pg1 into a scratch database on pg3, with the same machine at the same moment:
//    pgbench -i -I dt there (tables), then per table `COPY ... TO STDOUT` piped into `COPY ... FROM STDIN`
//    (what pg_dump | psql does; there is no pg_dump for PostgreSQL 18 on this machine), then pgbench -I p
//    (primary keys). No load during the baseline.
// After each step the backends are compared with VERIFY.
import { performance } from 'node:perf_hooks'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { to as copyTo, from as copyFrom } from 'pg-copy-streams'
import { startCluster, type BackendAuth, type Cluster } from '../src/embedded/cluster.ts'
import { startPgraid, type PgraidHandle } from '../src/server.ts'
import { parseConfig } from '../src/config/schema.ts'
import { createLogger } from '../src/observe/logger.ts'
import type { BenchOptions } from './options.ts'
import { initDataset, spawnBench, type Endpoint } from './pgbench.ts'

export interface LifecycleRun {
  ok: true
  scale: number
  accounts: number
  verify: { ms: number; rows: number; identical: boolean; commitsDuring: number; heldMs: number }
  resync: {
    records: number
    ms: number
    /** Records per second of time spent fetching and replaying them. */ perSecond: number
    heldMs: number
    probeLongestGapMs: number
    probeLongestGapBeforeMs: number
    probeErrors: number
    identical: boolean
  }
  clone: { ms: number; rows: number; replayed: number; heldMs: number; commitsDuring: number; identical: boolean }
  dumpRestore: { ms: number; rows: number }
}

export type LifecycleOutcome = LifecycleRun | { ok: false; error: string }

export interface LifecycleContext {
  opts: BenchOptions
  auth: BackendAuth[]
  user: string
  password: string
  log(msg: string): void
  clusterStarted(c: Cluster): void
  clusterStopped(c: Cluster): void
}

const DB = 'postgres'
const ADMIN = { name: 'benchops', password: 'benchops-secret' }

export async function runLifecycle(ctx: LifecycleContext): Promise<LifecycleOutcome> {
  let cluster: Cluster | undefined
  let proxy: PgraidHandle | undefined
  try {
    ctx.log('lifecycle: starting a separate 3-backend cluster')
    cluster = await startCluster({ count: 3, auth: ctx.auth })
    ctx.clusterStarted(cluster)
    const backends = cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password }))
    proxy = await startPgraid(
      parseConfig(
        {
          listen: { host: '127.0.0.1', port: 0 },
          backends,
          users: [
            { name: ctx.user, auth: 'scram-sha-256', password: ctx.password },
            { name: ADMIN.name, password: ADMIN.password, admin: true },
          ],
          log: { level: 'error' },
        },
        'lifecycle bench',
      ),
      createLogger('error'),
    )
    const ep: Endpoint = { name: 'pgraid', host: '127.0.0.1', port: proxy.port, user: ctx.user, password: ctx.password, database: DB }
    ctx.log(`lifecycle: pgbench -i -s ${ctx.opts.scale} through pgraid`)
    await initDataset(ep, ctx.opts.scale, 'dtgp')
    const admin = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: ADMIN.name, password: ADMIN.password, database: 'pgraid' })
    await admin.connect()
    const context = proxy.context
    const load = (clients: number) => {
      const { child } = spawnBench(ep, { workload: 'tpcb', mode: 'prepared', clients, threads: Math.min(2, clients), seconds: 600 })
      return () => new Promise<void>((r) => (child.exitCode !== null ? r() : (child.once('exit', () => r()), child.kill('SIGINT'))))
    }
    const verify = async () => {
      const r = await admin.query<{ report: string }>('VERIFY JSON')
      const report = JSON.parse(r.rows[0]!.report) as {
        identical: boolean
        tables: { rows: number }[]
        databases: { heldMs: number }[]
        differences: { table: string; backend: string; problem: string; key: string | null; detail: string }[]
      }
      for (const d of report.differences.slice(0, 10)) ctx.log(`  DIFFERENCE ${d.table} ${d.backend} ${d.problem} ${d.key ?? ''} ${d.detail}`)
      return report
    }

    ctx.log('lifecycle: VERIFY under pgbench -c 2')
    let stop = load(2)
    await new Promise((r) => setTimeout(r, 2000))
    let c0 = context.commits.total
    let t0 = performance.now()
    const v = await verify()
    const verifyMs = performance.now() - t0
    const verifyCommits = context.commits.total - c0
    await stop()

    ctx.log('lifecycle: pg3 disabled, pgbench -c 4 for 10 s, then RESYNC pg3 under pgbench -c 2 and a probe')
    await admin.query('DISABLE pg3')
    stop = load(4)
    await new Promise((r) => setTimeout(r, 10_000))
    await stop()
    stop = load(2)
    const probe = startProbe(ep)
    await new Promise((r) => setTimeout(r, 1000))
    const probeStart = performance.now()
    t0 = performance.now()
    const rs = (await admin.query<{ records_applied: string; commits_held_ms: string; replay_ms: string }>('RESYNC pg3')).rows[0]!
    const resyncMs = performance.now() - t0
    await new Promise((r) => setTimeout(r, 1000))
    const p = await probe.stop()
    await stop()
    const records = Number(rs.records_applied)
    const afterResync = await verify()

    ctx.log('lifecycle: CLONE pg3 under pgbench -c 2')
    await admin.query('DISABLE pg3')
    stop = load(2)
    await new Promise((r) => setTimeout(r, 1000))
    c0 = context.commits.total
    t0 = performance.now()
    const cl = (await admin.query<{ rows: string; records_replayed: string; commits_held_ms: string }>('CLONE pg3')).rows[0]!
    const cloneMs = performance.now() - t0
    const cloneCommits = context.commits.total - c0
    await stop()
    const afterClone = await verify()

    ctx.log('lifecycle: baseline dump-and-restore pg1 -> pg3 (scratch database)')
    const dump = await dumpRestore(cluster, ctx.opts.scale)
    await admin.end()
    if (!v.identical || !afterResync.identical || !afterClone.identical)
      throw new Error(`the backends differ after ${!v.identical ? 'nothing (before resync)' : !afterResync.identical ? 'the resync' : 'the clone'} (differences in the log above)`)
    return {
      ok: true,
      scale: ctx.opts.scale,
      accounts: ctx.opts.scale * 100_000,
      verify: { ms: verifyMs, rows: v.tables.reduce((n, t) => n + t.rows, 0), identical: v.identical, commitsDuring: verifyCommits, heldMs: v.databases[0]?.heldMs ?? 0 },
      resync: {
        records,
        ms: resyncMs,
        perSecond: records / (Number(rs.replay_ms) / 1000),
        heldMs: Number(rs.commits_held_ms),
        probeLongestGapMs: p.longestGapAfter(probeStart),
        probeLongestGapBeforeMs: p.longestGapBefore(probeStart),
        probeErrors: p.errors,
        identical: afterResync.identical,
      },
      clone: { ms: cloneMs, rows: Number(cl.rows), replayed: Number(cl.records_replayed), heldMs: Number(cl.commits_held_ms), commitsDuring: cloneCommits, identical: afterClone.identical },
      dumpRestore: dump,
    }
  } catch (e) {
    return { ok: false, error: (e as Error).stack ?? String(e) }
  } finally {
    await proxy?.close().catch(() => {})
    if (cluster) {
      await cluster.stop().catch(() => {})
      ctx.clusterStopped(cluster)
    }
  }
}

/** A client inserting a row every 20 ms; the gaps between successful inserts show pauses. */
function startProbe(ep: Endpoint) {
  const c = new pg.Client({ host: ep.host, port: ep.port, user: ep.user, password: ep.password, database: ep.database })
  c.on('error', () => {})
  const oks: number[] = []
  let errors = 0
  let running = true
  const done = (async () => {
    await c.connect()
    await c.query('CREATE TABLE IF NOT EXISTS lifecycle_probe (id serial PRIMARY KEY, at timestamptz)')
    while (running) {
      try {
        await c.query('INSERT INTO lifecycle_probe (at) VALUES (now())')
        oks.push(performance.now())
      } catch {
        errors++
      }
      await new Promise((r) => setTimeout(r, 20))
    }
    await c.end()
  })()
  const gaps = (from: number, to: number) => {
    let worst = 0
    const xs = oks.filter((t) => t >= from && t <= to)
    for (let i = 1; i < xs.length; i++) worst = Math.max(worst, xs[i]! - xs[i - 1]!)
    return worst
  }
  return {
    async stop() {
      running = false
      await done
      return { errors, longestGapAfter: (t: number) => gaps(t, Infinity), longestGapBefore: (t: number) => gaps(0, t) }
    },
  }
}

/** The baseline: tables, COPY of every pgbench table pg1 -> pg3 (scratch database), primary keys. */
async function dumpRestore(cluster: Cluster, scale: number): Promise<{ ms: number; rows: number }> {
  const [src, dst] = [cluster.backends[0]!, cluster.backends[2]!]
  const admin = await dst.client()
  await admin.query('DROP DATABASE IF EXISTS dumprestore')
  await admin.query('CREATE DATABASE dumprestore')
  await admin.end()
  const target: Endpoint = { name: 'pg3 scratch', host: dst.host, port: dst.port, user: dst.user, password: dst.password, database: 'dumprestore' }
  const t0 = performance.now()
  await initDataset(target, scale, 'dt')
  const s = await src.client(DB)
  const d = await dst.client('dumprestore')
  const tables = ['pgbench_branches', 'pgbench_tellers', 'pgbench_accounts', 'pgbench_history']
  for (const table of tables) await pipeline(s.query(copyTo(`COPY ${table} TO STDOUT`)), d.query(copyFrom(`COPY ${table} FROM STDIN`)))
  await initDataset(target, scale, 'p')
  const ms = performance.now() - t0
  let rows = 0
  for (const table of tables) rows += Number((await d.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n)
  await s.end()
  await d.end()
  return { ms, rows }
}

// `npx tsx bench/lifecycle.ts`: this scenario alone, its report section printed (the full `npm run bench` puts it in
// docs/benchmarks.md).
if (import.meta.url === `file://${process.argv[1]}`) {
  const { readOptions } = await import('./options.ts')
  const { renderLifecycle, lifecycleTargets } = await import('./report-lifecycle.ts')
  const outcome = await runLifecycle({
    opts: readOptions(),
    auth: ['scram-sha-256', 'md5', 'trust'],
    user: 'app',
    password: 'app-secret',
    log: (m) => process.stderr.write(`${m}\n`),
    clusterStarted() {},
    clusterStopped() {},
  })
  process.stdout.write([...lifecycleTargets(outcome).lines, ...renderLifecycle(outcome)].join('\n') + '\n')
  process.exit(outcome.ok ? 0 : 1)
}
