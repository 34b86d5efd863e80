// The failover figure (BENCH_FAILOVER): one backend killed under write load. A separate, fresh cluster of
// three backends (so the measured cluster never loses one) with its own pgraid in front; `pgbench -i`
// through that pgraid, then `pgbench` TPC-B -c 8 through it while a probe client (node-postgres, its own
// connection to pgraid) inserts one row every 50 ms and notes when each insert succeeded. When pgbench
// reports 3 s of progress, one backend is stopped in PostgreSQL's immediate mode (SIGQUIT to the
// postmaster: every backend process exits at once, sockets closed, no checkpoint); pgbench and the probe
// keep going until pgbench's -T ends ~5 s later. Reported: the longest time between two successful probe
// writes, probe errors, pgbench clients aborted, transactions processed, pgraid's warnings relative to the
// kill, and whether the two remaining backends hold identical data with every acknowledged probe row.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { startCluster, type BackendAuth, type Cluster, type RunningBackend } from '../src/embedded/cluster.ts'
import { checkReplicas, prepareRun, vacuumAnalyze, withEndpoint } from './maintenance.ts'
import type { BenchOptions, QueryMode } from './options.ts'
import { initDataset, parseRunOutput, spawnBench, type Endpoint } from './pgbench.ts'
import { proxyConfig, startProxy, type Proxy } from './proxy.ts'

export const FAILOVER = {
  clients: 8,
  threads: 2,
  mode: 'prepared' as QueryMode,
  /** pgbench -T: the kill comes after killAfterS of pgbench progress, then ~5 s more. */
  seconds: 8,
  killAfterS: 3,
  probeIntervalMs: 50,
  /** Index of the backend killed: pg1, the first in pgraid's list (the one whose ParameterStatus sessions relay). */
  killIndex: 0,
  gapGoalMs: 500,
} as const

const DB = 'postgres'

export interface ProgressLine {
  /** Seconds since pgbench started, the end of the interval. */
  t: number
  tps: number
  latencyMs: number
  failed: number | undefined
}

export interface PgraidEvent {
  msg: string
  count: number
  /** ms after the kill (pgraid's log time vs this process's clock), first and last occurrence. */
  firstMs: number
  lastMs: number
  example: string
}

export interface FailoverRun {
  ok: true
  scale: number
  clients: number
  threads: number
  mode: QueryMode
  seconds: number
  killAfterS: number
  probeIntervalMs: number
  killed: string
  remaining: string[]
  /** pgbench's own clock (seconds since it started) when the kill was sent, from the last progress line. */
  killAtPgbenchS: number
  /** How long the immediate shutdown took (signal to postmaster exit). */
  killDurationMs: number
  probe: {
    ok: number
    errors: number
    errorSamples: string[]
    reconnects: number
    /** Longest time between two successful probe writes (completions), ms; includes the end of the probe. */
    longestGapMs: number
    /** The longest gap, from/to in ms relative to the kill. */
    longestGapFromMs: number
    longestGapToMs: number
    /** Longest gap among the probe writes before the kill (the baseline under load). */
    longestGapBeforeKillMs: number
    /** First successful probe write completed after the kill, ms after the kill. */
    firstOkAfterKillMs: number | undefined
    maxLatencyMs: number
  }
  pgbench: {
    command: string
    exit: string
    processed: number | undefined
    failed: number | undefined
    tps: number | undefined
    abortedClients: number
    abortLines: string[]
    /** pgbench's other stderr lines (not progress, not aborts), e.g. notices relayed from a dying backend. */
    otherErrors: string[]
    progress: ProgressLine[]
  }
  /** A query through pgraid after the run. */
  pgraidServing: string
  remainingIdentical: boolean
  replicaReport: string
  /** Per remaining backend: acknowledged probe rows found (of probe.ok), pgbench_history rows. */
  perBackend: { name: string; probeRowsFound: number; historyRows: number }[]
  /** pgraid's warn/error lines grouped by message (child mode only). */
  pgraidEvents: PgraidEvent[]
  pgraidLineCount: number
}

export type FailoverOutcome = FailoverRun | { ok: false; error: string }

