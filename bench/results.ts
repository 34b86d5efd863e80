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

/**
 * 'pgraid-nolog': a second pgraid over the same backends and database, started with `recovery: { log: false }`.
 * 'relay', 'fanout': the Node.js floor (bench/floor.ts), a bare relay to pg1 and a bare 3-way fan-out.
 */
export type Target = 'direct' | 'pgraid' | 'ceiling' | 'pgraid-nolog' | 'relay' | 'fanout'
export type FloorTarget = 'relay' | 'fanout'
export const TARGETS: Target[] = ['direct', 'pgraid', 'ceiling']
/** Targets of the TPC-B cases at the full client count when the log's cost is measured (BENCH_LOGCOST). */
export const TPCB_TARGETS_WITH_NOLOG: Target[] = ['direct', 'pgraid', 'ceiling', 'pgraid-nolog']

/** Targets that run pgbench through a pgraid instance. */
export function isPgraid(t: Target): boolean {
  return t === 'pgraid' || t === 'pgraid-nolog'
}

/** Targets that run pgbench through a floor proxy. */
export function isFloor(t: Target): t is FloorTarget {
  return t === 'relay' || t === 'fanout'
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
  /**
   * CPU seconds the target's proxy process used from just before pgbench started to just after it ended
   * (utime + stime of all its threads, /proc/<pid>/stat): pgraid, pgraid-nolog, relay, fanout. Undefined for
   * direct and ceiling, whose CPU is the PostgreSQL servers'.
   */
  cpuS?: number
}

/** Transactions pgbench completed in a sample (summed over the ceiling's three runs). */
export function transactions(s: Sample): number {
  return s.runs.reduce((a, r) => a + r.processed, 0)
}

/** The target proxy's CPU per completed transaction in µs; NaN when not measured. */
export function cpuUsPerTx(s: Sample): number {
  return s.cpuS === undefined ? Number.NaN : (s.cpuS * 1e6) / transactions(s)
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
      const of = (t: Target) => data.samples.filter((s) => s.workload === workload && s.mode === mode && s.clients === clients && s.target === t)
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

/** Medians of one target in one case: tps, latency, and its proxy's CPU per transaction (NaN for direct). */
export interface TargetFigures {
  tps: number
  latencyMs: number
  cpuUs: number
  n: number
}

/** One row of "CPU per transaction against the Node.js floor": a case, its targets, pgraid against the floor. */
export interface FloorRow {
  workload: Workload
  mode: QueryMode
  clients: number
  /** The floor this workload is held against: relay for reads, fanout for replicated writes; none for TPC-B. */
  floor?: FloorTarget
  direct?: TargetFigures
  pgraid?: TargetFigures
  floorFigures?: TargetFigures
  /** pgraid's CPU per transaction / the floor's (medians); NaN without a floor. */
  cpuRatio: number
}

/** Every case that ran pgraid, in case order, with its floor figures where it has a floor target. */
export function summariseFloor(data: BenchData): FloorRow[] {
  const rows: FloorRow[] = []
  for (const cs of data.cases) {
    if (!cs.targets.includes('pgraid')) continue
    const of = (t: Target): TargetFigures | undefined => {
      const xs = data.samples.filter((s) => s.workload === cs.workload && s.mode === cs.mode && s.clients === cs.clients && s.target === t)
      if (!xs.length) return undefined
      return {
        tps: median(xs.map((s) => s.tps)),
        latencyMs: median(xs.map((s) => s.latencyMs)),
        cpuUs: median(xs.map(cpuUsPerTx).filter((x) => !Number.isNaN(x))),
        n: xs.length,
      }
    }
    const floor = cs.targets.find(isFloor)
    const pgraid = of('pgraid')
    if (!pgraid) continue
    const floorFigures = floor ? of(floor) : undefined
    rows.push({
      workload: cs.workload,
      mode: cs.mode,
      clients: cs.clients,
      floor,
      direct: of('direct'),
      pgraid,
      floorFigures,
      cpuRatio: floorFigures ? pgraid.cpuUs / floorFigures.cpuUs : Number.NaN,
    })
  }
  return rows
}
