// A connection pool's SET of transaction defaults that the session already
// holds everywhere (commons-dbcp2 under ActiveMQ sends SET SESSION
// CHARACTERISTICS ... READ UNCOMMITTED before every message) is answered by
// pgraid without a round trip to the backends, exactly as PostgreSQL answers
// it; anything that could have changed the setting unseen makes pgraid send
// the next one on. Whether a SET reached a backend is read from that
// backend's pg_stat_activity (the session's last statement there).

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'
import { RawClient, fe } from '../harness/raw-client.ts'

const ISO = (level: string) => `SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL ${level}`
const APP = 'known-settings-test'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE ks (id int PRIMARY KEY, v text)')
await setup.end()

/** The last statement the test session named `app` ran on each backend. */
async function lastOnBackends(app = APP): Promise<string[]> {
  const rows = await onEachBackend<{ q: string }>(stack, `SELECT query AS q FROM pg_stat_activity WHERE application_name = '${app}' AND pid <> pg_backend_pid()`)
  // (pgraid's log INSERT follows an autocommit write in the same query text: only the client's part.)
  return rows.map((r) => (r.length === 1 ? r[0]!.q.split('\n;')[0]! : `(${r.length} sessions)`))
}

let probe = 1000
/** The session's default isolation on each backend: written by each into a row, read back from each directly. */
async function isolationEverywhere(c: pg.Client): Promise<string[]> {
  const id = probe++
  await c.query("INSERT INTO ks VALUES ($1, current_setting('default_transaction_isolation'))", [id])
  return (await onEachBackend<{ v: string }>(stack, `SELECT v FROM ks WHERE id = ${id}`)).map((r) => r[0]!.v)
}

async function session(app: string): Promise<pg.Client> {
  const c = await client(stack)
  await c.query(`SET application_name = '${app}'`)
  return c
}

t.test('a repeated SET of the same isolation is answered without the backends', async (t) => {
  const c = await session(APP)
  t.teardown(() => c.end())
  await c.query(ISO('READ UNCOMMITTED'))
  t.same(await lastOnBackends(), [ISO('READ UNCOMMITTED'), ISO('READ UNCOMMITTED'), ISO('READ UNCOMMITTED')], 'the first SET reached every backend')
  await c.query("INSERT INTO ks VALUES (1, 'one')")
  const r = await c.query(ISO('READ UNCOMMITTED'))
  t.equal(r.command, 'SET', 'the client gets SET')
  t.same(await lastOnBackends(), ["INSERT INTO ks VALUES (1, 'one')", "INSERT INTO ks VALUES (1, 'one')", "INSERT INTO ks VALUES (1, 'one')"], 'the repeated SET went nowhere')
  t.same(await isolationEverywhere(c), ['read uncommitted', 'read uncommitted', 'read uncommitted'], 'the setting holds')
  // Another value goes on, and is then the known one.
  await c.query(ISO('REPEATABLE READ'))
  t.same(await lastOnBackends(), [ISO('REPEATABLE READ'), ISO('REPEATABLE READ'), ISO('REPEATABLE READ')], 'a new value is sent')
  await c.query('BEGIN')
  t.equal((await c.query<{ transaction_isolation: string }>('SHOW transaction_isolation')).rows[0]!.transaction_isolation, 'repeatable read', 'a transaction gets it')
  await c.query('COMMIT')
  await assertIdentical(t, stack)
})

