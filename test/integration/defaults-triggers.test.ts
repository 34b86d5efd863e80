// Volatile column defaults and triggers (issue 4, item 5): an INSERT relying
// on DEFAULT now() / gen_random_uuid() gets the value made explicit, the same
// on every backend; where pgraid cannot place it (INSERT ... SELECT, COPY) the
// write is refused with 0A000 naming the column; a trigger calling
// per-backend functions makes writes to its table refused unless
// determinism.allowTriggers names it.

import t from 'tap'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const stack = await stackFor(t, { config: { determinism: { allowTriggers: ['stamp_allowed'] } } })
const setup = await client(stack)
await setup.query(`
  CREATE TABLE ev (id serial PRIMARY KEY, created timestamptz NOT NULL DEFAULT now(), token uuid NOT NULL DEFAULT gen_random_uuid(),
                   due timestamptz DEFAULT (CURRENT_TIMESTAMP + interval '1 day'), n int DEFAULT 0, body text);
  CREATE TABLE stamped (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
  CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.body := upper(NEW.body); RETURN NEW; END $$;
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.body := NEW.body || ' at ' || now()::text; RETURN NEW; END $$;
  CREATE TABLE shouted (id int PRIMARY KEY, body text);
  CREATE TRIGGER shout BEFORE INSERT ON shouted FOR EACH ROW EXECUTE FUNCTION shout();
  CREATE TABLE volatile_trg (id int PRIMARY KEY, body text);
  CREATE TRIGGER stamp_refused BEFORE INSERT ON volatile_trg FOR EACH ROW EXECUTE FUNCTION stamp();
  CREATE TABLE allowed_trg (id int PRIMARY KEY, body text);
  CREATE TRIGGER stamp_allowed BEFORE INSERT ON allowed_trg FOR EACH ROW EXECUTE FUNCTION stamp();
`)
await setup.end()

type PgErr = { code?: string; message: string; hint?: string; position?: string }
const failure = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e: PgErr) => e,
  )

t.test('INSERTs relying on volatile defaults: every shape gets the same values everywhere', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query("INSERT INTO ev (body) VALUES ('list')")
  await c.query("INSERT INTO ev (body, n) VALUES ('multi 1', 1), ('multi 2', 2), ('multi 3', 3)")
  await c.query("INSERT INTO ev VALUES (DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, 'positional defaults')")
  await c.query('INSERT INTO ev VALUES (1000)')
  await c.query('INSERT INTO ev DEFAULT VALUES')
  await c.query("INSERT INTO ev (body, created) VALUES ('explicit DEFAULT', DEFAULT)")
  await c.query("WITH w AS (INSERT INTO ev (body) VALUES ('in a CTE') RETURNING id) SELECT count(*) FROM w")
  for (let i = 0; i < 5; i++) await c.query({ name: 'ins_ev', text: 'INSERT INTO ev (body, n) VALUES ($1, $2)', values: [`prepared ${i}`, i] })
  const r = await c.query("INSERT INTO ev (body) VALUES ('returning') RETURNING id, token, created")
  t.equal(r.rows.length, 1)
  await c.query("UPDATE ev SET created = DEFAULT, token = DEFAULT WHERE body = 'list'")
  await c.query("INSERT INTO ev (id, body) VALUES (2000, 'upsert') ON CONFLICT (id) DO UPDATE SET token = DEFAULT")
  await c.query("INSERT INTO ev (id, body) VALUES (2000, 'upsert') ON CONFLICT (id) DO UPDATE SET token = DEFAULT")
  const tokens = await c.query('SELECT count(*)::int AS n, count(DISTINCT token)::int AS d FROM ev')
  t.equal(tokens.rows[0].d, tokens.rows[0].n, 'a fresh uuid per row')
  await assertIdentical(t, stack)
})

t.test('DEFAULT now() is the transaction time, as now() in the same transaction reads it', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('BEGIN')
  const a = await c.query("INSERT INTO ev (body) VALUES ('tx 1') RETURNING created")
  const b = await c.query({ text: 'INSERT INTO ev (body) VALUES ($1) RETURNING created', values: ['tx 2'] })
  const now = await c.query('SELECT now() AS now')
  await c.query('COMMIT')
  t.equal(a.rows[0].created.getTime(), b.rows[0].created.getTime())
  t.equal(a.rows[0].created.getTime(), now.rows[0].now.getTime(), 'now() in a read of the transaction gives the same instant')
  await assertIdentical(t, stack)
})

