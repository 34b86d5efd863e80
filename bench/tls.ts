// The TLS figure (issue 8): what TLS between clients and pgraid costs. One fresh cluster of three
// backends behind one pgraid whose listener has a certificate (listen.tls, mode allow, a test CA made
// with openssl); pgbench TPC-B and select-only through that same pgraid with PGSSLMODE=disable and
// PGSSLMODE=require, interleaved rounds, medians. Runs alone (`npx tsx bench/tls.ts`, prints a
// markdown section) or as a section of `npm run bench` (BENCH_TLS=1).
//
// Environment: BENCH_TLS_SECONDS (default 10), BENCH_TLS_ROUNDS (3), BENCH_TLS_SCALE (5),
// BENCH_CLIENTS (8), BENCH_THREADS (2).
import { startCluster, type Cluster } from '../src/embedded/cluster.ts'
import { startPgraid } from '../src/server.ts'
import { parseConfig } from '../src/config/schema.ts'
import { createLogger } from '../src/observe/logger.ts'
import { CLIENT_PASSWORD, CLIENT_USER } from '../src/embedded/stack.ts'
import { makeCerts } from '../test/harness/certs.ts'
import { benchRun, initDataset, type Endpoint } from './pgbench.ts'
import { prepareRun } from './maintenance.ts'
import type { QueryMode, Workload } from './options.ts'
import { median } from './results.ts'

export interface TlsFigure {
  ok: boolean
  error?: string
  seconds: number
  rounds: number
  scale: number
  clients: number
  /** Median tps per workload/mode and sslmode. */
  rows: { workload: Workload; mode: QueryMode; plain: number; tls: number; ratio: number; tlsProtocol: string }[]
}

export async function runTls(log: (m: string) => void, hooks: { clusterStarted?(c: Cluster): void; clusterStopped?(c: Cluster): void } = {}): Promise<TlsFigure> {
  const env = process.env
  const seconds = Number(env.BENCH_TLS_SECONDS ?? 10)
  const rounds = Number(env.BENCH_TLS_ROUNDS ?? 3)
  const scale = Number(env.BENCH_TLS_SCALE ?? 5)
  const clients = Number(env.BENCH_CLIENTS ?? 8)
  const threads = Number(env.BENCH_THREADS ?? 2)
  const fig: TlsFigure = { ok: false, seconds, rounds, scale, clients, rows: [] }
  const certs = await makeCerts()
  const cluster = await startCluster({ count: 3, auth: 'scram-sha-256' })
  hooks.clusterStarted?.(cluster)
  try {
    const config = parseConfig(
      {
        listen: { host: '127.0.0.1', port: 0, tls: { mode: 'allow', cert: certs.serverCert, key: certs.serverKey } },
        backends: cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })),
        users: [{ name: CLIENT_USER, auth: 'scram-sha-256', password: CLIENT_PASSWORD }],
        log: { level: 'warn' },
      },
      'bench/tls.ts',
    )
    const proxy = await startPgraid(config, createLogger('warn'))
    try {
      const ep = (sslmode: string): Endpoint => ({ name: `pgraid ${sslmode}`, host: '127.0.0.1', port: proxy.port, user: CLIENT_USER, password: CLIENT_PASSWORD, database: 'postgres', sslmode })
      log(`tls: pgbench -i -s ${scale} through pgraid`)
      await initDataset(ep('disable'), scale)
      const cases: { workload: Workload; mode: QueryMode }[] = [
        { workload: 'tpcb', mode: 'prepared' },
        { workload: 'select', mode: 'prepared' },
      ]
      const tps = new Map<string, number[]>()
      for (let r = 0; r < rounds; r++) {
        for (const c of cases) {
          // Alternate which goes first, so drift over the round does not favour one side.
          const order = r % 2 ? ['require', 'disable'] : ['disable', 'require']
          for (const sslmode of order) {
            if (c.workload === 'tpcb') await prepareRun(cluster.backends, 'postgres')
            const res = await benchRun(ep(sslmode), { ...c, seconds, clients, threads })
            const key = `${c.workload}/${c.mode}/${sslmode}`
            tps.set(key, [...(tps.get(key) ?? []), res.tps])
            log(`tls: round ${r + 1}/${rounds} ${key}: ${res.tps.toFixed(0)} tps`)
          }
        }
      }
      for (const c of cases) {
        const plain = median(tps.get(`${c.workload}/${c.mode}/disable`) ?? [])
        const tls = median(tps.get(`${c.workload}/${c.mode}/require`) ?? [])
        fig.rows.push({ ...c, plain, tls, ratio: tls / plain, tlsProtocol: 'TLSv1.3' })
      }
      fig.ok = true
    } finally {
      await proxy.close()
    }
  } catch (e) {
    fig.error = (e as Error).message
  } finally {
    await cluster.stop()
    hooks.clusterStopped?.(cluster)
    await certs.remove()
  }
  return fig
}

export function renderTls(f: TlsFigure | undefined): string[] {
  if (!f) return []
  const out = ['## TLS between clients and pgraid', '']
  if (!f.ok) return [...out, `The TLS scenario did not complete: ${f.error}`, '']
  out.push(
    `One pgraid over three backends, its listener with a certificate (EC P-256, TLS 1.3); pgbench -c ${f.clients} ` +
      `through the same pgraid with \`sslmode=disable\` and \`sslmode=require\`, ${f.rounds} interleaved rounds of ${f.seconds} s, ` +
      `scale ${f.scale}, medians. pgraid to backends stays plain TCP.`,
    '',
    '| workload | mode | plain tps | TLS tps | TLS / plain |',
    '| --- | --- | ---: | ---: | ---: |',
    ...f.rows.map((r) => `| ${r.workload === 'tpcb' ? 'TPC-B' : 'select-only'} | ${r.mode} | ${r.plain.toFixed(0)} | ${r.tls.toFixed(0)} | ${r.ratio.toFixed(2)} |`),
    '',
  )
  return out
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const fig = await runTls((m) => process.stderr.write(`[tls] ${m}\n`))
  process.stdout.write(renderTls(fig).join('\n') + '\n')
  process.exit(fig.ok ? 0 : 1)
}
