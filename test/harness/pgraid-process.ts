// pgraid as a separate process (bin/pgraid.js start), so a test or benchmark
// can kill it with -9, and several can run on the same backends (the writer
// election, docs/ha.md). Its stderr (JSON log lines) is kept for failure
// messages.

import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import net from 'node:net'
import pg from 'pg'

export const OPS = { name: 'ops', password: 'ops-secret' }

export interface PgraidProcess {
  port: number
  child: ChildProcess
  /** What it logged so far (stderr). */
  log(): string
  /** SIGKILL, resolves when it exited. */
  kill(): Promise<void>
  /** One row of SHOW HA from its admin console. */
  ha(): Promise<{ role: string; instance: string; locks_held: string; writer: string | null; term: string }>
  /** The rows of one admin console command, on a connection of its own. */
  admin(sql: string): Promise<Record<string, string | null>[]>
}

export interface PgraidProcessOptions {
  dir: string
  name: string
  port: number
  backends: { name: string; host: string; port: number; user: string; password?: string | null }[]
  /** Extra config keys. */
  config?: Record<string, unknown>
  logLevel?: string
  repoRoot?: string
  /** Where it listens (default 127.0.0.1). */
  host?: string
  /** A command the node process is started under, e.g. ['ip', 'netns', 'exec', NAME] (the fault harness's network namespace). */
  prefix?: string[]
}

export async function startPgraidProcess(o: PgraidProcessOptions): Promise<PgraidProcess> {
  const file = join(o.dir, `${o.name}.json`)
  await writeFile(
    file,
    JSON.stringify({
      listen: { host: o.host ?? '127.0.0.1', port: o.port },
      backends: o.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password ?? undefined })),
      users: [
        { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
        { name: OPS.name, auth: 'scram-sha-256', password: OPS.password, admin: true },
      ],
      log: { level: o.logLevel ?? 'info' },
      ...o.config,
    }),
  )
  const argv = [...(o.prefix ?? []), process.execPath, 'bin/pgraid.js', 'start', '-c', file]
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], cwd: o.repoRoot })
  let text = ''
  child.stderr!.on('data', (b: Buffer) => {
    text += b.toString()
    if (text.length > 4_000_000) text = text.slice(-2_000_000)
  })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const proc: PgraidProcess = {
    port: o.port,
    child,
    log: () => text,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
    async ha() {
      return (await proc.admin('SHOW HA'))[0] as Awaited<ReturnType<PgraidProcess['ha']>>
    },
    async admin(sql: string) {
      const c = new pg.Client({ host: o.host ?? '127.0.0.1', port: o.port, user: OPS.name, password: OPS.password, database: 'pgraid', connectionTimeoutMillis: 5000 })
      c.on('error', () => {})
      await c.connect()
      try {
        return (await c.query(sql)).rows
      } finally {
        await c.end().catch(() => {})
      }
    },
  }
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`pgraid ${o.name} exited with ${child.exitCode}:\n${text.slice(-3000)}`)
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(o.port, o.host ?? '127.0.0.1', () => (s.destroy(), r(true)))
      s.on('error', () => r(false))
    })
    if (ok) return proc
    await new Promise((r) => setTimeout(r, 50))
  }
  await proc.kill()
  throw new Error(`pgraid ${o.name} did not listen on ${o.port} within 30 s:\n${text.slice(-3000)}`)
}
