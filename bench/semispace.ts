// Does capping V8's young generation (`--max-semi-space-size`, which production sets for its memory
// figure, docs/operations.md) cost TPC-B throughput? `npx tsx bench/semispace.ts`: one 3-backend
// cluster, pgbench -i through pgraid, then rounds of TPC-B through a fresh pgraid child running the
// compiled dist/ (as installed): per round and query mode, one run without and one with the flag, back to
// back (the order alternates per round), so each pair sees about the same load from the rest of the
// machine. Reports medians of tps, of the per-pair tps ratio, of pgraid CPU per transaction and of
// pgraid's RSS after the run. Only one pgraid runs at a time.
//
// Knobs: SEMI_ROUNDS (4), SEMI_SECONDS (15), SEMI_CLIENTS (8), SEMI_SCALE (1), SEMI_FLAG
// (--max-semi-space-size=2), SEMI_MODES (simple,prepared).
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { startCluster, type Cluster } from '../src/embedded/cluster.ts'
import { benchRun, initDataset, type Endpoint } from './pgbench.ts'
import type { QueryMode } from './options.ts'
import { proxyConfig, startProxy } from './proxy.ts'

const ROUNDS = Number(process.env.SEMI_ROUNDS ?? 4)
const SECONDS = Number(process.env.SEMI_SECONDS ?? 15)
const CLIENTS = Number(process.env.SEMI_CLIENTS ?? 8)
const SCALE = Number(process.env.SEMI_SCALE ?? 1)
const FLAG = process.env.SEMI_FLAG ?? '--max-semi-space-size=2'
const MODES = (process.env.SEMI_MODES ?? 'simple,prepared').split(',') as QueryMode[]
const repoRoot = path.join(import.meta.dirname, '..')
const user = { name: 'app', password: 'app-secret' }

const log = (m: string) => process.stderr.write(`[semispace] ${m}\n`)
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

type Variant = 'default' | 'capped'
interface Sample {
  variant: Variant
  mode: QueryMode
  round: number
  tps: number
  cpuMsPerTx: number
  rssMiB: number
}

let cluster: Cluster | undefined
const samples: Sample[] = []
try {
  log('npm run build')
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] })
  cluster = await startCluster({ count: 3, auth: ['scram-sha-256', 'md5', 'trust'] })
  const raw = proxyConfig(cluster.backends, user, 'warn')
  const start = (variant: Variant) => startProxy('child', raw, repoRoot, { env: { PGRAID_DIST: '1' }, nodeArgs: variant === 'capped' ? [FLAG] : [] })
  const ep = (p: { host: string; port: number }): Endpoint => ({ name: 'pgraid', host: p.host, port: p.port, user: user.name, password: user.password, database: 'postgres' })

  const loader = await start('default')
  log(`pgbench -i -s ${SCALE} through pgraid`)
  await initDataset(ep(loader), SCALE)
  await loader.stop()

  for (let round = 1; round <= ROUNDS; round++) {
    const order: Variant[] = round % 2 ? ['default', 'capped'] : ['capped', 'default']
    for (const mode of MODES) {
      for (const variant of order) {
        const proxy = await start(variant)
        try {
          const cpu0 = proxy.cpuSeconds()
          const r = await benchRun(ep(proxy), { workload: 'tpcb', mode, seconds: SECONDS, clients: CLIENTS, threads: 2 })
          const cpu = proxy.cpuSeconds() - cpu0
          const s: Sample = { variant, mode, round, tps: r.tps, cpuMsPerTx: (cpu * 1000) / r.processed, rssMiB: proxy.rss() / 2 ** 20 }
          samples.push(s)
          log(`round ${round} ${variant.padEnd(7)} ${mode.padEnd(8)} ${s.tps.toFixed(0)} tps, pgraid ${s.cpuMsPerTx.toFixed(3)} ms CPU/tx, RSS ${s.rssMiB.toFixed(1)} MiB`)
        } finally {
          await proxy.stop()
        }
      }
    }
  }

  const lines = [
    `TPC-B through pgraid (dist/), ${ROUNDS} interleaved rounds x ${SECONDS} s, -c ${CLIENTS} -j 2, scale ${SCALE}; capped = ${FLAG}`,
    '',
    '| mode | variant | tps (median) | pgraid CPU ms/tx | RSS after run MiB | per round tps |',
    '| --- | --- | --- | --- | --- | --- |',
  ]
  for (const mode of MODES) {
    for (const variant of ['default', 'capped'] as Variant[]) {
      const xs = samples.filter((s) => s.mode === mode && s.variant === variant)
      lines.push(
        `| ${mode} | ${variant} | ${median(xs.map((s) => s.tps)).toFixed(0)} | ${median(xs.map((s) => s.cpuMsPerTx)).toFixed(3)} | ${median(xs.map((s) => s.rssMiB)).toFixed(1)} | ${xs.map((s) => s.tps.toFixed(0)).join(', ')} |`,
      )
    }
    const pairs: number[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      const of = (v: Variant) => samples.find((s) => s.mode === mode && s.variant === v && s.round === round)!.tps
      pairs.push(of('capped') / of('default'))
    }
    lines.push(`| ${mode} | capped / default, median of per-round ratios | **${median(pairs).toFixed(2)}** |  |  | ${pairs.map((r) => r.toFixed(2)).join(', ')} |`)
  }
  process.stdout.write(lines.join('\n') + '\n')
} finally {
  await cluster?.stop().catch(() => {})
}
