// SQL fidelity (issue 17, item 6): what PostgreSQL accepts works the same
// through pgraid. A clock call used as a table in FROM answers as PostgreSQL
// does (the clock rewrite made it a syntax error); a plain SELECT of a
// side-effect-free volatile function such as pg_sleep is a read: one backend,
// no pgraid lock, so sessions do not wait for each other.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend, waitFor } from '../harness/stack.ts'
import { RawClient, fe, errorCode } from '../harness/raw-client.ts'

const stack = await stackFor(t)

/** Column names and the number of rows, through pgraid and from a backend directly. */
async function shapeBoth(sql: string): Promise<[string, string]> {
  const c = await client(stack)
  const d = await stack.cluster.backends[0]!.client()
  try {
    const shape = (r: pg.QueryResult) => `${r.fields.map((f) => `${f.name}:${f.dataTypeID}`).join(',')} x${r.rowCount}`
    return [shape(await c.query(sql)), shape(await d.query(sql))]
  } finally {
    await c.end()
    await d.end()
  }
}

t.test('clock calls as tables in FROM answer as PostgreSQL does', async (t) => {
  for (const sql of [
    'SELECT * FROM now()',
    'SELECT * FROM now() AS t(x)',
    'SELECT t.* FROM now() t',
    'SELECT now.now FROM now()',
    'SELECT * FROM current_timestamp',
    'SELECT * FROM transaction_timestamp() WITH ORDINALITY',
    'SELECT x FROM generate_series(1, 2) g, LATERAL (SELECT * FROM now()) AS n(x)',
  ]) {
    const [proxied, direct] = await shapeBoth(sql)
    t.equal(proxied, direct, `${sql}: ${direct}`)
  }
})

t.test('a write reading a clock from FROM stores one value everywhere', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE fc (t timestamptz)')
  await c.query('INSERT INTO fc SELECT * FROM now()')
  await c.query('INSERT INTO fc SELECT x FROM statement_timestamp() AS s(x)')
  // Wherever the call appears: LATERAL, VALUES inside a CTE, a function's argument, a subquery.
  await c.query('INSERT INTO fc SELECT x FROM generate_series(1, 2) g, LATERAL (SELECT * FROM transaction_timestamp()) AS n(x)')
  await c.query('WITH v(t) AS (VALUES (now()), (statement_timestamp())) INSERT INTO fc SELECT t FROM v')
  await c.query("INSERT INTO fc VALUES (date_trunc('second', now())), (coalesce(NULL, statement_timestamp()))")
  await c.query('INSERT INTO fc SELECT (SELECT max(x) FROM (VALUES (current_timestamp)) AS s(x))')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM fc')
  t.same(per, [[{ n: 9 }], [{ n: 9 }], [{ n: 9 }]])
  await assertIdentical(t, stack)
})

t.test('SELECT pg_sleep is a read: one backend, no pgraid lock', async (t) => {
  const a = await client(stack, { application_name: 'sleeper' })
  t.teardown(() => a.end())
  const sleeping = a.query('SELECT pg_sleep(1)')
  const running = async () => (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'sleeper' AND state = 'active'")).map((r) => r[0]!.n)
  await waitFor('the sleep to run', async () => (await running()).some((n) => n > 0), 10_000)
  t.equal(
    (await running()).reduce((x, y) => x + y, 0),
    1,
    'on one backend only',
  )
  t.same(
    stack.proxy.context.locks.snapshot().filter((l) => l.holders.length && l.resource.includes('pg_sleep')),
    [],
    'no pgraid lock held for it',
  )
  await sleeping
})

t.test('a write followed by an unreadable message in its batch: answered, then rolled back everywhere as on PostgreSQL', async (t) => {
  const setup = await client(stack)
  await setup.query('CREATE TABLE ur (n int)')
  await setup.end()
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.socket.destroy())
  for (const bad of [fe.raw('D', Buffer.from('Z\0')), fe.raw('S', Buffer.alloc(4)), fe.raw('Q', Buffer.from('SELECT 1'))]) {
    c.send(fe.parse('', 'INSERT INTO ur VALUES (1)'), fe.bind('', ''), fe.execute(''), bad, ...(bad[0] === 0x44 ? [fe.sync()] : []))
    const got = await c.until('Z')
    t.same(
      got.map((m) => (m.type === 'E' ? `E:${errorCode(m)}` : m.type)),
      ['1', '2', 'C', 'E:08P01', 'Z'],
      `answers for a batch ending in '${String.fromCharCode(bad[0]!)}'`,
    )
    t.equal(got[got.length - 1]!.body.toString('latin1'), 'I', 'idle after it')
  }
  c.send(fe.query('SELECT count(*) FROM ur'))
  const rows = await c.until('Z')
  t.ok(
    rows.some((m) => m.type === 'C'),
    'the session goes on',
  )
  t.same(await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM ur'), [[{ n: 0 }], [{ n: 0 }], [{ n: 0 }]], 'nothing committed anywhere')
  t.same(
    stack.proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
  )
  await assertIdentical(t, stack)
})
