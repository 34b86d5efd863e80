// Crash-safe sequences (issue 16, item 6; DESIGN invariant 10): PostgreSQL
// pre-logs 32 sequence values, so a backend killed -9 resumes its sequences
// up to 32 further on; and nextval is not transactional, so values drawn by
// transactions that rolled back while a backend was out are missing there.
// Neither may make a value differ: serial, bigserial, identity and explicit
// nextval() writes from 4 clients, some rolling back, while one backend is
// killed -9, restarted and resynced, five times over; at the end every
// backend holds the same rows and the same sequence states.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, waitFor, bounded } from '../harness/stack.ts'
import { resync } from '../../src/lifecycle/resync.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'trusted', auth: 'trust' },
]

t.test('serial, identity and nextval writes while a backend is killed -9, restarted and resynced (5 times): identical rows and sequences', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: { intervalMs: 200 } } })
  const setup = await client(stack)
  await setup.query('CREATE TABLE sq_a (id bigserial PRIMARY KEY, w int, v text)')
  await setup.query('CREATE TABLE sq_b (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, w int)')
  await setup.query('CREATE SEQUENCE sq_explicit')
  await setup.query('CREATE TABLE sq_c (n bigint PRIMARY KEY, w int)')
  await setup.end()
  let stop = false
  let committed = 0
  let rolledBack = 0
  const worker = async (w: number) => {
    let c: pg.Client | null = null
    for (let i = 0; !stop && i < 100_000; i++) {
      try {
        if (!c) {
          c = new pg.Client({ host: stack.host, port: stack.port, user: stack.user, password: stack.password, database: 'postgres' })
          c.on('error', () => {})
          await c.connect()
        }
        if (i % 3 === 0) {
          await c.query('INSERT INTO sq_a (w, v) VALUES ($1, $2)', [w, `auto ${i}`])
          committed++
          continue
        }
        await c.query('BEGIN')
        await c.query('INSERT INTO sq_a (w, v) VALUES ($1, $2)', [w, `tx ${i}`])
        await c.query('INSERT INTO sq_b (w) VALUES ($1)', [w])
        await c.query("INSERT INTO sq_c SELECT nextval('sq_explicit'), $1", [w])
        if (i % 4 === 1) {
          await c.query('ROLLBACK')
          rolledBack++
        } else {
          await c.query('COMMIT')
          committed++
        }
      } catch {
        await c?.end().catch(() => {})
        c = null
      }
    }
    await c?.end().catch(() => {})
  }
  const workers = [1, 2, 3, 4].map(worker)
  const ctx = () => stack.proxy.context
  const pg2 = stack.cluster.backends[1]!
  for (let round = 1; round <= 5; round++) {
    const base = committed
    await waitFor(`round ${round}: writes before the kill`, () => committed > base + 30, 60_000)
    await pg2.kill()
    await waitFor(`round ${round}: pg2 out`, () => ctx().states.list[1]!.state !== 'enabled', 30_000)
    const during = committed
    await waitFor(`round ${round}: writes while pg2 is down`, () => committed > during + 30, 60_000)
    await pg2.start()
    await waitFor(`round ${round}: pg2 found behind`, () => ctx().states.list[1]!.cause === 'behind', 30_000)
    await resync(ctx(), 1, () => {})
    t.equal(ctx().states.list[1]!.state, 'enabled', `round ${round}: pg2 resynced`)
    const after = committed
    await waitFor(`round ${round}: writes after the resync`, () => committed > after + 30, 60_000)
  }
  stop = true
  await bounded(Promise.all(workers), 60_000, 'workers')
  t.ok(rolledBack > 10, `${committed} transactions committed, ${rolledBack} rolled back`)
  t.same(
    ctx().states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'every backend in service',
  )
  await assertIdentical(t, stack)
})