t.test('what could change the setting unseen makes the next SET go on', async (t) => {
  const c = await session(`${APP}-2`)
  t.teardown(() => c.end())
  const last = () => lastOnBackends(`${APP}-2`)
  await c.query(ISO('SERIALIZABLE'))
  // set_config is a function call: pgraid cannot see what it sets.
  await c.query("SELECT set_config('default_transaction_isolation', 'read committed', false)")
  await c.query(ISO('SERIALIZABLE'))
  t.same(await last(), [ISO('SERIALIZABLE'), ISO('SERIALIZABLE'), ISO('SERIALIZABLE')], 'sent after set_config')
  t.same(await isolationEverywhere(c), ['serializable', 'serializable', 'serializable'])
  // RESET, then the same SET again.
  await c.query('RESET default_transaction_isolation')
  await c.query(ISO('SERIALIZABLE'))
  t.same(await last(), [ISO('SERIALIZABLE'), ISO('SERIALIZABLE'), ISO('SERIALIZABLE')], 'sent after RESET')
  // Inside a transaction a SET may be rolled back: it is sent, and not remembered.
  await c.query('BEGIN')
  await c.query(ISO('READ COMMITTED'))
  await c.query('ROLLBACK')
  await c.query(ISO('SERIALIZABLE'))
  t.same(await last(), [ISO('SERIALIZABLE'), ISO('SERIALIZABLE'), ISO('SERIALIZABLE')], 'sent after a transaction that set it')
  t.same(await isolationEverywhere(c), ['serializable', 'serializable', 'serializable'])
  // A SET the session never made (the server's default) is always sent.
  const fresh = await session(`${APP}-3`)
  t.teardown(() => fresh.end())
  await fresh.query(ISO('READ COMMITTED'))
  t.same(await lastOnBackends(`${APP}-3`), [ISO('READ COMMITTED'), ISO('READ COMMITTED'), ISO('READ COMMITTED')], 'a first SET is sent')
})

t.test("extended protocol: the answers are PostgreSQL's, and a statement parsed meanwhile is prepared before use", async (t) => {
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.end())
  c.send(fe.query(`SET application_name = '${APP}-raw'`))
  await c.until('Z')
  const batch = () => [fe.parse('', ISO('READ UNCOMMITTED')), fe.bind('', ''), fe.describe('P', ''), fe.execute(''), fe.sync()]
  c.send(...batch())
  const first = await c.until('Z')
  t.same(
    first.map((m) => m.type),
    ['1', '2', 'n', 'C', 'Z'],
    'sent on: the backends answer',
  )
  c.send(fe.query("INSERT INTO ks VALUES (10, 'ten')"))
  await c.until('Z')
  c.send(...batch())
  const again = await c.until('Z')
  t.same(
    again.map((m) => [m.type, m.body.toString('latin1')]),
    first.map((m) => [m.type, m.body.toString('latin1')]),
    'answered by pgraid with the same messages',
  )
  t.same(await lastOnBackends(`${APP}-raw`), ["INSERT INTO ks VALUES (10, 'ten')", "INSERT INTO ks VALUES (10, 'ten')", "INSERT INTO ks VALUES (10, 'ten')"], 'nothing sent')
  // Describe of the statement: an empty ParameterDescription, then NoData.
  c.send(fe.parse('', ISO('READ UNCOMMITTED')), fe.describe('S', ''), fe.bind('', ''), fe.execute(''), fe.sync())
  t.same(
    (await c.until('Z')).map((m) => m.type),
    ['1', 't', 'n', '2', 'C', 'Z'],
    'Describe S answered as PostgreSQL does',
  )
  // The unnamed statement the backends hold is still the INSERT's predecessor: a Bind without Parse must
  // run the SET, not that. pgraid prepares it there first (lazy Parse).
  c.send(fe.bind('', ''), fe.execute(''), fe.sync())
  const rebind = await c.until('Z')
  t.same(
    rebind.map((m) => m.type),
    ['2', 'C', 'Z'],
  )
  t.equal(rebind[1]!.body.toString('utf8', 0, 3), 'SET', 'the SET ran (as the known value, answered here, or on the backends)')
  // A named statement parsed in a skipped batch is prepared where it is executed.
  c.send(fe.parse('iso', ISO('READ UNCOMMITTED')), fe.bind('', 'iso'), fe.execute(''), fe.sync())
  t.same(
    (await c.until('Z')).map((m) => m.type),
    ['1', '2', 'C', 'Z'],
  )
  c.send(fe.query(ISO('READ COMMITTED')))
  await c.until('Z')
  c.send(fe.bind('', 'iso'), fe.execute(''), fe.sync())
  t.same(
    (await c.until('Z')).map((m) => m.type),
    ['2', 'C', 'Z'],
    'the named statement runs (prepared on the backends first)',
  )
  t.same(await lastOnBackends(`${APP}-raw`), [ISO('READ UNCOMMITTED'), ISO('READ UNCOMMITTED'), ISO('READ UNCOMMITTED')], 'and it reached every backend')
  c.send(fe.query('SHOW default_transaction_isolation'))
  const shown = await c.until('Z')
  t.match(shown.find((m) => m.type === 'D')?.body.toString('latin1') ?? '', /read uncommitted/)
  await assertIdentical(t, stack)
})
