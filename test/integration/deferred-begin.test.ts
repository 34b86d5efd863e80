// A plain BEGIN sent alone is answered by pgraid and reaches the backends with
// the transaction's next statement (src/frontend/deferred-begin.ts). What the
// client sees must be exactly PostgreSQL's behaviour: the transaction's clock
// starts at BEGIN, a refused statement leaves the transaction failed, a second
// BEGIN warns, options and reads keep their own handling.

import t from 'tap'
import type pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'
import { RawClient, errorCode, fe } from '../harness/raw-client.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE db_t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, at timestamptz)')
await setup.query('INSERT INTO db_t SELECT g, 0 FROM generate_series(1, 10) g')
await setup.end()

/** How each backend sees the session of `c` (found by its application_name). */
async function backendStates(name: string): Promise<string[]> {
  const rows = await onEachBackend<{ state: string }>(stack, `SELECT state FROM pg_stat_activity WHERE application_name = '${name}'`)
  return rows.map((r) => r.map((x) => x.state).join(','))
}

async function named(name: string): Promise<pg.Client> {
  return client(stack, { application_name: name })
}

t.test('BEGIN waits at pgraid until the first write, which carries it', async (t) => {
  const c = await named('db_carry')
  t.teardown(() => c.end())
  await c.query('BEGIN')
  t.same(await backendStates('db_carry'), ['idle', 'idle', 'idle'], 'no backend has the transaction yet')
  await c.query('UPDATE db_t SET v = v + 1 WHERE id = 1')
  t.same(await backendStates('db_carry'), ['idle in transaction', 'idle in transaction', 'idle in transaction'], 'the write opened it everywhere')
  await c.query('COMMIT')
  await assertIdentical(t, stack)
})

t.test('the transaction clock starts at BEGIN, not at the statement that carries it', async (t) => {
  const c = await named('db_clock')
  t.teardown(() => c.end())
  await c.query('BEGIN')
  const afterBegin = Date.now()
  await new Promise((r) => setTimeout(r, 400))
  await c.query('UPDATE db_t SET at = now() WHERE id = 2')
  const { rows } = await c.query<{ now: Date }>('SELECT now()')
  await c.query('COMMIT')
  t.ok(rows[0]!.now.getTime() <= afterBegin + 200, `now() ${rows[0]!.now.toISOString()} is the time of BEGIN (answered at ${new Date(afterBegin).toISOString()}), not 400 ms later`)
  const per = await onEachBackend<{ at: Date }>(stack, 'SELECT at FROM db_t WHERE id = 2')
  t.same(
    per.map((r) => r[0]!.at.getTime()),
    [0, 1, 2].map(() => rows[0]!.now.getTime()),
    'every backend stored that value',
  )
})

t.test('a refused statement right after BEGIN leaves the transaction failed, as PostgreSQL would', async (t) => {
  const c = await named('db_refused')
  const notices: string[] = []
  c.on('notice', (n) => notices.push(n.message ?? ''))
  t.teardown(() => c.end())
  await c.query('BEGIN')
  await t.rejects(c.query('INSERT INTO db_t (id, v) SELECT 100 + g, (random() * 10)::int FROM generate_series(1, 3) g'), { code: '0A000' }, 'random() over an unknown row count is refused')
  await t.rejects(c.query('SELECT 1'), { code: '25P02' }, 'the transaction is failed: the backends were given the BEGIN before the refusal')
  await c.query('ROLLBACK')
  t.same(notices, [], 'ROLLBACK found a transaction to end (no "there is no transaction in progress")')
  const { rows } = await c.query<{ n: string }>('SELECT count(*) AS n FROM db_t WHERE id > 100')
  t.equal(rows[0]!.n, '0')
})

t.test('a second BEGIN warns, as in PostgreSQL', async (t) => {
  const c = await named('db_twice')
  const notices: { code?: string }[] = []
  c.on('notice', (n) => notices.push(n))
  t.teardown(() => c.end())
  await c.query('BEGIN')
  await c.query('BEGIN')
  await c.query('COMMIT')
  t.same(
    notices.map((n) => n.code),
    ['25001'],
    'one WARNING: there is already a transaction in progress',
  )
})

