// pgbench through pgraid: initialisation (COPY of the accounts table), then
// TPC-B with 8 clients in each query mode; zero failed transactions and
// identical backends after each run. During the simple-protocol run the
// Prometheus endpoint is scraped and its counters must move.

import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import http from 'node:http'
import { stackFor, assertIdentical, onEachBackend, waitFor } from '../harness/stack.ts'

const run = promisify(execFile)
const stack = await stackFor(t, { config: { metrics: { port: 0 } } })

/** One series' value from GET /metrics. */
function scrape(series: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: stack.proxy.metricsPort!, path: '/metrics' }, (res) => {
        let body = ''
        res.on('data', (c: Buffer) => (body += c.toString()))
        res.on('end', () => {
          const line = body.split('\n').find((l) => l.startsWith(`${series} `))
          resolve(line === undefined ? NaN : Number(line.slice(series.length + 1)))
        })
      })
      .on('error', reject)
  })
}
const env = { ...process.env, PGPASSWORD: stack.password }
const conn = ['-h', stack.host, '-p', String(stack.port), '-U', stack.user]

async function pgbench(args: string[]): Promise<string> {
  const { stdout, stderr } = await run('pgbench', [...conn, ...args, 'postgres'], { env, timeout: 120_000 })
  return stdout + stderr
}

t.test('pgbench -i through pgraid loads every backend', async (t) => {
  await pgbench(['-i', '-s', '1', '-q'])
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM pgbench_accounts')
  t.same(
    per.map((r) => r[0].n),
    [100000, 100000, 100000],
  )
  await assertIdentical(t, stack)
})

for (const mode of ['simple', 'extended', 'prepared']) {
  t.test(`TPC-B -c 8 -M ${mode}: no failed transaction, identical backends`, async (t) => {
    const running = pgbench(['-n', '-c', '8', '-j', '2', '-T', mode === 'simple' ? '4' : '2', '-M', mode])
    if (mode === 'simple') {
      // Counters move while pgbench runs: two scrapes, the second after more commits.
      const before = await scrape('pgraid_commits_total')
      const commitBatches = await scrape('pgraid_batch_duration_seconds_count{kind="commit"}')
      await waitFor('pgraid_commits_total to grow under pgbench', async () => (await scrape('pgraid_commits_total')) > before, 30_000)
      t.ok((await scrape('pgraid_batch_duration_seconds_count{kind="commit"}')) > commitBatches, 'commit batches timed while pgbench runs')
      t.ok((await scrape('pgraid_client_bytes_received_total')) > 0, 'client bytes counted')
      t.equal(await scrape('pgraid_sessions'), 8, "pgbench's 8 sessions")
    }
    const out = await running
    const failed = /number of failed transactions: (\d+)/.exec(out)
    const processed = /number of transactions actually processed: (\d+)/.exec(out)
    t.ok(processed && Number(processed[1]) > 0, `transactions processed: ${processed?.[1]}`)
    t.equal(failed?.[1], '0', 'no failed transactions')
    // Every committed TPC-B transaction adds one history row everywhere.
    const per = await onEachBackend<{ n: string }>(stack, 'SELECT count(*)::text AS n FROM pgbench_history')
    t.equal(new Set(per.map((r) => r[0].n)).size, 1, `history rows equal: ${per.map((r) => r[0].n).join(', ')}`)
    await assertIdentical(t, stack)
  })
}

t.test('select-only -S -M prepared reads from the backends', async (t) => {
  const out = await pgbench(['-n', '-S', '-c', '8', '-j', '2', '-T', '2', '-M', 'prepared'])
  t.match(out, /number of failed transactions: 0/)
})
