// Report section "CPU per transaction against the Node.js floor" (issue 20, item 1): pgraid's CPU per
// transaction next to that of two bare Node.js proxies (bench/floor.ts) measured in the same interleaved rounds.
import { f0, f2, fus, table } from './format.ts'
import { WORKLOAD_LABEL } from './options.ts'
import { summariseFloor, type BenchData, type FloorRow, type TargetFigures } from './results.ts'

const FLOOR_LABEL = { relay: 'relay', fanout: '3-way fan-out' } as const

function cells(f: TargetFigures | undefined, cpu: boolean): string[] {
  if (!f) return cpu ? ['-', '-', '-'] : ['-', '-']
  return cpu ? [f0(f.tps), f2(f.latencyMs), fus(f.cpuUs)] : [f0(f.tps), f2(f.latencyMs)]
}

function rowCells(r: FloorRow): string[] {
  return [
    WORKLOAD_LABEL[r.workload],
    r.mode,
    String(r.clients),
    ...cells(r.direct, false),
    ...cells(r.pgraid, true),
    r.floor ? FLOOR_LABEL[r.floor] : 'none',
    ...cells(r.floorFigures, true),
    Number.isFinite(r.cpuRatio) ? f2(r.cpuRatio) : '-',
  ]
}

const ALIGN: ('l' | 'r')[] = ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'l']
const HEAD = [
  'Workload',
  'Mode',
  'Clients',
  'direct tps',
  'direct latency ms',
  'pgraid tps',
  'pgraid latency ms',
  'pgraid CPU µs / transaction',
  'floor',
  'floor tps',
  'floor latency ms',
  'floor CPU µs / transaction',
  'pgraid / floor CPU',
]

/** The table alone (markdown), e.g. for `--only floor`. */
export function floorTable(data: BenchData): string {
  return table(HEAD, summariseFloor(data).map(rowCells), ALIGN)
}

/** One line per case for the benchmark's log. */
export function floorLogLines(data: BenchData): string[] {
  return summariseFloor(data).map((r) => {
    const t = (name: string, f: TargetFigures | undefined) =>
      f ? `${name} ${f0(f.tps)} tps / ${f2(f.latencyMs)} ms${Number.isFinite(f.cpuUs) ? ` / ${fus(f.cpuUs)} µs CPU per tx` : ''}` : `${name} -`
    return `floor: ${r.workload} ${r.mode} -c ${r.clients}: ${t('direct', r.direct)}, ${t('pgraid', r.pgraid)}` + (r.floor ? `, ${t(r.floor, r.floorFigures)}; pgraid/floor CPU ${f2(r.cpuRatio)}` : '')
  })
}

export function renderFloor(data: BenchData): string[] {
  const rows = summariseFloor(data)
  if (!rows.some((r) => r.floor)) return []
  const o = data.options
  const out: string[] = []
  out.push(`## CPU per transaction against the Node.js floor (medians of ${o.rounds} round${o.rounds === 1 ? '' : 's'})`)
  out.push('')
  out.push(
    'What any Node.js proxy has to spend, next to what pgraid spends. Two bare proxies, each a child process of its ' +
      'own run through tsx as the pgraid child is, measured in the same interleaved rounds as the other targets ' +
      '(bench/floor.ts):',
  )
  out.push('')
  out.push(
    '- **relay** (`bench/floor-relay.ts`): one connection to pg1 per client connection, the bytes piped both ways ' +
      'unparsed (startup and authentication pass through). The floor for reads, which pgraid serves from one backend.',
  )
  out.push(
    `- **3-way fan-out** (\`bench/floor-fanout.ts\`): one connection to each of the ${data.backendAuth.length} backends per ` +
      'client connection (logged in with `BackendConnection.connect`; the client gets AuthenticationOk, the first ' +
      "backend's ParameterStatus and BackendKeyData, ReadyForQuery); every client message framed by its 5-byte " +
      "header and written to all backends; the first backend's answer sent on once every backend has sent its " +
      'ReadyForQuery for that batch (counted from the message headers). No ordering between sessions, no locks, no ' +
      'error reconciliation, no recovery log: the floor for replicated writes. Used only where that cannot deadlock ' +
      'or diverge: the single autocommit INSERT below.',
  )
  out.push('')
  out.push(
    'Workloads: select-only (`-S`) against the relay; a single autocommit `INSERT INTO bench_ins (v) VALUES (:v)` ' +
      '(`bench/floor-insert.sql`, :v random; `bench_ins` has no key, so pgraid takes no row lock for it) against the ' +
      "fan-out; TPC-B has no floor (a fan-out without ordering deadlocks on its transactions' row conflicts), its " +
      "rows give pgraid's CPU alone. The direct and floor targets use database `benchraw` (the relay and direct on " +
      'pg1, the fan-out on all three backends), pgraid its own `postgres`; the INSERT table is emptied and every ' +
      'backend checkpointed before each run.',
  )
  out.push('')
  out.push(
    "CPU per transaction: the proxy process's utime + stime (all threads, `/proc/<pid>/stat`, in clock ticks of " +
      '`getconf CLK_TCK`) read just before and just after each pgbench run, divided by the transactions pgbench ' +
      "completed. The window includes the clients' connection setup (pgraid: SCRAM with the client and a login to " +
      "each backend; the fan-out: a login to each backend), amortised over the run. The direct target's CPU is the " +
      "PostgreSQL server's and is not shown. `pgraid / floor CPU` is the ratio of the medians. pgraid answers a " +
      `write once its write quorum (${data.writeQuorum} of ${data.backendAuth.length}) has, the fan-out once all have; both ` +
      "read every backend's answer. With one client, TPC-B runs 7 statements per transaction, the others 1.",
  )
  out.push('')
  out.push(table(HEAD, rows.map(rowCells), ALIGN))
  out.push('')
  return out
}
