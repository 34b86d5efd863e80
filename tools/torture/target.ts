// What the torture harness runs against: three embedded backends and one
// pgraid, either in this process (the default, cheapest) or as a child
// process (`--pgraid-process`), which the `crash` fault kills with -9 and
// starts again on the same port. Everything the harness asks of pgraid goes
// through its admin console, as an operator's tools would.

import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { startCluster, type RunningBackend } from '../../src/embedded/cluster.ts'
import { startStack, CLIENT_USER, CLIENT_PASSWORD } from '../../src/embedded/stack.ts'
import { startPgraidProcess, OPS, type PgraidProcess } from '../../test/harness/pgraid-process.ts'
import { freePort } from '../../test/harness/stack.ts'

export interface Target {
  host: string
  port: number
  backends: RunningBackend[]
  client: { user: string; password: string }
  /** Rows of an admin console command, on a connection of its own. */
  admin(cmd: string): Promise<Record<string, unknown>[]>
  /** Backends taken out as inconsistent during the run (a divergence pgraid caught). */
  inconsistent(): string[]
  /** kill -9 pgraid and start it again after `ms` (child process only). */
  crash?(ms: number): Promise<void>
  stop(): Promise<void>
}

const SETTINGS = { fsync: 'off', autovacuum: 'off' }
// A frozen backend is judged by the health monitor, not by a session's stall watch.
const CONFIG = { timeouts: { stallMs: 0 } }

export async function startTarget(asProcess: boolean, logLevel: string): Promise<Target> {
  return asProcess ? childTarget(logLevel) : inProcessTarget(logLevel)
}

async function adminRows(port: number, cmd: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: OPS.name, password: OPS.password, database: 'pgraid', connectionTimeoutMillis: 10_000 })
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
    host: stack.host,
    port: stack.port,
    backends: stack.cluster.backends,
    client: { user: CLIENT_USER, password: CLIENT_PASSWORD },
    admin: (cmd) => adminRows(stack.port, cmd),
    inconsistent: () => caught,
    stop: () => stack.stop(),
  }
}

async function childTarget(logLevel: string): Promise<Target> {
  const cluster = await startCluster({ count: 3, auth: 'scram-sha-256', settings: SETTINGS })
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgraid-torture-'))
  const port = await freePort()
  const options = { dir, name: 'pgraid', port, backends: cluster.backends, config: CONFIG, logLevel: logLevel === 'info' ? 'info' : 'warn' }
  let proc: PgraidProcess = await startPgraidProcess(options)
  const logs: string[] = []
  const caught = () => [...logs, proc.log()].flatMap((text) => text.split('\n').filter((l) => l.includes('"state":"inconsistent"') && l.includes('taken out of service')))
  return {
    host: '127.0.0.1',
    port,
    backends: cluster.backends,
    client: { user: 'app', password: 'app-secret' },
    admin: (cmd) => adminRows(port, cmd),
    inconsistent: caught,
    async crash(ms) {
      await proc.kill()
      logs.push(proc.log())
      await new Promise((r) => setTimeout(r, ms))
      proc = await startPgraidProcess(options)
    },
    async stop() {
      await proc.kill()
      await cluster.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
