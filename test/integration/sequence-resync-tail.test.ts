// A resync's last step sets the rejoining backend's sequences to the source's (values drawn by
// transactions that rolled back leave no record). A transaction that began without that backend,
// drew after the source's state was read and rolled back before the backend was enabled used to
// leave it one draw behind: the next INSERT got another id there (the torture harness, two
// instances, seed 1: "duplicate key" on one backend, then voted out). Such a transaction now
// aligns the joining backend too. The window is widened here by slowing pgraid.seq_set on the
// rejoining backend, so the rollback falls inside it every time.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, bounded, onEachBackend, waitFor } from '../harness/stack.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
]

t.test('a transaction that draws and rolls back during a resync tail leaves no sequence behind', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  const a = await client(stack)
  t.teardown(() => Promise.all([admin.end(), a.end()]))
  await a.query('CREATE TABLE st (id bigserial PRIMARY KEY, note text)')
  await a.query("INSERT INTO st (note) VALUES ('before')")
  await admin.query('DISABLE pg3')
  await a.query("INSERT INTO st (note) VALUES ('while out')")
  // Slow seq_set on pg3 only: the resync's tail waits there after reading pg1's state.
  const d3 = await stack.cluster.backends[2]!.client()
  t.teardown(() => d3.end())
  const original = (await d3.query<{ def: string }>("SELECT pg_get_functiondef('pgraid.seq_set(jsonb)'::regprocedure) AS def")).rows[0]!.def
  await d3.query(`CREATE OR REPLACE FUNCTION pgraid.seq_set(states jsonb) RETURNS bigint LANGUAGE plpgsql AS $f$
    DECLARE n bigint;
    BEGIN
      PERFORM pg_sleep(1.5);
      SELECT count(CASE WHEN e.value = 'null'::jsonb THEN setval(r.c, s.seqstart, false) ELSE setval(r.c, (e.value #>> '{}')::bigint, true) END) INTO n
        FROM jsonb_each(coalesce(states, '{}')) e CROSS JOIN LATERAL (SELECT to_regclass(e.key) AS c) r JOIN pg_sequence s ON s.seqrelid = r.c;
      RETURN n;
    END $f$`)
  // The drawing session began without pg3 (it is not attached until its transaction ends).
  await a.query('BEGIN')
  await a.query("INSERT INTO st (note) VALUES ('warm')")
  const resync = admin.query('RESYNC pg3')
  const watcher = await stack.cluster.backends[2]!.client()
  t.teardown(() => watcher.end())
  await waitFor('the resync tail to be inside seq_set on pg3', async () => {
    const r = await watcher.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%seq_set%' AND pid <> pg_backend_pid()")
    return r.rows[0]!.n > 0
  })
  await a.query("INSERT INTO st (note) VALUES ('drawn during the tail')")
  await bounded(a.query('ROLLBACK'), 30_000, 'the rollback')
  await bounded(resync, 60_000, 'the resync')
  await d3.query(original)
  const states = (await admin.query<{ name: string; state: string }>('SHOW BACKENDS')).rows.map((x) => `${x.name}:${x.state}`)
  t.same(states, ['pg1:enabled', 'pg2:enabled', 'pg3:enabled'], 'pg3 is back in service')
  const b = await client(stack)
  t.teardown(() => b.end())
  const r = await b.query<{ id: string }>("INSERT INTO st (note) VALUES ('after') RETURNING id")
  t.equal(r.rows[0]!.id, '5', 'the next id is past the rolled-back draws (1, 2, then 3 and 4 rolled back)')
  const after = (await admin.query<{ name: string; state: string }>('SHOW BACKENDS')).rows.map((x) => `${x.name}:${x.state}`)
  t.same(after, ['pg1:enabled', 'pg2:enabled', 'pg3:enabled'], 'no backend voted out by the INSERT after the resync')
  const last = await onEachBackend<{ v: string }>(stack, 'SELECT last_value::text AS v FROM st_id_seq')
  t.same(
    last.map((x) => x[0]!.v),
    ['5', '5', '5'],
    'the sequence is the same everywhere',
  )
  await assertIdentical(t, stack)
})

t.test('a client that vanishes in a transaction that drew leaves no sequence behind on a backend it lacked', async (t) => {
  // Found by the torture harness (two instances, seed 2, vanishing clients): the session's transaction
  // ended with its connections, nothing aligned the backend that came back meanwhile, and the next
  // INSERT got another id there.
  const stack = await stackFor(t, { config: { users: USERS } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  const setup = await client(stack)
  await setup.query('CREATE TABLE sv (id bigserial PRIMARY KEY, note text)')
  await setup.query("INSERT INTO sv (note) VALUES ('before')")
  await setup.end()
  await admin.query('DISABLE pg3')
  const gone = await client(stack)
  gone.on('error', () => {})
  await gone.query('BEGIN')
  await gone.query("INSERT INTO sv (note) VALUES ('drawn, never committed')")
  await bounded(admin.query('RESYNC pg3'), 60_000, 'the resync')
  // Drawn after the resync aligned pg3, by a transaction that began without it.
  await gone.query("INSERT INTO sv (note) VALUES ('drawn after the resync, never committed')")
  // The client vanishes: no ROLLBACK, no Terminate.
  ;(gone as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
  const b = await client(stack)
  t.teardown(() => b.end())
  const r = await bounded(b.query<{ id: string }>("INSERT INTO sv (note) VALUES ('after') RETURNING id"), 30_000, 'the INSERT after the vanished client')
  t.equal(r.rows[0]!.id, '4', "the next id is past the vanished transaction's draws")
  const states = (await admin.query<{ name: string; state: string }>('SHOW BACKENDS')).rows.map((x) => `${x.name}:${x.state}`)
  t.same(states, ['pg1:enabled', 'pg2:enabled', 'pg3:enabled'], 'no backend voted out')
  const last = await onEachBackend<{ v: string }>(stack, 'SELECT last_value::text AS v FROM sv_id_seq')
  t.same(
    last.map((x) => x[0]!.v),
    ['4', '4', '4'],
    'the sequence is the same everywhere',
  )
  await assertIdentical(t, stack)
})
