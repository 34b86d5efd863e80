// Renders docs/benchmarks.md from the collected figures. Hand-written text after the NOTES_MARKER line of
// the previous report is carried over to the end of the new one.
import { readFile } from 'node:fs/promises'
import { f0, f1, f2, fus, mib, table } from './format.ts'
import { WORKLOAD_LABEL } from './options.ts'
import { renderMicro, renderProfile } from './report-sections.ts'
import { recoveryTargets, renderFailover, renderLogCost } from './report-recovery.ts'
import { lifecycleTargets, renderLifecycle } from './report-lifecycle.ts'
import { renderActivemq } from './activemq.ts'
import { renderTls } from './tls.ts'
import { renderTakeover } from './takeover.ts'
import { renderRss } from './rss.ts'
import { renderFloor } from './report-floor.ts'
import { cpuUsPerTx, initRatios, median, summarise, type BenchData, type CaseSummary } from './results.ts'

// Issue 4's goals: select-only >= 0.75 x direct; TPC-B >= 0.9 of the per-backend 3-way ceiling; prepared >= simple.
const SELECT_TARGET = 0.75
const TPCB_TARGET = 0.9
const INIT_TARGET = 3

/** Everything after this line of docs/benchmarks.md is written by hand and kept when the report is regenerated. */
export const NOTES_MARKER = '<!-- notes -->'

/**
 * The hand-written tail of a previous report: what follows its NOTES_MARKER line; in a report written before
 * the marker existed, everything from its first "## Notes" heading on. Empty if there is none.
 */
