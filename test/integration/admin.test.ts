// The admin console (database "pgraid", admin users only) and `pgraid
// status`: backend states, recovery-log positions and lag, sessions, locks,
// config without secrets, DISABLE; answers as ordinary rows (node-postgres,
// psql); the CLI's exit code says whether the cluster is degraded.

import t from 'tap'
import pg from 'pg'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, client, waitFor, bounded } from '../harness/stack.ts'
import { exec } from '../harness/proc.ts'

const stack = await stackFor(t, {
  config: {
    users: [
      { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
      { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
    ],
  },
})
const admin = async () => {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await c.connect()
  return c
}

t.test('only admin users get the console', async (t) => {
  const c = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'app', password: 'app-secret', database: 'pgraid' })
  const e = await c.connect().then(
    () => null,
    (err: { code?: string }) => err,
  )
  t.equal(e?.code, '42501')
  await c.end().catch(() => {})
})

t.test('SHOW BACKENDS, SESSIONS, LOCKS, CONFIG, HELP; DISABLE; SHOW LOG lag', async (t) => {
  const a = await admin()
  const app = await client(stack)
  t.teardown(() => Promise.all([a.end(), app.end()]))
  const b = await a.query('SHOW BACKENDS')
  t.same(
    b.rows.map((r) => [r.name, r.state]),
    [
      ['pg1', 'enabled'],
      ['pg2', 'enabled'],
      ['pg3', 'enabled'],
    ],
  )
  await app.query('CREATE TABLE adm (id int PRIMARY KEY)')
  await app.query('BEGIN')
  await app.query('INSERT INTO adm VALUES (1)')
  const sessions = await a.query('SHOW SESSIONS')
  t.ok(
    sessions.rows.some((r) => r.user === 'app' && r.transaction === 'in transaction' && r.backends === 'pg1,pg2,pg3'),
    'the app session, in its transaction',
  )
  const locks = await a.query('SHOW LOCKS')
  t.ok(
    locks.rows.some((r) => /adm/.test(r.resource)),
    'the open transaction holds a lock on adm',
  )
  await app.query('COMMIT')
  const cfg = await a.query('SHOW CONFIG')
  t.ok(cfg.rows.some((r) => r.key === 'users[1].admin' && r.value === 'true'))
  t.notOk(
    cfg.rows.some((r) => /secret/.test(r.value ?? '')),
    'no password in SHOW CONFIG',
  )
  t.ok((await a.query('SHOW HELP')).rows.length >= 6)
  let log = await a.query('SHOW LOG')
  t.same(
    log.rows.map((r) => r.lag_transactions),
    ['0', '0', '0'],
    'every backend has every record',
  )
  t.same((await a.query('DISABLE pg2')).rows, [{ name: 'pg2', state: 'disabled' }])
  await app.query('INSERT INTO adm VALUES (2)')
  await app.query('INSERT INTO adm VALUES (3)')
  log = await a.query('SHOW LOG')
  t.same(
    log.rows.map((r) => [r.backend, r.state, r.lag_transactions]),
    [
      ['pg1', 'enabled', '0'],
      ['pg2', 'disabled', '2'],
      ['pg3', 'enabled', '0'],
    ],
    'pg2 lags by the two commits it missed',
  )
  t.ok(Number(log.rows[1].lag_bytes) > 0)
  const e = await a.query('FROBNICATE').then(
    () => null,
    (err: { code?: string }) => err,
  )
  t.equal(e?.code, '42601')
  const x = await a.query('SHOW BACKENDS WHERE $1', [1]).then(
    () => null,
    (err: { code?: string }) => err,
  )
  t.equal(x?.code, '0A000', 'the extended protocol gets a clear error')
  t.equal((await a.query('SHOW BACKENDS')).rows.length, 3, 'and the console goes on')
})

t.test('psql reads the console; pgraid status reports a degraded cluster with exit 1', async (t) => {
  const psql = await exec('psql', ['-h', '127.0.0.1', '-p', String(stack.port), '-U', 'ops', '-d', 'pgraid', '-At', '-c', 'SHOW BACKENDS'], { env: { PGPASSWORD: 'ops-secret' } })
  t.equal(psql.code, 0, psql.err)
  t.match(psql.out, /pg2\|.*\|disabled\|operator\|\|disabled by admin ops/)
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-status-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'pgraid.json')
  await writeFile(file, JSON.stringify({ listen: { host: '127.0.0.1', port: stack.port }, backends: stack.config.backends, users: [{ name: 'ops', password: 'ops-secret', admin: true }] }))
  const human = await exec(process.execPath, ['bin/pgraid.js', 'status', '-c', file])
  t.equal(human.code, 1, 'degraded: exit 1')
  t.match(human.out, /DEGRADED: pg2 is disabled/)
  t.match(human.out, /^Role: writer \(.*writer lock held on pg1,pg2,pg3, 2 needed\)/m, 'status says this instance is the writer')
  t.match(human.out, /pg2\s+disabled/)
  const json = await exec(process.execPath, ['bin/pgraid.js', 'status', '-c', file, '--json'])
  t.equal(json.code, 1)
  const parsed = JSON.parse(json.out) as { backends: { name: string; state: string }[] }
  t.same(
    parsed.backends.map((b) => b.state),
    ['enabled', 'disabled', 'enabled'],
  )
  const wrong = await exec(process.execPath, ['bin/pgraid.js', 'status', '-c', file], { env: { PGRAID_PASSWORD: 'wrong' } })
  t.equal(wrong.code, 2, 'could not ask: exit 2')
  t.match(wrong.err, /could not ask pgraid/)
})

