// Key-level ordering: writes to different rows of one table run
// concurrently; writes to the same row (found through the primary key, or
// meeting on another unique key) are ordered at the proxy, so every backend
// sees them in the same order and ends with the same data.

import t from 'tap'
import { stackFor, client, assertIdentical, onEachBackend, bounded } from '../harness/stack.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE kl (id int PRIMARY KEY, email text UNIQUE, v int NOT NULL DEFAULT 0)')
await setup.query("INSERT INTO kl SELECT g, 'u' || g || '@x', 0 FROM generate_series(1, 10) g")
await setup.end()

const locks = () => stack.proxy.context.locks.snapshot()

t.test('different rows of one table do not wait for each other', async (t) => {
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  await a.query('BEGIN')
  await a.query('UPDATE kl SET v = v + 1 WHERE id = $1', [1])
  const held = locks().filter((l) => l.holders.length)
  t.ok(
    held.some((l) => l.resource === 'rel:kl' && l.holders.some((h) => h.endsWith(':IX'))),
    'table held in IX, not X',
  )
  t.ok(
    held.some((l) => l.resource.startsWith('key:kl:id=1')),
    'the row key is locked',
  )
  // b's update of another row completes while a's transaction is still open.
  await bounded(b.query('UPDATE kl SET v = v + 1 WHERE id = 2'), 10_000, 'update of another row')
  await a.query('COMMIT')
  await assertIdentical(t, stack)
})

t.test('the same row is ordered: the second writer waits for the first', async (t) => {
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  await a.query('BEGIN')
  await a.query('UPDATE kl SET v = 100 WHERE id = 3')
  let bDone = false
  const pb = b.query('UPDATE kl SET v = v * 2 WHERE id = $1', ['3']).then(() => (bDone = true))
  // b must be waiting on the proxy lock of key id=3 (text parameter, same key as the constant).
  for (let i = 0; i < 100 && !locks().some((l) => l.resource.startsWith('key:kl:id=3') && l.waiters.length); i++) await new Promise((r) => setTimeout(r, 20))
  t.ok(
    locks().some((l) => l.resource.startsWith('key:kl:id=3') && l.waiters.length),
    'b waits on the row key',
  )
  t.notOk(bDone, 'b has not run yet')
  await a.query('COMMIT')
  await bounded(pb, 10_000, 'second writer')
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM kl WHERE id = 3')
  t.same(
    per.map((r) => r[0].v),
    [200, 200, 200],
    'same order everywhere',
  )
  await assertIdentical(t, stack)
})

t.test('two inserts with different ids but the same unique email: one wins everywhere', async (t) => {
  for (let round = 0; round < 10; round++) {
    const a = await client(stack)
    const b = await client(stack)
    const email = `dup${round}@x`
    const res = await bounded(
      Promise.allSettled([a.query('INSERT INTO kl (id, email) VALUES ($1, $2)', [1000 + round, email]), b.query('INSERT INTO kl (id, email) VALUES ($1, $2)', [2000 + round, email])]),
      10_000,
      'competing inserts',
    )
    await Promise.all([a.end(), b.end()])
    const codes = res.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code?: string }).code)).sort()
    t.same(codes, ['23505', 'ok'], `round ${round}: exactly one insert wins (${codes.join(', ')})`)
  }
  await assertIdentical(t, stack)
})

t.test('a write without a provable key still locks the whole table', async (t) => {
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  await a.query('BEGIN')
  await a.query('UPDATE kl SET v = v + 1 WHERE v >= 0')
  t.ok(
    locks().some((l) => l.resource === 'rel:kl' && l.holders.some((h) => h.endsWith(':X'))),
    'table held in X',
  )
  const pb = b.query('UPDATE kl SET v = 0 WHERE id = 4')
  for (let i = 0; i < 100 && !locks().some((l) => l.resource === 'rel:kl' && l.waiters.length); i++) await new Promise((r) => setTimeout(r, 20))
  t.ok(
    locks().some((l) => l.resource === 'rel:kl' && l.waiters.length),
    'the keyed update waits for the table lock',
  )
  await a.query('COMMIT')
  await bounded(pb, 10_000, 'keyed update after table lock')
  await assertIdentical(t, stack)
})

t.test('a partition and its parent, a view and its table, meet on one lock', async (t) => {
  const c = await client(stack)
  await c.query('CREATE TABLE parted (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)')
  await c.query('CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100)')
  await c.query('INSERT INTO parted VALUES (1, 0)')
  await c.query('CREATE VIEW kl_view AS SELECT id, v FROM kl')
  await c.end()
  const waitsOn = async (holder: string, waiter: string, what: string) => {
    const a = await client(stack)
    const b = await client(stack)
    await a.query('BEGIN')
    await a.query(holder)
    let done = false
    const pb = b.query(waiter).then(() => (done = true))
    for (let i = 0; i < 100 && !locks().some((l) => l.waiters.length); i++) await new Promise((r) => setTimeout(r, 20))
    t.ok(locks().some((l) => l.waiters.length) && !done, `${what}: the second writer waits at the proxy`)
    await a.query('COMMIT')
    await bounded(pb, 10_000, what)
    await Promise.all([a.end(), b.end()])
  }
  await waitsOn('UPDATE parted_1 SET v = v + 1 WHERE id = 1', 'UPDATE parted SET v = v * 10 WHERE id = 1', 'partition then parent')
  await waitsOn('UPDATE kl SET v = 7 WHERE id = 5', 'UPDATE kl_view SET v = v + 1 WHERE id = 5', 'table then view')
  const per = await onEachBackend<{ a: number; b: number }>(stack, 'SELECT (SELECT v FROM parted WHERE id = 1) AS a, (SELECT v FROM kl WHERE id = 5) AS b')
  t.same(
    per.map((r) => `${r[0].a}/${r[0].b}`),
    ['10/8', '10/8', '10/8'],
  )
  await assertIdentical(t, stack)
})
