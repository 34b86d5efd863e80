// `pgraid clone` (issue 6, item 3) under load: a fourth, empty database added
// to the configuration becomes a full replica while clients write; a backend
// made inconsistent on purpose is cloned back; a clone interrupted half way
// (the CLI killed) leaves the backend out of service (state new) and running
// it again completes it. `pgraid verify` reports identical after each.

import t from 'tap'
import pg from 'pg'
import { startCluster } from '../../src/embedded/cluster.ts'
import { startPgraid, type PgraidHandle } from '../../src/server.ts'
import { parseConfig } from '../../src/config/schema.ts'
import { createLogger } from '../../src/observe/logger.ts'
import { stackFor, client, bounded, waitFor, TEST_SETTINGS, type Stack } from '../harness/stack.ts'
import { cliFor, killWhen, ADMIN } from '../harness/cli.ts'

const USERS = [{ name: 'app', auth: 'scram-sha-256', password: 'app-secret' }, ADMIN]

/** Clients that keep committing (a transfer and an insert per transaction) until stopped; returns the ids acknowledged. */
function writers(port: number, n = 2): { stop: () => Promise<number[]>; commits: () => number } {
  let stop = false
  const acked: number[] = []
  let next = 1_000_000
  const done = Array.from({ length: n }, async (_, w) => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'app', password: 'app-secret', database: 'postgres' })
    c.on('error', () => {})
    await c.connect()
    while (!stop) {
      const id = next++
      await c.query('BEGIN')
      await c.query('UPDATE acct SET balance = balance - 1 WHERE id = $1', [(id % 50) + 1])
      await c.query('INSERT INTO events (id, note, at) VALUES ($1, $2, now())', [id, `w${w}`])
      await c.query('COMMIT')
      acked.push(id)
      await new Promise((r) => setTimeout(r, 3))
    }
    await c.end()
  })
  return {
    commits: () => acked.length,
    stop: async () => {
      stop = true
      await bounded(Promise.all(done), 30_000, 'writers')
      return acked
    },
  }
}

async function schema(c: pg.Client, rows: number): Promise<void> {
  await c.query('CREATE TABLE acct (id int PRIMARY KEY, owner text NOT NULL, balance numeric DEFAULT 0)')
  await c.query("INSERT INTO acct (id, owner, balance) SELECT g, 'owner ' || g, 1000 FROM generate_series(1, 50) g")
  await c.query('CREATE TABLE events (id bigint PRIMARY KEY, note text, at timestamptz)')
  await c.query('CREATE INDEX events_note ON events (note)')
  await c.query(`INSERT INTO events (id, note, at) SELECT g, repeat('x', 50), now() FROM generate_series(1, ${rows}) g`)
  await c.query('CREATE TABLE child (id serial PRIMARY KEY, acct int REFERENCES acct (id), tags text[], body bytea)')
  await c.query("INSERT INTO child (acct, tags, body) VALUES (1, '{a,b}', '\\xdeadbeef'), (2, NULL, NULL)")
  await c.query('CREATE VIEW rich AS SELECT id, owner FROM acct WHERE balance > 500')
}

