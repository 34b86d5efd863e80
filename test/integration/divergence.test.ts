// Divergence (invariant 6, issue 5 item 5): when backends disagree about a
// write (row counts, RETURNING rows, an error on one only), the majority's
// answer goes to the client and the minority is taken out of service as
// `inconsistent`; with no majority the transaction fails everywhere (XX000).

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, bounded } from '../harness/stack.ts'
import type { Stack } from '../harness/stack.ts'

async function direct(stack: Stack, i: number, sql: string): Promise<void> {
  const c = await stack.cluster.backends[i]!.client()
  try {
    await c.query(sql)
  } finally {
    await c.end()
  }
}

const setup = async (stack: Stack) => {
  const c = await client(stack)
  await c.query('CREATE TABLE d (id int PRIMARY KEY, v int)')
  await c.query('INSERT INTO d VALUES (1, 1), (2, 2), (3, 3)')
  return c
}

t.test('row counts differ: the minority is taken out, the client gets the majority answer', async (t) => {
  const stack = await stackFor(t)
  const c = await setup(stack)
  t.teardown(() => c.end())
  await direct(stack, 1, 'DELETE FROM d WHERE id = 3')
  const r = await c.query('UPDATE d SET v = v + 1 WHERE id >= 2')
  t.equal(r.rowCount, 2, "pg1 and pg3 agree on 2 rows; pg2's 1 is outvoted")
  const pg2 = stack.proxy.context.states.list[1]!
  t.equal(pg2.state, 'inconsistent')
  t.match(pg2.reason ?? '', /UPDATE 1/)
  const again = await c.query('UPDATE d SET v = v + 1 WHERE id = 3')
  t.equal(again.rowCount, 1, 'the session goes on with the others')
  const fresh = await client(stack)
  t.equal((await fresh.query('SELECT count(*)::int AS n FROM d')).rows[0].n, 3, 'new sessions do not use the inconsistent backend')
  await fresh.end()
})

t.test('a unique violation on one backend only: it is the minority', async (t) => {
  const stack = await stackFor(t)
  const c = await setup(stack)
  t.teardown(() => c.end())
  await direct(stack, 0, 'INSERT INTO d VALUES (10, 0)')
  await c.query('BEGIN')
  const r = await c.query('INSERT INTO d VALUES (10, 10)')
  t.equal(r.rowCount, 1, 'the majority inserted')
  await c.query('COMMIT')
  t.equal(stack.proxy.context.states.list[0]!.state, 'inconsistent')
  t.match(stack.proxy.context.states.list[0]!.reason ?? '', /23505/)
})

t.test('no majority (one against one): the transaction fails everywhere with XX000', async (t) => {
  const stack = await stackFor(t)
  const c = await setup(stack)
  t.teardown(() => c.end())
  await stack.cluster.backends[2]!.kill()
  await c.query('SELECT 1').catch(() => {}) // the session notices pg3 is gone
  await direct(stack, 1, 'DELETE FROM d WHERE id = 2')
  await c.query('BEGIN')
  const e = await c.query('UPDATE d SET v = 0 WHERE id = 2').then(
    () => null,
    (err: { code?: string; detail?: string }) => err,
  )
  t.equal(e?.code, 'XX000', 'nothing silently picked')
  t.match(e?.detail ?? '', /pg1 answered "UPDATE 1".*pg2 answered "UPDATE 0"/)
  await c.query('ROLLBACK')
  const pg1 = await stack.cluster.backends[0]!.client()
  t.equal((await pg1.query('SELECT v FROM d WHERE id = 2')).rows[0].v, 2, 'rolled back on pg1')
  await pg1.end()
})

t.test('no majority with pg2 out: the detail names pg1 and pg3 (backends by index, not by link position)', async (t) => {
  const stack = await stackFor(t)
  const c = await setup(stack)
  t.teardown(() => c.end())
  await stack.cluster.backends[1]!.kill()
  await c.query('SELECT 1').catch(() => {}) // the session notices pg2 is gone
  await direct(stack, 2, 'DELETE FROM d WHERE id = 2')
  await c.query('BEGIN')
  const e = await c.query('UPDATE d SET v = 0 WHERE id = 2').then(
    () => null,
    (err: { code?: string; detail?: string }) => err,
  )
  t.equal(e?.code, 'XX000')
  t.match(e?.detail ?? '', /pg1 answered "UPDATE 1".*pg3 answered "UPDATE 0"/, 'pg3 is named pg3 (it was "2")')
  await c.query('ROLLBACK')
})

