// `npm run bench`: pgbench against pgraid over 3 real PostgreSQL backends, side by side with pgbench straight
// at one backend and with three pgbench processes at three backends at once; writes docs/benchmarks.md.
// Before the servers start it also times statement analysis and the lock manager in-process (bench/micro.ts,
// ~10 s; `npx tsx bench/micro.ts` runs them alone). Text after a `<!-- notes -->` line of the existing report
// is kept at the end of the new one.
//
// Environment variables (all optional):
//   BENCH_QUICK=1        smoke run: 1 round of 5 s runs (BENCH_SECONDS / BENCH_ROUNDS still override)
//   BENCH_SECONDS=15     duration of each pgbench run (-T)
//   BENCH_ROUNDS=3       interleaved rounds; each round runs every workload/mode against every target
//   BENCH_SCALE=10       pgbench scale factor (-s); 10 = 1M pgbench_accounts rows
//   BENCH_CLIENTS=8      pgbench -c (per pgbench process)
//   BENCH_THREADS=2      pgbench -j (per pgbench process)
//   BENCH_WORKLOADS=tpcb,select,insert   which workloads to run (TPC-B default script, select-only -S, the single
//                        autocommit INSERT of bench/floor-insert.sql; insert is in the default only with BENCH_FLOOR)
//   BENCH_MODES=simple,prepared   which pgbench -M query modes to run
//   BENCH_SINGLE_CLIENT=1         also run each workload with one client (-c 1 -j 1, -M simple), direct vs
//                                 pgraid (and the workload's floor proxy, with BENCH_FLOOR): the per-statement
//                                 cost of the proxy without contention; 0 = skip
//   BENCH_PROFILE=1      after the measured runs, one more TPC-B -M prepared run (BENCH_SECONDS long) through a
//                        pgraid child started with `node --cpu-prof`, stopped with SIGTERM so the profile is
//                        written; self time per function / source file goes to "Where the time goes".
//                        Default on, off with BENCH_QUICK=1 unless set; 0 = skip
//   BENCH_LOGCOST        the cost of the recovery log (a second pgraid with `recovery: { log: false }` over the same
//                        backends, target "pgraid-nolog"): off, and refused if set, since the writer election makes
//                        that second pgraid a read-only standby (bench/options.ts says what rebuilding it needs)
//   BENCH_FAILOVER=1     the failover figure: after the measured runs, a separate fresh 3-backend cluster with its
//                        own pgraid; pgbench TPC-B -c 8 through it plus a probe client inserting a row every 50 ms;
//                        one backend is killed (immediate shutdown) after 3 s, the run goes on ~5 s more. Reports the
//                        longest gap between successful probe writes, aborted pgbench clients, and whether the two
//                        remaining backends are identical (bench/failover.ts, ~30 s). 0 = skip
//   BENCH_LIFECYCLE=1    resync, clone and verify figures (issue 6): a separate fresh 3-backend cluster, pgbench
//                        scale BENCH_SCALE through pgraid; VERIFY under load, RESYNC after 10 s without pg3 (records/s,
//                        commit hold, a probe's longest gap), CLONE under load vs a plain COPY dump-and-restore of the
//                        same tables (bench/lifecycle.ts, ~2 min at scale 10). 0 = skip
//   BENCH_TAKEOVER=1     the takeover figure (issue 8, item 7): two pgraid processes on a separate 3-backend cluster,
//                        the writer killed -9 five times; kill -> first write on the new writer (bench/takeover.ts, ~60 s). 0 = skip
//   BENCH_ACTIVEMQ=1     the ActiveMQ figure (issue 7): a real broker (Debian's activemq) on pgraid over a separate
//                        3-backend cluster vs the same broker on one plain backend; 4 producers x 500 persistent 1 KiB
//                        messages (sync sends), then a transacted drain; BENCH_ACTIVEMQ_ROUNDS (4) interleaved rounds (bench/activemq.ts,
//                        ~2 min). 0 = skip
//   BENCH_TLS=1         the TLS figure (issue 8): a separate 3-backend cluster, pgbench TPC-B and select-only through
//                        one pgraid with sslmode=disable vs sslmode=require, interleaved (bench/tls.ts, ~2 min). 0 = skip
//   BENCH_RSS=1          the memory figure (issue 8): pgraid (a child process) over a separate 3-backend cluster,
//                        its VmRSS before any client and with 200 idle node-postgres sessions (bench/rss.ts, ~1 min).
//                        0 = skip
//   BENCH_FLOOR=1        the Node.js floor (issue 20, bench/floor.ts): two bare Node.js proxies as extra targets of the
//                        measured rounds, each a child process - "relay" (bytes piped to pg1, bench/floor-relay.ts) on
//                        select-only, "fanout" (every message to all 3 backends, bench/floor-fanout.ts) on the INSERT
//                        workload - and the CPU per transaction of pgraid and of each of them, from /proc/<pid>/stat
//                        before and after every run: "CPU per transaction against the Node.js floor". 0 = skip
//   BENCH_ONLY=floor     (or `npx tsx bench/run.ts --only floor`): the floor part alone for a quick check: the measured
//                        rounds of every workload against direct, pgraid and the floor proxies (no ceiling), without
//                        the micro-benchmarks, the profile and the separate scenarios; prints the floor table and writes
//                        no report unless BENCH_OUT is set. E.g. BENCH_QUICK=1 BENCH_SCALE=1 npx tsx bench/run.ts --only floor
//   BENCH_PROXY=child    "child": pgraid as `node bin/pgraid.js start -c <config>` (isolated RSS/CPU);
//                        "inprocess": pgraid inside this process
//   BENCH_LOG_LEVEL=warn pgraid log level (its warnings are collected into the report)
//   BENCH_OUT=docs/benchmarks.md  where to write the report (relative to the repository root)
//   BENCH_PGBENCH=pgbench         the pgbench executable
//   PGRAID_PG_BIN        PostgreSQL bin directory for the backends (see docs/harness.md)
//
// Exit code 0 after writing the report; 1 if anything failed (a pgbench error or failed transactions are
// printed in full, with pgraid's recent warnings), 130/143 when interrupted. Everything started here (servers,
// pgraid, pgbench processes) is stopped on the way out, on Ctrl-C too.
import { writeFile } from 'node:fs/promises'
import os from 'node:os'
import { startCluster, type BackendAuth, type Cluster, type RunningBackend } from '../src/embedded/cluster.ts'
import { CLIENT_PASSWORD, CLIENT_USER } from '../src/embedded/stack.ts'
import { parseConfig } from '../src/config/schema.ts'
import { describeMachine } from './machine.ts'
import { accountCounts, checkReplicas, prepareRun, probeVacuum, recreateDatabase, serverVersion } from './maintenance.ts'
import { readOptions, type BenchOptions } from './options.ts'
import { benchRun, pgbenchVersion, PgbenchError, type Endpoint, type RunResult } from './pgbench.ts'
import { aborted, activeClusters, takeOverSignals } from './interrupt.ts'
import { backendEndpoint, DIRECT_DB, PGRAID_DB, timedInit } from './init-timing.ts'
import { proxyConfig, startProxy, type Proxy } from './proxy.ts'
import { renderReport, checkTargets, previousReport } from './report.ts'
import { runMicro } from './micro.ts'
import { profileTpcb } from './profile.ts'
import { runFailover } from './failover.ts'
import { runLifecycle } from './lifecycle.ts'
import { runActivemq } from './activemq.ts'
import { runTls } from './tls.ts'
import { runTakeover } from './takeover.ts'
import { runRss } from './rss.ts'
import { cpuUsPerTx, isFloor, isPgraid, TARGETS, TPCB_TARGETS_WITH_NOLOG, summarise, type BenchData, type Case, type Sample, type Target } from './results.ts'
import { createInsertTables, floorEndpoint, prepareInsertRun, startFloor, type FloorProxies } from './floor.ts'
import { floorLogLines, floorTable } from './report-floor.ts'

