// `pgraid verify` (issue 6, item 4): identical backends report identical
// even while clients write (all read at one log position); a changed row, a
// missing row, an extra row, a table missing on one backend, a duplicated row
// in a table without a key and a sequence that moved are each named, with the
// backend and the key; exit codes 0 (identical) and 1 (differences).

import t from 'tap'
import pg from 'pg'
import { stackFor, client, bounded } from '../harness/stack.ts'
import { cliFor, ADMIN } from '../harness/cli.ts'
import type { VerifyReport } from '../../src/lifecycle/verify.ts'

const USERS = [{ name: 'app', auth: 'scram-sha-256', password: 'app-secret' }, ADMIN]

t.test('verify names every kind of difference', async (t) => {
  // Small chunks, so the tables span several and a difference is narrowed inside one.
  const stack = await stackFor(t, { config: { users: USERS, lifecycle: { verifyChunkRows: 10 } } })
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric, at timestamptz DEFAULT now())')
  await c.query("INSERT INTO acct (id, owner, balance, at) SELECT g, 'o' || g, g * 1.5, now() FROM generate_series(1, 95) g")
  await c.query('CREATE TABLE pair (a int, "B" text, v float8, PRIMARY KEY (a, "B"))')
  await c.query("INSERT INTO pair SELECT g % 7, 'k' || g, g / 3.0 FROM generate_series(1, 40) g")
  await c.query('CREATE TABLE nokey (x int, y text)')
  await c.query("INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (2, 'b')")
  await c.query('CREATE TABLE gone (id int PRIMARY KEY)')
  await c.query('CREATE SEQUENCE tick')
  await c.query("SELECT nextval('tick')")
  const run = await cliFor(t, stack)
  const ok = await run(['verify'])
  t.equal(ok.code, 0, `identical backends: exit 0 (${ok.err})`)
  t.match(ok.out, /identical/)
  t.match(ok.out, /compared pg1, pg2, pg3/)

  const direct = await Promise.all(stack.cluster.backends.map((b) => b.client()))
  t.teardown(() => Promise.all(direct.map((d) => d.end())))
  await direct[1]!.query('UPDATE acct SET balance = 0 WHERE id = 42')
  await direct[2]!.query('DELETE FROM acct WHERE id = 77')
  await direct[1]!.query("INSERT INTO pair VALUES (9, 'extra', 0)")
  await direct[2]!.query('DROP TABLE gone')
  await direct[0]!.query("INSERT INTO nokey VALUES (2, 'b')")
  await direct[0]!.query("SELECT nextval('tick')")
  const bad = await run(['verify', '--json'])
  t.equal(bad.code, 1, 'differences: exit 1')
  const report = JSON.parse(bad.out) as VerifyReport
  t.notOk(report.identical)
  const found = report.differences.map((d) => `${d.table} ${d.backend} ${d.problem} ${d.key ?? ''}`)
  t.same(
    found.sort(),
    [
      'acct pg2 changed row (id) = (42)',
      'acct pg3 missing row (id) = (77)',
      'gone pg3 missing table ',
      'nokey pg1 extra row (2,b)',
      'pair pg2 extra row (a, "B") = (9,extra)',
      'tick pg1 sequence differs ',
    ].sort(),
    'each difference named with its backend and key',
  )
  t.equal(report.tables.find((x) => x.table === 'acct')?.chunks, 10, 'acct compared in 10 chunks')

  const human = await run(['verify', '--tables', 'acct'])
  t.equal(human.code, 1)
  t.match(human.out, /acct: pg2: changed row \(id\) = \(42\)/)
  t.notMatch(human.out, /gone/, '--tables limits the comparison')
  const unknown = await run(['verify', '--tables', 'nosuch'])
  t.equal(unknown.code, 1)
  t.match(unknown.err, /no table "nosuch"/)
})

t.test('verify while clients write: aligned snapshots, identical', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, lifecycle: { verifyChunkRows: 50 } } })
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE busy (id int PRIMARY KEY, n int)')
  await c.query('INSERT INTO busy SELECT g, 0 FROM generate_series(1, 500) g')
  let stop = false
  let commits = 0
  const writers = [0, 1, 2].map(async (w) => {
    const x = await client(stack)
    let i = 0
    while (!stop) {
      await x.query('BEGIN')
      await x.query('UPDATE busy SET n = n + 1 WHERE id = $1', [((i++ * 7 + w * 131) % 500) + 1])
      await x.query('INSERT INTO busy (id, n) VALUES ($1, $2)', [100_000 * (w + 1) + i, w])
      await x.query('COMMIT')
      commits++
    }
    await x.end()
  })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: ADMIN.name, password: ADMIN.password, database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  // Wait for commits to flow before verifying, so verify really runs under writes.
  await bounded(
    (async () => {
      while (commits < 20) await new Promise((r) => setTimeout(r, 10))
    })(),
    30_000,
    'first commits',
  )
  const before = commits
  const r = await bounded(admin.query('VERIFY'), 60_000, 'VERIFY')
  const during = commits - before
  stop = true
  await bounded(Promise.all(writers), 20_000, 'writers')
  t.same(r.rows, [], 'no differences')
  t.ok(during > 0, `${during} transactions committed while verify ran`)
})
