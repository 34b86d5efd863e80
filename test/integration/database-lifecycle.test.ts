// Databases come and go through pgraid (issue 22): CREATE, DROP (with and
// without FORCE), RENAME and CREATE ... TEMPLATE keep the recovery log, the
// backends' states and every backend right. A broker's operator drops and
// re-creates its database between runs; tools use DROP ... WITH (FORCE).

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
]
const stack = await stackFor(t, { config: { users: USERS } })
const inService = () => stack.proxy.context.states.list.map((b) => `${b.name}:${b.state}`)
const ALL_IN = ['pg1:enabled', 'pg2:enabled', 'pg3:enabled']
const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? 'none',
  )

/** Log rows of `database` on each backend, read directly. */
const logRows = async (database: string) => (await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM pgraid.log', database)).map((r) => r[0]!.n)

t.test('drop and re-create a database 20 times, writing in between: each new database is logged and replicated', async (t) => {
  const ctl = await client(stack)
  t.teardown(() => ctl.end())
  for (let round = 0; round < 20; round++) {
    await ctl.query('DROP DATABASE IF EXISTS broker')
    await ctl.query('CREATE DATABASE broker')
    const c = await client(stack, { database: 'broker' })
    await c.query('CREATE TABLE msgs (id bigserial PRIMARY KEY, body text, at timestamptz DEFAULT now())')
    for (let i = 0; i < 5; i++) await c.query('INSERT INTO msgs (body) VALUES ($1)', [`round ${round} message ${i}`])
    await c.query('DELETE FROM msgs WHERE id = 1')
    await c.end()
    const rows = await logRows('broker')
    if (rows.some((n) => n < 7) || new Set(rows).size !== 1) {
      t.fail(`round ${round}: the new database's writes are not all logged everywhere: ${rows}`)
      break
    }
  }
  t.same(inService(), ALL_IN, 'no backend out')
  await assertIdentical(t, stack, 'broker')
  await assertIdentical(t, stack)
})

t.test('DROP DATABASE ... WITH (FORCE): its clients get 57P01, no backend out, other databases untouched', async (t) => {
  const ctl = await client(stack)
  const other = await client(stack)
  t.teardown(() => Promise.all([ctl.end(), other.end()]))
  await ctl.query('CREATE DATABASE doomed')
  const users: pg.Client[] = []
  const ended: string[] = []
  for (let i = 0; i < 3; i++) {
    const c = await client(stack, { database: 'doomed' })
    let first = true
    c.on('error', (e: Error & { code?: string }) => {
      // node-postgres reports the server's FATAL, then the closed connection: the first is the answer.
      if (first) ended.push(e.code ?? e.message)
      first = false
    })
    users.push(c)
  }
  await users[0]!.query('CREATE TABLE d (x int)')
  await users[1]!.query('BEGIN')
  await users[1]!.query('INSERT INTO d VALUES (1)')
  await other.query('CREATE TABLE IF NOT EXISTS survivor (x int)')
  t.equal(await codeOf(ctl.query('DROP DATABASE doomed')), '55006', 'without FORCE: 55006 while clients are connected, as on PostgreSQL')
  await ctl.query('DROP DATABASE doomed WITH (FORCE)')
  for (let i = 0; i < 100 && ended.length < 3; i++) await new Promise((r) => setTimeout(r, 50))
  t.same(ended.sort(), ['57P01', '57P01', '57P01'], 'each of its clients got 57P01')
  t.same(inService(), ALL_IN, 'no backend out')
  await other.query('INSERT INTO survivor VALUES (1)')
  t.pass('a session on another database went on')
  const exists = await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_database WHERE datname = 'doomed'")
  t.same(exists, [[{ n: 0 }], [{ n: 0 }], [{ n: 0 }]], 'gone everywhere')
  for (const u of users) await u.end().catch(() => {})
  await assertIdentical(t, stack)
})

t.test('ALTER DATABASE ... RENAME with a client on another database: the renamed one is logged', async (t) => {
  const ctl = await client(stack)
  t.teardown(() => ctl.end())
  await ctl.query('CREATE DATABASE before_name')
  const c = await client(stack, { database: 'before_name' })
  await c.query('CREATE TABLE r (x int)')
  await c.query('INSERT INTO r VALUES (1)')
  await c.end()
  await ctl.query('ALTER DATABASE before_name RENAME TO after_name')
  const d = await client(stack, { database: 'after_name' })
  await d.query('INSERT INTO r VALUES (2)')
  await d.end()
  const rows = await logRows('after_name')
  t.ok(
    rows.every((n) => n === rows[0] && n >= 3),
    `the renamed database's log goes on everywhere (${rows})`,
  )
  t.same(inService(), ALL_IN, 'no backend out')
  await assertIdentical(t, stack, 'after_name')
})

t.test("CREATE DATABASE ... TEMPLATE of a logged database: the copy is logged from the template's log on", async (t) => {
  const ctl = await client(stack)
  t.teardown(() => ctl.end())
  await ctl.query('CREATE DATABASE tmpl_src')
  const c = await client(stack, { database: 'tmpl_src' })
  await c.query('CREATE TABLE tt (x int)')
  await c.query('INSERT INTO tt VALUES (1)')
  await c.end()
  await ctl.query('CREATE DATABASE tmpl_copy TEMPLATE tmpl_src')
  const d = await client(stack, { database: 'tmpl_copy' })
  await d.query('INSERT INTO tt VALUES (2)')
  await d.end()
  const rows = await logRows('tmpl_copy')
  t.ok(
    rows.every((n) => n === rows[0] && n >= 3),
    `the copy's log holds the template's records and its own (${rows})`,
  )
  t.same(inService(), ALL_IN, 'no backend out')
  await assertIdentical(t, stack, 'tmpl_copy')
})

t.test('pgraid.backend_state agrees on every backend in service after a takeout and an enable', async (t) => {
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  await admin.query('DISABLE pg2')
  await admin.query('RESYNC pg2')
  const views = await onEachBackend<{ v: string }>(stack, "SELECT string_agg(backend || ':' || state, ',' ORDER BY backend) AS v FROM pgraid.backend_state")
  t.same(
    views.map((r) => r[0]!.v),
    Array(3).fill('pg1:enabled,pg2:enabled,pg3:enabled'),
    'one view everywhere',
  )
  t.same(inService(), ALL_IN)
})

t.test('databases created, dropped and re-created while a backend was out: a resync brings it to the same databases', async (t) => {
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  const ctl = await client(stack)
  t.teardown(() => Promise.all([admin.end(), ctl.end()]))
  await ctl.query('CREATE DATABASE gone_while_out')
  await ctl.query('CREATE DATABASE again_while_out')
  for (const db of ['gone_while_out', 'again_while_out']) {
    const c = await client(stack, { database: db })
    await c.query('CREATE TABLE old_t (x int)')
    await c.query('INSERT INTO old_t VALUES (1)')
    await c.end()
  }
  await admin.query('DISABLE pg2')
  await ctl.query('CREATE DATABASE made_while_out')
  await ctl.query('DROP DATABASE gone_while_out')
  await ctl.query('DROP DATABASE again_while_out')
  await ctl.query('CREATE DATABASE again_while_out')
  for (const db of ['made_while_out', 'again_while_out']) {
    const c = await client(stack, { database: db })
    await c.query('CREATE TABLE new_t (id serial PRIMARY KEY, v text DEFAULT md5(random()::text))')
    for (let i = 0; i < 5; i++) await c.query('INSERT INTO new_t DEFAULT VALUES')
    await c.end()
  }
  const r = await admin.query('RESYNC pg2').then(
    () => null,
    (e: Error) => e.message,
  )
  t.equal(r, null, 'RESYNC pg2 succeeded')
  t.same(inService(), ALL_IN, 'pg2 back in service')
  const dbs = await onEachBackend<{ d: string }>(stack, "SELECT string_agg(datname, ',' ORDER BY datname) AS d FROM pg_database WHERE datname LIKE '%while_out'")
  t.same(
    dbs.map((x) => x[0]!.d),
    Array(3).fill('again_while_out,made_while_out'),
    'the same databases everywhere',
  )
  await assertIdentical(t, stack, 'made_while_out')
  await assertIdentical(t, stack, 'again_while_out')
  const tables = await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'old_t'", 'again_while_out')
  t.same(tables, [[{ n: 0 }], [{ n: 0 }], [{ n: 0 }]], 'the re-created database is the new one on pg2 too')
})

t.test('a database dropped while a backend was out: CLONE drops it there; VERIFY then finds the same databases', async (t) => {
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  const ctl = await client(stack)
  t.teardown(() => Promise.all([admin.end(), ctl.end()]))
  await ctl.query('CREATE DATABASE dropped_before_clone')
  const c = await client(stack, { database: 'dropped_before_clone' })
  await c.query('CREATE TABLE x (n int)')
  await c.end()
  await admin.query('DISABLE pg3')
  await ctl.query('DROP DATABASE dropped_before_clone')
  await admin.query('CLONE pg3')
  t.same(inService(), ALL_IN, 'pg3 back in service')
  const there = await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_database WHERE datname = 'dropped_before_clone'")
  t.same(there, [[{ n: 0 }], [{ n: 0 }], [{ n: 0 }]], 'gone on pg3 too')
  const v = await admin.query('VERIFY')
  t.same(v.rows, [], 'VERIFY finds no difference, databases included')
})
