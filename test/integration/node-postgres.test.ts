// node-postgres through pgraid: simple and extended queries, transactions,
// prepared statements, errors, cursors (row limits), COPY both ways,
// LISTEN/NOTIFY and cancel; every backend ends identical.

import t from 'tap'
import pg from 'pg'
import Cursor from 'pg-cursor'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import { pipeline } from 'node:stream/promises'
import { Readable, Writable } from 'node:stream'
import { stackFor, client, assertIdentical, onEachBackend, cancel } from '../harness/stack.ts'

const stack = await stackFor(t)

t.test('simple and extended queries replicate every write', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int DEFAULT 0)')
  await c.query("INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2)")
  const ins = await c.query('INSERT INTO items (id, name, qty) VALUES ($1, $2, $3) RETURNING id, name', [3, 'three', 3])
  t.same(ins.rows, [{ id: 3, name: 'three' }])
  const upd = await c.query('UPDATE items SET qty = qty + 10 WHERE id <= $1', [2])
  t.equal(upd.rowCount, 2)
  const sel = await c.query('SELECT id, qty FROM items ORDER BY id')
  t.same(sel.rows, [
    { id: 1, qty: 11 },
    { id: 2, qty: 12 },
    { id: 3, qty: 3 },
  ])
  const per = await onEachBackend<{ n: string }>(stack, 'SELECT sum(qty)::text AS n FROM items')
  t.same(
    per.map((r) => r[0].n),
    ['26', '26', '26'],
    'every backend has every write',
  )
  await assertIdentical(t, stack)
})

t.test('multi-statement simple query and an error in the middle', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const res = (await c.query('CREATE TABLE ms (a int); INSERT INTO ms VALUES (1); SELECT count(*)::int AS n FROM ms')) as unknown as pg.QueryResult[]
  t.equal(res.length, 3)
  t.same(res[2].rows, [{ n: 1 }])
  await t.rejects(c.query('INSERT INTO ms VALUES (2); SELECT 1/0; INSERT INTO ms VALUES (3)'), { code: '22012' })
  const n = await c.query('SELECT count(*)::int AS n FROM ms')
  t.same(n.rows, [{ n: 1 }], 'an implicit transaction rolls back as a whole')
  await assertIdentical(t, stack)
})

t.test('transactions: commit, rollback, savepoints, failed state', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE tx (id int PRIMARY KEY, v text)')
  await c.query('BEGIN')
  await c.query("INSERT INTO tx VALUES (1, 'a')")
  await c.query('SAVEPOINT s1')
  await c.query("INSERT INTO tx VALUES (2, 'b')")
  await c.query('ROLLBACK TO SAVEPOINT s1')
  await c.query("INSERT INTO tx VALUES (3, 'c')")
  await c.query('COMMIT')
  t.same((await c.query('SELECT id FROM tx ORDER BY id')).rows, [{ id: 1 }, { id: 3 }])

  await c.query('BEGIN')
  await c.query("INSERT INTO tx VALUES (4, 'd')")
  await t.rejects(c.query("INSERT INTO tx VALUES (1, 'dup')"), { code: '23505' })
  await t.rejects(c.query('SELECT 1'), { code: '25P02' }, 'aborted transaction refuses statements')
  const r = await c.query('COMMIT')
  t.equal(r.command, 'ROLLBACK', 'COMMIT of a failed transaction rolls back')
  t.same((await c.query('SELECT count(*)::int AS n FROM tx')).rows, [{ n: 2 }])

  // A read that fails on the one backend it ran on must fail the transaction everywhere.
  await c.query('BEGIN')
  await c.query("INSERT INTO tx VALUES (5, 'e')")
  await t.rejects(c.query('SELECT 1/0'), { code: '22012' })
  const r2 = await c.query('COMMIT')
  t.equal(r2.command, 'ROLLBACK')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM tx')
  t.same(
    per.map((x) => x[0].n),
    [2, 2, 2],
    'no backend committed the failed transaction',
  )
  await assertIdentical(t, stack)
})

