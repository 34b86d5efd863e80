// Reads in real-time order across backends (found by the torture harness's
// 30-minute run, seed 30: Elle's G-single-realtime at READ COMMITTED). A
// commit lands on the backends one after another; a client read a row on a
// backend where it had landed, and its next transaction, balanced to a
// backend where it had not, read the row without it: one PostgreSQL server
// never shows a commit and then hides it. A read now waits until the commits
// taken before it have landed on every backend. Here the commit is held on
// pg2 by a row lock taken there directly, the reads are sent to pg2 (weights),
// and every read that starts once pg1 shows the commit must see it too.

import t from 'tap'
import { stackFor, client, assertIdentical, waitFor, bounded } from '../harness/stack.ts'

t.test('a read that starts after a commit became visible on one backend sees it, whichever backend it runs on', async (t) => {
  const stack = await stackFor(t)
  const ctx = stack.proxy.context
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE rt (id int PRIMARY KEY, v int)')
  await c.query('INSERT INTO rt VALUES (1, 0)')
  // Reads go to pg2 only.
  ctx.stats[0]!.weight = 0
  ctx.stats[2]!.weight = 0
  const d2 = await stack.cluster.backends[1]!.client()
  await d2.query('BEGIN')
  await d2.query('SELECT v FROM rt WHERE id = 1 FOR UPDATE')
  const update = c.query('UPDATE rt SET v = 1 WHERE id = 1')
  const d1 = await stack.cluster.backends[0]!.client()
  await waitFor('pg1 to show the commit', async () => (await d1.query('SELECT v FROM rt WHERE id = 1')).rows[0].v === 1, 30_000)
  await d1.end()
  const readers = await Promise.all(Array.from({ length: 4 }, () => client(stack)))
  t.teardown(() => Promise.all(readers.map((r) => r.end())))
  const values: number[] = []
  const reads = readers.map((r, k) =>
    r.query(k % 2 ? 'SELECT v FROM rt WHERE id = 1' : 'BEGIN; SELECT v FROM rt WHERE id = 1; COMMIT').then((x) => {
      const rows = Array.isArray(x) ? x[1]!.rows : x.rows
      values.push(rows[0].v as number)
    }),
  )
  // Each read either has answered (it did not wait) or waits in pgraid for the commit to land.
  const landing = () => ctx.sessions().filter((s) => / step commits landing/.test(s.waiting)).length
  await waitFor('every read to answer or wait for the commit', () => values.length + landing() === readers.length, 30_000)
  await d2.query('COMMIT')
  await d2.end()
  await bounded(Promise.all([update, ...reads]), 30_000, 'the update and the reads')
  t.same(values, [1, 1, 1, 1], 'every read saw the commit')
  ctx.stats[0]!.weight = 1
  ctx.stats[2]!.weight = 1
  t.same(
    ctx.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'no backend out',
  )
  await assertIdentical(t, stack)
})
