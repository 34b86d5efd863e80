// A backend killed, restarted and resynced while producers insert and consumers delete the same
// keys as fast as they can (the pattern of a broker's message table: an id inserted, then deleted,
// sometimes before the insert was acknowledged; autocommit and BEGIN + several DELETEs + COMMIT).
// Afterwards every backend must hold the same rows. This is the shape of the ActiveMQ backend-kill
// scenario without a JVM, so a rare ordering bug there shows up here in seconds.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, waitFor, bounded, assertIdentical } from '../harness/stack.ts'

const ROUNDS = Number(process.env.RESYNC_RACE_ROUNDS ?? 1)

t.test('producers and consumers on the same keys across a kill and an online resync', async (t) => {
  const stack = await stackFor(t, {
    config: {
      users: [
        { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
        { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
      ],
    },
  })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  const setup = await client(stack)
  await setup.query('CREATE TABLE msgs (id bigint PRIMARY KEY, body text)')
  await setup.end()
  const ctx = stack.proxy.context

  for (let round = 1; round <= ROUNDS; round++) {
    let stop = false
    let nextId = round * 1_000_000
    const queue: number[] = []
    let inserted = 0
    let deleted = 0
    const producer = async () => {
      const c = await client(stack)
      try {
        while (!stop) {
          const id = nextId++
          const p = c.query({ name: 'ins', text: 'INSERT INTO msgs (id, body) VALUES ($1, $2)', values: [id, 'm'] })
          queue.push(id) // dispatched before the store acknowledged it, as a broker may
          await p
          inserted++
        }
      } finally {
        await c.end()
      }
    }
    const consumer = async (transacted: boolean) => {
      const c = await client(stack)
      try {
        while (!stop || queue.length) {
          const ids = queue.splice(0, transacted ? 5 : 1)
          if (!ids.length) {
            await new Promise((r) => setTimeout(r, 1))
            continue
          }
          if (transacted) await c.query('BEGIN')
          for (const id of ids) deleted += (await c.query({ name: 'del', text: 'DELETE FROM msgs WHERE id = $1', values: [id] })).rowCount ?? 0
          if (transacted) await c.query('COMMIT')
        }
      } finally {
        await c.end()
      }
    }
    const load = Promise.all([producer(), producer(), producer(), consumer(false), consumer(true), consumer(false)])
    await waitFor(`round ${round}: load flowing`, () => inserted >= 200, 60_000)
    await stack.cluster.backends[1]!.kill()
    await waitFor(`round ${round}: pg2 taken out`, () => ctx.states.list[1]!.state !== 'enabled', 30_000)
    const before = inserted
    await waitFor(`round ${round}: writes while pg2 is down`, () => inserted >= before + 300, 60_000)
    await stack.cluster.backends[1]!.start()
    const r = await bounded(admin.query('RESYNC pg2'), 120_000, 'RESYNC pg2')
    t.equal(r.rows[0].state, 'enabled', `round ${round}: pg2 resynced under load`)
    const after = inserted
    await waitFor(`round ${round}: writes after the resync`, () => inserted >= after + 300, 60_000)
    stop = true
    await bounded(load, 60_000, 'the load to stop')
    t.ok(deleted > 0, `round ${round}: ${inserted} inserted, ${deleted} deleted`)
    const v = await admin.query('VERIFY')
    t.same(v.rows, [], `round ${round}: VERIFY finds the backends identical`)
  }
  await assertIdentical(t, stack)
})
