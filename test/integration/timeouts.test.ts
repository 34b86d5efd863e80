// Timeouts: a backend that lags the others by timeouts.stallMs on the same
// statement is taken out of service and the client is answered by the others
// (a long statement on every backend is not a stall), and a client idle in a
// transaction longer than timeouts.clientIdleInTransactionMs is disconnected
// with its transaction rolled back on every backend.

import t from 'tap'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const stack = await stackFor(t, { config: { timeouts: { stallMs: 1500, clientIdleInTransactionMs: 1500 } } })
const setup = await client(stack)
await setup.query('CREATE TABLE slow (id int PRIMARY KEY, v int)')
await setup.query('INSERT INTO slow VALUES (1, 0), (2, 0)')
await setup.end()

t.test('a statement that is long everywhere is not a stall', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('UPDATE slow SET v = v + 1 WHERE id = 2 AND pg_sleep(3) IS NOT NULL')
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM slow WHERE id = 2')
  t.same(
    per.map((r) => r[0].v),
    [1, 1, 1],
  )
})

t.test('idle in transaction too long: disconnected, rolled back everywhere', async (t) => {
  const c = await client(stack)
  const errors: string[] = []
  c.on('error', (e: Error & { code?: string }) => errors.push(e.code ?? e.message))
  await c.query('BEGIN')
  await c.query('UPDATE slow SET v = 100 WHERE id = 2')
  for (let i = 0; i < 100 && !errors.length; i++) await new Promise((r) => setTimeout(r, 100))
  t.equal(errors[0], '25P03', 'the client got the idle-in-transaction error first')
  // The proxy lock is gone and nothing was committed.
  const other = await client(stack)
  await other.query('UPDATE slow SET v = v + 1 WHERE id = 2')
  await other.end()
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM slow WHERE id = 2')
  t.same(
    per.map((r) => r[0].v),
    [2, 2, 2],
  )
  await assertIdentical(t, stack)
})

// Last: it leaves pg3 out of service.
t.test('a backend lagging the others by stallMs is taken out; the session goes on with the others', async (t) => {
  // Hold the row on the third backend only, directly: it alone cannot finish the UPDATE.
  const direct = await stack.cluster.backends[2]!.client()
  await direct.query('BEGIN')
  await direct.query('SELECT * FROM slow WHERE id = 1 FOR UPDATE')
  const c = await client(stack)
  t.teardown(() => c.end())
  const r = await c.query('UPDATE slow SET v = v + 1 WHERE id = 1')
  t.equal(r.rowCount, 1, 'the client is answered by pg1 and pg2')
  const pg3 = stack.proxy.context.states.list[2]!
  t.equal(pg3.state, 'disabled')
  t.match(pg3.reason ?? '', /stalled/)
  t.equal((await c.query('SELECT v FROM slow WHERE id = 1')).rows[0].v, 1, 'the session continues')
  await direct.query('ROLLBACK')
  await direct.end()
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM slow WHERE id = 1')
  t.same([per[0]![0]!.v, per[1]![0]!.v], [1, 1], 'the backends in service agree')
})

t.test('idle session timeout (57P05) and a per-user connection limit (53300)', async (t) => {
  const own = await stackFor(t, {
    config: {
      timeouts: { clientIdleMs: 500 },
      users: [
        { name: 'app', auth: 'scram-sha-256', password: 'app-secret', maxConnections: 2 },
        { name: 'other', auth: 'scram-sha-256', password: 'other-secret' },
      ],
    },
  })
  const a = await client(own)
  const gone = new Promise<{ code?: string }>((resolve) => a.on('error', (e) => resolve(e as { code?: string })))
  await a.query('SELECT 1') // active, then idle
  const e = await gone
  t.equal(e.code, '57P05', 'an idle session is closed with 57P05')
  const b = await client(own)
  const c = await client(own)
  const third = await client(own).then(
    () => null,
    (err: { code?: string; message: string }) => err,
  )
  t.equal(third?.code, '53300', 'a third session of the same user is refused')
  t.match(third?.message ?? '', /too many connections for role "app"/)
  const o = await client(own, { user: 'other', password: 'other-secret' })
  t.equal((await o.query('SELECT 1 AS x')).rows[0].x, 1, 'another user is not limited by it')
  for (const x of [b, c, o]) {
    x.on('error', () => {})
    await x.end().catch(() => {})
  }
})
