// Invariant 5: a write whose result would differ per backend is refused with
// 0A000 naming the function and the setting, never sent to diverge; reads
// may call anything; determinism.allowFunctions lets a user accept it.

import t from 'tap'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const stack = await stackFor(t, { config: { determinism: { allowFunctions: ['random'] } } })
const setup = await client(stack)
await setup.query('CREATE TABLE det (id int PRIMARY KEY, u uuid, f float8, pid int)')
await setup.end()

t.test('a write calling gen_random_uuid() or pg_backend_pid() where pgraid cannot supply the value is refused with 0A000', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const err = await c.query('UPDATE det SET u = gen_random_uuid()').then(
    () => null,
    (e: { code?: string; message: string; hint?: string }) => e,
  )
  t.equal(err?.code, '0A000')
  t.match(err?.message ?? '', /gen_random_uuid\(\)/)
  t.match(err?.hint ?? '', /determinism\.allowFunctions/)
  await t.rejects(c.query('UPDATE det SET pid = pg_backend_pid()'), { code: '0A000' })
  await c.query('BEGIN')
  await t.rejects(c.query('INSERT INTO det (id, pid) VALUES ($1, txid_current()::int)', [2]), { code: '0A000' })
  await t.rejects(c.query('SELECT 1'), { code: '25P02' }, 'the refusal fails the transaction like any error')
  await c.query('ROLLBACK')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM det')
  t.same(
    per.map((r) => r[0].n),
    [0, 0, 0],
    'nothing was written anywhere',
  )
})

t.test('reads may call them: they run on one backend', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const r = await c.query('SELECT gen_random_uuid() AS u, random() AS f, pg_backend_pid() AS p')
  t.equal(r.rows.length, 1)
  t.match(r.rows[0].u, /^[0-9a-f-]{36}$/)
})

t.test('a function listed in determinism.allowFunctions is accepted', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('INSERT INTO det (id, f) VALUES (10, 0.5), (11, 0.25)')
  await c.query('UPDATE det SET f = f WHERE random() >= 0')
  t.equal((await c.query('SELECT count(*)::int AS n FROM det')).rows[0].n, 2)
  await assertIdentical(t, stack)
})

t.test('random() and gen_random_uuid() in INSERT ... VALUES get one pgraid value per call site and row', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE rnd (id int PRIMARY KEY, u uuid NOT NULL, f float8 NOT NULL)')
  await c.query('INSERT INTO rnd VALUES (1, gen_random_uuid(), random()), (2, gen_random_uuid(), random())')
  for (let i = 3; i < 8; i++)
    await c.query({ name: 'ins_rnd', text: 'INSERT INTO rnd VALUES ($1, uuid_generate_v4(), random())', values: [i] }).catch(async (e: { code?: string }) => {
      // uuid_generate_v4 needs the uuid-ossp extension; without it PostgreSQL itself says 42883.
      t.equal(e.code, '42883')
      await c.query({ name: `ins_rnd_${i}`, text: 'INSERT INTO rnd VALUES ($1, gen_random_uuid(), random())', values: [i] })
    })
  const rows = (await c.query('SELECT count(DISTINCT u)::int AS us, count(DISTINCT f)::int AS fs, min(f) >= 0 AND max(f) < 1 AS range FROM rnd')).rows[0]
  t.same(rows, { us: 7, fs: 7, range: true }, 'a fresh value for every row and execution')
  await t.rejects(c.query('INSERT INTO rnd SELECT 100, gen_random_uuid(), 0'), { code: '0A000' }, 'INSERT ... SELECT: row count unknown, refused')
  await t.rejects(c.query('INSERT INTO rnd VALUES (101, (SELECT gen_random_uuid()), 0)'), { code: '0A000' }, 'inside a subquery: refused')
  await assertIdentical(t, stack)
})
