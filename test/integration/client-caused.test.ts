// Differences a client or concurrency causes are never voted on (issue 16,
// item 2; DESIGN invariant 6): a lock_timeout (55P03) that hits one backend
// only, because another session holds a row lock there, must neither take
// that backend out nor leave the backends different. Autocommit: the write
// committed on the others, so it is completed (replayed) where it failed.
// In a transaction: the transaction fails everywhere with the client's error.

import t from 'tap'
import { stackFor, client, assertIdentical, onEachBackend, waitFor, bounded } from '../harness/stack.ts'

const allIn = (states: { state: string }[]) => states.every((b) => b.state === 'enabled')

t.test('a lock_timeout on one backend only: an autocommit write is completed there, a transaction fails everywhere; nothing is taken out', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE cc (id int PRIMARY KEY, v int)')
  await c.query('INSERT INTO cc VALUES (1, 0)')
  const pg2 = await stack.cluster.backends[1]!.client()
  t.teardown(() => pg2.end())
  const holdRow = async () => {
    await pg2.query('BEGIN')
    await pg2.query('SELECT * FROM cc WHERE id = 1 FOR UPDATE')
  }
  const waitingOnPg2 = async () =>
    (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"))[1]![0]!.n > 0

  // Autocommit: pg1 and pg3 commit, pg2 times out waiting for the row.
  await holdRow()
  await c.query("SET lock_timeout = '300ms'")
  const update = c.query('UPDATE cc SET v = 1 WHERE id = 1')
  // The replay of the commit on pg2 waits for the row too (a replay runs without the session's timeouts).
  await waitFor(
    'the update to have timed out on pg2 and its replay to wait there',
    async () => (await onEachBackend<{ v: number }>(stack, 'SELECT v FROM cc'))[0]![0]!.v === 1 && (await waitingOnPg2()),
    30_000,
  )
  await pg2.query('ROLLBACK')
  const r = await bounded(update, 30_000, 'the autocommit update')
  t.equal(r.rowCount, 1, 'the client got the answer of the backends that committed')
  t.ok(allIn(stack.proxy.context.states.list), 'no backend taken out')
  t.same(await onEachBackend<{ v: number }>(stack, 'SELECT v FROM cc'), [[{ v: 1 }], [{ v: 1 }], [{ v: 1 }]], 'the write is on every backend')

  // In a transaction: the client gets 55P03 and the transaction fails everywhere.
  await holdRow()
  await c.query('BEGIN')
  const e = await c.query('UPDATE cc SET v = 2 WHERE id = 1').then(
    () => null,
    (err: { code?: string }) => err,
  )
  t.equal(e?.code, '55P03', 'the client gets lock_timeout, as from one server')
  const after = await c.query('SELECT 1').then(
    () => null,
    (err: { code?: string }) => err,
  )
  t.equal(after?.code, '25P02', 'the transaction is failed')
  await c.query('ROLLBACK')
  await pg2.query('ROLLBACK')
  t.ok(allIn(stack.proxy.context.states.list), 'no backend taken out')
  await c.query('RESET lock_timeout')
  await c.query('UPDATE cc SET v = 3 WHERE id = 1')
  t.same(await onEachBackend<{ v: number }>(stack, 'SELECT v FROM cc'), [[{ v: 3 }], [{ v: 3 }], [{ v: 3 }]], 'the rolled-back value is nowhere; later writes go on')
  await assertIdentical(t, stack)
})
