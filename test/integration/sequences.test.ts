// Sequences: inserts that draw from the same sequence (serial or identity
// columns) are ordered, so every backend hands out the same values; inserts
// into tables with different sequences do not wait for each other; an
// explicit nextval() meets all of them.

import t from 'tap'
import { stackFor, client, assertIdentical, bounded } from '../harness/stack.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE s1 (id serial PRIMARY KEY, v text); CREATE TABLE s2 (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)')
await setup.end()
const locks = () => stack.proxy.context.locks.snapshot()

t.test('different sequences: no waiting; same sequence: ordered', async (t) => {
  const a = await client(stack)
  const b = await client(stack)
  const c = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end(), c.end()]))
  await a.query('BEGIN')
  await a.query("INSERT INTO s1 (v) VALUES ('a')")
  t.ok(
    locks().some((l) => l.resource.startsWith('seq:s1_id_seq') && l.holders.length),
    'the serial sequence is locked by name',
  )
  await bounded(b.query("INSERT INTO s2 (v) VALUES ('b')"), 10_000, 'insert drawing from another sequence')
  let done = false
  const pc = c.query("INSERT INTO s1 (v) VALUES ('c')").then(() => (done = true))
  // It waits on the first conflicting lock in pgraid's order (the table, then the sequence).
  for (let i = 0; i < 100 && !locks().some((l) => l.waiters.length); i++) await new Promise((r) => setTimeout(r, 20))
  t.ok(!done && locks().some((l) => l.waiters.length), 'a second user of the same sequence waits')
  await a.query('COMMIT')
  await bounded(pc, 10_000, 'second insert into s1')
  await assertIdentical(t, stack)
})

t.test('concurrent inserts into a serial table get the same ids everywhere', async (t) => {
  await Promise.all(
    Array.from({ length: 4 }, async (_, w) => {
      const c = await client(stack)
      for (let i = 0; i < 25; i++) await c.query('INSERT INTO s1 (v) VALUES ($1)', [`w${w}-${i}`])
      await c.end()
    }),
  )
  const c = await client(stack)
  t.teardown(() => c.end())
  const n = await c.query('SELECT nextval($1::regclass) AS n', ['s1_id_seq'])
  t.ok(Number(n.rows[0].n) > 100, 'explicit nextval() works and is replicated')
  await c.query("INSERT INTO s1 (v) VALUES ('after nextval')")
  await assertIdentical(t, stack)
})

t.test('two tables drawing from one sequence meet on it', async (t) => {
  const c = await client(stack)
  await c.query(
    "CREATE SEQUENCE shared_seq; CREATE TABLE sa (id bigint PRIMARY KEY DEFAULT nextval('shared_seq'), v text); CREATE TABLE sb (id bigint PRIMARY KEY DEFAULT nextval('shared_seq'), v text)",
  )
  await c.end()
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  await a.query('BEGIN')
  await a.query("INSERT INTO sa (v) VALUES ('a')")
  let done = false
  const pb = b.query("INSERT INTO sb (v) VALUES ('b')").then(() => (done = true))
  for (let i = 0; i < 100 && !locks().some((l) => l.resource === 'seq:shared_seq' && l.waiters.length); i++) await new Promise((r) => setTimeout(r, 20))
  t.ok(!done && locks().some((l) => l.resource === 'seq:shared_seq' && l.waiters.length), 'the insert into the other table waits on the shared sequence')
  await a.query('COMMIT')
  await bounded(pb, 10_000, 'insert into sb')
  await assertIdentical(t, stack)
})

t.test("explicit nextval('name') / setval() lock that sequence only", async (t) => {
  const a = await client(stack)
  const b = await client(stack)
  const c = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end(), c.end()]))
  await a.query('BEGIN')
  await a.query("SELECT nextval('s1_id_seq')")
  t.ok(
    locks().some((l) => l.resource === 'seq:s1_id_seq' && l.holders.length),
    'nextval() names its sequence in the lock',
  )
  await bounded(b.query("SELECT nextval('shared_seq'), setval('shared_seq', 500)"), 10_000, 'nextval on another sequence while s1_id_seq is held')
  let done = false
  const pc = c.query("INSERT INTO s1 (v) VALUES ('waits for the explicit nextval')").then(() => (done = true))
  for (let i = 0; i < 100 && !locks().some((l) => l.resource === 'seq:s1_id_seq' && l.waiters.length); i++) await new Promise((r) => setTimeout(r, 20))
  t.ok(!done && locks().some((l) => l.resource === 'seq:s1_id_seq' && l.waiters.length), 'an insert drawing from the same sequence waits')
  await a.query('COMMIT')
  await bounded(pc, 10_000, 'insert after the explicit nextval committed')
  const r = await b.query("INSERT INTO sb (v) VALUES ('after setval') RETURNING id")
  t.equal(Number(r.rows[0].id), 501, 'setval() took effect in the same order everywhere')
  await assertIdentical(t, stack)
})

t.test("currval() and lastval() answer the session's own values, the same on every backend", async (t) => {
  const a = await client(stack)
  t.teardown(() => a.end())
  const ins = await a.query("INSERT INTO s1 (v) VALUES ('cur') RETURNING id")
  const id = Number(ins.rows[0].id)
  const cur = await a.query("SELECT currval('s1_id_seq') AS c, lastval() AS l")
  t.same([Number(cur.rows[0].c), Number(cur.rows[0].l)], [id, id])
  // In a write, each backend evaluates currval() itself: equal values, so the rows agree.
  await a.query("INSERT INTO s2 (v) SELECT 'copy of ' || currval('s1_id_seq')")
  await assertIdentical(t, stack)
  t.notOk(
    locks().some((l) => l.resource === 'fn:currval' || l.resource === 'fn:lastval'),
    'currval/lastval take no lock',
  )
})

t.test('ALTER SEQUENCE ... RESTART is ordered with the inserts drawing from it', async (t) => {
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  await a.query('BEGIN')
  await a.query("INSERT INTO sa (v) VALUES ('before restart')")
  let done = false
  const pb = b.query('ALTER SEQUENCE shared_seq RESTART WITH 9000').then(() => (done = true))
  for (let i = 0; i < 100 && !locks().some((l) => l.waiters.length); i++) await new Promise((r) => setTimeout(r, 20))
  t.notOk(done, 'the restart waits for the open insert')
  await a.query('COMMIT')
  await bounded(pb, 10_000, 'ALTER SEQUENCE after the insert committed')
  const r = await a.query("INSERT INTO sa (v) VALUES ('after restart') RETURNING id")
  t.equal(Number(r.rows[0].id), 9000)
  await assertIdentical(t, stack)
})
