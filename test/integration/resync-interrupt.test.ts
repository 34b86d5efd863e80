// A resync interrupted half way (the CLI killed -9 while records are being
// replayed) leaves the backend out of service; run again, it completes and
// the backends are identical (issue 6, item 6).

import t from 'tap'
import pg from 'pg'
import { stackFor, client, waitFor } from '../harness/stack.ts'
import { cliFor, killWhen, ADMIN } from '../harness/cli.ts'

const USERS = [{ name: 'app', auth: 'scram-sha-256', password: 'app-secret' }, ADMIN]

t.test('a resync interrupted half way (the CLI killed) completes when run again', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE many (id int PRIMARY KEY, v text)')
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: ADMIN.name, password: ADMIN.password, database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  await admin.query('DISABLE pg3')
  // Thousands of small transactions for pg3 to replay, from six clients at once.
  await Promise.all(
    Array.from({ length: 6 }, async (_, k) => {
      const w = await client(stack)
      for (let i = k * 1000; i < (k + 1) * 1000; i++) await w.query('INSERT INTO many (id, v) VALUES ($1, $2)', [i, `row ${i}`])
      await w.end()
    }),
  )
  const run = await cliFor(t, stack)
  t.ok(await killWhen(run.spawn(['resync', 'pg3']), /replaying/), 'the CLI was killed while records were being replayed')
  const ctx = stack.proxy.context
  await waitFor('the interrupted resync to stop', () => ctx.states.list[2]!.activity === null)
  t.equal(ctx.states.list[2]!.state, 'disabled', 'the backend stays out')
  const d = await stack.cluster.backends[2]!.client()
  const partial = Number((await d.query<{ n: string }>('SELECT count(*) AS n FROM many')).rows[0]!.n)
  await d.end()
  t.ok(partial < 6000, `interrupted with ${partial} of 6000 rows replayed`)
  const r = await run(['resync', 'pg3'])
  t.equal(r.code, 0, r.err)
  const v = await run(['verify'])
  t.equal(v.code, 0, `verify: ${v.out}${v.err}`)
})
