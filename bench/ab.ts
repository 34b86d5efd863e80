// A/B of one change: pgraid's CPU per transaction from two checkouts (or two query modes) over one
// cluster, in interleaved rounds, medians. Only one pgraid writes at a time (a second one over the same
// backends is a standby), so for writes each round starts and stops its pgraid.
//
//   npx tsx bench/ab.ts <rootA> <rootB> <select|insert|tpcb> <simple|prepared> [seconds=8] [rounds=5]
//
// rootA and rootB are checkouts (git clone, node_modules linked); the same root twice with
// AB_MODE_B=prepared compares the two modes of one build; AB_DIST_A=1 / AB_DIST_B=1 run that side's
// compiled dist/ (what production runs) instead of the sources through tsx. CLIENTS (default 8).
import { startCluster } from '../src/embedded/cluster.ts'
import { CLIENT_PASSWORD, CLIENT_USER } from '../src/embedded/stack.ts'
import { createInsertTables } from './floor.ts'
import { recreateDatabase } from './maintenance.ts'
import type { QueryMode, Workload } from './options.ts'
import { benchRun, initDataset, type Endpoint } from './pgbench.ts'
import { procCpuSeconds, proxyConfig, startProxy, type Proxy } from './proxy.ts'

const [rootA, rootB, workload, mode, secs = '8', rounds = '5'] = process.argv.slice(2) as [string, string, Workload, QueryMode, string?, string?]
if (!rootA || !rootB || !workload || !mode) {
  process.stderr.write('usage: tsx bench/ab.ts <rootA> <rootB> <select|insert|tpcb> <simple|prepared> [seconds] [rounds]\n')
  process.exit(2)
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!
const cluster = await startCluster({ count: 3, auth: ['scram-sha-256', 'md5', 'trust'] })
try {
  const raw = proxyConfig(cluster.backends, { name: CLIENT_USER, password: CLIENT_PASSWORD }, 'warn')
  const sides = { A: { root: rootA, dist: !!process.env.AB_DIST_A, mode }, B: { root: rootB, dist: !!process.env.AB_DIST_B, mode: (process.env.AB_MODE_B as QueryMode | undefined) ?? mode } }
  const start = (s: (typeof sides)['A']) => startProxy('child', raw, s.root, { env: s.dist ? { PGRAID_DIST: '1' } : {} })
  const ep = (p: Proxy): Endpoint => ({ name: 'pgraid', host: p.host, port: p.port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: 'postgres' })
  const spec = { workload, seconds: Number(secs), clients: Number(process.env.CLIENTS ?? 8), threads: 2 }
  const first = await start(sides.A)
  await Promise.all(cluster.backends.map((b) => recreateDatabase(b, 'benchraw')))
  await initDataset(ep(first), 1)
  await createInsertTables(cluster.backends, 'benchraw', ep(first))
  await first.stop()
  const res = { A: [] as number[], B: [] as number[] }
  for (let i = 0; i < Number(rounds); i++) {
    for (const name of i % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) {
      const p = await start(sides[name])
      try {
        await benchRun(ep(p), { ...spec, mode: sides[name].mode, seconds: 2 }) // warm-up
        const before = procCpuSeconds(p.pid)!
        const r = await benchRun(ep(p), { ...spec, mode: sides[name].mode })
        const us = (1e6 * (procCpuSeconds(p.pid)! - before)) / r.processed
        res[name].push(us)
        process.stdout.write(`round ${i} ${name}: ${r.tps.toFixed(0)} tps, ${us.toFixed(1)} µs CPU per transaction\n`)
      } finally {
        await p.stop()
      }
    }
  }
  for (const n of ['A', 'B'] as const) process.stdout.write(`${n} median: ${median(res[n]).toFixed(1)} µs per transaction\n`)
  process.stdout.write(`B/A: ${(median(res.B) / median(res.A)).toFixed(3)}\n`)
} finally {
  await cluster.stop()
}
