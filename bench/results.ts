// What one benchmark run collects, and the medians/ratios computed from it.
import type { BenchOptions, QueryMode, Workload } from './options.ts'
import type { LifecycleOutcome } from './lifecycle.ts'
import type { ActivemqOutcome } from './activemq.ts'
import type { TlsFigure } from './tls.ts'
import type { TakeoverOutcome } from './takeover.ts'
import type { RssOutcome } from './rss.ts'
import type { InitResult, RunResult } from './pgbench.ts'
import type { Machine } from './machine.ts'
import type { MicroResults } from './micro.ts'
import type { ProfileOutcome } from './profile.ts'
import type { FailoverOutcome } from './failover.ts'

/** 'pgraid-nolog': a second pgraid over the same backends and database, started with `recovery: { log: false }`. */
export type Target = 'direct' | 'pgraid' | 'ceiling' | 'pgraid-nolog'
export const TARGETS: Target[] = ['direct', 'pgraid', 'ceiling']
/** Targets of the TPC-B cases at the full client count when the log's cost is measured (BENCH_LOGCOST). */
export const TPCB_TARGETS_WITH_NOLOG: Target[] = ['direct', 'pgraid', 'ceiling', 'pgraid-nolog']

/** Targets that run pgbench through a pgraid instance. */
export function isPgraid(t: Target): boolean {
  return t === 'pgraid' || t === 'pgraid-nolog'
}

/** One benchmark case: a workload and mode at a client count, measured against some targets. */
export interface Case {
  workload: Workload
  mode: QueryMode
  clients: number
  threads: number
  targets: Target[]
}

export interface Sample {
  round: number
  workload: Workload
  mode: QueryMode
  clients: number
  target: Target
  /** 1-minute load average when the run started (the machine is shared). */
  load1: number
  /** For the ceiling: the sum over the three concurrent pgbench processes. */
  tps: number
  /** For the ceiling: the mean of the three processes' average latencies. */
  latencyMs: number
  /** The ceiling's three runs; one run otherwise. */
  runs: RunResult[]
  /** pgraid's CPU use during a pgraid or pgraid-nolog run, in % of one core. */
  proxyCpuPct?: number
}

export interface InitTiming {
  steps: string
  direct: InitResult
  pgraid: InitResult
  /** Why the pgbench default steps were not used through pgraid, if they were not. */
  fallback?: string
}

export interface BenchData {
  startedAt: Date
  finishedAt: Date
  options: BenchOptions
  machine: Machine
  pgVersion: string
  pgbenchVersion: string
  backendAuth: string[]
  writeQuorum: number
  init: InitTiming
  vacuumThroughPgraid: string
  cases: Case[]
  samples: Sample[]
  rss: { afterStart: number; peakAfterInit: number; peak: number }
  replication: { afterInit: string; afterTpcb: { checks: number; failures: string[] }; atEnd: string; identicalAtEnd: boolean }
  proxyProblems: { count: number; recent: string[] }
  /** The failover scenario (BENCH_FAILOVER), or why it did not complete; undefined when skipped. */
  failover?: FailoverOutcome
  /** Resync, clone and verify figures (BENCH_LIFECYCLE), or why they are missing; undefined when skipped. */
  lifecycle?: LifecycleOutcome
  /** ActiveMQ send/drain through pgraid vs one plain backend (BENCH_ACTIVEMQ); undefined when skipped. */
  activemq?: ActivemqOutcome
  tls?: TlsFigure
  takeover?: TakeoverOutcome
  /** pgraid's RSS with 200 idle sessions (BENCH_RSS); undefined when skipped. */
  idleSessions?: RssOutcome
  /** In-process timings of statement analysis and the lock manager (bench/micro.ts). */
  micro?: MicroResults
  /** The CPU profile of pgraid under TPC-B (BENCH_PROFILE), or why there is none. */
  profile?: ProfileOutcome
}

export interface CaseSummary {
  workload: Workload
  mode: QueryMode
  clients: number
  directTps: number
  directLat: number
  pgraidTps: number
  pgraidLat: number
  ceilingSumTps: number
  ceilingPerBackendTps: number
  ceilingLat: number
  proxyCpuPct: number
  /** The pgraid-nolog target (recovery log off); NaN when not measured. */
  nologTps: number
  nologLat: number
  nologCpuPct: number
  n: number
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Medians per case with the given client count. */
export function summarise(data: BenchData, clients = data.options.clients): CaseSummary[] {
  const out: CaseSummary[] = []
  for (const cs of data.cases) {
    if (cs.clients !== clients) continue
    const { workload, mode } = cs
    {
      const of = (t: Target) =>
        data.samples.filter((s) => s.workload === workload && s.mode === mode && s.clients === clients && s.target === t)
      const d = of('direct')
      const p = of('pgraid')
      const c = of('ceiling')
      const nl = of('pgraid-nolog')
      if (d.length + p.length + c.length === 0) continue
      out.push({
        workload,
        mode,
        clients,
        directTps: median(d.map((s) => s.tps)),
        directLat: median(d.map((s) => s.latencyMs)),
        pgraidTps: median(p.map((s) => s.tps)),
        pgraidLat: median(p.map((s) => s.latencyMs)),
        ceilingSumTps: median(c.map((s) => s.tps)),
        ceilingPerBackendTps: median(c.map((s) => s.tps / Math.max(1, s.runs.length))),
        ceilingLat: median(c.map((s) => s.latencyMs)),
        proxyCpuPct: median(p.map((s) => s.proxyCpuPct ?? Number.NaN).filter((x) => !Number.isNaN(x))),
        nologTps: median(nl.map((s) => s.tps)),
        nologLat: median(nl.map((s) => s.latencyMs)),
        nologCpuPct: median(nl.map((s) => s.proxyCpuPct ?? Number.NaN).filter((x) => !Number.isNaN(x))),
        n: Math.max(d.length, p.length, c.length),
      })
    }
  }
  return out
}

/** The ratio the stage targets care about for a given init timing: pgraid / direct. */
export function initRatios(init: InitTiming): { total: number; copy: number | undefined } {
  const copyKey = 'client-side generate'
  const dCopy = init.direct.steps[copyKey]
  const pCopy = init.pgraid.steps[copyKey]
  return {
    total: init.pgraid.totalS / init.direct.totalS,
    copy: dCopy && pCopy !== undefined ? pCopy / dCopy : undefined,
  }
}
