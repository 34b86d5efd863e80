// pgraid under test: by default a child process (`node bin/pgraid.js start -c <config>`) so its memory and
// CPU are its own; BENCH_PROXY=inprocess runs it inside the benchmark process instead.
import { execFileSync, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseConfig } from '../src/config/schema.ts'
import { createLogger } from '../src/observe/logger.ts'
import type { LogLevel } from '../src/config/schema.ts'
import type { ProxyMode } from './options.ts'
import { listeningAddress, onAbort, signalChild, spawnTracked } from './procs.ts'

export interface ProxyBackend {
  name: string
  host: string
  port: number
  user: string
  password: string
}

export interface ProxyUser {
  name: string
  password: string
}

export interface Proxy {
  mode: ProxyMode
  host: string
  port: number
  pid: number
  /** Peak resident set size so far, in bytes (VmHWM for a child; sampled every 100 ms in-process). */
  peakRss(): number
  /** Current resident set size in bytes. */
  rss(): number
  /** CPU seconds (user + system) used so far. */
  cpuSeconds(): number
  /** Lines pgraid logged at warn or above (child mode), newest last, at most 200 kept. */
  problems(): { count: number; recent: string[] }
  stop(): Promise<void>
}

export interface ProxyConfigOptions {
  /** false: `recovery: { log: false }`, no pgraid.log row per write transaction (to measure the log's cost). */
  recoveryLog?: boolean
}

export function proxyConfig(backends: ProxyBackend[], user: ProxyUser, logLevel: LogLevel, opts: ProxyConfigOptions = {}): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    backends: backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })),
    users: [{ name: user.name, auth: 'scram-sha-256', password: user.password }],
    log: { level: logLevel },
    ...(opts.recoveryLog === false ? { recovery: { log: false } } : {}),
  }
}

export interface ProxyStartOptions {
  /** Extra node options for the child (e.g. --cpu-prof); ignored in-process. */
  nodeArgs?: string[]
  /** Extra environment for the child (e.g. PGRAID_DIST=1: run the compiled dist/); ignored in-process. */
  env?: Record<string, string>
}

export function startProxy(mode: ProxyMode, raw: Record<string, unknown>, repoRoot: string, extra: ProxyStartOptions = {}): Promise<Proxy> {
  return mode === 'child' ? startChild(raw, repoRoot, extra.nodeArgs ?? [], extra.env ?? {}) : startInProcess(raw)
}

// --------------------------------------------------------------------------------------------
// /proc readers (Linux)

function statusField(pid: number | 'self', field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

let clkTck: number | undefined
/** Clock ticks per second of /proc/<pid>/stat's times (`getconf CLK_TCK`; Linux USER_HZ, 100 on every mainstream architecture). */
export function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
      clkTck = Number.isInteger(n) && n > 0 ? n : 100
    } catch {
      clkTck = 100
    }
  }
  return clkTck
}

/** CPU seconds (utime + stime: every thread of the process) a process has used, from /proc/<pid>/stat; undefined once it is gone. */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(rest[11]) + Number(rest[12])) / clockTicks()
  } catch {
    return undefined
  }
}

// --------------------------------------------------------------------------------------------
// Child process

async function startChild(raw: Record<string, unknown>, repoRoot: string, nodeArgs: string[], extraEnv: Record<string, string>): Promise<Proxy> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgraid-bench-'))
  const cfgPath = path.join(dir, 'pgraid.json')
  const unregister = onAbort(() => rmSync(dir, { recursive: true, force: true }))
  await fs.writeFile(cfgPath, JSON.stringify(raw, null, 2), { mode: 0o600 })
  const child: ChildProcess = spawnTracked(process.execPath, [...nodeArgs, path.join(repoRoot, 'bin', 'pgraid.js'), 'start', '-c', cfgPath], {
    cwd: repoRoot,
    env: { ...process.env, ...extraEnv },
  })
  const pid = child.pid
  if (pid === undefined) {
    await fs.rm(dir, { recursive: true, force: true })
    throw new Error('could not spawn pgraid')
  }

  let problemCount = 0
  const recent: string[] = []
  let stderrTail = ''
  let partial = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderrTail = (stderrTail + d).slice(-20_000)
    partial += d
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (!/"level":"(warn|error|fatal)"/.test(line) && !/^pgraid:/.test(line)) continue
      problemCount++
      recent.push(line.length > 2000 ? `${line.slice(0, 2000)}...` : line)
      if (recent.length > 200) recent.shift()
    }
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))

  let host = ''
  let port = 0
  try {
    ;[host, port] = await listeningAddress(child, 'pgraid', () => stderrTail)
  } catch (e) {
    signalChild(child, 'SIGKILL')
    await exited
    await fs.rm(dir, { recursive: true, force: true })
    unregister()
    throw e
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout!.resume()

  // VmHWM is the kernel's own peak; a sampled max is kept as well in case it is unavailable.
  let sampledPeak = 0
  let lastCpu = 0
  const sample = () => {
    const rss = statusField(pid, 'VmRSS')
    if (rss !== undefined) sampledPeak = Math.max(sampledPeak, rss)
    lastCpu = procCpuSeconds(pid) ?? lastCpu
  }
  const timer = setInterval(sample, 100)
  timer.unref()

  let stopping: Promise<void> | undefined
  return {
    mode: 'child',
    host: host === '::' || host === '0.0.0.0' ? '127.0.0.1' : host,
    port,
    pid,
    peakRss: () => Math.max(statusField(pid, 'VmHWM') ?? 0, sampledPeak),
    rss: () => statusField(pid, 'VmRSS') ?? 0,
    cpuSeconds: () => procCpuSeconds(pid) ?? lastCpu,
    problems: () => ({ count: problemCount, recent: [...recent] }),
    stop() {
      stopping ??= (async () => {
        clearInterval(timer)
        signalChild(child, 'SIGTERM')
        const killTimer = setTimeout(() => signalChild(child, 'SIGKILL'), 15_000)
        await exited
        clearTimeout(killTimer)
        await fs.rm(dir, { recursive: true, force: true })
        unregister()
      })()
      return stopping
    },
  }
}

// --------------------------------------------------------------------------------------------
// In-process

async function startInProcess(raw: Record<string, unknown>): Promise<Proxy> {
  const { startPgraid } = await import('../src/server.ts')
  const config = parseConfig(raw, 'benchmark config')
  const handle = await startPgraid(config, createLogger(config.log.level))
  let peak = process.memoryUsage().rss
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 100)
  timer.unref()
  let stopping: Promise<void> | undefined
  return {
    mode: 'inprocess',
    host: '127.0.0.1',
    port: handle.port,
    pid: process.pid,
    peakRss: () => Math.max(peak, statusField('self', 'VmHWM') ?? 0),
    rss: () => process.memoryUsage().rss,
    cpuSeconds: () => {
      const u = process.cpuUsage()
      return (u.user + u.system) / 1e6
    },
    problems: () => ({ count: 0, recent: [] }),
    stop() {
      stopping ??= (async () => {
        clearInterval(timer)
        await handle.close()
      })()
      return stopping
    },
  }
}