t.test('a fourth, empty database added to the configuration is cloned under load', async (t) => {
  const cluster = await startCluster({ count: 4, settings: { ...TEST_SETTINGS } })
  t.teardown(() => cluster.stop())
  const backends = cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password }))
  const logger = createLogger('error')
  let proxy: PgraidHandle = await startPgraid(parseConfig({ listen: { host: '127.0.0.1', port: 0 }, backends: backends.slice(0, 3), users: USERS }, 'three'), logger)
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app', password: 'app-secret', database: 'postgres' })
  await c.connect()
  await schema(c, 2000)
  // A role (server-wide: the new server lacks it) named by a grant.
  await c.query('CREATE ROLE reporter NOLOGIN')
  await c.query('GRANT SELECT ON acct TO reporter')
  await c.end()
  await proxy.close()
  // The same backends and a new, empty one.
  proxy = await startPgraid(parseConfig({ listen: { host: '127.0.0.1', port: 0 }, backends, users: USERS }, 'four'), logger)
  t.teardown(() => proxy.close())
  const stack = { port: proxy.port, config: proxy.context.config } as unknown as Stack
  const w = writers(proxy.port)
  await waitFor('first commits', () => w.commits() > 5)
  t.equal(proxy.context.states.list[3]!.state, 'new', 'the empty database waits to be cloned')
  t.match(proxy.context.states.list[3]!.reason ?? '', /no pgraid recovery log.*clone it/)
  const run = await cliFor(t, stack)
  const resync = await run(['resync', 'pg4'])
  t.equal(resync.code, 1, 'resync refuses a new backend')
  t.match(resync.err, /new.*clone it/)
  const dry = await run(['clone', 'pg4', '--dry-run'])
  t.equal(dry.code, 0, dry.err)
  t.match(dry.err, /dry run: would drop database "postgres" on pg4/)
  t.equal(proxy.context.states.list[3]!.state, 'new', 'a dry run changes nothing')
  const before = w.commits()
  const r = await run(['clone', 'pg4'])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /name=pg4 state=enabled database=postgres/)
  t.match(r.err, /tables copied; copying /)
  t.ok(w.commits() > before, 'clients committed while the clone ran')
  t.equal(proxy.context.states.list[3]!.state, 'enabled')
  await bounded(w.stop(), 30_000, 'writers')
  const v = await run(['verify'])
  t.equal(v.code, 0, `verify after the clone: ${v.out}${v.err}`)
  t.match(v.out, /compared pg1, pg2, pg3, pg4/)
  // The clone is a working replica: sequences continue, the view exists, writes go on.
  const after = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app', password: 'app-secret', database: 'postgres' })
  await after.connect()
  await after.query('INSERT INTO child (acct) VALUES (3)')
  await after.query('SELECT * FROM rich')
  await after.end()
  const v2 = await run(['verify'])
  t.equal(v2.code, 0, v2.out)
  const pg4 = await cluster.backends[3]!.client()
  const grant = await pg4.query<{ ok: boolean }>("SELECT has_table_privilege('reporter', 'acct', 'SELECT') AS ok")
  await pg4.end()
  t.equal(grant.rows[0]!.ok, true, 'the role was created on the new server and the grant copied')
})

t.test('an inconsistent backend is cloned back; an interrupted clone is run again', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const c = await client(stack)
  t.teardown(() => c.end())
  await schema(c, 150_000)
  const d = await stack.cluster.backends[1]!.client()
  await d.query('UPDATE acct SET owner = $1 WHERE id = 7', ['tampered'])
  await d.end()
  await c.query('UPDATE acct SET balance = balance + 1 WHERE id = 7 RETURNING owner') // pg2 is outvoted
  t.equal(stack.proxy.context.states.list[1]!.state, 'inconsistent')
  const w = writers(stack.port)
  await waitFor('first commits', () => w.commits() > 5)
  const run = await cliFor(t, stack)
  // Interrupt: kill the CLI (-9) once the copy is under way.
  t.ok(await killWhen(run.spawn(['clone', 'pg2']), /tables copied; copying /), 'the CLI was killed while the clone was copying')
  await waitFor('the interrupted clone to stop', () => stack.proxy.context.states.list[1]!.activity === null)
  t.equal(stack.proxy.context.states.list[1]!.state, 'new', 'an interrupted clone leaves the backend out, to be cloned again')
  const r = await run(['clone', 'pg2'])
  t.equal(r.code, 0, r.err)
  t.equal(stack.proxy.context.states.list[1]!.state, 'enabled')
  const acked = await w.stop()
  const v = await run(['verify'])
  t.equal(v.code, 0, `verify after the clone: ${v.out}${v.err}`)
  const per = await Promise.all(
    stack.cluster.backends.map(async (b) => {
      const x = await b.client()
      const n = (await x.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE id = ANY($1::bigint[])', [acked])).rows[0]!.n
      await x.end()
      return Number(n)
    }),
  )
  t.same(per, [acked.length, acked.length, acked.length], 'every acknowledged write is on every backend')
})
