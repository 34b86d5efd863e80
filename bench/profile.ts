// A CPU profile of pgraid under TPC-B (BENCH_PROFILE): a separate pgraid child started with
// `node --cpu-prof`, one `pgbench -M prepared` TPC-B run through it, then SIGTERM (pgraid closes gracefully
// and exits, and Node writes the profile on exit). The profile's samples are attributed to functions and
// source files (self time), counting only the samples taken while pgbench ran: V8's profile clock and
// process.hrtime() are both CLOCK_MONOTONIC, so the run's start and end in this process bound the window.
//
// `npx tsx bench/profile.ts <file.cpuprofile>` prints the analysis of an existing profile.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import type { RunningBackend } from '../src/embedded/cluster.ts'
import { prepareRun } from './maintenance.ts'
import type { BenchOptions } from './options.ts'
import { benchRun, type Endpoint } from './pgbench.ts'
import { startProxy } from './proxy.ts'

const TOP = 12

export type ProfileCategory =
  | 'pgraid (src/)'
  | 'dependencies (node_modules)'
  | 'libpg-query parser (WASM + glue)'
  | 'Node.js internals (node:*)'
  | 'native (bindings, syscalls)'
  | 'garbage collector'
  | 'V8 other ((program))'
  | 'other'
  | 'idle'

export interface ProfileEntry {
  /** Function name, or the file for per-file rows. */
  name: string
  /** Repository-relative path, node_modules/<package>/..., node:<module>, or a category label. */
  where: string
  category: ProfileCategory
  selfMs: number
  /** Share of the busy (non-idle) time of pgraid's main thread in the window. */
  pctBusy: number
}

export interface ProfileAnalysis {
  /** Length of the analysed window and what the main thread did in it. */
  windowMs: number
  busyMs: number
  idleMs: number
  samples: number
  meanIntervalUs: number
  categories: { category: ProfileCategory; selfMs: number; pctBusy: number }[]
  functions: ProfileEntry[]
  files: ProfileEntry[]
}

export interface ProfileRun extends ProfileAnalysis {
  ok: true
  workload: 'tpcb'
  mode: 'prepared'
  seconds: number
  clients: number
  threads: number
  tps: number
  latencyMs: number
  /** pgraid's CPU use (all threads, from /proc) during the run, % of one core. */
  proxyCpuPct: number
  /** Where the .cpuprofile was left (a temporary directory; open it in Chrome DevTools). */
  profilePath: string
}

export type ProfileOutcome = ProfileRun | { ok: false; error: string }

interface CpuProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  hitCount?: number
}

interface CpuProfile {
  nodes: CpuProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
  timeDeltas?: number[]
}

function classify(url: string, fn: string, repoRoot: string): { category: ProfileCategory; file: string } {
  if (fn === '(idle)') return { category: 'idle', file: '(idle)' }
  if (fn === '(garbage collector)') return { category: 'garbage collector', file: '(garbage collector)' }
  if (fn === '(program)') return { category: 'V8 other ((program))', file: '(program)' }
  if (url === '' && /wasm/i.test(fn)) return { category: 'libpg-query parser (WASM + glue)', file: 'libpg-query (wasm)' }
  if (url === '') return { category: 'native (bindings, syscalls)', file: '(native)' }
  if (url.startsWith('node:')) return { category: 'Node.js internals (node:*)', file: url }
  if (url.startsWith('wasm://')) return { category: 'libpg-query parser (WASM + glue)', file: 'libpg-query (wasm)' }
  let p = url
  if (p.startsWith('file://')) {
    try {
      p = new URL(p).pathname
    } catch {
      // keep the URL
    }
  }
  const nm = p.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = p.slice(nm + '/node_modules/'.length)
    return { category: rest.startsWith('libpg-query/') && /wasm/.test(rest) ? 'libpg-query parser (WASM + glue)' : 'dependencies (node_modules)', file: `node_modules/${rest}` }
  }
  const rel = path.relative(repoRoot, p)
  if (!rel.startsWith('..') && rel.startsWith('src/')) return { category: 'pgraid (src/)', file: rel }
  return { category: 'other', file: rel.startsWith('..') ? p : rel }
}

