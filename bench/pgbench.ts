// Running pgbench and parsing what it prints.
import type { QueryMode, Workload } from './options.ts'
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { runTracked, spawnTracked, type ProcResult } from './procs.ts'

/** Where a pgbench process connects. */
export interface Endpoint {
  name: string
  host: string
  port: number
  user: string
  password?: string
  database: string
  /** libpq sslmode for pgbench (default disable). */
  sslmode?: string
}

export interface RunSpec {
  workload: Workload
  mode: QueryMode
  seconds: number
  clients: number
  threads: number
}

export interface RunResult {
  endpoint: string
  tps: number
  latencyMs: number
  processed: number
  failed: number
  wallMs: number
}

export interface InitResult {
  endpoint: string
  /** Wall time of the whole pgbench -i process (connects included). */
  wallS: number
  /** pgbench's own "done in" total and its per-step times, e.g. "client-side generate". */
  totalS: number
  steps: Record<string, number>
}

export class PgbenchError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly result: ProcResult,
  ) {
    super(message)
  }

  /** Everything pgbench printed, for a loud failure report. */
  details(): string {
    return [`command: ${this.command}`, `exit: ${this.result.code ?? this.result.signal}`, '--- stdout ---', this.result.stdout.trimEnd(), '--- stderr ---', this.result.stderr.trimEnd()].join('\n')
  }
}

export const PGBENCH = process.env.BENCH_PGBENCH ?? 'pgbench'

/** The INSERT workload's script: one autocommit `INSERT INTO bench_ins (v) VALUES (:v)`, :v random (bench/floor.ts makes the table). */
export const INSERT_SCRIPT = fileURLToPath(new URL('./floor-insert.sql', import.meta.url))

/** pgbench's arguments choosing the script of a workload. */
function workloadArgs(w: Workload): string[] {
  return w === 'select' ? ['-S'] : w === 'insert' ? ['-f', INSERT_SCRIPT] : []
}

function env(ep: Endpoint): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {
    ...process.env,
    PGSSLMODE: ep.sslmode ?? 'disable',
    PGGSSENCMODE: 'disable',
    PGAPPNAME: 'pgbench',
    LC_ALL: 'C',
  }
  delete e.PGPASSWORD
  delete e.PGSERVICE
  delete e.PGOPTIONS
  if (ep.password !== undefined) e.PGPASSWORD = ep.password
  return e
}

function connArgs(ep: Endpoint): string[] {
  return ['-h', ep.host, '-p', String(ep.port), '-U', ep.user]
}

function commandLine(args: string[]): string {
  return [PGBENCH, ...args].join(' ')
}

export async function pgbenchVersion(): Promise<string> {
  const r = await runTracked(PGBENCH, ['--version'], process.env)
  if (r.code !== 0) throw new Error(`${PGBENCH} --version failed: ${r.stderr}`)
  return r.stdout.trim()
}

/** `pgbench -i -s <scale> [-I steps] -q <db>`, timed. */
export async function initDataset(ep: Endpoint, scale: number, steps?: string): Promise<InitResult> {
  const args = ['-i', '-s', String(scale), '-q', ...(steps ? ['-I', steps] : []), ...connArgs(ep), ep.database]
  const r = await runTracked(PGBENCH, args, env(ep))
  const cmd = commandLine(args)
  if (r.code !== 0) throw new PgbenchError(`pgbench -i against ${ep.name} failed`, cmd, r)
  const done = /done in ([\d.]+) s \(([^)]*)\)/.exec(r.stderr + r.stdout)
  if (!done) throw new PgbenchError(`pgbench -i against ${ep.name}: no "done in" line`, cmd, r)
  const stepTimes: Record<string, number> = {}
  for (const part of done[2]!.split(',')) {
    const m = /^\s*(.+?)\s+([\d.]+) s\s*$/.exec(part)
    if (m) stepTimes[m[1]!] = Number(m[2])
  }
  return { endpoint: ep.name, wallS: r.ms / 1000, totalS: Number(done[1]), steps: stepTimes }
}

function num(text: string, re: RegExp): number | undefined {
  const m = re.exec(text)
  return m ? Number(m[1]) : undefined
}

export function parseRunOutput(text: string): Omit<RunResult, 'endpoint' | 'wallMs'> | undefined {
  const tps = num(text, /^tps = ([\d.]+) \(without initial connection time\)/m)
  const latencyMs = num(text, /^latency average = ([\d.]+) ms/m)
  const processed = num(text, /^number of transactions actually processed: (\d+)/m)
  // pgbench >= 15 prints this line; older ones have no failure accounting (failures abort the client).
  const failed = num(text, /^number of failed transactions: (\d+)/m) ?? 0
  if (tps === undefined || latencyMs === undefined || processed === undefined) return undefined
  return { tps, latencyMs, processed, failed }
}

/**
 * One timed run. -n: no vacuum/truncate by pgbench (the benchmark does that maintenance itself,
 * directly on the backends, the same way for every target). Throws on a non-zero exit, on output
 * it cannot parse, and on any failed transaction.
 */
export async function benchRun(ep: Endpoint, spec: RunSpec): Promise<RunResult> {
  const args = benchArgs(ep, spec)
  const r = await runTracked(PGBENCH, args, env(ep))
  const cmd = commandLine(args)
  if (r.code !== 0) throw new PgbenchError(`pgbench against ${ep.name} exited with ${r.code ?? r.signal}`, cmd, r)
  const parsed = parseRunOutput(r.stdout)
  if (!parsed) throw new PgbenchError(`pgbench against ${ep.name}: could not parse its output`, cmd, r)
  if (parsed.failed > 0) throw new PgbenchError(`pgbench against ${ep.name}: ${parsed.failed} failed transactions`, cmd, r)
  if (parsed.processed === 0) throw new PgbenchError(`pgbench against ${ep.name}: no transaction completed`, cmd, r)
  return { endpoint: ep.name, wallMs: r.ms, ...parsed }
}

/**
 * A pgbench run as a tracked child process the caller watches (e.g. its `-P` progress lines on stderr) and
 * judges itself: nothing is thrown for a non-zero exit or failed transactions. `extra` goes before the
 * connection arguments.
 */
export function spawnBench(ep: Endpoint, spec: RunSpec, extra: string[] = []): { child: ChildProcess; command: string } {
  const args = benchArgs(ep, spec, extra)
  return { child: spawnTracked(PGBENCH, args, { env: env(ep) }), command: commandLine(args) }
}

function benchArgs(ep: Endpoint, spec: RunSpec, extra: string[] = []): string[] {
  return ['-n', ...workloadArgs(spec.workload), '-M', spec.mode, '-c', String(spec.clients), '-j', String(spec.threads), '-T', String(spec.seconds), ...extra, ...connArgs(ep), ep.database]
}