const BACKEND_AUTH: BackendAuth[] = ['scram-sha-256', 'md5', 'trust']

const t0 = Date.now()
function log(msg: string): void {
  const s = ((Date.now() - t0) / 1000).toFixed(0).padStart(5)
  process.stderr.write(`[bench ${s}s] ${msg}\n`)
}

takeOverSignals()

// ---------------------------------------------------------------------------------------------

function fmtRun(r: { tps: number; latencyMs: number }): string {
  return `${r.tps.toFixed(0)} tps, ${r.latencyMs.toFixed(2)} ms`
}

/** The pgraid instances over the measured cluster: the normal one, and the one without the recovery log. */
interface Pgraids {
  pgraid: { proxy: Proxy; ep: Endpoint }
  nolog?: { proxy: Proxy; ep: Endpoint }
}

async function measure(opts: BenchOptions, round: number, cs: Case, target: Target, backends: RunningBackend[], pgraids: Pgraids, floors: FloorProxies): Promise<Sample> {
  const spec = { workload: cs.workload, mode: cs.mode, seconds: opts.seconds, clients: cs.clients, threads: cs.threads }
  const base = { round, workload: cs.workload, mode: cs.mode, clients: cs.clients, target }
  // Between runs: pgbench's own maintenance of its tables, or emptying the INSERT workload's table.
  const prepare = (on: RunningBackend[], database: string, via?: Endpoint[]) => (cs.workload === 'insert' ? prepareInsertRun(on, database, via) : prepareRun(on, database, via))
  if (target === 'direct') {
    await prepare([backends[0]!], DIRECT_DB)
    const load1 = os.loadavg()[0] ?? 0
    const r = await benchRun(backendEndpoint(backends[0]!, DIRECT_DB), spec)
    return { ...base, load1, tps: r.tps, latencyMs: r.latencyMs, runs: [r] }
  }
  if (isFloor(target)) {
    const floor = floors[target]
    if (!floor) throw new Error(`no floor proxy for target ${target}`)
    await prepare(target === 'relay' ? [backends[0]!] : backends, DIRECT_DB)
    const load1 = os.loadavg()[0] ?? 0
    const cpu0 = floor.cpuSeconds()
    const r = await benchRun(floorEndpoint(floor, backends[0]!, DIRECT_DB), spec)
    const cpuS = floor.cpuSeconds() - cpu0
    return { ...base, load1, tps: r.tps, latencyMs: r.latencyMs, runs: [r], cpuS }
  }
  if (isPgraid(target)) {
    const through = target === 'pgraid' ? pgraids.pgraid : pgraids.nolog
    if (!through) throw new Error(`no pgraid instance for target ${target}`)
    const { proxy, ep: pgraidEp } = through
    // Through every instance: each orders its TRUNCATE after its own last writes.
    await prepare(backends, PGRAID_DB, [pgraids.pgraid.ep, ...(pgraids.nolog ? [pgraids.nolog.ep] : [])])
    const load1 = os.loadavg()[0] ?? 0
    const cpu0 = proxy.cpuSeconds()
    const r = await benchRun(pgraidEp, spec)
    const cpu = proxy.cpuSeconds() - cpu0
    return { ...base, load1, tps: r.tps, latencyMs: r.latencyMs, runs: [r], proxyCpuPct: (100 * cpu) / (r.wallMs / 1000), cpuS: cpu }
  }
  if (cs.workload === 'insert') throw new Error(`target ${target} does not run the INSERT workload`)
  await prepareRun(backends, DIRECT_DB)
  const load1 = os.loadavg()[0] ?? 0
  const runs: RunResult[] = await Promise.all(backends.map((b) => benchRun(backendEndpoint(b, DIRECT_DB), spec)))
  return {
    ...base,
    load1,
    tps: runs.reduce((a, r) => a + r.tps, 0),
    latencyMs: runs.reduce((a, r) => a + r.latencyMs, 0) / runs.length,
    runs,
  }
}