t.test('DISABLE drains: a cursor being fetched from the disabled backend finishes there', async (t) => {
  const own = await stackFor(t, {
    config: {
      users: [
        { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
        { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
      ],
    },
  })
  const c = await client(own)
  const a = new pg.Client({ host: '127.0.0.1', port: own.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await a.connect()
  t.teardown(() => Promise.all([c.end(), a.end()]))
  // A cursor in a read-only transaction: its reads go to one backend, which then holds the portal.
  await c.query('BEGIN READ ONLY')
  await c.query("DECLARE big CURSOR FOR SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 1000) g")
  const first = await c.query('FETCH 100 FROM big')
  t.equal(first.rows.length, 100)
  const used = own.proxy.context.sessions().find((s) => s.user === 'app')!.backendNames
  const onlyOne = own.cluster.backends.findIndex((b) => used.length === 1 && used[0] === b.name)
  // Whichever backend(s) the session uses: disable one it is reading from.
  const victim = onlyOne >= 0 ? onlyOne : own.cluster.backends.findIndex((b) => used.includes(b.name))
  await a.query(`DISABLE ${own.cluster.backends[victim]!.name}`)
  let rows = 100
  for (let r = await c.query('FETCH 100 FROM big'); r.rows.length; r = await c.query('FETCH 100 FROM big')) rows += r.rows.length
  await c.query('COMMIT')
  t.equal(rows, 1000, 'the cursor was read to the end after DISABLE')
  t.equal(own.proxy.context.states.list[victim]!.state, 'disabled')
  const after = await c.query('SELECT 1 AS one')
  t.equal(after.rows[0].one, 1, 'the session goes on')
  t.notOk(
    own.proxy.context.sessions().some((s) => s.backendNames.includes(own.cluster.backends[victim]!.name)),
    'no session uses the disabled backend any more',
  )
})

t.test('PAUSE holds new transactions until RESUME and waits for open ones; SHOW CLIENTS; SHUTDOWN', async (t) => {
  const own = await stackFor(t, {
    config: {
      users: [
        { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
        { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
      ],
    },
  })
  const a = new pg.Client({ host: '127.0.0.1', port: own.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await a.connect()
  const open = await client(own, { application_name: 'the-open-one' })
  const other = await client(own)
  // SHUTDOWN ends with a FATAL to every session: expected here.
  for (const c of [a, open, other]) c.on('error', () => {})
  t.teardown(() => Promise.all([a.end().catch(() => {}), open.end().catch(() => {}), other.end().catch(() => {})]))
  await open.query('CREATE TABLE pz (id int PRIMARY KEY)')
  const clients = await a.query('SHOW CLIENTS')
  t.ok(
    clients.rows.some((r) => r.application_name === 'the-open-one'),
    'SHOW CLIENTS shows application_name',
  )
  await open.query('BEGIN')
  await open.query('INSERT INTO pz (id) VALUES (1)')
  let paused = false
  const notices: string[] = []
  a.on('notice', (n) => notices.push(n.message ?? ''))
  const pause = a.query('PAUSE').then((r) => ((paused = true), r))
  await waitFor('PAUSE to announce the wait', () => notices.some((n) => /waiting for 1 open transaction/.test(n)))
  t.notOk(paused, 'PAUSE waits for the open transaction')
  let otherDone = false
  const waiting = other.query('INSERT INTO pz (id) VALUES (2)').then(() => (otherDone = true))
  await open.query('INSERT INTO pz (id) VALUES (3)') // the open transaction goes on
  await open.query('COMMIT')
  const r = await bounded(pause, 10_000, 'PAUSE')
  t.equal(r.rows[0].paused, 'true')
  t.notOk(otherDone, 'a new statement waits while paused')
  // PgBouncer's cl_waiting: the held client is visible while it waits.
  await waitFor('SHOW POOLS to count the held client', async () => Number((await a.query('SHOW POOLS')).rows.find((p) => p.user === 'app')?.cl_waiting ?? 0) === 1, 10_000)
  const pools = (await a.query('SHOW POOLS')).rows.find((p) => p.user === 'app')!
  t.same([pools.database, pools.cl_active, pools.cl_waiting, pools.pool_mode], ['postgres', '1', '1', 'session'], 'SHOW POOLS: one client active, one waiting on PAUSE')
  const servers = (await a.query('SHOW SERVERS')).rows
  t.equal(servers.length, 6, 'SHOW SERVERS: three backend connections for each of the two client sessions')
  t.ok(
    servers.every((s) => s.type === 'S' && Number(s.remote_pid) > 0 && /^pg[123]$/.test(s.backend)),
    'each with its backend pid and name',
  )
  t.equal((await a.query('SHOW DATABASES')).rows.find((d) => d.name === 'postgres')?.paused, '1', 'SHOW DATABASES: paused')
  await a.query('RESUME')
  await bounded(waiting, 10_000, 'the held statement')
  t.ok(otherDone, 'RESUME lets it run')
  t.equal((await a.query('SHOW POOLS')).rows.find((p) => p.user === 'app')?.cl_waiting, '0', 'nobody waits after RESUME')
  await a.query('SHUTDOWN')
  const e = await other.query('SELECT 1').then(
    () => null,
    (err: { code?: string; message: string }) => err,
  )
  t.ok(e, 'after SHUTDOWN the session is closed')
  await waitFor(
    'the listener to close',
    async () =>
      await client(own).then(
        (c) => (c.end(), false),
        () => true,
      ),
  )
})
