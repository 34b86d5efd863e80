// Child processes the benchmark starts (pgbench, the pgraid proxy): each runs in its own process group
// so a terminal ^C reaches only us, and we end exactly the processes we started.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'

const children = new Set<ChildProcess>()
let refusing = false

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  if (refusing) throw new Error(`not starting ${cmd}: the benchmark is being interrupted`)
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts, detached: true })
  children.add(child)
  child.once('exit', () => children.delete(child))
  child.once('error', () => children.delete(child))
  return child
}

/** Signals one tracked child's process group (falls back to the child alone). */
export function signalChild(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, sig)
  } catch {
    try {
      child.kill(sig)
    } catch {
      // already gone
    }
  }
}

/** Synchronous, for the abort path: kill every child we started and have not seen exit, and refuse new ones. */
export function killAllChildren(sig: NodeJS.Signals = 'SIGKILL'): number {
  refusing = true // and start no more
  let n = 0
  for (const c of children) {
    signalChild(c, sig)
    n++
  }
  return n
}

/** Output of a finished process. */
export interface ProcResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

export function runTracked(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawnTracked(cmd, args, { env })
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 }))
  })
}

const abortCleanups = new Set<() => void>()

/** Synchronous cleanup to run if the benchmark is interrupted (e.g. removing a temp dir); returns an unregister function. */
export function onAbort(fn: () => void): () => void {
  abortCleanups.add(fn)
  return () => abortCleanups.delete(fn)
}

export function runAbortCleanups(): void {
  for (const fn of abortCleanups) {
    try {
      fn()
    } catch {
      // best effort
    }
  }
  abortCleanups.clear()
}

/**
 * The address a child proxy prints once it listens (`<name> listening on host:port` on stdout), or
 * an error with its stderr (`stderr()`) when it exits first or says nothing within 60 s.
 */
export function listeningAddress(child: ChildProcess, name: string, stderr: () => string): Promise<[string, number]> {
  return new Promise<[string, number]>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${name} did not report listening within 60 s\n${stderr()}`)), 60_000)
    const pattern = new RegExp(`${name} listening on (\\S+):(\\d+)`)
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const m = pattern.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve([m[1]!, Number(m[2])])
      }
    })
    child.once('exit', (code, sig) => {
      clearTimeout(timer)
      reject(new Error(`${name} exited during start (${code ?? sig}):\n${stderr()}`))
    })
  })
}
