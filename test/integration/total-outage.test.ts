// Every backend lost while one of them was already out behind (found by the
// torture harness, issue 18, seed 42 with --overlap): pg1 killed, writes go
// on without it, it comes back behind; then pg2 and pg3 are killed under
// writes and started again. pgraid (which lost its writer majority and took
// it again) must bring back the most current backend, never the one that is
// behind; before, the promotion put pg1 back in service alone and then
// judged pg2 and pg3 against it: the current copies were marked inconsistent.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, waitFor } from '../harness/stack.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
]

t.test('all backends lost, one of them behind: the most current comes back, the behind one does not', async (t) => {
  const stack = await stackFor(t, { auth: 'scram-sha-256', config: { users: USERS } })
  const [b1, b2, b3] = stack.cluster.backends
  const states = () => stack.proxy.context.states.list.map((b) => `${b.name}:${b.state}`)
  const w = await client(stack)
  w.on('error', () => {})
  await w.query('CREATE TABLE q (id bigserial PRIMARY KEY, b text)')
  await b1!.kill()
  for (let i = 0; i < 50; i++) await w.query("INSERT INTO q (b) VALUES ('while pg1 is down')")
  await b1!.start()
  await waitFor('pg1 found behind', () => stack.proxy.context.states.list[0]!.cause === 'behind', 30_000)
  // Writes go on while pg2, then pg3, are killed.
  let writing = true
  const writer = (async () => {
    while (writing) await w.query("INSERT INTO q (b) VALUES ('during the outage')").catch(() => new Promise((r) => setTimeout(r, 20)))
  })()
  await new Promise((r) => setTimeout(r, 200))
  await b2!.kill()
  await new Promise((r) => setTimeout(r, 300))
  await b3!.kill()
  await new Promise((r) => setTimeout(r, 300))
  await Promise.all([b2!.start(), b3!.start()])
  await waitFor('a backend back in service', () => stack.proxy.context.states.list.some((b) => b.state === 'enabled'), 30_000)
  writing = false
  await writer
  await w.end().catch(() => {})
  t.not(stack.proxy.context.states.list[0]!.state, 'enabled', `pg1, behind, is not put back (${states()})`)
  t.same(
    stack.proxy.context.states.list.filter((b) => b.state === 'inconsistent').map((b) => b.name),
    [],
    'no current backend judged against the behind one',
  )
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  for (const b of stack.proxy.context.states.list) if (b.state !== 'enabled') await admin.query(`RESYNC ${b.name}`)
  t.same(states(), ['pg1:enabled', 'pg2:enabled', 'pg3:enabled'], 'all back after resync')
  await assertIdentical(t, stack)
})