export function handNotes(previous: string | undefined): string {
  if (!previous) return ''
  const lines = previous.split('\n')
  const marker = lines.findIndex((l) => l.trim() === NOTES_MARKER)
  if (marker >= 0)
    return lines
      .slice(marker + 1)
      .join('\n')
      .replace(/^\s*\n/, '')
      .trimEnd()
  const heading = lines.findIndex((l) => /^## Notes\b/.test(l))
  return heading >= 0 ? lines.slice(heading).join('\n').trimEnd() : ''
}

/** The report currently at `file`, if any. */
export async function previousReport(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

function verdict(ok: boolean): string {
  return ok ? '**met**' : '**not met**'
}

export interface TargetCheck {
  lines: string[]
  selectMet: boolean | undefined
  initMet: boolean
  /** undefined when not measured (BENCH_LOGCOST=0 / BENCH_FAILOVER=0, or no TPC-B). */
  logCostMet: boolean | undefined
  failoverMet: boolean | undefined
}

export function checkTargets(data: BenchData, cases: CaseSummary[] = summarise(data)): TargetCheck {
  const lines: string[] = []
  const sel = cases.filter((c) => c.workload === 'select')
  let selectMet: boolean | undefined
  if (sel.length > 0) {
    selectMet = sel.every((c) => c.pgraidTps / c.directTps >= SELECT_TARGET)
    const parts = sel.map((c) => `${c.mode} ${f2(c.pgraidTps / c.directTps)}x`).join(', ')
    lines.push(`- select-only through pgraid >= ${SELECT_TARGET} x direct: ${parts} - ${verdict(selectMet)}`)
  }
  const tpcb = cases.filter((c) => c.workload === 'tpcb' && c.clients > 1)
  if (tpcb.length > 0) {
    const met = tpcb.every((c) => c.pgraidTps / c.ceilingPerBackendTps >= TPCB_TARGET)
    const parts = tpcb.map((c) => `${c.mode} ${f2(c.pgraidTps / c.ceilingPerBackendTps)}`).join(', ')
    lines.push(`- TPC-B through pgraid >= ${TPCB_TARGET} of the per-backend ceiling: ${parts} - ${verdict(met)}`)
    const simple = tpcb.find((c) => c.mode === 'simple')
    const prepared = tpcb.find((c) => c.mode === 'prepared')
    if (simple && prepared) {
      lines.push(`- TPC-B prepared >= simple through pgraid: ${prepared.pgraidTps.toFixed(0)} vs ${simple.pgraidTps.toFixed(0)} tps - ${verdict(prepared.pgraidTps >= simple.pgraidTps)}`)
    }
  }
  const r = initRatios(data.init)
  const initMet = r.total <= INIT_TARGET && (r.copy === undefined || r.copy <= INIT_TARGET)
  lines.push(
    `- \`pgbench -i -s ${data.options.scale}\` through pgraid <= ${INIT_TARGET} x direct: ` +
      `whole init ${f2(r.total)}x, COPY step (client-side generate) ${r.copy === undefined ? 'n/a' : `${f2(r.copy)}x`} - ${verdict(initMet)}`,
  )
  const rec = recoveryTargets(data, cases)
  lines.push(...rec.lines)
  lines.push(...lifecycleTargets(data.lifecycle).lines)
  lines.push(...renderActivemq(data.activemq).targets)
  lines.push(...renderTakeover(data.takeover).targets)
  lines.push(...renderRss(data.idleSessions).targets)
  return { lines, selectMet, initMet, logCostMet: rec.logCostMet, failoverMet: rec.failoverMet }
}

export function renderReport(data: BenchData, previous?: string): string {
  const o = data.options
  const cases = summarise(data)
  const targets = checkTargets(data, cases)
  // The INSERT workload has no ceiling target: it is in the floor section only.
  const mainCases = cases.filter((c) => c.workload !== 'insert')
  const m = data.machine
  const minutes = (data.finishedAt.getTime() - data.startedAt.getTime()) / 60_000
  const out: string[] = []

  out.push('# Benchmarks')
  out.push('')
  out.push(
    `Generated by \`npm run bench\` (\`bench/run.ts\`) on ${data.startedAt.toISOString().replace(/\.\d+Z$/, 'Z')}; ` +
      `the whole run took ${f1(minutes)} min.` +
      (o.quick ? ' **Quick mode (`BENCH_QUICK=1`): one short round, a smoke test, not a measurement.**' : ''),
  )
  out.push('Re-run it to refresh this page; the environment variables it reads are listed at the top of `bench/run.ts`.')
  out.push('')

  out.push('## Targets for this stage')
  out.push('')
  out.push(...targets.lines)
  out.push('')

  out.push(`## Throughput and latency, ${o.clients} clients (medians of ${o.rounds} round${o.rounds === 1 ? '' : 's'})`)
  out.push('')
  out.push(
    table(
      ['Workload', 'Mode', 'direct tps', 'pgraid tps', 'ceiling tps (sum of 3)', 'ceiling tps per backend', 'pgraid / direct', 'pgraid / ceiling sum', 'pgraid / ceiling per backend'],
      mainCases.map((c) => [
        WORKLOAD_LABEL[c.workload],
        c.mode,
        f0(c.directTps),
        f0(c.pgraidTps),
        f0(c.ceilingSumTps),
        f0(c.ceilingPerBackendTps),
        f2(c.pgraidTps / c.directTps),
        f2(c.pgraidTps / c.ceilingSumTps),
        f2(c.pgraidTps / c.ceilingPerBackendTps),
      ]),
      ['l', 'l'],
    ),
  )
  out.push('')
  out.push(
    table(
      ['Workload', 'Mode', 'direct latency ms', 'pgraid latency ms', 'ceiling latency ms (mean of 3)', 'pgraid / direct latency', 'pgraid CPU, % of one core', 'pgraid CPU ms per transaction'],
      mainCases.map((c) => [
        WORKLOAD_LABEL[c.workload],
        c.mode,
        f2(c.directLat),
        f2(c.pgraidLat),
        f2(c.ceilingLat),
        f2(c.pgraidLat / c.directLat),
        f0(c.proxyCpuPct),
        f2((c.proxyCpuPct * 10) / c.pgraidTps),
      ]),
      ['l', 'l'],
    ),
  )
  out.push('')
  out.push('Targets:')
  out.push('')
  out.push(`- **direct**: one pgbench straight at backend pg1, no proxy.`)
  out.push(`- **pgraid**: one pgbench at pgraid, which sends every write to all ${data.backendAuth.length} backends ` + 'and each read outside a write transaction to one of them.')
  const nolog = data.cases.some((c) => c.targets.includes('pgraid-nolog'))
  if (nolog)
    out.push('- **pgraid-nolog** (TPC-B only): a second pgraid over the same backends and database without the recovery log ' + '(`recovery: { log: false }`); see "Cost of the recovery log" below.')
  out.push(
    `- **ceiling**: ${data.backendAuth.length} pgbench processes at once, one straight at each backend, no proxy: ` +
      'what three independent databases can do on this machine. "sum" adds their tps; "per backend" is the mean.',
  )
  out.push('')
  out.push(
    'Which ceiling applies: a read can be served by any one backend, so for select-only the sum is the ' +
      'upper bound of perfect read balancing. A replicated write has to be executed by every backend, so for ' +
      'TPC-B pgraid can at best match what *one* backend achieves while all three are busy, the per-backend ' +
      'figure; with a single pgbench at pgraid there is also one client population, so `pgraid / direct` is ' +
      'the overhead of replication plus the proxy hop.',
  )
  out.push('')

  const single = summarise(data, 1).filter((c) => Number.isFinite(c.directTps) && Number.isFinite(c.pgraidTps))
  if (single.length > 0 && o.clients !== 1) {
    out.push('### One client: the cost per statement')
    out.push('')
    out.push(
      'The same workloads with a single client (`-c 1 -j 1 -M simple`), direct vs pgraid: nothing waits for ' +
        'anything else, so the difference is what the proxy hop (and, for writes, waiting for the backends) adds ' +
        'to each statement. TPC-B sends 7 statements per transaction (BEGIN, 3 UPDATEs, SELECT, INSERT, END), ' +
        'select-only 1.',
    )
    out.push('')
    out.push(
      table(
        ['Workload', 'direct tps', 'pgraid tps', 'pgraid / direct', 'direct latency ms', 'pgraid latency ms', 'added ms per statement', 'pgraid CPU, % of one core', 'pgraid CPU ms per transaction'],
        single.map((c) => {
          const stmts = c.workload === 'tpcb' ? 7 : 1
          return [
            WORKLOAD_LABEL[c.workload],
            f0(c.directTps),
            f0(c.pgraidTps),
            f2(c.pgraidTps / c.directTps),
            f2(c.directLat),
            f2(c.pgraidLat),
            f2((c.pgraidLat - c.directLat) / stmts),
            f0(c.proxyCpuPct),
            f2((c.proxyCpuPct * 10) / c.pgraidTps),
          ]
        }),
        ['l'],
      ),
    )
    out.push('')
    const scaling = single
      .map((one) => {
        const many = cases.find((c) => c.workload === one.workload && c.mode === 'simple')
        if (!many) return undefined
        return `${WORKLOAD_LABEL[one.workload]} (simple): direct x${f2(many.directTps / one.directTps)}, ` + `pgraid x${f2(many.pgraidTps / one.pgraidTps)}`
      })
      .filter(Boolean)
    if (scaling.length) {
      out.push(`Throughput gained by going from 1 to ${o.clients} clients - ${scaling.join('; ')}. ` + "A factor near 1 means the clients' transactions ran one after the other.")
      out.push('')
    }
  }

  out.push(...renderFloor(data))
  out.push(...renderLogCost(data, cases))
  out.push(...renderFailover(data))
  out.push(...renderLifecycle(data.lifecycle))
  out.push(...renderActivemq(data.activemq).section)
  out.push(...renderTls(data.tls))
  out.push(...renderTakeover(data.takeover).section)
  out.push(...renderRss(data.idleSessions).section)
  out.push(...renderProfile(data, cases))
  if (data.micro) out.push(...renderMicro(data.micro, cases))

  const r = initRatios(data.init)
  const stepNames = [...new Set([...Object.keys(data.init.direct.steps), ...Object.keys(data.init.pgraid.steps)])]
  out.push(`## Initialisation: \`pgbench -i -s ${o.scale}\``)
  out.push('')
  out.push(
    `Init steps \`${data.init.steps}\`. direct: into a fresh database on pg1 alone; pgraid: through pgraid, which ` +
      `replicates every statement, including the COPY of ${f0(o.scale * 100_000)} \`pgbench_accounts\` rows, to all ` +
      `${data.backendAuth.length} backends. Each was run once, one after the other, with no other benchmark activity.`,
  )
  if (data.init.fallback) out.push('', `Note: ${data.init.fallback}`)
  out.push('')
  out.push(
    table(
      ["Step (pgbench's own timing)", 'direct s', 'pgraid s', 'pgraid / direct'],
      [
        ...stepNames.map((s) => {
          const d = data.init.direct.steps[s]
          const p = data.init.pgraid.steps[s]
          return [s, d === undefined ? '-' : f2(d), p === undefined ? '-' : f2(p), d && p !== undefined ? f2(p / d) : '-']
        }),
        ['**total**', f2(data.init.direct.totalS), f2(data.init.pgraid.totalS), f2(r.total)],
        ['wall time of the pgbench process', f2(data.init.direct.wallS), f2(data.init.pgraid.wallS), f2(data.init.pgraid.wallS / data.init.direct.wallS)],
      ],
      ['l'],
    ),
  )
  out.push('')

  out.push('## pgraid memory')
  out.push('')
  out.push(
    data.rss.afterStart > 0 && o.proxy === 'child'
      ? `pgraid ran as a child process (\`node bin/pgraid.js start -c <generated config>\`); figures are its own ` + '(`VmHWM`/`VmRSS` from `/proc/<pid>/status`).'
      : "pgraid ran inside the benchmark process (`BENCH_PROXY=inprocess`); figures are that process's RSS, sampled every 100 ms.",
  )
  out.push('')
  out.push(
    table(
      ['', 'RSS'],
      [
        ['after start (idle)', mib(data.rss.afterStart)],
        ['peak after `pgbench -i` (COPY)', mib(data.rss.peakAfterInit)],
        ['peak over the whole run', mib(data.rss.peak)],
      ],
      ['l'],
    ),
  )
  out.push('')

  out.push('## Machine and settings')
  out.push('')
  out.push(
    table(
      ['', ''],
      [
        ['CPU', `${m.cpuModel}, ${m.cores} cores available`],
        ['RAM', `${f1(m.ramGiB)} GiB`],
        ['OS', m.kernel],
        ['Load average at start (1, 5, 15 min)', m.loadAvg.map(f2).join(', ')],
        [
          "Load average (1 min) when runs started (includes the benchmark's own previous run)",
          data.samples.length
            ? `${f1(Math.min(...data.samples.map((x) => x.load1)))} - ${f1(Math.max(...data.samples.map((x) => x.load1)))}, median ${f1(median(data.samples.map((x) => x.load1)))}`
            : 'n/a',
        ],
        ['Node', m.node],
        ['PostgreSQL (backends)', data.pgVersion],
        ['pgbench', data.pgbenchVersion],
      ],
      ['l', 'l'],
    ),
  )
  out.push('')
  out.push(
    `- pgbench scale ${o.scale}, \`-c ${o.clients} -j ${o.threads} -T ${o.seconds}\`, \`-M simple\` and \`-M prepared\`; ` +
      `${o.rounds} interleaved round${o.rounds === 1 ? '' : 's'}: each round runs every (workload, mode) against all ` +
      `${nolog ? 'its targets (TPC-B: four, with pgraid-nolog)' : o.floor ? 'its targets (three, plus the Node.js floor proxy where one applies)' : 'three targets'} back to back, in an order that rotates from round to round.`,
  )
  out.push(
    `- ${data.backendAuth.length} embedded PostgreSQL servers (\`src/embedded/cluster.ts\`): loopback TCP, ` +
      `auth ${data.backendAuth.join(' / ')}, shared_buffers 128MB, fsync and synchronous_commit on (real durability), ` +
      'max_connections 200; everything (servers, pgraid, pgbench) shares the machine above.',
  )
  out.push(
    `- pgraid: default config apart from the backends and one scram-sha-256 user; writeQuorum ${data.writeQuorum} ` +
      `(default majority), log level ${o.logLevel}.` +
      (nolog ? " pgraid-nolog: the same plus `recovery: { log: false }`; the memory figures are the first instance's." : ''),
  )
  out.push(
    '- Datasets: pgraid uses database `postgres`, initialised through pgraid (so identical on every backend). ' +
      'The direct and ceiling targets use a separate database `benchraw` on each backend, initialised directly, ' +
      'so their TPC-B writes never make the backends behind pgraid diverge.',
  )
  out.push(
    '- Every run uses `pgbench -n`; instead, before every run the benchmark itself does what pgbench would ' +
      '(`VACUUM pgbench_branches`, `VACUUM pgbench_tellers`, `TRUNCATE pgbench_history`) plus a `CHECKPOINT`, ' +
      'directly on each backend of the database about to be used - the same for every target, so no run ' +
      `starts with a checkpoint debt left by the previous one. VACUUM sent through pgraid: ${data.vacuumThroughPgraid}.`,
  )
  out.push(`- Replication check after init: ${data.replication.afterInit}`)
  const tc = data.replication.afterTpcb
  out.push(
    `- Replication check after each TPC-B run through pgraid${nolog ? ' or pgraid-nolog' : ''} (all tables digested on every backend, ` +
      `pgbench_history included): ${tc.checks} check(s), ` +
      (tc.failures.length === 0 ? 'backends identical every time.' : `**${tc.failures.length} found differences**: ${tc.failures.join(' / ')}`),
  )
  out.push(`- Replication check at the end: ${data.replication.atEnd}`)
  out.push('')

  out.push('## How to read this')
  out.push('')
  out.push(
    'The ratios matter more than the absolute numbers. The three targets are measured side by side in the same ' +
      'run, interleaved round by round, so slow drift of the machine affects all of them alike; the absolute tps ' +
      'depend on the machine and on whatever else it was doing (this is a small shared VM: expect run-to-run ' +
      'noise of 10% or more, see the raw rounds below). Everything - three PostgreSQL servers, pgraid and pgbench - ' +
      `competes for the same ${m.cores} cores, so CPU pgraid spends is CPU the backends do not get, and the 3-way ` +
      'ceiling is bounded by the machine, not by three times one backend. Median latency is pgbench\'s "latency ' +
      'average" (with a fixed number of clients, it is roughly clients / tps).',
  )
  out.push('')

  out.push('## Raw runs')
  out.push('')
  out.push(
    table(
      ['Round', 'Workload', 'Mode', 'Clients', 'Target', 'tps', 'latency ms', 'transactions', 'pgraid CPU %', 'proxy CPU µs per transaction', 'per backend tps (ceiling)', 'load avg (1 min) at start'],
      data.samples.map((s) => [
        String(s.round),
        WORKLOAD_LABEL[s.workload],
        s.mode,
        String(s.clients),
        s.target,
        f0(s.tps),
        f2(s.latencyMs),
        f0(s.runs.reduce((a, x) => a + x.processed, 0)),
        s.proxyCpuPct === undefined ? '' : f0(s.proxyCpuPct),
        s.cpuS === undefined ? '' : fus(cpuUsPerTx(s)),
        s.target === 'ceiling' ? s.runs.map((x) => `${x.endpoint} ${f0(x.tps)}`).join(', ') : '',
        f1(s.load1),
      ]),
      ['r', 'l', 'l', 'r', 'l'],
    ),
  )
  out.push('')

  if (data.proxyProblems.count > 0) {
    out.push('## pgraid warnings and errors during the run')
    out.push('')
    out.push(`pgraid logged ${data.proxyProblems.count} line(s) at warn level or above; the last ones:`)
    out.push('')
    out.push('```')
    out.push(...data.proxyProblems.recent.slice(-20))
    out.push('```')
    out.push('')
  }

  out.push('<!-- `npm run bench` regenerates everything above the next line and keeps everything below it. -->')
  out.push(NOTES_MARKER)
  const notes = handNotes(previous)
  if (notes) out.push('', notes)
  out.push('')
  return out.join('\n')
}
