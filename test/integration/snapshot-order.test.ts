// Snapshots in commit order (issue 17, item 3): a REPEATABLE READ or
// SERIALIZABLE transaction takes its snapshot at the same point of the commit
// order on every backend. Without that, an autocommit write committing while
// the snapshot is taken is inside it on one backend and outside it on
// another: the transaction's read-then-update gets 40001 on one backend only,
// and its reads differ. 8 snapshot clients against 4 autocommit writers, a
// bounded number of transactions each: no backend leaves service, every
// acknowledged increment is counted once, the backends end identical.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, bounded, onEachBackend } from '../harness/stack.ts'

const ACCOUNTS = 6

for (const level of ['REPEATABLE READ', 'SERIALIZABLE']) {
  t.test(`${level}: read-then-update against autocommit writers`, async (t) => {
    const stack = await stackFor(t)
    const setup = await client(stack)
    await setup.query('CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL)')
    await setup.query(`INSERT INTO acct SELECT g, 0 FROM generate_series(1, ${ACCOUNTS}) g`)
    // What the transaction saw, written by the server from its snapshot: a snapshot taken at another
    // point of the commit order on one backend writes another total there, with the same command tag.
    await setup.query('CREATE TABLE seen (k int, n int, total bigint, PRIMARY KEY (k, n))')
    await setup.end()

    let acknowledged = 0
    const failures = new Map<string, number>()
    const fail = (code: string) => failures.set(code, (failures.get(code) ?? 0) + 1)

    const snapshotClient = async (k: number) => {
      const c = await client(stack)
      for (let n = 0; n < 40; n++) {
        const id = ((k + n) % ACCOUNTS) + 1
        try {
          await c.query(`BEGIN ISOLATION LEVEL ${level}`)
          const { rows } = await c.query<{ v: number }>('SELECT v FROM acct WHERE id = $1', [id])
          // Half write what they saw (by the server, from the snapshot), half read-then-update.
          if (n % 2) await c.query('INSERT INTO seen SELECT $1, $2, sum(v) FROM acct', [k, n])
          else await c.query('UPDATE acct SET v = $2 WHERE id = $1', [id, rows[0]!.v + 1])
          await c.query('COMMIT')
          if (n % 2 === 0) acknowledged++
        } catch (e) {
          fail((e as { code?: string }).code ?? 'none')
          await c.query('ROLLBACK').catch(() => {})
        }
      }
      await c.end()
    }
    const writer = async (k: number) => {
      const c = await client(stack)
      for (let n = 0; n < 120; n++) {
        try {
          await c.query('UPDATE acct SET v = v + 1 WHERE id = $1', [((k * 7 + n) % ACCOUNTS) + 1])
          acknowledged++
        } catch (e) {
          fail((e as { code?: string }).code ?? 'none')
        }
      }
      await c.end()
    }
    await bounded(Promise.all([...Array.from({ length: 8 }, (_, k) => snapshotClient(k)), ...Array.from({ length: 4 }, (_, k) => writer(k))]), 240_000, 'snapshot clients and writers')

    const other = [...failures].filter(([code]) => code !== '40001' && code !== '40P01')
    t.same(other, [], `only serialization failures and deadlocks (${failures.get('40001') ?? 0} and ${failures.get('40P01') ?? 0}, retried by clients as on PostgreSQL)`)
    t.same(
      stack.proxy.context.states.list.map((b) => `${b.name}:${b.state}`),
      ['pg1:enabled', 'pg2:enabled', 'pg3:enabled'],
      'no backend taken out',
    )
    const sums = await onEachBackend<{ s: string }>(stack, 'SELECT sum(v)::text AS s FROM acct')
    t.same(
      sums.map((r) => Number(r[0]!.s)),
      [acknowledged, acknowledged, acknowledged],
      `every backend counts the ${acknowledged} acknowledged increments once`,
    )
    await assertIdentical(t, stack)
  })
}

t.test('BEGIN ISOLATION LEVEL REPEATABLE READ; a read; a write; COMMIT in one Query: its snapshot point does not wait for its own COMMIT (it waited 10 s and failed 40001)', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  await c.query('CREATE TABLE rr1 (id int)')
  for (let n = 1; n <= 3; n++) {
    const r = await c.query(`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) AS n FROM rr1; INSERT INTO rr1 VALUES (${n}); COMMIT`).then(
      () => 'committed',
      (e: { code?: string; message: string }) => `${e.code} ${e.message}`,
    )
    t.equal(r, 'committed', `transaction ${n}`)
  }
  // Nothing left in flight: a resync or clone could hold commits now.
  t.equal(stack.proxy.context.commitsInFlight(), 0, 'no commit left in flight')
  t.same((await c.query('SELECT count(*)::int AS n FROM rr1')).rows, [{ n: 3 }])
  await c.end()
  await assertIdentical(t, stack)
})
