// What issue 17 costs (protocol fidelity): the same workloads through pgraid built from two commits,
// in interleaved rounds on one cluster: BENCH_BEFORE (default b593ac1, before the one-outcome work
// for timeouts/cancels and the snapshot ordering) and the working tree. Sessions that set no
// timeout must not pay for the former, read committed must not pay for the latter; the REPEATABLE
// READ path's own cost is the "rr" row. Figures: tps and pgraid's CPU per transaction (the child
// process's own CPU, /proc). `npx tsx bench/fidelity-cost.ts`; BENCH_SECONDS (default 10),
// BENCH_ROUNDS (default 3), BENCH_WORKLOADS (default tpcb,select,rc,rr). Prints a Markdown table.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startCluster } from '../src/embedded/cluster.ts'
import { initDataset, PGBENCH, type Endpoint } from './pgbench.ts'
import { runTracked } from './procs.ts'
import { proxyConfig, startProxy } from './proxy.ts'

const seconds = Number(process.env.BENCH_SECONDS ?? 10)
const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
const workloads = (process.env.BENCH_WORKLOADS ?? 'tpcb,select,rc,rr').split(',')
const before = process.env.BENCH_BEFORE ?? 'b593ac1'
const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

// The older code in a worktree of its own, sharing this checkout's node_modules.
const old = path.join(os.tmpdir(), `pgraid-before-${before}`)
if (!existsSync(old)) {
  execFileSync('git', ['-C', here, 'worktree', 'add', '--detach', old, before], { stdio: 'ignore' })
  symlinkSync(path.join(here, 'node_modules'), path.join(old, 'node_modules'))
}

// One transaction per run of the script: a read then an update of one account, at an isolation level.
const scripts = mkdtempSync(path.join(os.tmpdir(), 'pgraid-fidelity-'))
for (const [name, level] of [
  ['rc', 'READ COMMITTED'],
  ['rr', 'REPEATABLE READ'],
] as const)
  writeFileSync(
    path.join(scripts, `${name}.sql`),
    `\\set aid random(1, 1000000)\nBEGIN ISOLATION LEVEL ${level};\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\nEND;\n`,
  )

const cluster = await startCluster({ count: 3, auth: 'scram-sha-256', settings: { fsync: 'off', autovacuum: 'off' } })
const user = { name: 'bench', password: 'bench-secret' }
const raw = proxyConfig(
  cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })),
  user,
  'error',
)
const endpoint = (port: number): Endpoint => ({ name: 'pgraid', host: '127.0.0.1', port, user: user.name, password: user.password, database: 'postgres' })

async function run(port: number, workload: string): Promise<{ tps: number; processed: number }> {
  const how = workload === 'tpcb' ? [] : workload === 'select' ? ['-S'] : ['-f', path.join(scripts, `${workload}.sql`), '--max-tries=20']
  const ep = endpoint(port)
  const r = await runTracked(PGBENCH, ['-n', ...how, '-M', 'prepared', '-c', '8', '-j', '2', '-T', String(seconds), '-h', ep.host, '-p', String(ep.port), '-U', ep.user, ep.database], {
    ...process.env,
    PGPASSWORD: ep.password!,
  })
  const tps = /tps = ([\d.]+)/.exec(r.stdout)
  const processed = /number of transactions actually processed: (\d+)/.exec(r.stdout)
  if (r.code !== 0 || !tps || !processed) throw new Error(`pgbench ${workload} failed (${r.code}): ${r.stderr.slice(-2000)}`)
  return { tps: Number(tps[1]), processed: Number(processed[1]) }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const results: Record<string, { tps: number[]; cpu: number[] }> = {}
try {
  {
    const p = await startProxy('child', raw, here)
    await initDataset(endpoint(p.port), 10)
    // Warm-up (caches, the servers' first pages), not counted.
    for (const w of workloads) await run(p.port, w)
    await p.stop()
  }
  // Interleaved, the order swapped every round so a drift of the host favours neither.
  for (let r = 0; r < rounds; r++)
    for (const w of workloads)
      for (const which of r % 2 ? ['after', 'before'] : ['before', 'after']) {
        const p = await startProxy('child', raw, which === 'after' ? here : old)
        const cpu0 = p.cpuSeconds()
        const res = await run(p.port, w)
        const cpu = p.cpuSeconds() - cpu0
        await p.stop()
        const key = `${w} ${which}`
        results[key] ??= { tps: [], cpu: [] }
        results[key].tps.push(res.tps)
        results[key].cpu.push((cpu * 1e6) / res.processed)
        console.error(`round ${r + 1} ${key}: ${res.tps.toFixed(0)} tps, ${((cpu * 1e6) / res.processed).toFixed(0)} µs pgraid CPU per transaction`)
      }
  console.log(
    `| workload (-M prepared, 8 clients, ${rounds} interleaved rounds of ${seconds} s) | tps before (median) | tps after (median) | tps after/before (median of per-round ratios) | CPU µs/tx before | CPU µs/tx after | CPU after/before (median of per-round ratios) |`,
  )
  console.log('|---|---|---|---|---|---|---|')
  for (const w of workloads) {
    const b = results[`${w} before`]!
    const a = results[`${w} after`]!
    const ratio = (xs: number[], ys: number[]) => median(xs.map((x, i) => x / ys[i]!)).toFixed(3)
    console.log(`| ${w} | ${median(b.tps).toFixed(0)} | ${median(a.tps).toFixed(0)} | ${ratio(a.tps, b.tps)} | ${median(b.cpu).toFixed(0)} | ${median(a.cpu).toFixed(0)} | ${ratio(a.cpu, b.cpu)} |`)
  }
} finally {
  await cluster.stop()
}
