// What the torture harness runs against: three embedded backends and one
// pgraid, either in this process (the default, cheapest) or as a child
// process (`--pgraid-process`), which the `crash` fault kills with -9 and
// starts again on the same port. Everything the harness asks of pgraid goes
// through its admin console, as an operator's tools would.

import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { startCluster, type RunningBackend } from '../../src/embedded/cluster.ts'
import { startStack, CLIENT_USER, CLIENT_PASSWORD } from '../../src/embedded/stack.ts'
import { startPgraidProcess, OPS, type PgraidProcess } from '../../test/harness/pgraid-process.ts'
import { freePort } from '../../test/harness/stack.ts'
import type { Network } from './network.ts'

export interface Target {
  /** Where clients connect: one pgraid, or each of several (one writer, standbys). */
  endpoints: { host: string; port: number }[]
  backends: RunningBackend[]
  client: { user: string; password: string }
  /** Rows of an admin console command, on a connection of its own, on the writer. */
  admin(cmd: string): Promise<Record<string, unknown>[]>
  /** Backends taken out as inconsistent during the run (a divergence pgraid caught). */
  inconsistent(): string[]
  /** kill -9 a pgraid (the writer, or instance n modulo their count) and start it again after `ms` (child processes only); names the one killed. */
  crash?(ms: number, which: 'writer' | number): Promise<string>
  /** Cuts backend i off from pgraid (and heals it), when pgraid runs in a network namespace. */
  network?: Pick<Network, 'cut' | 'heal'>
  /** pgraid's log lines per instance (child processes; in this process they went to stderr). */
  logs(): Record<string, string>
  stop(): Promise<void>
}

export interface TargetOptions {
  /** pgraid as child processes (needed for crash, failover, netcut). */
  process: boolean
  /** How many pgraid instances (child processes only). */
  instances: number
  /** pgraid in a network namespace of its own (root only). */
  network: Network | null
  logLevel: string
  /** Each pgraid process's log also appended to DIR/<name>.log as it comes (long runs: the in-memory copy keeps only the tail). */
  logDir?: string
}

const SETTINGS = { fsync: 'off', autovacuum: 'off' }
// A frozen backend is judged by the health monitor, not by a session's stall watch.
const CONFIG = { timeouts: { stallMs: 0 } }

export async function startTarget(o: TargetOptions): Promise<Target> {
  return o.process ? childTarget(o) : inProcessTarget(o.logLevel)
}

async function adminRows(host: string, port: number, cmd: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ host, port, user: OPS.name, password: OPS.password, database: 'pgraid', connectionTimeoutMillis: 10_000 })
  c.on('error', () => {})
  await c.connect()
  try {
    return (await c.query(cmd)).rows
  } finally {
    await c.end().catch(() => {})
  }
}

async function inProcessTarget(logLevel: string): Promise<Target> {
  const stack = await startStack({
    auth: 'scram-sha-256',
    settings: SETTINGS,
    config: {
      users: [
        { name: CLIENT_USER, auth: 'scram-sha-256', password: CLIENT_PASSWORD },
        { name: OPS.name, auth: 'scram-sha-256', password: OPS.password, admin: true },
      ],
      ...CONFIG,
    },
    logLevel: logLevel === 'info' ? 'info' : 'error',
  })
  const caught: string[] = []
  stack.proxy.context.states.on('out', (b: { name: string; state: string; reason: string | null }) => {
    if (b.state === 'inconsistent') caught.push(`${b.name} was taken out as inconsistent: ${b.reason ?? ''}`)
  })
  return {
    endpoints: [{ host: stack.host, port: stack.port }],
    backends: stack.cluster.backends,
    client: { user: CLIENT_USER, password: CLIENT_PASSWORD },
    admin: (cmd) => adminRows(stack.host, stack.port, cmd),
    inconsistent: () => caught,
    logs: () => ({}),
    stop: () => stack.stop(),
  }
}

async function childTarget(o: TargetOptions): Promise<Target> {
  const net = o.network
  const extraListen = net ? [0, 1, 2].map((i) => ({ address: net.backendHost(i), net: net.backendNet(i) })) : []
  const cluster = await startCluster({ count: 3, auth: 'scram-sha-256', settings: SETTINGS, extraListen })
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgraid-torture-'))
  const host = net?.proxyHost ?? '127.0.0.1'
  const backends = cluster.backends.map((b, i) => ({ ...b, name: b.name, host: net?.backendHost(i) ?? b.host, port: b.port, user: b.user, password: b.password }))
  const options = await Promise.all(
    Array.from({ length: o.instances }, async (_, k) => ({
      dir,
      name: `pgraid${k + 1}`,
      host,
      port: await freePort(),
      backends,
      config: CONFIG,
      logLevel: o.logLevel === 'info' ? 'info' : 'warn',
      prefix: net?.prefix,
    })),
  )
  const procs: PgraidProcess[] = []
  const start = async (k: number) => {
    const p = await startPgraidProcess(options[k]!)
    if (o.logDir) {
      const file = path.join(o.logDir, `${options[k]!.name}.log`)
      appendFileSync(file, p.log())
      p.child.stderr!.on('data', (b: Buffer) => appendFileSync(file, b))
    }
    return p
  }
  // One after the other: the first becomes the writer, as an operator's rollout would have it.
  for (let k = 0; k < options.length; k++) procs.push(await start(k))
  // A harness that dies (SIGTERM, a crash) takes its pgraid processes with it: none is left orphaned.
  process.once('exit', () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL')
  })
  const logs: string[] = []
  const earlier = new Map<string, string>()
  const caught = () => [...logs, ...procs.map((p) => p.log())].flatMap((text) => text.split('\n').filter((l) => l.includes('"state":"inconsistent"') && l.includes('taken out of service')))
  const writer = async (): Promise<number> => {
    for (let tries = 0; ; tries++) {
      for (let k = 0; k < procs.length; k++) if ((await procs[k]!.ha().catch(() => null))?.role === 'writer') return k
      if (tries > 200) throw new Error('no pgraid instance is the writer after 60 s')
      await new Promise((r) => setTimeout(r, 300))
    }
  }
  return {
    endpoints: options.map((opt) => ({ host, port: opt.port })),
    backends: cluster.backends,
    client: { user: 'app', password: 'app-secret' },
    admin: async (cmd) => adminRows(host, options[procs.length > 1 ? await writer() : 0]!.port, cmd),
    inconsistent: caught,
    async crash(ms, which) {
      const k = which === 'writer' ? (procs.length > 1 ? await writer() : 0) : which % procs.length
      await procs[k]!.kill()
      logs.push(procs[k]!.log())
      earlier.set(options[k]!.name, (earlier.get(options[k]!.name) ?? '') + procs[k]!.log() + `{"torture":"killed -9 here"}\n`)
      await new Promise((r) => setTimeout(r, ms))
      procs[k] = await start(k)
      return options[k]!.name
    },
    network: net ?? undefined,
    logs: () => Object.fromEntries(options.map((opt, k) => [opt.name, (earlier.get(opt.name) ?? '') + procs[k]!.log()])),
    async stop() {
      for (const p of procs) await p.kill()
      await cluster.stop()
      net?.remove()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
