// The memory figure (issue 8, BENCH_RSS): pgraid's resident set with 200 idle client sessions, goal
// <= 100 MiB. A separate 3-backend cluster (max_connections 700: every pgraid session holds one
// connection per backend, so 200 sessions are 600 backend connections) and pgraid as a child process
// (`node bin/pgraid.js start -c <config>`), so /proc/<pid>/status is pgraid's alone. VmRSS is read a
// few times before any client connects and again with the sessions open (each ran one SELECT, then
// sits idle); the medians are reported, with the peak (VmHWM) and the cost per session.
//
// pgraid runs the way production starts it: the compiled JavaScript of the installed package (dist/,
// built here first with `npm run build`; PGRAID_DIST=1), no tsx, with the NODE_OPTIONS of the systemd
// unit contrib/pgraid.service (V8's young-generation cap). BENCH_RSS_CODE=src runs the checkout's way
// instead (TypeScript through tsx), BENCH_RSS_NODE_OPTIONS replaces the unit's NODE_OPTIONS (e.g. empty
// for V8's defaults), for comparison.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { startCluster, type BackendAuth, type Cluster } from '../src/embedded/cluster.ts'
import { proxyConfig, startProxy, type Proxy } from './proxy.ts'

export const RSS = { sessions: 200, goalMiB: 100, readings: 7, intervalMs: 500, connectBatch: 20 } as const

/** Which code the pgraid child runs: dist (compiled, as installed; the default) or src (tsx). */
export type RssCode = 'dist' | 'src'
export function rssCode(): RssCode {
  const v = process.env.BENCH_RSS_CODE ?? 'dist'
  if (v !== 'dist' && v !== 'src') throw new Error(`BENCH_RSS_CODE must be dist or src, not ${v}`)
  return v
}

/** The NODE_OPTIONS production runs with: the systemd unit's `Environment=NODE_OPTIONS=...`. */
export function productionNodeOptions(repoRoot: string): string {
  const unit = readFileSync(path.join(repoRoot, 'contrib', 'pgraid.service'), 'utf8')
  return /^Environment=NODE_OPTIONS=(.*)$/m.exec(unit)?.[1]?.trim() ?? ''
}

export interface RssContext {
  auth: BackendAuth[]
  user: string
  password: string
  repoRoot: string
  log(msg: string): void
  clusterStarted(c: Cluster): void
  clusterStopped(c: Cluster): void
}

export interface RssFigures {
  sessions: number
  /** Median VmRSS in bytes: just started, no client yet. */
  idle: number
  /** Median VmRSS in bytes with every session open and idle. */
  withSessions: number
  /** VmHWM at the end (bytes): the peak, connection storm included. */
  peak: number
  /** The readings themselves (bytes), for the report. */
  idleReadings: number[]
  withReadings: number[]
  /** Backend connections pgraid held on each backend with the sessions open (pg_stat_activity). */
  backendConnections: number[]
  nodeVersion: string
  code: RssCode
  nodeOptions: string
}

export type RssOutcome = { ok: true; figures: RssFigures } | { ok: false; error: string }

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

async function readings(proxy: Proxy): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < RSS.readings; i++) {
    if (i > 0) await sleep(RSS.intervalMs)
    out.push(proxy.rss())
  }
  return out
}

export async function runRss(ctx: RssContext): Promise<RssOutcome> {
  let cluster: Cluster | undefined
  let proxy: Proxy | undefined
  const clients: pg.Client[] = []
  const code = rssCode()
  const nodeOptions = process.env.BENCH_RSS_NODE_OPTIONS ?? productionNodeOptions(ctx.repoRoot)
  try {
    if (code === 'dist') {
      ctx.log('rss: npm run build (pgraid runs the compiled dist/, as the installed package does)')
      execFileSync('npm', ['run', '--silent', 'build'], { cwd: ctx.repoRoot, stdio: ['ignore', 'ignore', 'inherit'] })
    }
    ctx.log(`rss: starting a separate 3-backend cluster (max_connections 700)`)
    cluster = await startCluster({ count: 3, auth: ctx.auth, settings: { max_connections: '700' } })
    ctx.clusterStarted(cluster)
    proxy = await startProxy('child', proxyConfig(cluster.backends, { name: ctx.user, password: ctx.password }, 'warn'), ctx.repoRoot, {
      env: { PGRAID_DIST: code === 'dist' ? '1' : '0', NODE_OPTIONS: [process.env.NODE_OPTIONS ?? '', nodeOptions].join(' ').trim() },
    })
    await sleep(1000) // let start-up garbage settle before the first reading
    const idleReadings = await readings(proxy)
    ctx.log(`rss: pgraid pid ${proxy.pid}, idle ${(median(idleReadings) / 2 ** 20).toFixed(1)} MiB; opening ${RSS.sessions} sessions`)
    const host = proxy.host
    const port = proxy.port
    for (let opened = 0; opened < RSS.sessions; opened += RSS.connectBatch) {
      const batch = Array.from({ length: Math.min(RSS.connectBatch, RSS.sessions - opened) }, async () => {
        const c = new pg.Client({ host, port, user: ctx.user, password: ctx.password, database: 'postgres' })
        c.on('error', () => {})
        clients.push(c)
        await c.connect()
        await c.query('SELECT 1')
      })
      await Promise.all(batch)
    }
    await sleep(2000)
    const withReadings = await readings(proxy)
    const backendConnections = await Promise.all(
      cluster.backends.map(async (b) => {
        const d = await b.client()
        try {
          // Every connection but the harness's own: pgraid's sessions (and its control connections).
          const r = await d.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = $1 AND pid <> pg_backend_pid()', ['client backend'])
          return r.rows[0]!.n
        } finally {
          await d.end()
        }
      }),
    )
    const figures: RssFigures = {
      sessions: RSS.sessions,
      idle: median(idleReadings),
      withSessions: median(withReadings),
      peak: proxy.peakRss(),
      idleReadings,
      withReadings,
      backendConnections,
      nodeVersion: process.version,
      code,
      nodeOptions,
    }
    ctx.log(
      `rss: with ${RSS.sessions} sessions ${(figures.withSessions / 2 ** 20).toFixed(1)} MiB (peak ${(figures.peak / 2 ** 20).toFixed(1)} MiB); backend connections ${backendConnections.join(' / ')}`,
    )
    return { ok: true, figures }
  } catch (e) {
    return { ok: false, error: (e as Error).stack ?? String(e) }
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})))
    await proxy?.stop().catch(() => {})
    if (cluster) {
      await cluster.stop().catch(() => {})
      ctx.clusterStopped(cluster)
    }
  }
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1)

