// The Node.js floor (issue 20, item 1): two bare Node.js proxies the benchmark measures next to pgraid, each a
// child process of its own so that its CPU per transaction can be read from /proc like pgraid's:
//  - relay (bench/floor-relay.ts): one client connection to one backend (pg1), bytes piped both ways; the
//    floor for reads (select-only), which pgraid serves from one backend;
//  - fanout (bench/floor-fanout.ts): each client connection to all three backends, messages framed by their
//    headers and written to each, the first backend's answer released when all three are ready; the floor for
//    replicated writes (the single autocommit INSERT of bench/floor-insert.sql).
// Both serve the direct targets' database (`benchraw`, initialised on every backend). bench/run.ts starts them
// after the init, runs them as the targets "relay" and "fanout" interleaved with the others, and
// bench/report-floor.ts renders "CPU per transaction against the Node.js floor".
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import type { RunningBackend } from '../src/embedded/cluster.ts'
import type pg from 'pg'
import { withClient, withEndpoint } from './maintenance.ts'
import type { Endpoint } from './pgbench.ts'
import { listeningAddress, signalChild, spawnTracked } from './procs.ts'
import { procCpuSeconds } from './proxy.ts'

export type FloorKind = 'relay' | 'fanout'

export interface FloorProxy {
  kind: FloorKind
  pid: number
  host: string
  port: number
  /** CPU seconds (utime + stime of all its threads, /proc/<pid>/stat) used so far. */
  cpuSeconds(): number
  /** What it wrote to stderr (the last 20 kB). */
  stderr(): string
  stop(): Promise<void>
}

/** The floor proxies over the measured cluster (relay in front of pg1, fanout in front of all backends). */
export interface FloorProxies {
  relay?: FloorProxy
  fanout?: FloorProxy
}

/** The table bench/floor-insert.sql writes: no key, so pgraid's lock manager takes IX on it only (no X per row). */
export const INSERT_TABLE = 'bench_ins'
const CREATE_INSERT_TABLE = `CREATE TABLE ${INSERT_TABLE} (v bigint NOT NULL)`

/**
 * Starts one floor proxy as `node --import tsx bench/floor-<kind>.ts 0 <host:port>...` (the TypeScript through
 * tsx, as the pgraid child of the benchmark runs), in front of `backends` (the relay uses the first only).
 */
export async function startFloor(kind: FloorKind, backends: RunningBackend[], repoRoot: string): Promise<FloorProxy> {
  const behind = kind === 'relay' ? backends.slice(0, 1) : backends
  const script = path.join(repoRoot, 'bench', `floor-${kind}.ts`)
  const child: ChildProcess = spawnTracked(process.execPath, ['--import', 'tsx', script, '0', ...behind.map((b) => `${b.host}:${b.port}`)], {
    cwd: repoRoot,
    env: { ...process.env, FLOOR_BACKEND_USER: behind[0]!.user, FLOOR_BACKEND_PASSWORD: behind[0]!.password },
  })
  const pid = child.pid
  if (pid === undefined) throw new Error(`could not spawn floor-${kind}`)
  let stderrTail = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderrTail = (stderrTail + d).slice(-20_000)))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let host = ''
  let port = 0
  try {
    ;[host, port] = await listeningAddress(child, `floor-${kind}`, () => stderrTail)
  } catch (e) {
    signalChild(child, 'SIGKILL')
    await exited
    throw e
  }
  child.stdout!.resume()
  let lastCpu = 0
  let stopping: Promise<void> | undefined
  return {
    kind,
    pid,
    host,
    port,
    cpuSeconds: () => (lastCpu = procCpuSeconds(pid) ?? lastCpu),
    stderr: () => stderrTail,
    stop() {
      stopping ??= (async () => {
        signalChild(child, 'SIGTERM')
        const killTimer = setTimeout(() => signalChild(child, 'SIGKILL'), 10_000)
        await exited
        clearTimeout(killTimer)
      })()
      return stopping
    },
  }
}

/** Where pgbench connects to go through a floor proxy: the direct targets' database, as the backends' user. */
export function floorEndpoint(f: FloorProxy, backend: RunningBackend, database: string): Endpoint {
  return { name: `floor-${f.kind}`, host: f.host, port: f.port, user: backend.user, password: backend.password, database }
}

/** (Re)creates the INSERT workload's table: through pgraid in its database, directly on every backend in `directDb`. */
export async function createInsertTables(backends: RunningBackend[], directDb: string, pgraid: Endpoint): Promise<void> {
  await withEndpoint(pgraid, async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${INSERT_TABLE}`)
    await c.query(CREATE_INSERT_TABLE)
  })
  await Promise.all(
    backends.map((b) =>
      withClient(b, directDb, async (c) => {
        await c.query(`DROP TABLE IF EXISTS ${INSERT_TABLE}`)
        await c.query(CREATE_INSERT_TABLE)
      }),
    ),
  )
}

/**
 * Before an INSERT run: empty the table (through pgraid when `truncateVia` is given, so the TRUNCATE is ordered
 * after its writes, else directly on each backend) and CHECKPOINT each backend, as prepareRun does for pgbench's
 * tables.
 */
export async function prepareInsertRun(backends: RunningBackend[], database: string, truncateVia: Endpoint[] = []): Promise<void> {
  for (const ep of truncateVia) await withEndpoint(ep, (c) => c.query(`TRUNCATE ${INSERT_TABLE}`))
  await Promise.all(
    backends.map((b) =>
      withClient(b, database, async (c) => {
        if (!truncateVia.length) await c.query(`TRUNCATE ${INSERT_TABLE}`)
        await c.query('CHECKPOINT')
      }),
    ),
  )
}