t.test('BEGIN with options and a read-first transaction', async (t) => {
  const c = await named('db_opts')
  t.teardown(() => c.end())
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ')
  t.same(await backendStates('db_opts'), ['idle in transaction', 'idle in transaction', 'idle in transaction'], 'BEGIN with options goes to the backends at once')
  await c.query('COMMIT')
  await c.query('BEGIN')
  const { rows } = await c.query<{ v: number }>('SELECT v FROM db_t WHERE id = 1')
  t.equal(rows[0]!.v, 1, 'a read in the transaction sees committed data')
  const states = await backendStates('db_opts')
  t.equal(states.filter((s) => s === 'idle in transaction').length, 3, 'the BEGIN went to every backend before the read')
  await c.query('UPDATE db_t SET v = v + 1 WHERE id = $1', [3])
  await c.query('COMMIT')
  await assertIdentical(t, stack)
})

t.test('BEGIN; COMMIT with nothing in between, and BEGIN then ROLLBACK', async (t) => {
  const c = await named('db_empty')
  t.teardown(() => c.end())
  await c.query('BEGIN')
  await c.query('COMMIT')
  await c.query('START TRANSACTION')
  await c.query('UPDATE db_t SET v = 99 WHERE id = 4')
  await c.query('ROLLBACK')
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM db_t WHERE id = 4')
  t.same(
    per.map((r) => r[0]!.v),
    [0, 0, 0],
    'rolled back everywhere',
  )
  t.same(await backendStates('db_empty'), ['idle', 'idle', 'idle'])
})

t.test('a prepared BEGIN (pgbench -M prepared, PQsendQueryPrepared) is deferred the same way', async (t) => {
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.end())
  c.send(fe.query("SET application_name = 'db_prepared'"))
  await c.until('Z')
  c.send(fe.parse('b', 'BEGIN'), fe.parse('u', 'UPDATE db_t SET v = v + 1 WHERE id = $1'), fe.parse('e', 'END'), fe.sync())
  await c.until('Z')
  const run = (stmt: string, params: string[] = []) => {
    c.send(fe.bind('', stmt, params), fe.describe('P', ''), fe.execute(''), fe.sync())
    return c.until('Z')
  }
  const begin = await run('b')
  t.same(
    begin.map((m) => m.type),
    ['2', 'n', 'C', 'Z'],
    "PostgreSQL's answers: BindComplete, NoData, CommandComplete, ReadyForQuery",
  )
  t.equal(begin[2]!.body.toString('utf8', 0, 5), 'BEGIN')
  t.equal(begin[3]!.body.toString(), 'T', 'in a transaction')
  t.same(await backendStates('db_prepared'), ['idle', 'idle', 'idle'], 'no backend has the transaction yet')
  const upd = await run('u', ['5'])
  t.same(
    upd.map((m) => m.type),
    ['2', 'n', 'C', 'Z'],
  )
  t.same(await backendStates('db_prepared'), ['idle in transaction', 'idle in transaction', 'idle in transaction'], 'the prepared write carried it everywhere')
  const end = await run('e')
  t.equal(end[3]!.body.toString(), 'I', 'committed')
  // A read right after a prepared BEGIN sends the BEGIN alone first; the transaction still sees one snapshot.
  await run('b')
  c.send(fe.parse('', 'SELECT v FROM db_t WHERE id = 5'), fe.bind('', ''), fe.execute(''), fe.sync())
  const read = await c.until('Z')
  t.equal(read.find((m) => m.type === 'D')?.body.toString('utf8', 6), '1', 'the read sees the committed update')
  await run('e')
  // A BEGIN bound with a parameter is PostgreSQL's error, not deferred.
  const bad = await run('b', ['x'])
  t.same(
    bad.map((m) => m.type),
    ['E', 'Z'],
    'bind message supplies 1 parameters: the error comes from the backends',
  )
  t.equal(errorCode(bad[0]!), '08P01')
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM db_t WHERE id = 5')
  t.same(
    per.map((r) => r[0]!.v),
    [1, 1, 1],
  )
  await assertIdentical(t, stack)
})