export interface FailoverContext {
  opts: BenchOptions
  auth: BackendAuth[]
  user: string
  password: string
  /** pgbench -i steps the main run used (its fallback when VACUUM through pgraid failed). */
  initSteps: string
  initFallback: boolean
  log(msg: string): void
  /** Called right after the cluster started and after it stopped (the caller's abort handling). */
  clusterStarted(c: Cluster): void
  clusterStopped(c: Cluster): void
}

// ---------------------------------------------------------------------------------------------

/** Inserts a row every probeIntervalMs over its own connection; reconnects after an error. */
class Probe {
  readonly okAt: number[] = []
  readonly ids: string[] = []
  readonly errors: { at: number; msg: string }[] = []
  readonly latencies: number[] = []
  reconnects = 0
  startedAt = 0
  stoppedAt = 0
  private stopping = false
  private client: pg.Client | undefined
  private loop: Promise<void> | undefined

  constructor(
    private readonly ep: Endpoint,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.startedAt = performance.now()
    this.loop = this.run()
  }

  private async connect(): Promise<pg.Client> {
    const c = new pg.Client({ host: this.ep.host, port: this.ep.port, user: this.ep.user, password: this.ep.password, database: this.ep.database, connectionTimeoutMillis: 10_000 })
    c.on('error', () => {}) // a lost connection also rejects the pending query, which is what we count
    await c.connect()
    return c
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const t = performance.now()
      try {
        if (!this.client) {
          if (this.okAt.length + this.errors.length > 0) this.reconnects++
          this.client = await this.connect()
        }
        const r = await this.client.query<{ id: string }>('INSERT INTO probe (at) VALUES (now()) RETURNING id')
        const done = performance.now()
        this.okAt.push(done)
        this.latencies.push(done - t)
        this.ids.push(String(r.rows[0]!.id))
      } catch (e) {
        this.errors.push({ at: performance.now(), msg: (e as Error).message })
        const c = this.client
        this.client = undefined
        await c?.end().catch(() => {})
      }
      const wait = t + this.intervalMs - performance.now()
      if (wait > 0 && !this.stopping) await sleep(wait)
    }
  }

  /** Stops after the write in flight (waiting at most 15 s for it). */
  async stop(): Promise<void> {
    this.stopping = true
    this.stoppedAt = performance.now()
    const finished = await Promise.race([this.loop?.then(() => true), sleep(15_000).then(() => false)])
    if (!finished) this.errors.push({ at: performance.now(), msg: 'a probe write was still pending 15 s after the end of the run' })
    if (this.client) await withTimeout(this.client.end(), 5000, 'closing the probe connection').catch(() => {})
  }
}

export function parseProgress(line: string): ProgressLine | undefined {
  // pgbench 15: "progress: 3.0 s, 312.9 tps, lat 25.412 ms stddev 10.123, 0 failed" (lat/stddev may be nan)
  const m = /^progress: ([\d.]+) s, ([\d.]+) tps, lat (\S+) ms(?: stddev [^,\s]+)?(?:, (\d+) failed)?/.exec(line)
  if (!m) return undefined
  return { t: Number(m[1]), tps: Number(m[2]), latencyMs: Number(m[3]), failed: m[4] === undefined ? undefined : Number(m[4]) }
}

