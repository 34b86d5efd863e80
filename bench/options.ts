// Benchmark settings, read from the environment (documented at the top of bench/run.ts).
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LogLevel } from '../src/config/schema.ts'
import { LOG_LEVELS } from '../src/config/schema.ts'

/** 'insert': the single autocommit INSERT of bench/floor-insert.sql (a custom pgbench script). */
export type Workload = 'tpcb' | 'select' | 'insert'
export type QueryMode = 'simple' | 'prepared'
export type ProxyMode = 'child' | 'inprocess'

export interface BenchOptions {
  quick: boolean
  seconds: number
  rounds: number
  scale: number
  clients: number
  threads: number
  workloads: Workload[]
  modes: QueryMode[]
  /** Also measure single-client runs (direct vs pgraid): the proxy's per-statement latency without contention. */
  singleClient: boolean
  /** Profile pgraid (node --cpu-prof) during one extra TPC-B -M prepared run ("Where the time goes"). */
  profile: boolean
  /** Also run TPC-B (8-client cases) through a second pgraid started with `recovery: { log: false }`. */
  logCost: boolean
  /** Run the failover scenario: a backend of a separate cluster killed under TPC-B, with a write probe. */
  failover: boolean
  /** Resync, clone and verify figures on a separate cluster (bench/lifecycle.ts). */
  lifecycle: boolean
  /** The ActiveMQ send/drain figure (bench/activemq.ts). */
  activemq: boolean
  /** The TLS cost figure (bench/tls.ts). */
  tls: boolean
  /** The takeover figure: two pgraid processes, the writer killed -9 (bench/takeover.ts). */
  takeover: boolean
  /** pgraid's RSS with 200 idle sessions (bench/rss.ts). */
  rss: boolean
  /**
   * The Node.js floor (bench/floor.ts): the relay and fan-out targets, the INSERT workload, and every target's
   * CPU per transaction against the floor.
   */
  floor: boolean
  /** `--only floor` / BENCH_ONLY=floor: only the measured rounds the floor table needs (no ceiling, no scenarios). */
  only?: 'floor'
  /** BENCH_OUT was set: with `only`, the report is written only then. */
  outExplicit: boolean
  proxy: ProxyMode
  logLevel: LogLevel
  out: string
  repoRoot: string
}

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

function intEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`)
  return n
}

function listEnv<T extends string>(name: string, allowed: readonly T[]): T[] {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === '') return [...allowed]
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const it of items) if (!allowed.includes(it as T)) throw new Error(`${name}: unknown item ${JSON.stringify(it)}, allowed: ${allowed.join(', ')}`)
  return items as T[]
}

export function readOptions(env = process.env, argv: string[] = []): BenchOptions {
  const only = onlyOption(env.BENCH_ONLY, argv)
  const part = (name: string) => only === undefined && (env[name] ?? '1') !== '0'
  const quick = env.BENCH_QUICK !== undefined && env.BENCH_QUICK !== '' && env.BENCH_QUICK !== '0'
  const proxy = (env.BENCH_PROXY ?? 'child') as ProxyMode
  if (proxy !== 'child' && proxy !== 'inprocess') throw new Error(`BENCH_PROXY must be "child" or "inprocess", got ${JSON.stringify(proxy)}`)
  const logLevel = (env.BENCH_LOG_LEVEL ?? 'warn') as LogLevel
  const floor = only === 'floor' || (env.BENCH_FLOOR ?? '1') !== '0'
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`BENCH_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`)
  return {
    quick,
    seconds: intEnv('BENCH_SECONDS', quick ? 5 : 15, 1),
    rounds: intEnv('BENCH_ROUNDS', quick ? 1 : 3, 1),
    scale: intEnv('BENCH_SCALE', 10, 1),
    clients: intEnv('BENCH_CLIENTS', 8, 1),
    threads: intEnv('BENCH_THREADS', 2, 1),
    workloads: workloadsOption(env, floor),
    modes: listEnv('BENCH_MODES', ['simple', 'prepared'] as const),
    singleClient: (env.BENCH_SINGLE_CLIENT ?? '1') !== '0',
    profile: only === undefined && (env.BENCH_PROFILE === undefined || env.BENCH_PROFILE === '' ? !quick : env.BENCH_PROFILE !== '0'),
    // Off, and refused when asked for: since the writer election (issue 8) the second pgraid over the same
    // backends is a standby that refuses writes (25006), so the scenario cannot run as built. Its last figure
    // (issue 5, before the election) is in docs/benchmarks.md notes; rebuilding it needs the two proxies
    // started and stopped per case instead of running side by side.
    logCost: logCostOption(env.BENCH_LOGCOST),
    failover: part('BENCH_FAILOVER'),
    lifecycle: part('BENCH_LIFECYCLE'),
    activemq: part('BENCH_ACTIVEMQ'),
    tls: part('BENCH_TLS'),
    takeover: part('BENCH_TAKEOVER'),
    rss: part('BENCH_RSS'),
    floor,
    only,
    outExplicit: env.BENCH_OUT !== undefined && env.BENCH_OUT !== '',
    proxy,
    logLevel,
    out: path.resolve(repoRoot, env.BENCH_OUT ?? 'docs/benchmarks.md'),
    repoRoot,
  }
}

export const WORKLOAD_LABEL: Record<Workload, string> = {
  tpcb: 'TPC-B (builtin tpcb-like)',
  select: 'select-only (-S)',
  insert: 'single INSERT, autocommit',
}

/** `--only floor` (or `--only=floor`) on the command line, or BENCH_ONLY=floor; other arguments are refused. */
function onlyOption(fromEnv: string | undefined, argv: string[]): 'floor' | undefined {
  let only = fromEnv === undefined || fromEnv === '' ? undefined : fromEnv
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--only') only = argv[++i]
    else if (a.startsWith('--only=')) only = a.slice('--only='.length)
    else throw new Error(`unknown argument ${JSON.stringify(a)} (the benchmark reads environment variables, see bench/run.ts; --only floor runs the floor part alone)`)
  }
  if (only !== undefined && only !== 'floor') throw new Error(`--only / BENCH_ONLY: unknown part ${JSON.stringify(only)}, allowed: floor`)
  return only
}

/** BENCH_WORKLOADS, by default tpcb and select, plus insert when the floor is measured. */
function workloadsOption(env: NodeJS.ProcessEnv, floor: boolean): Workload[] {
  const all: Workload[] = listEnv('BENCH_WORKLOADS', ['tpcb', 'select', 'insert'] as const)
  const set = env.BENCH_WORKLOADS !== undefined && env.BENCH_WORKLOADS.trim() !== ''
  return set || floor ? all : all.filter((w) => w !== 'insert')
}

function logCostOption(v: string | undefined): boolean {
  if (v === undefined || v === '' || v === '0') return false
  throw new Error(
    'BENCH_LOGCOST=1 cannot run: a second pgraid over the same backends is a standby since the writer election and refuses writes; ' +
      'unset BENCH_LOGCOST (the log-cost figure of issue 5 is in docs/benchmarks.md notes)',
  )
}
