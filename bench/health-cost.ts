// The health monitor's cost (issue 16): pgbench TPC-B and select-only through an in-process pgraid
// with the periodic health check on (health.intervalMs 1000, the default) and off (0), in
// interleaved rounds on one cluster; figures: tps and pgraid's CPU per transaction (this process's
// own CPU: pgbench and the servers are other processes). `npx tsx bench/health-cost.ts`;
// BENCH_SECONDS (default 10), BENCH_ROUNDS (default 3), BENCH_WORKLOADS (default tpcb,select). Prints a Markdown table for docs/benchmarks.md.
import { startCluster } from '../src/embedded/cluster.ts'
import { startPgraid } from '../src/server.ts'
import { parseConfig } from '../src/config/schema.ts'
import { createLogger } from '../src/observe/logger.ts'
import { benchRun, initDataset, type Endpoint } from './pgbench.ts'
import type { Workload } from './options.ts'

const seconds = Number(process.env.BENCH_SECONDS ?? 10)
const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
const workloads = (process.env.BENCH_WORKLOADS ?? 'tpcb,select').split(',') as Workload[]
const cluster = await startCluster({ count: 3, auth: 'trust', settings: { fsync: 'off', autovacuum: 'off' } })
const config = (intervalMs: number) =>
  parseConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      backends: cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })),
      users: [{ name: 'bench', auth: 'trust' }],
      health: { intervalMs },
      log: { level: 'error' },
    },
    'health-cost bench',
  )
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const results: Record<string, { tps: number[]; cpu: number[] }> = {}
try {
  {
    const p = await startPgraid(config(1000), createLogger('error'))
    await initDataset({ name: 'pgraid', host: p.host, port: p.port, user: 'bench', database: 'postgres' }, 10)
    await p.close()
  }
  // Warm-up (caches, the servers' first pages), not counted.
  {
    const p = await startPgraid(config(1000), createLogger('error'))
    for (const workload of workloads)
      await benchRun({ name: 'pgraid', host: p.host, port: p.port, user: 'bench', database: 'postgres' }, { workload, mode: 'prepared', seconds, clients: 8, threads: 2 })
    await p.close()
  }
  // Interleaved, the order swapped every round so a drift of the host favours neither.
  for (let r = 0; r < rounds; r++)
    for (const workload of workloads)
      for (const on of r % 2 ? [false, true] : [true, false]) {
        const p = await startPgraid(config(on ? 1000 : 0), createLogger('error'))
        const ep: Endpoint = { name: 'pgraid', host: p.host, port: p.port, user: 'bench', database: 'postgres' }
        const cpu0 = process.cpuUsage()
        const res = await benchRun(ep, { workload, mode: 'prepared', seconds, clients: 8, threads: 2 })
        const cpu = process.cpuUsage(cpu0)
        await p.close()
        const key = `${workload} ${on ? 'on' : 'off'}`
        results[key] ??= { tps: [], cpu: [] }
        results[key].tps.push(res.tps)
        results[key].cpu.push((cpu.user + cpu.system) / res.processed)
        console.error(`round ${r + 1} ${key}: ${res.tps.toFixed(0)} tps, ${((cpu.user + cpu.system) / res.processed).toFixed(0)} µs CPU per transaction`)
      }
  console.log(
    `| workload (-M prepared, 8 clients, ${rounds} interleaved rounds of ${seconds} s) | tps monitor on (median) | tps off (median) | tps on/off (median of per-round ratios) | CPU µs/tx on | CPU µs/tx off | CPU on/off (median of per-round ratios) |`,
  )
  console.log('|---|---|---|---|---|---|---|')
  for (const w of workloads) {
    const on = results[`${w} on`]!
    const off = results[`${w} off`]!
    const tps = median(on.tps.map((x, k) => x / off.tps[k]!))
    const cpu = median(on.cpu.map((x, k) => x / off.cpu[k]!))
    console.log(
      `| ${w === 'tpcb' ? 'TPC-B' : 'select-only'} | ${median(on.tps).toFixed(0)} | ${median(off.tps).toFixed(0)} | ${tps.toFixed(3)} | ${median(on.cpu).toFixed(0)} | ${median(off.cpu).toFixed(0)} | ${cpu.toFixed(3)} |`,
    )
  }
} finally {
  await cluster.stop()
}
