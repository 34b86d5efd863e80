// In-doubt commits after a proxy crash (issue 5, item 6): a transaction whose
// COMMIT reached some backends and not others is committed; its log record is
// in the backends that have it. A pgraid started on those backends replays
// the record on the others (in LSN order, exactly as first executed), so all
// end up identical, with nothing lost and nothing applied twice.

import t from 'tap'
import pg from 'pg'
import { startPgraid } from '../../src/server.ts'
import { createLogger } from '../../src/observe/logger.ts'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

t.test('a fresh pgraid completes commits that reached only some backends', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  await c.query('CREATE TABLE doubt (id int PRIMARY KEY, v text, b bytea)')
  await c.query("INSERT INTO doubt VALUES (1, 'through pgraid', NULL)")
  await c.end()
  const max = Number((await onEachBackend<{ m: string }>(stack, 'SELECT max(lsn) AS m FROM pgraid.log'))[0]![0]!.m)
  // What a pgraid killed mid-COMMIT leaves: record max+1 committed on pg1 only, max+2 on pg1 and pg2.
  const rec1 = { v: 1, settings: ["SET TimeZone = 'UTC'"], stmts: [{ q: "INSERT INTO doubt VALUES (2, 'simple', NULL)" }] }
  const rec2 = {
    v: 1,
    settings: [],
    stmts: [{ q: 'INSERT INTO doubt VALUES ($1, $2, $3)', t: [23, 0, 17], f: [0, 0, 1], p: ['3', 'prepared, binary bytea', Buffer.from([0, 1, 2, 255]).toString('base64')] }],
  }
  const commitOn = async (i: number, lsn: number, rec: typeof rec1 | typeof rec2, apply: (c: pg.Client) => Promise<unknown>) => {
    const d = await stack.cluster.backends[i]!.client()
    await d.query('BEGIN')
    await apply(d)
    await d.query('INSERT INTO pgraid.log (lsn, at, record) VALUES ($1, $2, $3)', [lsn, '2026-11-25 08:00:00+00', JSON.stringify(rec)])
    await d.query('COMMIT')
    await d.end()
  }
  await commitOn(0, max + 1, rec1, (d) => d.query("INSERT INTO doubt VALUES (2, 'simple', NULL)"))
  for (const i of [0, 1]) await commitOn(i, max + 2, rec2, (d) => d.query('INSERT INTO doubt VALUES ($1, $2, $3)', [3, 'prepared, binary bytea', Buffer.from([0, 1, 2, 255])]))
  // The old pgraid is gone; a new one starts on the same backends.
  await stack.proxy.close()
  const fresh = await startPgraid({ ...stack.config, listen: { ...stack.config.listen, port: 0 } }, createLogger('silent'))
  t.teardown(() => fresh.close())
  const cc = new pg.Client({ host: fresh.host, port: fresh.port, user: 'app', password: 'app-secret', database: 'postgres' })
  await cc.connect()
  const rows = (await cc.query('SELECT id FROM doubt ORDER BY id')).rows.map((r) => r.id)
  t.same(rows, [1, 2, 3], 'the in-doubt transactions are there')
  t.same(
    fresh.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'no backend had to be taken out',
  )
  await assertIdentical(t, stack)
  const logs = await onEachBackend<{ lsn: string; record: unknown }>(stack, 'SELECT lsn, record FROM pgraid.log ORDER BY lsn')
  t.same(logs[1], logs[0], 'pg2 has the same log as pg1')
  t.same(logs[2], logs[0], 'pg3 has the same log as pg1')
  // Continues after the completed records.
  await cc.query("INSERT INTO doubt VALUES (4, 'after', NULL)")
  // LSNs continue past the completed records, with a margin for commits a killed pgraid had in flight.
  t.equal(Number((await onEachBackend<{ m: string }>(stack, 'SELECT max(lsn) AS m FROM pgraid.log'))[2]![0]!.m), max + 2 + 1 + 10_000)
  await cc.end()
})

t.test('a COMMIT still landing when pgraid starts is waited for, then completed before any client writes', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  await c.query('CREATE TABLE late_t (id int UNIQUE DEFERRABLE INITIALLY DEFERRED, v text)')
  await c.end()
  const max = Number((await onEachBackend<{ m: string }>(stack, 'SELECT max(lsn) AS m FROM pgraid.log'))[0]![0]!.m)
  await stack.proxy.close()
  // What a killed pgraid leaves behind: on pg1, its session's COMMIT (row 7 and its log record) is
  // still being processed, held by a deferred unique check on another open transaction's row 7.
  const pg1 = stack.cluster.backends[0]!
  const holder = await pg1.client()
  await holder.query('BEGIN')
  await holder.query("INSERT INTO late_t VALUES (7, 'holder')")
  const late = await pg1.client()
  await late.query('BEGIN')
  await late.query("INSERT INTO late_t VALUES (7, 'late commit')")
  const rec = { v: 1, settings: [], stmts: [{ q: "INSERT INTO late_t VALUES (7, 'late commit')" }] }
  await late.query('INSERT INTO pgraid.log (lsn, at, record) VALUES ($1, $2, $3)', [max + 1, '2026-12-02 08:00:00+00', JSON.stringify(rec)])
  const landing = late.query('COMMIT')
  // The holder gives up a moment after the new pgraid looked: the COMMIT lands then.
  // The holder lets the late COMMIT land while the fresh pgraid starts (its recovery log is prepared at start).
  setTimeout(() => void holder.query('ROLLBACK').then(() => holder.end()), 700)
  const fresh = await startPgraid({ ...stack.config, listen: { ...stack.config.listen, port: 0 } }, createLogger('silent'))
  t.teardown(() => fresh.close())
  const cc = new pg.Client({ host: fresh.host, port: fresh.port, user: 'app', password: 'app-secret', database: 'postgres' })
  await cc.connect()
  // The first write needs the recovery log ready, which waits for the late COMMIT and completes it.
  await cc.query("INSERT INTO late_t VALUES (8, 'new')")
  await landing
  await late.end()
  const per = await onEachBackend<{ id: number; v: string }>(stack, 'SELECT id, v FROM late_t ORDER BY id')
  t.same(
    per,
    [0, 1, 2].map(() => [
      { id: 7, v: 'late commit' },
      { id: 8, v: 'new' },
    ]),
    'every backend has the late commit, before the new write',
  )
  const lsns = await onEachBackend<{ lsn: string }>(stack, `SELECT lsn FROM pgraid.log WHERE lsn > ${max} ORDER BY lsn`)
  t.same(lsns[1], lsns[0], 'pg2 holds the same records as pg1')
  t.same(lsns[2], lsns[0], 'pg3 holds the same records as pg1')
  t.same(
    fresh.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
  )
  await cc.end()
})