/** Self time per function, file and category, from the samples taken between fromUs and toUs (profile clock). */
export function analyzeProfile(prof: CpuProfile, repoRoot: string, fromUs = -Infinity, toUs = Infinity): ProfileAnalysis {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const samples = prof.samples ?? []
  const deltas = prof.timeDeltas ?? []
  const selfUs = new Map<number, number>()
  let t = prof.startTime
  let counted = 0
  let first = Infinity
  let last = -Infinity
  for (let i = 0; i < samples.length; i++) {
    t += deltas[i] ?? 0
    // A sample stands for the interval up to the next one (the last: the profile's end).
    const dur = i + 1 < samples.length ? (deltas[i + 1] ?? 0) : Math.max(0, prof.endTime - t)
    if (t < fromUs || t > toUs) continue
    counted++
    first = Math.min(first, t)
    last = Math.max(last, t + dur)
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + dur)
  }

  const fns = new Map<string, ProfileEntry>()
  const files = new Map<string, ProfileEntry>()
  const cats = new Map<ProfileCategory, number>()
  let idleUs = 0
  let busyUs = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    if (!node) continue
    const fnName = node.callFrame.functionName
    const { category, file } = classify(node.callFrame.url, fnName, repoRoot)
    cats.set(category, (cats.get(category) ?? 0) + us)
    if (category === 'idle') {
      idleUs += us
      continue
    }
    busyUs += us
    const name = fnName || '(anonymous)'
    const fk = `${name}\u0000${file}`
    const f = fns.get(fk) ?? { name, where: file, category, selfMs: 0, pctBusy: 0 }
    f.selfMs += us / 1000
    fns.set(fk, f)
    const g = files.get(file) ?? { name: file, where: file, category, selfMs: 0, pctBusy: 0 }
    g.selfMs += us / 1000
    files.set(file, g)
  }
  const busyMs = busyUs / 1000
  const pct = (ms: number) => (busyMs > 0 ? (100 * ms) / busyMs : 0)
  const top = (m: Map<string, ProfileEntry>) =>
    [...m.values()]
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, TOP)
      .map((e) => ({ ...e, pctBusy: pct(e.selfMs) }))
  const windowMs = counted ? (last - first) / 1000 : 0
  return {
    windowMs,
    busyMs,
    idleMs: idleUs / 1000,
    samples: counted,
    meanIntervalUs: counted ? (windowMs * 1000) / counted : 0,
    categories: [...cats.entries()]
      .filter(([c]) => c !== 'idle')
      .map(([category, us]) => ({ category, selfMs: us / 1000, pctBusy: pct(us / 1000) }))
      .sort((a, b) => b.selfMs - a.selfMs),
    functions: top(fns),
    files: top(files),
  }
}

/** The main thread's profile: file names are CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile, thread 0 is main. */
async function mainThreadProfile(dir: string): Promise<string | undefined> {
  const names = (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile'))
  const main = names.find((f) => f.split('.')[4] === '0')
  if (main) return path.join(dir, main)
  let best: { f: string; size: number } | undefined
  for (const f of names) {
    const size = (await fs.stat(path.join(dir, f))).size
    if (!best || size > best.size) best = { f, size }
  }
  return best && path.join(dir, best.f)
}

export interface ProfileParams {
  opts: BenchOptions
  /** pgraid's configuration (as for the measured runs). */
  raw: Record<string, unknown>
  backends: RunningBackend[]
  database: string
  user: string
  password: string
  log: (msg: string) => void
}

/** Runs one profiled TPC-B -M prepared run through a fresh pgraid child; failures are returned, not thrown. */
export async function profileTpcb(p: ProfileParams): Promise<ProfileOutcome> {
  const { opts } = p
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgraid-cpuprof-'))
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined
  try {
    // Always a child: the profile must be pgraid's alone, whatever BENCH_PROXY says.
    proxy = await startProxy('child', p.raw, opts.repoRoot, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] })
    const ep: Endpoint = { name: 'pgraid (profiled)', host: proxy.host, port: proxy.port, user: p.user, password: p.password, database: p.database }
    await prepareRun(p.backends, p.database, ep)
    const spec = { workload: 'tpcb' as const, mode: 'prepared' as const, seconds: opts.seconds, clients: opts.clients, threads: opts.threads }
    p.log(`CPU profile: pgbench TPC-B -M prepared -c ${spec.clients} -T ${spec.seconds} through pgraid pid ${proxy.pid} (node --cpu-prof)`)
    const cpu0 = proxy.cpuSeconds()
    const fromUs = Number(process.hrtime.bigint() / 1000n)
    const r = await benchRun(ep, spec)
    const toUs = Number(process.hrtime.bigint() / 1000n)
    const cpu = proxy.cpuSeconds() - cpu0
    await proxy.stop() // SIGTERM: graceful close, exit, profile written
    proxy = undefined
    const file = await mainThreadProfile(dir)
    if (!file) return { ok: false, error: `pgraid exited without writing a CPU profile into ${dir}` }
    const prof = JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile
    const a = analyzeProfile(prof, opts.repoRoot, fromUs, toUs)
    p.log(`  ${r.tps.toFixed(0)} tps under the profiler; ${a.samples} samples, main thread busy ${a.busyMs.toFixed(0)} of ${a.windowMs.toFixed(0)} ms; profile: ${file}`)
    return {
      ok: true,
      ...spec,
      tps: r.tps,
      latencyMs: r.latencyMs,
      proxyCpuPct: (100 * cpu) / (r.wallMs / 1000),
      profilePath: file,
      ...a,
    }
  } catch (e) {
    const msg = (e as Error)?.message ?? String(e)
    p.log(`CPU profile failed: ${msg}`)
    return { ok: false, error: msg.split('\n')[0]! }
  } finally {
    if (proxy) await proxy.stop().catch(() => {})
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2]
  if (!file) {
    process.stderr.write('usage: npx tsx bench/profile.ts <file.cpuprofile>\n')
    process.exit(2)
  }
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
  const prof = JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile
  process.stdout.write(`${JSON.stringify(analyzeProfile(prof, root), null, 2)}\n`)
}