t.test('named prepared statements used for reads and then for writes', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE prep (id int PRIMARY KEY, v int)')
  for (let i = 0; i < 20; i++) await c.query({ name: 'ins', text: 'INSERT INTO prep VALUES ($1, $2)', values: [i, i * 2] })
  for (let i = 0; i < 10; i++) {
    const r = await c.query({ name: 'get', text: 'SELECT v FROM prep WHERE id = $1', values: [i] })
    t.equal(r.rows[0].v, i * 2)
  }
  await c.query('BEGIN')
  await c.query({ name: 'get', text: 'SELECT v FROM prep WHERE id = $1', values: [1] })
  await c.query({ name: 'upd', text: 'UPDATE prep SET v = v + 1 WHERE id = $1', values: [1] })
  await c.query('COMMIT')
  t.same((await c.query('SELECT v FROM prep WHERE id = 1')).rows, [{ v: 3 }])
  await assertIdentical(t, stack)
})

t.test('cursor with row limits (portal suspended)', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 1000) g')
  await c.query('BEGIN')
  const cursor = c.query(new Cursor('SELECT id FROM big ORDER BY id'))
  let total = 0
  let batches = 0
  for (;;) {
    const rows = await cursor.read(100)
    if (!rows.length) break
    total += rows.length
    batches++
  }
  await cursor.close()
  await c.query('COMMIT')
  t.equal(total, 1000)
  t.equal(batches, 10)
  await assertIdentical(t, stack)
})

t.test('COPY FROM STDIN and COPY TO STDOUT', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE cp (id int PRIMARY KEY, v text)')
  const lines: string[] = []
  for (let i = 0; i < 5000; i++) lines.push(`${i}\tvalue ${i}\n`)
  await pipeline(Readable.from(lines), c.query(copyFrom('COPY cp FROM STDIN')))
  t.same((await c.query('SELECT count(*)::int AS n FROM cp')).rows, [{ n: 5000 }])
  let out = ''
  await pipeline(
    c.query(copyTo('COPY (SELECT * FROM cp ORDER BY id) TO STDOUT')),
    new Writable({
      write(chunk, _enc, cb) {
        out += chunk.toString()
        cb()
      },
    }),
  )
  t.equal(out, lines.join(''))
  await t.rejects(pipeline(Readable.from(['1\tdup\n']), c.query(copyFrom('COPY cp FROM STDIN'))), { code: '23505' })
  t.same((await c.query('SELECT 1 AS ok')).rows, [{ ok: 1 }], 'session usable after a failed COPY')
  await assertIdentical(t, stack)
})

t.test('LISTEN/NOTIFY delivers exactly one copy', async (t) => {
  const listener = await client(stack)
  const notifier = await client(stack)
  t.teardown(() => Promise.all([listener.end(), notifier.end()]))
  const got: string[] = []
  listener.on('notification', (n) => got.push(`${n.channel}:${n.payload}`))
  await listener.query('LISTEN chan')
  await notifier.query("NOTIFY chan, 'hello'")
  await notifier.query("SELECT pg_notify('chan', 'world')")
  await listener.query('SELECT 1') // let the notifications arrive
  const deadline = Date.now() + 5000
  while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  await new Promise((r) => setTimeout(r, 200))
  t.same(got, ['chan:hello', 'chan:world'])
})

t.test('cancel a running statement', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const running = c.query('SELECT pg_sleep(30)')
  await new Promise((r) => setTimeout(r, 300))
  const started = Date.now()
  await cancel(stack, c)
  await t.rejects(running, { code: '57014' })
  t.ok(Date.now() - started < 30000, 'the sleep was cut short')
  t.same((await c.query('SELECT 2 AS two')).rows, [{ two: 2 }])
})

t.test('a pg.Pool of 10 connections writing concurrently', async (t) => {
  const pool = new pg.Pool({ host: stack.host, port: stack.port, user: stack.user, password: stack.password, database: 'postgres', max: 10 })
  t.teardown(() => pool.end())
  await pool.query('CREATE TABLE pooled (id int PRIMARY KEY, worker int, n int)')
  await Promise.all(
    Array.from({ length: 10 }, async (_, w) => {
      for (let i = 0; i < 30; i++) {
        await pool.query('INSERT INTO pooled VALUES ($1, $2, $3)', [w * 1000 + i, w, i])
        if (i % 10 === 9) await pool.query('UPDATE pooled SET n = n + 1 WHERE worker = $1', [w])
      }
    }),
  )
  t.equal((await pool.query('SELECT count(*)::int AS n FROM pooled')).rows[0].n, 300)
  await assertIdentical(t, stack)
})