t.test('where pgraid cannot place the default, the write is refused with 0A000 naming the column', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const text = "INSERT INTO ev (body) SELECT 'from select'"
  const e = await failure(c.query(text))
  t.equal(e?.code, '0A000')
  t.match(e?.message ?? '', /"ev"\."created"/)
  t.match(e?.hint ?? '', /name the column/)
  t.equal(Number(e?.position), text.indexOf('ev') + 1, 'the position points at the table')
  await c.query("INSERT INTO ev (body, created, token, due) SELECT 'from select, all given', now(), '00000000-0000-0000-0000-000000000001', now()")
  const copy = await failure(c.query('COPY ev (body) FROM STDIN'))
  t.equal(copy?.code, '0A000', 'COPY leaving a volatile default to the backends is refused')
  const clock = await failure(c.query('INSERT INTO stamped (id) VALUES (1)'))
  t.equal(clock?.code, '0A000')
  t.match(clock?.message ?? '', /clock_timestamp/)
  t.match(clock?.hint ?? '', /determinism\.allowFunctions/)
  await c.query("INSERT INTO stamped (id, at) VALUES (2, '2020-01-01')")
  await assertIdentical(t, stack)
})

t.test('refused function calls carry the position of the call', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const text = 'UPDATE ev SET n = pg_backend_pid() WHERE id = 1'
  const e = await failure(c.query(text))
  t.equal(e?.code, '0A000')
  t.equal(Number(e?.position), text.indexOf('pg_backend_pid') + 1)
  const ctid = 'DELETE FROM ev WHERE ctid = (SELECT min(ctid) FROM ev)'
  const s = await failure(c.query(ctid))
  t.equal(s?.code, '0A000', 'ctid in a write: each backend has its own physical layout')
  t.equal(Number(s?.position), ctid.indexOf('ctid') + 1)
  t.ok((await c.query('SELECT ctid, xmin FROM ev LIMIT 1')).rows.length, 'reads may name system columns')
})

t.test('triggers: deterministic ones run, per-backend ones are refused unless allowed', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query("INSERT INTO shouted VALUES (1, 'quiet')")
  t.same((await c.query('SELECT body FROM shouted')).rows, [{ body: 'QUIET' }])
  const e = await failure(c.query("INSERT INTO volatile_trg VALUES (1, 'x')"))
  t.equal(e?.code, '0A000')
  t.match(e?.message ?? '', /"volatile_trg".*"stamp_refused".*stamp\(\).*now\(\)/)
  t.match(e?.hint ?? '', /determinism\.allowTriggers/)
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM volatile_trg')
  t.same(
    per.map((r) => r[0].n),
    [0, 0, 0],
    'nothing was written',
  )
  await c.query("INSERT INTO allowed_trg VALUES (1, 'x')")
  const bodies = await onEachBackend<{ body: string }>(stack, 'SELECT body FROM allowed_trg')
  t.ok(
    bodies.every((b) => b[0].body.startsWith('x at ')),
    "an allowed trigger runs (its values are the backends' own, as configured)",
  )
  await c.query('DROP TABLE allowed_trg') // its rows differ per backend, as the setting accepts
})

t.test('DDL keeps its expressions: a column default stays now(), not the time of the CREATE', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE later (id int PRIMARY KEY, at timestamptz DEFAULT now())')
  const def = await onEachBackend<{ d: string }>(stack, "SELECT pg_get_expr(adbin, adrelid) AS d FROM pg_attrdef WHERE adrelid = 'later'::regclass")
  t.same(
    def.map((r) => r[0].d),
    ['now()', 'now()', 'now()'],
  )
  const add = await failure(c.query('ALTER TABLE later ADD COLUMN tok uuid DEFAULT gen_random_uuid()'))
  t.equal(add?.code, '0A000', 'ADD COLUMN with a volatile default would fill existing rows per backend')
  t.match(add?.hint ?? '', /without a default/)
  await c.query('ALTER TABLE later ADD COLUMN tok uuid, ALTER COLUMN tok SET DEFAULT gen_random_uuid()')
  await c.query('INSERT INTO later (id) VALUES (1)')
  const mv = await failure(c.query('CREATE MATERIALIZED VIEW mv AS SELECT id, now() AS seen FROM later'))
  t.equal(mv?.code, '0A000', 'a materialized view calling now() would differ at every REFRESH')
  await assertIdentical(t, stack)
})