function groupEvents(lines: string[], killWall: number): PgraidEvent[] {
  const groups = new Map<string, PgraidEvent>()
  for (const line of lines) {
    let msg = line
    let at = Number.NaN
    let example = line
    try {
      const o = JSON.parse(line) as Record<string, unknown>
      msg = String(o.msg ?? line)
      at = Date.parse(String(o.time)) - killWall
      const detail = ['backend', 'state', 'reason', 'err'].filter((k) => o[k] !== undefined).map((k) => `${k}: ${typeof o[k] === 'string' ? o[k] : JSON.stringify(o[k])}`)
      example = detail.join(', ') || msg
    } catch {
      // not JSON: keep the raw line
    }
    const g = groups.get(msg)
    if (!g) groups.set(msg, { msg, count: 1, firstMs: at, lastMs: at, example: example.length > 300 ? `${example.slice(0, 300)}...` : example })
    else {
      g.count++
      if (Number.isFinite(at)) {
        g.firstMs = Number.isFinite(g.firstMs) ? Math.min(g.firstMs, at) : at
        g.lastMs = Number.isFinite(g.lastMs) ? Math.max(g.lastMs, at) : at
      }
    }
  }
  return [...groups.values()].sort((a, b) => (a.firstMs || 0) - (b.firstMs || 0))
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

async function countOn(b: RunningBackend, sql: string, params: unknown[] = []): Promise<number> {
  const c = await b.client(DB)
  try {
    return Number((await c.query<{ n: string }>(sql, params)).rows[0]!.n)
  } finally {
    await c.end().catch(() => {})
  }
}

// ---------------------------------------------------------------------------------------------

export async function runFailover(ctx: FailoverContext): Promise<FailoverOutcome> {
  const { opts, log } = ctx
  let cluster: Cluster | undefined
  let proxy: Proxy | undefined
  try {
    log('failover: starting a separate cluster of 3 PostgreSQL backends')
    cluster = await startCluster({ count: 3, auth: ctx.auth })
    ctx.clusterStarted(cluster)
    const backends = cluster.backends
    proxy = await startProxy(opts.proxy, proxyConfig(backends, { name: ctx.user, password: ctx.password }, opts.logLevel), opts.repoRoot)
    const ep: Endpoint = { name: 'pgraid (failover)', host: proxy.host, port: proxy.port, user: ctx.user, password: ctx.password, database: DB }
    log(`failover: pgraid pid ${proxy.pid} on ${proxy.host}:${proxy.port}; pgbench -i -s ${opts.scale} -I ${ctx.initSteps} through it`)
    await initDataset(ep, opts.scale, ctx.initSteps)
    if (ctx.initFallback) await Promise.all(backends.map((b) => vacuumAnalyze(b, DB)))
    await withEndpoint(ep, (c) => c.query('CREATE TABLE probe (id bigserial PRIMARY KEY, at timestamptz)'))
    await prepareRun(backends, DB, ep)

    const victim = backends[FAILOVER.killIndex]!
    const remaining = backends.filter((b) => b !== victim)
    const probe = new Probe(ep, FAILOVER.probeIntervalMs)
    probe.start()
    const spec = { workload: 'tpcb' as const, mode: FAILOVER.mode, seconds: FAILOVER.seconds, clients: FAILOVER.clients, threads: FAILOVER.threads }
    const { child, command } = spawnBench(ep, spec, ['-P', '1'])
    log(`failover: ${command} with a probe write every ${FAILOVER.probeIntervalMs} ms; ${victim.name} is killed after ${FAILOVER.killAfterS} s`)

    let stdout = ''
    let stderr = ''
    let partial = ''
    const progress: ProgressLine[] = []
    let killAt: number | undefined
    let killWall = 0
    let killAtPgbenchS = 0
    let killDone: Promise<number> | undefined
    const kill = () => {
      if (killDone) return
      killAt = performance.now()
      killWall = Date.now()
      killAtPgbenchS = progress.at(-1)?.t ?? Number.NaN
      log(`failover: killing ${victim.name} (immediate shutdown)`)
      killDone = victim.kill().then(() => performance.now() - killAt!)
    }
    const fallback = setTimeout(kill, (FAILOVER.killAfterS + 10) * 1000)
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      partial += d
      const lines = partial.split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        const p = parseProgress(line)
        if (!p) continue
        progress.push(p)
        if (p.t >= FAILOVER.killAfterS) kill()
      }
    })
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (c, s) => resolve([c, s]))
    })
    clearTimeout(fallback)
    if (partial) {
      const p = parseProgress(partial)
      if (p) progress.push(p)
    }
    await probe.stop()
    if (!killDone) kill() // pgbench ended before 3 s of progress: still kill, so the checks below mean something
    const killDurationMs = await killDone!
    log(`failover: pgbench exited with ${code ?? signal}; probe ${probe.okAt.length} ok, ${probe.errors.length} error(s)`)

    // Gaps between successful probe writes, the open interval after the last one included.
    const times = [...probe.okAt, probe.stoppedAt]
    let gap = { ms: 0, from: Number.NaN, to: Number.NaN }
    let gapBefore = 0
    for (let i = 1; i < times.length; i++) {
      const ms = times[i]! - times[i - 1]!
      if (ms > gap.ms) gap = { ms, from: times[i - 1]!, to: times[i]! }
      if (times[i]! < killAt!) gapBefore = Math.max(gapBefore, ms)
    }
    if (probe.okAt.length === 0) gap = { ms: probe.stoppedAt - probe.startedAt, from: probe.startedAt, to: probe.stoppedAt }
    const firstAfter = probe.okAt.find((t) => t > killAt!)

    const parsed = parseRunOutput(stdout)
    const num = (re: RegExp) => {
      const m = re.exec(stdout)
      return m ? Number(m[1]) : undefined
    }
    const errLines = stderr.split('\n').filter((l) => l.trim() && !l.startsWith('progress:'))
    const abortLines = errLines.filter((l) => /client \d+ aborted/.test(l))
    const abortedClients = new Set(abortLines.map((l) => /client (\d+) aborted/.exec(l)![1])).size
    const otherErrors = errLines.filter((l) => !/client \d+ aborted/.test(l))

    let pgraidServing: string
    try {
      const n = await withTimeout(
        withEndpoint(ep, async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM probe')).rows[0]!.n)),
        15_000,
        'a new session reading the probe table through pgraid',
      )
      pgraidServing = `yes (a new session read ${n} probe rows)`
    } catch (e) {
      pgraidServing = `**no**: ${(e as Error).message}`
    }

    log(`failover: comparing ${remaining.map((b) => b.name).join(' and ')}`)
    const check = await checkReplicas(remaining, DB)
    const perBackend = await Promise.all(
      remaining.map(async (b) => ({
        name: b.name,
        probeRowsFound: await countOn(b, 'SELECT count(*) AS n FROM probe WHERE id = ANY($1::bigint[])', [probe.ids]),
        historyRows: await countOn(b, 'SELECT count(*) AS n FROM pgbench_history'),
      })),
    )
    const problems = proxy.problems()

    return {
      ok: true,
      scale: opts.scale,
      clients: FAILOVER.clients,
      threads: FAILOVER.threads,
      mode: FAILOVER.mode,
      seconds: FAILOVER.seconds,
      killAfterS: FAILOVER.killAfterS,
      probeIntervalMs: FAILOVER.probeIntervalMs,
      killed: victim.name,
      remaining: remaining.map((b) => b.name),
      killAtPgbenchS,
      killDurationMs,
      probe: {
        ok: probe.okAt.length,
        errors: probe.errors.length,
        errorSamples: [...new Set(probe.errors.map((e) => `${(e.at - killAt!).toFixed(0)} ms after the kill: ${e.msg}`))].slice(0, 5),
        reconnects: probe.reconnects,
        longestGapMs: gap.ms,
        longestGapFromMs: gap.from - killAt!,
        longestGapToMs: gap.to - killAt!,
        longestGapBeforeKillMs: gapBefore,
        firstOkAfterKillMs: firstAfter === undefined ? undefined : firstAfter - killAt!,
        maxLatencyMs: Math.max(0, ...probe.latencies),
      },
      pgbench: {
        command,
        exit: String(code ?? signal),
        processed: parsed?.processed ?? num(/^number of transactions actually processed: (\d+)/m),
        failed: parsed?.failed ?? num(/^number of failed transactions: (\d+)/m),
        tps: parsed?.tps ?? num(/^tps = ([\d.]+)/m),
        abortedClients,
        abortLines: abortLines.slice(0, 8),
        otherErrors: otherErrors.slice(0, 8),
        progress,
      },
      pgraidServing,
      remainingIdentical: check.identical,
      replicaReport: check.report,
      perBackend,
      pgraidEvents: groupEvents(problems.recent, killWall),
      pgraidLineCount: problems.count,
    }
  } catch (e) {
    log(`failover scenario failed: ${(e as Error)?.stack ?? String(e)}`)
    const problems = proxy?.problems()
    const tail = problems && problems.count > 0 ? `; pgraid's last warnings: ${problems.recent.slice(-3).join(' / ')}` : ''
    return { ok: false, error: `${(e as Error)?.message ?? String(e)}${tail}` }
  } finally {
    if (proxy) await proxy.stop().catch((e: unknown) => log(`failover: stopping pgraid: ${String(e)}`))
    if (cluster) {
      await cluster.stop().catch((e: unknown) => log(`failover: stopping the backends: ${String(e)}`))
      ctx.clusterStopped(cluster)
    }
  }
}
