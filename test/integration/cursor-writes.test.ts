// Writes through cursors (issue 17, item 1): pg-cursor binds a portal,
// describes it and flushes, and sends the Execute in a later batch. A write's
// portal must be bound on every backend and executed on every backend, in
// whatever batch its Execute comes: before, such an INSERT ... RETURNING ran
// on one backend only, silently.

import t from 'tap'
import Cursor from 'pg-cursor'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const stack = await stackFor(t)

t.test('INSERT ... RETURNING through pg-cursor, read in pieces, autocommit and in a transaction', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE cw (id int PRIMARY KEY, v text)')
  // Autocommit: the portal's statement runs in the Execute's implicit transaction.
  const cur = c.query(new Cursor("INSERT INTO cw SELECT g, 'auto ' || g FROM generate_series(1, 10) g RETURNING id"))
  const got: number[] = []
  for (;;) {
    const rows = await cur.read(3)
    if (!rows.length) break
    got.push(...rows.map((r: { id: number }) => r.id))
  }
  await cur.close()
  t.same(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'every returned row, in pieces of three')
  // In a transaction, with a parameter.
  await c.query('BEGIN')
  const cur2 = c.query(new Cursor('INSERT INTO cw SELECT g, $1 FROM generate_series(11, 20) g RETURNING id', ['tx']))
  const first = await cur2.read(4)
  t.equal(first.length, 4, 'the first piece')
  await cur2.close()
  await c.query('COMMIT')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM cw')
  t.same(per, [[{ n: 20 }], [{ n: 20 }], [{ n: 20 }]], 'every backend has all 20 rows')
  t.same(
    stack.proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'no backend taken out',
  )
  await assertIdentical(t, stack)
})

t.test('a read through pg-cursor, after the writes: every row, in order', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const cur = c.query(new Cursor('SELECT id FROM cw ORDER BY id'))
  const rows = await cur.read(100)
  await cur.close()
  t.same(
    rows.map((r: { id: number }) => r.id),
    Array.from({ length: 20 }, (_, k) => k + 1),
  )
})
