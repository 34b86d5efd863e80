// Conflicting writers: opposite update orders on one table serialise without
// a hang; a real cross-table deadlock is reported as 40P01 to exactly one
// client, quickly, and the other completes; a pipeline of 1,000 statements
// before one Sync (pgbench pipeline mode) runs through.

import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stackFor, client, assertIdentical, onEachBackend, bounded } from '../harness/stack.ts'

const run = promisify(execFile)
const stack = await stackFor(t)

t.test('two clients updating the same rows in opposite order both finish', async (t) => {
  const setup = await client(stack)
  await setup.query('CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL)')
  await setup.query('INSERT INTO acct SELECT g, 100 FROM generate_series(1, 10) g')
  await setup.end()
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  for (let round = 0; round < 10; round++) {
    const ra = (async () => {
      await a.query('BEGIN')
      await a.query('UPDATE acct SET bal = bal - 1 WHERE id = 1')
      await a.query('UPDATE acct SET bal = bal + 1 WHERE id = 2')
      await a.query('COMMIT')
    })()
    const rb = (async () => {
      await b.query('BEGIN')
      await b.query('UPDATE acct SET bal = bal - 1 WHERE id = 2')
      await b.query('UPDATE acct SET bal = bal + 1 WHERE id = 1')
      await b.query('COMMIT')
    })()
    const res = await bounded(Promise.allSettled([ra, rb]), 10_000, `round ${round}`)
    for (const r of res) {
      if (r.status === 'rejected') {
        // A deadlock is allowed only as 40P01; the loser rolls back.
        t.equal((r.reason as { code?: string }).code, '40P01', 'only a deadlock error is acceptable')
      }
    }
    await a.query('ROLLBACK').catch(() => {})
    await b.query('ROLLBACK').catch(() => {})
  }
  const per = await onEachBackend<{ s: number }>(stack, 'SELECT sum(bal)::int AS s FROM acct')
  t.same(
    per.map((r) => r[0].s),
    [1000, 1000, 1000],
    'money is conserved on every backend',
  )
  await assertIdentical(t, stack)
})

t.test('a cross-table deadlock is reported as 40P01 to one client, fast', async (t) => {
  const setup = await client(stack)
  await setup.query('CREATE TABLE dl1 (id int PRIMARY KEY, v int); CREATE TABLE dl2 (id int PRIMARY KEY, v int)')
  await setup.query('INSERT INTO dl1 VALUES (1, 0); INSERT INTO dl2 VALUES (1, 0)')
  await setup.end()
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  await a.query('BEGIN')
  await b.query('BEGIN')
  await a.query('UPDATE dl1 SET v = v + 1 WHERE id = 1')
  await b.query('UPDATE dl2 SET v = v + 1 WHERE id = 1')
  const started = Date.now()
  const pa = a.query('UPDATE dl2 SET v = v + 10 WHERE id = 1')
  await new Promise((r) => setTimeout(r, 100))
  const pb = b.query('UPDATE dl1 SET v = v + 10 WHERE id = 1')
  const [ra, rb] = await bounded(Promise.allSettled([pa, pb]), 10_000, 'the deadlocked pair')
  const codes = [ra, rb].map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : 'ok'))
  t.same(codes.sort(), ['40P01', 'ok'], `exactly one deadlock victim (got ${codes.join(', ')})`)
  t.ok(Date.now() - started < 5000, 'reported promptly, not after a timeout')
  const victim = ra.status === 'rejected' ? a : b
  const winner = victim === a ? b : a
  await t.rejects(victim.query('SELECT 1'), { code: '25P02' }, 'the victim transaction is aborted')
  await victim.query('ROLLBACK')
  await winner.query('COMMIT')
  const per = await onEachBackend<{ v1: number; v2: number }>(stack, 'SELECT (SELECT v FROM dl1) AS v1, (SELECT v FROM dl2) AS v2')
  t.equal(new Set(per.map((r) => `${r[0].v1}/${r[0].v2}`)).size, 1, 'same outcome everywhere')
  await assertIdentical(t, stack)
})

t.test('a pipeline of 1,000 statements before one Sync', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pgraid-pipe-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const setup = await client(stack)
  await setup.query('CREATE TABLE pipe (id int PRIMARY KEY, v text)')
  await setup.end()
  const lines = ['\\startpipeline']
  for (let i = 0; i < 1000; i++) lines.push(i % 2 ? `INSERT INTO pipe VALUES (${i}, 'v${i}');` : `SELECT ${i};`)
  lines.push('\\endpipeline')
  const script = path.join(dir, 'pipe.sql')
  await writeFile(script, lines.join('\n') + '\n')
  const env = { ...process.env, PGPASSWORD: stack.password }
  for (const mode of ['extended', 'prepared']) {
    const c = await client(stack)
    await c.query('TRUNCATE pipe')
    await c.end()
    const { stdout, stderr } = await run('pgbench', ['-n', '-t', '1', '-M', mode, '-f', script, '-h', stack.host, '-p', String(stack.port), '-U', stack.user, 'postgres'], { env, timeout: 60_000 })
    t.match(stdout + stderr, /number of failed transactions: 0/, `pgbench pipeline -M ${mode} ran`)
    const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM pipe')
    t.same(
      per.map((r) => r[0].n),
      [500, 500, 500],
      `-M ${mode}: every insert of the pipeline on every backend`,
    )
  }
  await assertIdentical(t, stack)
})