t.test('two backends in service: an autocommit write they disagree on is rolled back on both (XX000)', async (t) => {
  const stack = await stackFor(t)
  const c = await setup(stack)
  t.teardown(() => c.end())
  await stack.cluster.backends[2]!.kill()
  await c.query('SELECT 1').catch(() => {})
  // Ordinary autocommit writes still work (and are logged) with an even number of backends.
  const ok = await c.query('UPDATE d SET v = v + 10 WHERE id = 1')
  t.equal(ok.rowCount, 1)
  const prepared = await c.query('UPDATE d SET v = v + $1 WHERE id = $2', [10, 3])
  t.equal(prepared.rowCount, 1)
  const dup = await c.query('INSERT INTO d VALUES (1, 1)').then(
    () => null,
    (e: { code?: string }) => e,
  )
  t.equal(dup?.code, '23505', 'an error both agree on reaches the client as usual')
  t.equal((await c.query('SELECT v FROM d WHERE id = 1')).rows[0].v, 11, 'and the session goes on')
  await direct(stack, 1, 'DELETE FROM d WHERE id = 2')
  const e = await c.query('UPDATE d SET v = 0 WHERE id = 2').then(
    () => null,
    (err: { code?: string }) => err,
  )
  t.equal(e?.code, 'XX000', 'one against one: nothing silently picked')
  const pg1 = await stack.cluster.backends[0]!.client()
  t.equal((await pg1.query('SELECT v FROM d WHERE id = 2')).rows[0].v, 2, 'rolled back on pg1: the autocommit write did not stay committed')
  const logs = (await pg1.query("SELECT count(*)::int AS n FROM pgraid.log WHERE record::text LIKE '%v = 0%'")).rows[0].n
  await pg1.end()
  t.equal(logs, 0, 'no log record for it')
  const d2 = await stack.cluster.backends[1]!.client()
  const l1 = (await d2.query('SELECT lsn FROM pgraid.log ORDER BY lsn')).rows.map((r) => r.lsn)
  await d2.end()
  const d1 = await stack.cluster.backends[0]!.client()
  const l0 = (await d1.query('SELECT lsn FROM pgraid.log ORDER BY lsn')).rows.map((r) => r.lsn)
  await d1.end()
  t.same(l1, l0, 'the two logs agree')
})

t.test('a statement prepared in the batch that took a backend out is prepared there again once it is back', async (t) => {
  // The backend answered ParseComplete, then was taken out in the same batch: the session must not
  // count the statement as prepared on it, or its next Execute there gets 26000 after a CLONE.
  const users = [
    { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
    { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
  ]
  const stack = await stackFor(t, { config: { users } })
  const c = await setup(stack)
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => Promise.all([c.end(), admin.end()]))
  await direct(stack, 1, 'INSERT INTO d VALUES (10, 0)')
  const insert = (id: number) => c.query({ name: 'ins', text: 'INSERT INTO d VALUES ($1, $1)', values: [id] })
  t.equal((await insert(10)).rowCount, 1, 'the majority inserted; Parse, Bind, Execute went in one batch')
  t.equal(stack.proxy.context.states.list[1]!.state, 'inconsistent', 'pg2 (23505) is outvoted after its ParseComplete')
  await bounded(admin.query('CLONE pg2'), 120_000, 'CLONE pg2')
  t.equal(stack.proxy.context.states.list[1]!.state, 'enabled')
  // node-postgres sends Bind/Execute only: the statement is known to it.
  t.equal((await insert(11)).rowCount, 1, 'the same session executes its statement with pg2 attached again')
  t.equal((await insert(12)).rowCount, 1)
  t.equal(stack.proxy.context.states.list[1]!.state, 'enabled', 'pg2 got the Parse again and stays in service')
  const fresh = await client(stack)
  t.same(
    (await fresh.query('SELECT id FROM d WHERE id >= 10 ORDER BY id')).rows.map((r) => r.id),
    [10, 11, 12],
  )
  await fresh.end()
  await assertIdentical(t, stack)
})
