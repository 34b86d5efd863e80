// The tie-safe COMMIT split (found by the torture harness, seed 22 with
// --overlap): with an even number of backends in service an autocommit write
// runs inside pgraid's BEGIN and ends with pgraid's log INSERT and COMMIT in
// one Query. When that fails on one backend only (its server shut down, or,
// here, a trigger made to fail on one backend), the others have committed:
// the client used to be told XX000 "made to fail on every backend" for a row
// that was there (a producer would send it again), and no backend was taken
// out: a silent divergence. The same held for a client's own COMMIT with two
// backends. Now the backend that failed is taken out as behind (resync
// replays the commit); an autocommit write is told it committed when the
// write quorum committed; otherwise the client's connection ends (outcome
// unknown, as with a server failing in a COMMIT). Every case ends with the
// backends compared.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, bounded, waitFor } from '../harness/stack.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
]

/** On backend `i` only: pgraid's log INSERT fails while public.fail_log has a row. */
async function failLogOn(stack: Awaited<ReturnType<typeof stackFor>>, i: number): Promise<(on: boolean) => Promise<void>> {
  const d = await stack.cluster.backends[i]!.client()
  await d.query('CREATE SCHEMA inject')
  await d.query('CREATE TABLE inject.fail_log (x int)')
  await d.query(
    `CREATE FUNCTION inject.fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF EXISTS (SELECT 1 FROM inject.fail_log) THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$`,
  )
  await d.query('CREATE TRIGGER inject_fail BEFORE INSERT ON pgraid.log FOR EACH ROW EXECUTE FUNCTION inject.fail()')
  return async (on) => {
    await d.query(on ? 'INSERT INTO inject.fail_log VALUES (1)' : 'DELETE FROM inject.fail_log')
    if (!on) {
      await d.query('DROP SCHEMA inject CASCADE')
      await d.end()
    }
  }
}

for (const [quorum, explicit] of [
  [1, false],
  [2, false],
  [1, true],
  [2, true],
] as const) {
  t.test(
    `two backends in service, the COMMIT ${explicit ? 'of BEGIN ... COMMIT' : 'of an autocommit write'} fails on one (write quorum ${quorum}): ${quorum === 1 && !explicit ? 'committed, and said so' : 'the connection ends (outcome unknown to the client)'}; never "rolled back"`,
    async (t) => {
      const stack = await stackFor(t, { config: { users: USERS, writeQuorum: quorum } })
      const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
      await admin.connect()
      t.teardown(() => admin.end())
      const c = await client(stack)
      c.on('error', () => {})
      await c.query('CREATE TABLE ts (id int PRIMARY KEY)')
      await c.query('INSERT INTO ts VALUES (1)')
      await admin.query('DISABLE pg1')
      const inject = await failLogOn(stack, 1)
      await inject(true)
      if (explicit) {
        await c.query('BEGIN')
        await c.query('INSERT INTO ts VALUES (2)')
      }
      const r = await c.query(explicit ? 'COMMIT' : 'INSERT INTO ts VALUES (2)').then(
        () => 'ok',
        (e: { code?: string; message: string }) => `${e.code ?? 'no code'} ${e.message}`,
      )
      await inject(false)
      const here = (await stack.cluster.backends[2]!.client().then(async (d) => (await d.query('SELECT count(*)::int AS n FROM ts WHERE id = 2').finally(() => d.end())).rows[0].n)) as number
      t.equal(here, 1, 'pg3 committed the row')
      if (quorum === 1 && !explicit) t.equal(r, 'ok', 'the client is told it committed')
      else t.match(r, /^(08006|no code) /, `the client's connection ends: ${r}`)
      t.not(r.startsWith('XX000'), true, 'never told it was rolled back everywhere')
      const st = stack.proxy.context.states.list[1]!
      t.equal(st.state, 'disabled', 'pg2 out')
      t.match(st.reason ?? '', /COMMIT failed where the others committed/, st.reason ?? '')
      await admin.query('RESYNC pg2')
      await admin.query('RESYNC pg1')
      const c2 = await client(stack)
      t.same(
        (await c2.query('SELECT id FROM ts ORDER BY id')).rows.map((x) => x.id),
        [1, 2],
        'row 2 is there, through pgraid',
      )
      await c2.end()
      await c.end().catch(() => {})
      await assertIdentical(t, stack)
    },
  )
}

// Found by the torture harness (seeds 304, 104; CI): a backend taken out while a session waited
// between its statement and pgraid's own COMMIT (here: the lift of the client's timeout before
// the tie-safe COMMIT) was still in the COMMIT's targets. Nothing was sent to it, but the COMMIT
// waited for its answer for ever, holding its LSN (every resync refused) and its locks.
t.test("two backends in service, one frozen and taken out between the write and pgraid's own COMMIT: the COMMIT goes to the backend left and the client gets its answer", async (t) => {
  const stack = await stackFor(t, { backends: 2, auth: 'scram-sha-256', config: { users: USERS, writeQuorum: 1, health: { intervalMs: 200, failures: 2, timeoutMs: 500 } } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  const frozen = stack.cluster.backends[1]!
  t.teardown(() => frozen.resume())
  const c = await client(stack)
  c.on('error', () => {})
  t.teardown(() => c.end().catch(() => {}))
  await c.query('CREATE TABLE fz (id int PRIMARY KEY)')
  // A timeout the client set: pgraid runs the write inside its own BEGIN and lifts the timeout
  // before its COMMIT, one round trip more between the write and the COMMIT.
  await c.query("SET statement_timeout = '60s'")
  // pg1 (directly) holds the table: the INSERT waits there after pg2 has run it.
  const d1 = await stack.cluster.backends[0]!.client()
  await d1.query('BEGIN')
  await d1.query('LOCK TABLE fz IN EXCLUSIVE MODE')
  const insert = c.query('INSERT INTO fz VALUES (1)').then(
    () => 'ok',
    (e: { code?: string; message: string }) => `${e.code ?? 'no code'} ${e.message}`,
  )
  const d2 = await frozen.client()
  await waitFor(
    'pg2 to run the INSERT',
    async () => (await d2.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE 'INSERT INTO fz%'")).rows[0].n === 1,
    30_000,
  )
  await d2.end()
  frozen.pause()
  await d1.query('COMMIT')
  await d1.end()
  const r = await bounded(insert, 60_000, "the INSERT's answer")
  frozen.resume()
  t.equal(r, 'ok', 'the client is told it committed (on the backend left, the write quorum)')
  t.equal(stack.proxy.context.states.list[1]!.state, 'disabled', `pg2 out: ${stack.proxy.context.states.list[1]!.reason}`)
  t.equal(stack.proxy.context.commitsInFlight(), 0, 'no commit left in flight')
  await waitFor(
    'pg2 to answer again',
    () =>
      frozen.client().then(
        (d) => d.end().then(() => true),
        () => false,
      ),
    30_000,
  )
  await admin.query('RESYNC pg2')
  t.same((await c.query('SELECT id FROM fz')).rows, [{ id: 1 }], 'the row, through pgraid')
  await assertIdentical(t, stack)
})
