// The client's own timeouts (issue 17, item 2): statement_timeout and
// lock_timeout also bound a wait for one of pgraid's locks (the statement has
// reached no backend yet, so no backend's timer runs), answered as PostgreSQL
// answers them; idle_in_transaction_session_timeout and transaction_timeout
// end the session on every backend alike. Whatever ends it, no backend
// leaves service and nothing of the transaction is committed anywhere.

import t from 'tap'
import type pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE ct (id int PRIMARY KEY, v int)')
await setup.query('INSERT INTO ct VALUES (1, 0), (2, 0)')
await setup.end()

const inService = () => stack.proxy.context.states.list.map((b) => b.state)
const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? 'none',
  )

/** Holds row 1 (pgraid's key lock and the backends' row lock) in an open transaction. */
async function holder(): Promise<pg.Client> {
  const h = await client(stack)
  await h.query('BEGIN')
  await h.query('UPDATE ct SET v = v + 1 WHERE id = 1')
  return h
}

t.test("a wait for a pgraid lock ends at the client's lock_timeout or statement_timeout", async (t) => {
  const h = await holder()
  const c = await client(stack)
  t.teardown(async () => {
    await c.end()
    await h.end()
  })
  await c.query("SET lock_timeout = '200ms'")
  t.equal(await codeOf(c.query('UPDATE ct SET v = 10 WHERE id = 1')), '55P03', 'lock_timeout: 55P03, as PostgreSQL')
  await c.query('RESET lock_timeout')
  await c.query("SET statement_timeout = '200ms'")
  t.equal(await codeOf(c.query('UPDATE ct SET v = 10 WHERE id = 1')), '57014', 'statement_timeout: 57014, as PostgreSQL')
  await c.query('RESET statement_timeout')
  await c.query('BEGIN')
  await c.query("SET LOCAL lock_timeout = '150ms'")
  t.equal(await codeOf(c.query('UPDATE ct SET v = 10 WHERE id = 1')), '55P03', 'SET LOCAL lock_timeout inside a transaction')
  t.equal(await codeOf(c.query('SELECT 1')), '25P02', 'the transaction has failed, as on PostgreSQL')
  await c.query('ROLLBACK')
  await h.query('COMMIT')
  // SET LOCAL ended with its transaction: the next wait is not bounded by it.
  const h2 = await holder()
  const waiting = c.query('UPDATE ct SET v = v + 10 WHERE id = 1')
  await new Promise((r) => setTimeout(r, 400))
  await h2.query('COMMIT')
  await h2.end()
  t.equal(await codeOf(waiting), 'ok', 'after the transaction, the wait is unbounded again')
  t.same(inService(), ['enabled', 'enabled', 'enabled'], 'no backend out')
  const v = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM ct WHERE id = 1')
  t.same(
    v.map((r) => r[0]!.v),
    [12, 12, 12],
    "the two holders' increments and the last update, everywhere",
  )
  await assertIdentical(t, stack)
})

t.test('idle_in_transaction_session_timeout set by the client ends the session everywhere', async (t) => {
  const c = await client(stack)
  const seen: string[] = []
  c.on('error', (e: Error & { code?: string }) => seen.push(e.code ?? e.message))
  await c.query("SET idle_in_transaction_session_timeout = '300ms'")
  await c.query('BEGIN')
  await c.query('UPDATE ct SET v = 1000 WHERE id = 2')
  for (let i = 0; i < 100 && !seen.length; i++) await new Promise((r) => setTimeout(r, 50))
  t.equal(seen[0], '25P03', "the client got PostgreSQL's idle-in-transaction error")
  await c.end().catch(() => {})
  t.same(inService(), ['enabled', 'enabled', 'enabled'], 'no backend out')
  const v = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM ct WHERE id = 2')
  t.same(
    v.map((r) => r[0]!.v),
    [0, 0, 0],
    'nothing committed',
  )
  await assertIdentical(t, stack)
})

t.test('a timeout stopping a query before its ROLLBACK on one backend only: one failed transaction everywhere, as on PostgreSQL', async (t) => {
  // The sleep is long on pg2 alone (its port), so its statement_timeout cuts the query there before
  // the ROLLBACK while the others roll back: the client must still be in a failed transaction, on
  // every backend (a late cancel landing on one backend's ROLLBACK leaves the same split).
  const slow = stack.cluster.backends[1]!.port
  const sleepThen = (end: string) => `SELECT pg_sleep(CASE WHEN inet_server_port() = ${slow} THEN 3 ELSE 0 END); ${end}`
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('INSERT INTO ct VALUES (3, 0)')
  await c.query("SET statement_timeout = '300ms'")
  await c.query('BEGIN')
  await c.query('UPDATE ct SET v = v + 100 WHERE id = 3')
  t.equal(await codeOf(c.query(sleepThen('ROLLBACK'))), '57014', 'the client gets the timeout')
  t.equal(await codeOf(c.query('BEGIN')), '25P02', 'the transaction has failed, as on PostgreSQL: BEGIN is refused')
  t.equal(await codeOf(c.query('SELECT 1')), '25P02', 'so is a read')
  t.same(inService(), ['enabled', 'enabled', 'enabled'], 'no backend out')
  await c.query('ROLLBACK')
  t.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'after ROLLBACK the session goes on')
  // A COMMIT cut on one backend after the others committed is completed there (one outcome).
  await c.query('BEGIN')
  await c.query('UPDATE ct SET v = v + 1 WHERE id = 3')
  t.equal(await codeOf(c.query(sleepThen('COMMIT'))), 'ok', 'a COMMIT the others ran is completed where it was cut')
  await c.query('RESET statement_timeout')
  const v = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM ct WHERE id = 3')
  t.same(
    v.map((r) => r[0]!.v),
    [1, 1, 1],
    'the rolled-back update nowhere, the committed one everywhere',
  )
  t.same(inService(), ['enabled', 'enabled', 'enabled'], 'no backend out')
  await assertIdentical(t, stack)
})

const probe = await client(stack)
const version = Number((await probe.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]!.v)
await probe.end()
const noTransactionTimeout = version < 170000 ? `transaction_timeout exists from PostgreSQL 17; the backends run ${version}` : false

t.test('transaction_timeout set by the client ends the session everywhere', { skip: noTransactionTimeout }, async (t) => {
  const c = await client(stack)
  c.on('error', () => {})
  await c.query("SET transaction_timeout = '300ms'")
  await c.query('BEGIN')
  await c.query('UPDATE ct SET v = 2000 WHERE id = 2')
  t.equal(await codeOf(c.query('SELECT pg_sleep(2)')), '25P04', "the client got PostgreSQL's transaction timeout")
  await c.end().catch(() => {})
  t.same(inService(), ['enabled', 'enabled', 'enabled'], 'no backend out')
  const v = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM ct WHERE id = 2')
  t.same(
    v.map((r) => r[0]!.v),
    [0, 0, 0],
    'nothing committed',
  )
  await assertIdentical(t, stack)
})