/**
 * The Node.js floor target of a workload (bench/floor.ts), right after pgraid in the target list: the relay for
 * reads, the 3-way fan-out for the INSERT; none for TPC-B (a fan-out without ordering deadlocks on it).
 */
function withFloor(opts: BenchOptions, workload: Case['workload'], targets: Target[]): Target[] {
  const floor: Target | undefined = !opts.floor ? undefined : workload === 'select' ? 'relay' : workload === 'insert' ? 'fanout' : undefined
  if (!floor) return targets
  const at = targets.indexOf('pgraid') + 1
  return [...targets.slice(0, at), floor, ...targets.slice(at)]
}

function benchCases(opts: BenchOptions): Case[] {
  const cases: Case[] = []
  for (const workload of opts.workloads)
    for (const mode of opts.modes) {
      // The recovery log's cost: TPC-B also through a pgraid without the log (BENCH_LOGCOST). The INSERT workload
      // has no ceiling (it is there for the floor); `--only floor` measures no ceiling at all.
      let targets = workload === 'tpcb' && opts.logCost ? TPCB_TARGETS_WITH_NOLOG : TARGETS
      if (workload === 'insert' || opts.only === 'floor') targets = targets.filter((t) => t !== 'ceiling')
      cases.push({ workload, mode, clients: opts.clients, threads: opts.threads, targets: withFloor(opts, workload, targets) })
    }
  // One client, no contention: what the proxy hop and replication add to each statement.
  if (opts.singleClient && opts.clients !== 1)
    for (const workload of opts.workloads) cases.push({ workload, mode: 'simple', clients: 1, threads: 1, targets: withFloor(opts, workload, ['direct', 'pgraid']) })
  return cases
}

