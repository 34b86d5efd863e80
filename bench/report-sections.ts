// Report sections for the CPU profile (bench/profile.ts) and the in-process micro-benchmarks (bench/micro.ts).
import { f0, f1, f2, fus, table } from './format.ts'
import type { MicroResults } from './micro.ts'
import type { BenchData, CaseSummary } from './results.ts'

const pct = (x: number) => (Number.isFinite(x) ? `${x.toFixed(1)}%` : 'n/a')
const code = (s: string) => `\`${s.replace(/`/g, "'")}\``

/** pgraid CPU ms per transaction of a measured case, from its median CPU % and tps. */
function cpuMsPerTx(c: CaseSummary | undefined): number {
  return c ? (c.proxyCpuPct * 10) / c.pgraidTps : Number.NaN
}

export function renderProfile(data: BenchData, cases: CaseSummary[]): string[] {
  const out: string[] = ['## Where the time goes: CPU profile of pgraid under TPC-B', '']
  const p = data.profile
  if (!p) {
    out.push('Not profiled in this run (`BENCH_PROFILE=0`, or a quick run without `BENCH_PROFILE=1`).', '')
    return out
  }
  if (!p.ok) {
    out.push(`The profiled run failed: ${p.error}`, '')
    return out
  }
  const measured = cases.find((c) => c.workload === 'tpcb' && c.mode === 'prepared')
  out.push(
    `One more TPC-B run, \`pgbench -M prepared -c ${p.clients} -j ${p.threads} -T ${p.seconds}\`, after the measured ` +
      'ones, through a separate pgraid child started as `node --cpu-prof bin/pgraid.js start ...` and stopped with ' +
      'SIGTERM (pgraid closes gracefully and Node writes the profile on exit). Only samples taken while pgbench ' +
      `ran count: ${f0(p.samples)} samples over ${f1(p.windowMs / 1000)} s, one every ${f0(p.meanIntervalUs)} µs on average. ` +
      "Self time is time a function itself was on top of pgraid's main-thread stack; percentages are of the " +
      `main thread's busy (non-idle) time, ${f0(p.busyMs)} ms of ${f0(p.windowMs)} ms ` +
      `(${pct((100 * p.busyMs) / p.windowMs)}).`,
  )
  out.push('')
  out.push(
    `Under the profiler: ${f0(p.tps)} tps, ${f2(p.latencyMs)} ms latency, pgraid CPU ${f0(p.proxyCpuPct)}% of one core ` +
      '(all threads, from `/proc`)' +
      (measured ? `; the unprofiled median above: ${f0(measured.pgraidTps)} tps, ${f0(measured.proxyCpuPct)}% CPU.` : '.') +
      ` CPU per transaction under the profiler: ${f2((p.proxyCpuPct * 10) / p.tps)} ms.`,
  )
  out.push('')
  out.push(
    table(
      ['Where', 'self ms', '% of busy'],
      p.categories.map((c) => [c.category, f0(c.selfMs), pct(c.pctBusy)]),
      ['l'],
    ),
  )
  out.push('')
  out.push(`Top ${p.functions.length} functions by self time:`)
  out.push('')
  out.push(
    table(
      ['#', 'Function', 'File', 'Where', 'self ms', '% of busy'],
      p.functions.map((f, i) => [String(i + 1), code(f.name), code(f.where), f.category, f0(f.selfMs), pct(f.pctBusy)]),
      ['r', 'l', 'l', 'l'],
    ),
  )
  out.push('')
  out.push(`Top ${p.files.length} files by self time:`)
  out.push('')
  out.push(
    table(
      ['File', 'Where', 'self ms', '% of busy'],
      p.files.map((f) => [code(f.where), f.category, f0(f.selfMs), pct(f.pctBusy)]),
      ['l', 'l'],
    ),
  )
  out.push('')
  out.push(
    '`(native)`: C++ functions called from JavaScript (socket `writev`/`read` and the system calls they make, ' +
      'crypto, WASM calls); `(program)`: V8 and Node native work not attributed to JavaScript (compilation, ' +
      'the event loop, I/O polling); `(garbage collector)`: GC pauses on the main thread. src/ files are the ' +
      'TypeScript sources as run by tsx. The profile is the main thread only: GC helper and libuv threads show ' +
      'in the CPU % but not here. The `.cpuprofile` is left in a temporary directory (path in the bench log) for ' +
      'Chrome DevTools.',
  )
  out.push('')
  return out
}