t.test('a table created inside a transaction: its volatile defaults are known once the transaction commits', async (t) => {
  const c = await client(stack)
  const other = await client(stack)
  t.teardown(() => Promise.all([c.end(), other.end()]))
  await c.query('BEGIN')
  await c.query('CREATE TABLE in_tx (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), u uuid NOT NULL DEFAULT gen_random_uuid())')
  // Another session's batch reloads the catalog while the CREATE is not committed yet (it cannot see it).
  await other.query('INSERT INTO ev (body) VALUES ($1)', ['catalog reload before the commit'])
  await c.query('COMMIT')
  const r = await c.query('INSERT INTO in_tx (id) VALUES (1) RETURNING at, u')
  t.equal(r.rowCount, 1, 'the RETURNING rows agreed on every backend')
  await other.query('INSERT INTO in_tx (id) VALUES (2)')
  const per = await onEachBackend<{ id: number; at: Date; u: string }>(stack, 'SELECT id, at, u::text FROM in_tx ORDER BY id')
  t.same(per[1], per[0], 'pg2 has the same defaults as pg1')
  t.same(per[2], per[0], 'pg3 too')
})

t.test('a migration creating a table and filling it in one transaction: its volatile defaults are made explicit', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('BEGIN')
  await c.query('CREATE TABLE mig (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), u uuid NOT NULL DEFAULT gen_random_uuid(), note text)')
  await c.query("INSERT INTO mig (id, note) VALUES (1, 'simple'), (2, 'two rows')")
  const r = await c.query('INSERT INTO mig (id, note) VALUES ($1, $2) RETURNING u, at = now() AS same', [3, 'extended'])
  t.equal(r.rows[0].same, true, 'DEFAULT now() is the transaction time, and RETURNING agreed on every backend')
  await c.query('ALTER TABLE mig ALTER COLUMN note SET DEFAULT gen_random_uuid()::text')
  const n = await c.query('INSERT INTO mig (id) VALUES (4) RETURNING note')
  t.match(n.rows[0].note, /^[0-9a-f-]{36}$/, 'a default set by ALTER in the same transaction is filled in too (RETURNING agreed)')
  await c.query('SAVEPOINT s1')
  await c.query('CREATE TABLE mig2 (id int PRIMARY KEY, at timestamptz DEFAULT now())')
  await c.query('ROLLBACK TO SAVEPOINT s1')
  await t.rejects(c.query('INSERT INTO mig2 (id) VALUES (1)'), { code: '42P01' }, 'the table rolled back to the savepoint is gone')
  await c.query('ROLLBACK')
  await c.query('BEGIN')
  await c.query('CREATE TABLE mig (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), u uuid NOT NULL DEFAULT gen_random_uuid(), note text)')
  await c.query("INSERT INTO mig (id, note) VALUES (1, 'simple'), (2, 'two rows')")
  await c.query('INSERT INTO mig (id, note) VALUES ($1, $2)', [3, 'extended'])
  await c.query('COMMIT')
  const per = await onEachBackend<{ id: number; at: Date; u: string }>(stack, 'SELECT id, at, u::text FROM mig ORDER BY id')
  t.equal(per[0].length, 3)
  t.same(per[1], per[0], 'pg2 has the same defaults as pg1')
  t.same(per[2], per[0], 'pg3 too')
  await assertIdentical(t, stack)
})

t.test("RETURNING rows are compared: a backend changed behind pgraid's back is caught and taken out", async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE ret (id int PRIMARY KEY, v int)')
  await c.query('INSERT INTO ret VALUES (1, 10), (2, 20)')
  const direct = await stack.cluster.backends[2]!.client()
  await direct.query('UPDATE ret SET v = 99 WHERE id = 2')
  await direct.end()
  // Same row count, different RETURNING rows: the majority (pg1, pg2) answers, pg3 is out.
  const r = await c.query('UPDATE ret SET v = v + 1 RETURNING v')
  t.same(
    r.rows.map((x) => x.v).sort((a, b) => a - b),
    [11, 21],
  )
  t.equal(stack.proxy.context.states.list[2]!.state, 'inconsistent')
  t.match(stack.proxy.context.states.list[2]!.reason ?? '', /pg3 answered/)
})