export function renderRss(r: RssOutcome | undefined): { targets: string[]; section: string[] } {
  if (!r) return { targets: [], section: [] }
  if (!r.ok) {
    return {
      targets: [`- RSS at ${RSS.sessions} idle client sessions: the scenario did not complete (${r.error.split('\n')[0]}) - **not met**`],
      section: ['', `## Memory: ${RSS.sessions} idle sessions`, '', '```', r.error, '```'],
    }
  }
  const f = r.figures
  const met = f.withSessions <= RSS.goalMiB * 2 ** 20
  const perSession = (f.withSessions - f.idle) / f.sessions / 1024
  return {
    targets: [`- RSS at ${f.sessions} idle client sessions <= ${RSS.goalMiB} MiB: ${mib(f.withSessions)} MiB - ${met ? '**met**' : '**not met**'}`],
    section: [
      '',
      `## Memory: ${f.sessions} idle sessions`,
      '',
      `pgraid as a child process (\`node bin/pgraid.js start\`, Node ${f.nodeVersion}, ${f.code === 'dist' ? 'the compiled dist/ as installed, no tsx' : 'TypeScript sources through tsx (BENCH_RSS_CODE=src)'}, NODE_OPTIONS=${f.nodeOptions ? `\`${f.nodeOptions}\`` : '(none)'}${f.nodeOptions === productionNodeOptions(path.join(import.meta.dirname, '..')) ? ' as in contrib/pgraid.service' : ''}) over a separate 3-backend cluster (max_connections 700); ${f.sessions} node-postgres sessions opened ${RSS.connectBatch} at a time, each ran \`SELECT 1\` and then stayed idle. VmRSS from /proc/<pid>/status, median of ${RSS.readings} readings ${RSS.intervalMs} ms apart (bench/rss.ts; \`npx tsx bench/rss.ts\` runs it alone).`,
      '',
      '|  | figure | goal (issue 8) |',
      '| --- | --- | --- |',
      `| RSS, started, no client | ${mib(f.idle)} MiB |  |`,
      `| **RSS with ${f.sessions} idle sessions** | **${mib(f.withSessions)} MiB** | <= ${RSS.goalMiB} MiB |`,
      `| per session | ${perSession.toFixed(0)} KiB |  |`,
      `| peak (VmHWM), connection storm included | ${mib(f.peak)} MiB |  |`,
      `| backend connections held (pg1 / pg2 / pg3) | ${f.backendConnections.join(' / ')} |  |`,
      '',
      `Readings, MiB: idle ${f.idleReadings.map(mib).join(', ')}; with sessions ${f.withReadings.map(mib).join(', ')}.`,
    ],
  }
}

// `npx tsx bench/rss.ts`: this scenario alone, its report lines printed.
if (import.meta.url === `file://${process.argv[1]}`) {
  const outcome = await runRss({
    auth: ['scram-sha-256', 'md5', 'trust'],
    user: 'app',
    password: 'app-secret',
    repoRoot: path.join(import.meta.dirname, '..'),
    log: (m) => process.stderr.write(`${m}\n`),
    clusterStarted() {},
    clusterStopped() {},
  })
  const r = renderRss(outcome)
  process.stdout.write([...r.targets, ...r.section].join('\n') + '\n')
  process.exit(outcome.ok ? 0 : 1)
}