export function renderMicro(m: MicroResults, cases: CaseSummary[]): string[] {
  const out: string[] = []
  out.push('## Statement analysis cost (in-process micro-benchmark)')
  out.push('')
  out.push(
    'Timed inside the benchmark process before the PostgreSQL servers start (`bench/micro.ts`; run it alone with ' +
      '`npx tsx bench/micro.ts`). Median µs per call with `process.hrtime.bigint()`: ' +
      `${f0(m.uncachedIterations)} calls per uncached / new-text figure, ${f0(m.cachedIterations)} per cached one ` +
      '(timed 10 calls at a time, they are far below a microsecond), each figure collected in 5 slices interleaved ' +
      'with all the others, after a full GC. ' +
      `An empty timed call reads ${fus(m.timerOverheadUs)} µs (not subtracted).`,
  )
  out.push('')
  out.push(
    table(
      [
        'Statement',
        'parse only (libpg-query)',
        '`analyze` uncached',
        '`analyze` cached',
        '`analyzeForRouting`, new text',
        'what answers it',
        '`findTimeSites`, new text',
        '`findTimeSites` cached',
        '`locksFor`',
        'simple Query, new text',
      ],
      m.analysis.map((a) => {
        const lf = m.locksForUs.find((l) => l.label === a.label)
        return [
          a.label,
          fus(a.parseUs),
          fus(a.analyzeUncachedUs),
          fus(a.analyzeCachedUs),
          fus(a.routingNewTextUs),
          a.routingNote,
          `${fus(a.timeSitesNewTextUs)}${a.timeSitesParses ? ' (parses)' : ' (regex only)'}`,
          fus(a.timeSitesCachedUs),
          lf ? fus(lf.us) : 'n/a',
          fus(a.simpleQueryNewTextUs),
        ]
      }),
      ['l', 'r', 'r', 'r', 'r', 'l'],
    ),
  )
  out.push('')
  out.push(
    '- **parse only**: `parseStatements` (libpg-query WASM parse to JSON, statement split), no cache. ' +
      '**`analyze` uncached**: `clearCache()` before every call, same text: parse + classification + freeze. ' +
      "**cached**: the same text again, an LRU hit (`analyze`'s cache is keyed by exact text).",
  )
  out.push(
    '- **new text**: every call gets a text never seen before, varying the literal named in the list below ' +
      "(what `pgbench -M simple` and any client that inlines values sends). `analyze`'s text cache then " +
      'misses; `analyzeForRouting` (`src/sql/shape-cache.ts`) answers from its shape cache (text with ' +
      "literals masked): a read gets the shape's analysis, a write gets it with its own literals as key values; " +
      'texts with `$n`, comments, quoted identifiers or dollar quotes are parsed every time. `timeSitesByShape` ' +
      '(the clock/random calls) skips texts naming no clock/random function with a regex ("regex only"), finds ' +
      'the calls of the others on the shape (parsed once per shape), and parses only a text whose shape has no ' +
      'call or a call with a literal inside ("parses").',
  )
  out.push(
    '- **`locksFor`**: the planner deriving the lock requests from a (cached) analysis, with a catalog holding ' +
      "pgbench's primary keys. **simple Query, new text**: `analyzeForRouting` + `timeSitesByShape` + `locksFor` on a " +
      'new text: the statement analysis one simple-protocol statement costs. With `-M prepared` the text is ' +
      'analysed once per Parse and every execution reuses it (the cached column).',
  )
  const tpcb = m.analysis.filter((a) => a.label.startsWith('TPC-B'))
  if (tpcb.length === 5) {
    const simpleSum = tpcb.reduce((s, a) => s + a.simpleQueryNewTextUs, 0)
    const simpleCase = cases.find((c) => c.workload === 'tpcb' && c.mode === 'simple')
    const cpu = cpuMsPerTx(simpleCase)
    out.push(
      `- The five TPC-B statements of one \`-M simple\` transaction: ${fus(simpleSum)} µs of analysis in all` +
        (Number.isFinite(cpu) ? `, ${pct((100 * simpleSum) / (cpu * 1000))} of the ${f2(cpu)} ms of CPU pgraid used per TPC-B simple transaction above.` : '.'),
    )
  }
  out.push('')
  out.push('Statements (the cached figures use these texts; "new text" varies the named part):')
  out.push('')
  for (const a of m.analysis) out.push(`- ${a.label}, varying ${a.varied}: ${code(a.text)}`)
  out.push('')

  out.push('## Lock manager cost (in-process micro-benchmark)')
  out.push('')
  out.push(
    '`LockManager` (`src/scheduler/lock-manager.ts`) used the way a session uses it: `await acquire(owner, requests)` ' +
      "for each statement, `releaseAll(owner)` when the transaction ends; the requests are what the planner's " +
      "`locksFor` derives for the statements (with pgbench's primary keys: key locks, no table X locks). " +
      `"With ${m.holders} holders": ${m.holders} other owners each hold a whole TPC-B transaction's locks on other ` +
      'accounts, tellers and branches, so `db` and the `rel:` intention locks are shared and the measured owner ' +
      `never waits. Median µs per round trip, ${f0(m.lockIterations)} round trips timed 10 at a time.`,
  )
  out.push('')
  out.push(
    table(
      ['Round trip', 'requests', 'uncontended µs', `with ${m.holders} holders µs`],
      m.locks.map((l) => [l.label, `${l.requestCount}: ${code(l.requests)}`, fus(l.uncontendedUs), fus(l.contendedUs)]),
      ['l', 'l'],
    ),
  )
  out.push('')
  return out
}
