// Child processes for tests: running a command to its end (psql, pgbench, the pgraid CLI, javac,
// java) and finding an executable. Neither runner ever rejects: the caller asserts on the result.

import { execFile, type ChildProcess, type ExecFileOptions } from 'node:child_process'
import { access } from 'node:fs/promises'
import { constants } from 'node:fs'
import path from 'node:path'

/** How a command ended, as `exec` reports it. */
export interface Exit {
  /** 0; the exit code; 1 if killed (e.g. by the timeout); NaN if it could not run (not found) or overflowed maxBuffer. */
  code: number
  out: string
  err: string
}

export interface ExecOptions {
  /** Added to (and overriding) process.env. */
  env?: Record<string, string>
  /** Killed with SIGTERM after this long (default 60 s). */
  timeoutMs?: number
  /** Largest stdout or stderr kept (default: Node's, 1 MiB). */
  maxBuffer?: number
}

/** Runs `cmd` to its end; never rejects. */
export function exec(cmd: string, args: string[], opts: ExecOptions = {}): Promise<Exit> {
  const options: ExecFileOptions = { env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 60_000 }
  if (opts.maxBuffer !== undefined) options.maxBuffer = opts.maxBuffer
  return new Promise((resolve) =>
    execFile(cmd, args, { ...options, encoding: 'utf8' }, (e, stdout, stderr) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr })),
  )
}

/** How a command ended, as `run` reports it (with the signal, whether the timeout killed it, how long it took). */
export interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
  ms: number
}

export interface RunOptions {
  /** Largest stdout or stderr kept (default 16 MiB). */
  maxBuffer?: number
  /** The child is in this set while it runs (for a process exit hook that kills what is left). */
  live?: Set<ChildProcess>
}

/** Runs `cmd` to its end, SIGKILLed after `timeoutMs`; never rejects. */
export function run(cmd: string, args: string[], timeoutMs: number, opts: RunOptions = {}): Promise<Run> {
  const t0 = Date.now()
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: opts.maxBuffer ?? 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      opts.live?.delete(child)
      const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: NodeJS.Signals }) | null
      const ms = Date.now() - t0
      if (!e) return resolve({ code: 0, signal: null, stdout, stderr, timedOut: false, ms })
      resolve({
        code: typeof e.code === 'number' ? e.code : null,
        signal: e.signal ?? null,
        stdout,
        stderr: stderr || String(e.message),
        timedOut: e.killed === true && ms >= timeoutMs,
        ms,
      })
    })
    opts.live?.add(child)
  })
}

/** `name` from $JAVA_HOME/bin first, then from PATH (the first executable file); null if none. */
export async function findTool(name: string): Promise<string | null> {
  const dirs: string[] = []
  if (process.env.JAVA_HOME) dirs.push(path.join(process.env.JAVA_HOME, 'bin'))
  dirs.push(...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean))
  for (const d of dirs) {
    const p = path.join(d, name)
    if (
      await access(p, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return p
  }
  return null
}