async function main(): Promise<number> {
  const opts = readOptions(process.env, process.argv.slice(2))
  const startedAt = new Date()
  const machine = describeMachine()
  const cases = benchCases(opts)
  const runsPerRound = cases.reduce((a, c) => a + c.targets.length, 0)
  const estimate =
    ((runsPerRound * opts.rounds + (opts.profile ? 1 : 0)) * (opts.seconds + 4) +
      (opts.failover ? 40 : 0) +
      (opts.lifecycle ? 150 : 0) +
      (opts.activemq ? 150 : 0) +
      (opts.tls ? 130 : 0) +
      (opts.takeover ? 60 : 0) +
      (opts.rss ? 60 : 0)) /
    60
  log(
    `scale ${opts.scale}, -c ${opts.clients} -j ${opts.threads} -T ${opts.seconds}, ${opts.rounds} round(s) of ` +
      `${runsPerRound} runs${opts.profile ? ' + 1 profiled run' : ''}${opts.failover ? ' + the failover scenario' : ''}; ` +
      `measuring takes ~${estimate.toFixed(0)} min after init`,
  )
  const pgbenchVer = await pgbenchVersion()
  // In-process micro-benchmarks first, while nothing else of ours runs (bench/micro.ts); not with --only.
  let micro: Awaited<ReturnType<typeof runMicro>> | undefined
  if (opts.only === undefined) {
    log('micro-benchmarks: statement analysis and lock manager (in-process)')
    micro = await runMicro()
    log(`  done in ${(micro.ms / 1000).toFixed(1)} s`)
  }

  let cluster: Cluster | undefined
  let proxy: Proxy | undefined
  let nologProxy: Proxy | undefined
  const floors: FloorProxies = {}
  const samples: Sample[] = []
  const tpcbChecks = { checks: 0, failures: [] as string[] }
  try {
    log('starting 3 PostgreSQL backends')
    cluster = await startCluster({ count: 3, auth: BACKEND_AUTH })
    activeClusters.add(cluster)
    takeOverSignals()
    if (aborted()) return 130 // interrupted while the servers were starting
    const backends = cluster.backends
    const pgVersion = await serverVersion(backends[0]!)

    const raw = proxyConfig(backends, { name: CLIENT_USER, password: CLIENT_PASSWORD }, opts.logLevel)
    const writeQuorum = parseConfig(raw, 'benchmark config').writeQuorum
    log(`starting pgraid (${opts.proxy})`)
    proxy = await startProxy(opts.proxy, raw, opts.repoRoot)
    const rssAfterStart = proxy.rss()
    log(`pgraid pid ${proxy.pid} on ${proxy.host}:${proxy.port}, RSS ${(rssAfterStart / 2 ** 20).toFixed(0)} MiB`)
    const pgraidEp: Endpoint = { name: 'pgraid', host: proxy.host, port: proxy.port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: PGRAID_DB }

    await Promise.all(backends.map((b) => recreateDatabase(b, DIRECT_DB)))
    const init = await timedInit(log, opts, backends, pgraidEp)
    const peakAfterInit = proxy.peakRss()

    const counts = await accountCounts(backends, PGRAID_DB)
    if (counts.some((n) => n !== opts.scale * 100_000)) throw new Error(`pgbench_accounts through pgraid: row counts per backend ${counts.join(', ')}, expected ${opts.scale * 100_000}`)
    log('comparing the backends after init')
    const afterInit = await checkReplicas(backends, PGRAID_DB)
    if (!afterInit.identical) throw new Error(`backends differ after pgbench -i through pgraid:\n${afterInit.report}`)
    log(`  ${afterInit.report}`)
    const vacuumThroughPgraid = await probeVacuum(pgraidEp)
    log(`VACUUM through pgraid: ${vacuumThroughPgraid}`)

    // The second pgraid, without the recovery log, over the same backends and database (started after the
    // init, so the two never wrote concurrently; it writes no pgraid.log rows, so the LSNs stay the first's).
    const pgraids: Pgraids = { pgraid: { proxy, ep: pgraidEp } }
    if (cases.some((c) => c.targets.includes('pgraid-nolog'))) {
      const rawNolog = proxyConfig(backends, { name: CLIENT_USER, password: CLIENT_PASSWORD }, opts.logLevel, { recoveryLog: false })
      log(`starting a second pgraid without the recovery log (${opts.proxy})`)
      nologProxy = await startProxy(opts.proxy, rawNolog, opts.repoRoot)
      log(`pgraid-nolog pid ${nologProxy.pid} on ${nologProxy.host}:${nologProxy.port}`)
      pgraids.nolog = {
        proxy: nologProxy,
        ep: { name: 'pgraid-nolog', host: nologProxy.host, port: nologProxy.port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: PGRAID_DB },
      }
    }

    // The Node.js floor: the INSERT workload's table, and the bare proxies in front of the direct targets' database.
    if (cases.some((c) => c.workload === 'insert')) await createInsertTables(backends, DIRECT_DB, pgraidEp)
    for (const kind of ['relay', 'fanout'] as const) {
      if (!cases.some((c) => c.targets.includes(kind))) continue
      const f = await startFloor(kind, backends, opts.repoRoot)
      floors[kind] = f
      log(`floor-${kind} pid ${f.pid} on ${f.host}:${f.port}`)
    }

    for (let round = 1; round <= opts.rounds; round++) {
      for (const [ci, cs] of cases.entries()) {
        // Rotate the target order from case to case and round to round, so no target always goes first.
        const shift = (round - 1 + ci) % cs.targets.length
        const order = [...cs.targets.slice(shift), ...cs.targets.slice(0, shift)]
        for (const target of order) {
          const s = await measure(opts, round, cs, target, backends, pgraids, floors)
          samples.push(s)
          const used = target === 'pgraid-nolog' ? nologProxy : proxy
          const extra =
            target === 'ceiling'
              ? ` (per backend: ${s.runs.map((r) => r.tps.toFixed(0)).join(' / ')})`
              : isPgraid(target) && used
                ? ` (pgraid CPU ${s.proxyCpuPct!.toFixed(0)}% of a core, ${cpuUsPerTx(s).toFixed(1)} µs per transaction, RSS ${(used.rss() / 2 ** 20).toFixed(0)} MiB)`
                : isFloor(target)
                  ? ` (${target} CPU ${cpuUsPerTx(s).toFixed(1)} µs per transaction)`
                  : ''
          log(`round ${round}/${opts.rounds} ${cs.workload} ${cs.mode} -c ${cs.clients} ${target}: ${fmtRun(s)}${extra} [load ${s.load1.toFixed(1)}]`)
          if (isPgraid(target) && cs.workload === 'tpcb') {
            // Every backend must have applied the same writes, pgbench_history rows included.
            const check = await checkReplicas(backends, PGRAID_DB)
            tpcbChecks.checks++
            if (!check.identical) {
              tpcbChecks.failures.push(`round ${round} ${cs.mode} -c ${cs.clients} ${target}: ${check.report.replace(/\n/g, '; ')}`)
              log(`  BACKENDS DIFFER after this run:\n${check.report}`)
            }
          }
        }
      }
    }

    const peak = proxy.peakRss()
    const problems = proxy.problems()
    if (nologProxy) {
      // Its warnings go into the same report section, marked.
      const p = nologProxy.problems()
      problems.count += p.count
      problems.recent.push(...p.recent.map((l) => `[pgraid-nolog] ${l}`))
      await nologProxy.stop()
      nologProxy = undefined
    }
    await proxy.stop()
    proxy = undefined
    for (const f of Object.values(floors)) await f.stop()
    const profile = opts.profile ? await profileTpcb({ opts, raw, backends, database: PGRAID_DB, user: CLIENT_USER, password: CLIENT_PASSWORD, log }) : undefined

    log('comparing the backends behind pgraid after the runs')
    const atEnd = await checkReplicas(backends, PGRAID_DB)
    log(`  ${atEnd.identical ? atEnd.report : `DIFFERENT:\n${atEnd.report}`}`)

    // A separate scenario's cluster is stopped on Ctrl-C like the measured one.
    const scenarioHooks = {
      clusterStarted(c: Cluster) {
        activeClusters.add(c)
        takeOverSignals()
      },
      clusterStopped(c: Cluster) {
        activeClusters.delete(c)
      },
    }
    const failover = opts.failover
      ? await runFailover({
          opts,
          auth: BACKEND_AUTH,
          user: CLIENT_USER,
          password: CLIENT_PASSWORD,
          initSteps: init.steps,
          initFallback: init.fallback !== undefined,
          log,
          ...scenarioHooks,
        })
      : undefined
    if (aborted()) return 130
    const lifecycle = opts.lifecycle
      ? await runLifecycle({
          opts,
          auth: BACKEND_AUTH,
          user: CLIENT_USER,
          password: CLIENT_PASSWORD,
          log,
          ...scenarioHooks,
        })
      : undefined
    if (aborted()) return 130
    const activemq = opts.activemq
      ? await runActivemq({
          auth: BACKEND_AUTH,
          user: CLIENT_USER,
          password: CLIENT_PASSWORD,
          log,
          ...scenarioHooks,
        })
      : undefined
    if (aborted()) return 130
    const tls = opts.tls ? await runTls(log, scenarioHooks) : undefined
    const takeover = opts.takeover ? await runTakeover({ auth: BACKEND_AUTH, log, ...scenarioHooks }) : undefined
    const idleSessions = opts.rss ? await runRss({ auth: BACKEND_AUTH, user: CLIENT_USER, password: CLIENT_PASSWORD, repoRoot: opts.repoRoot, log, ...scenarioHooks }) : undefined
    if (aborted()) return 130

    const data: BenchData = {
      startedAt,
      finishedAt: new Date(),
      options: opts,
      machine,
      pgVersion: pgVersion.replace(/ on .*$/, '').replace(/,.*$/, ''),
      pgbenchVersion: pgbenchVer,
      backendAuth: BACKEND_AUTH,
      writeQuorum,
      init,
      vacuumThroughPgraid,
      cases,
      samples,
      rss: { afterStart: rssAfterStart, peakAfterInit, peak },
      replication: {
        afterInit: afterInit.report,
        afterTpcb: tpcbChecks,
        atEnd: atEnd.identical ? atEnd.report : `**backends differ**: ${atEnd.report.replace(/\n/g, '; ')}`,
        identicalAtEnd: atEnd.identical,
      },
      proxyProblems: problems,
      failover,
      lifecycle,
      activemq,
      tls,
      takeover,
      idleSessions,
      micro,
      profile,
    }
    if (opts.only === undefined || opts.outExplicit) {
      await writeFile(opts.out, renderReport(data, await previousReport(opts.out)))
      log(`wrote ${opts.out}`)
    } else log(`--only ${opts.only}: no report written (set BENCH_OUT to write one)`)
    printSummary(data)
    if (opts.only === 'floor') process.stdout.write(`\n${floorTable(data)}\n`)
    if (!atEnd.identical || tpcbChecks.failures.length > 0) {
      log('FAILED: the backends behind pgraid differed after some runs (report written anyway)')
      return 1
    }
    if (takeover && !takeover.ok) log(`FAILED: the takeover scenario did not complete (report written anyway): ${takeover.error}`)
    if (idleSessions && !idleSessions.ok) {
      log(`FAILED: the RSS scenario did not complete (report written anyway): ${idleSessions.error}`)
      return 1
    }
    if (activemq && !activemq.ok) {
      log(`FAILED: the ActiveMQ scenario did not complete (report written anyway): ${activemq.error}`)
      return 1
    }
    if (lifecycle && !lifecycle.ok) {
      log(`FAILED: the lifecycle scenario did not complete (report written anyway): ${lifecycle.error}`)
      return 1
    }
    if (failover && !failover.ok) {
      log(`FAILED: the failover scenario did not complete (report written anyway): ${failover.error}`)
      return 1
    }
    return 0
  } catch (e) {
    if (samples.length > 0) {
      log('results so far:')
      for (const s of samples) log(`  round ${s.round} ${s.workload} ${s.mode} -c ${s.clients} ${s.target}: ${fmtRun(s)}`)
    }
    throw Object.assign(e as object, { proxyProblems: proxy?.problems() })
  } finally {
    for (const f of Object.values(floors)) await f.stop().catch((e: unknown) => log(`stopping floor-${f.kind}: ${String(e)}`))
    if (nologProxy) await nologProxy.stop().catch((e: unknown) => log(`stopping pgraid-nolog: ${String(e)}`))
    if (proxy) await proxy.stop().catch((e: unknown) => log(`stopping pgraid: ${String(e)}`))
    if (cluster) await cluster.stop().catch((e: unknown) => log(`stopping the backends: ${String(e)}`))
    if (cluster) activeClusters.delete(cluster)
  }
}

function printSummary(data: BenchData): void {
  // The INSERT workload, and everything under --only floor (no ceiling), is in the floor lines.
  for (const c of data.options.only === undefined ? summarise(data).filter((x) => x.workload !== 'insert') : []) {
    log(
      `${c.workload} ${c.mode}: direct ${c.directTps.toFixed(0)} tps / ${c.directLat.toFixed(2)} ms, ` +
        `pgraid ${c.pgraidTps.toFixed(0)} tps / ${c.pgraidLat.toFixed(2)} ms, ceiling ${c.ceilingSumTps.toFixed(0)} ` +
        `(${c.ceilingPerBackendTps.toFixed(0)} per backend); pgraid/direct ${(c.pgraidTps / c.directTps).toFixed(2)}` +
        (Number.isFinite(c.nologTps) ? `; without the recovery log ${c.nologTps.toFixed(0)} tps, with/without ${(c.pgraidTps / c.nologTps).toFixed(2)}` : ''),
    )
  }
  for (const l of floorLogLines(data)) log(l)
  if (data.options.only === undefined) for (const l of checkTargets(data).lines) log(l.replace(/\*\*/g, ''))
}

main().then(
  (code) => {
    if (!aborted()) process.exit(code)
  },
  (e: unknown) => {
    if (aborted()) return // the signal handler finishes the cleanup and exits
    if (e instanceof PgbenchError) process.stderr.write(`\n[bench] FAILED: ${e.message}\n${e.details()}\n`)
    else process.stderr.write(`\n[bench] FAILED: ${(e as Error)?.stack ?? String(e)}\n`)
    const problems = (e as { proxyProblems?: { count: number; recent: string[] } })?.proxyProblems
    if (problems && problems.count > 0) {
      process.stderr.write(`\n[bench] pgraid logged ${problems.count} warning/error line(s); the last ones:\n${problems.recent.slice(-20).join('\n')}\n`)
    }
    process.exit(1)
  },
)
