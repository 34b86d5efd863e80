// Backend health (issue 16; DESIGN invariant 9): a backend leaves service only
// for its own fault, and returns only when proven current. Nothing a client
// does (pg_terminate_backend, a message every backend hangs up on) takes a
// backend out; a server that restarted, was restored from an older copy, was
// wiped or refuses pgraid's login is noticed by the health monitor with or
// without sessions, and serves nothing until its recovery log is compared
// with the others. Every case ends with the in-service backends compared.

import t from 'tap'
import type { Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend, waitFor, bounded, type Stack } from '../harness/stack.ts'
import { RawClient, fe } from '../harness/raw-client.ts'
import { cliFor } from '../harness/cli.ts'
import { compareBackends } from '../harness/compare.ts'
import { startCluster } from '../../src/embedded/cluster.ts'
import { startPgraid } from '../../src/server.ts'
import { parseConfig } from '../../src/config/schema.ts'
import { createLogger } from '../../src/observe/logger.ts'
import { resync } from '../../src/lifecycle/resync.ts'
import { clone } from '../../src/lifecycle/clone.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
  { name: 'trusted', auth: 'trust' },
]
const HEALTH = { intervalMs: 200, failures: 3, timeoutMs: 2000 }

const states = (stack: Stack) => stack.proxy.context.states.list.map((b) => b.state)
const allIn = (stack: Stack) => states(stack).every((s) => s === 'enabled')

/** Copies a data directory as its owner would (cp -a keeps the postgres user's ownership). */
function copyDir(from: string, to: string): void {
  execFileSync('rm', ['-rf', to])
  execFileSync('cp', ['-a', from, to])
}

t.test('pg_terminate_backend of every other session, 20 times under 4 writers: no backend leaves service, nothing acknowledged is lost', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const setup = await client(stack)
  await setup.query('CREATE TABLE h1 (w int, n int, PRIMARY KEY (w, n))')
  await setup.end()
  const acked: [number, number][] = []
  let stop = false
  let failed = 0
  const writer = async (w: number) => {
    let c: pg.Client | null = null
    for (let n = 0; !stop && n < 2000; n++) {
      try {
        if (!c) {
          c = new pg.Client({ host: stack.host, port: stack.port, user: stack.user, password: stack.password, database: 'postgres' })
          c.on('error', () => {})
          await c.connect()
        }
        await c.query('INSERT INTO h1 VALUES ($1, $2) ON CONFLICT DO NOTHING', [w, n])
        acked.push([w, n])
      } catch {
        failed++
        await c?.end().catch(() => {})
        c = null
      }
    }
    await c?.end().catch(() => {})
  }
  const writers = [1, 2, 3, 4].map(writer)
  const killer = await client(stack)
  killer.on('error', () => {})
  let terminated = 0
  for (let i = 0; i < 20; i++) {
    await waitFor('some writes between terminations', () => acked.length > (i + 1) * 5, 60_000)
    // The issue's statement, as a client sends it; it also ends pgraid's own control and writer-lock
    // sessions (a fence while the locks are taken again: writes then get 25006, this too).
    const r = await killer
      .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'")
      .catch((e: Error & { code?: string }) => (e.code === '25006' ? { rows: [] } : Promise.reject(e)))
    terminated += r.rows.length
    t.ok(allIn(stack), `after termination ${i + 1}: every backend in service (${states(stack).join(', ')})`)
  }
  stop = true
  await bounded(Promise.all(writers), 120_000, 'writers')
  await killer.end()
  t.ok(terminated > 20, `${terminated} backend sessions terminated in all`)
  t.ok(failed > 0, `${failed} writes failed with the terminations (each client reconnected)`)
  t.same(states(stack), ['enabled', 'enabled', 'enabled'], 'no backend left service')
  const per = await onEachBackend<{ w: number; n: number }>(stack, 'SELECT w, n FROM h1')
  for (const [k, rows] of per.entries()) {
    const have = new Set(rows.map((r) => `${r.w}:${r.n}`))
    const lacking = acked.filter(([w, n]) => !have.has(`${w}:${n}`))
    t.equal(lacking.length, 0, `pg${k + 1} has every one of the ${acked.length} acknowledged writes${lacking.length ? ` (lacks ${lacking.map(([w, n]) => `${w}:${n}`).join(' ')})` : ''}`)
  }
  await assertIdentical(t, stack)
})

t.test("pg_terminate_backend of one of a session's backend connections: that session gets 57P01 and ends, nothing is taken out", async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const victim = await client(stack, { application_name: 'victim' })
  const errs: string[] = []
  victim.on('error', (e: Error & { code?: string }) => errs.push(e.code ?? e.message))
  const other = await client(stack)
  t.teardown(() => other.end())
  await other.query('CREATE TABLE h2 (id int PRIMARY KEY)')
  await victim.query('INSERT INTO h2 VALUES (1)')
  const direct = await stack.cluster.backends[1]!.client()
  const r = await direct.query("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'victim'")
  await direct.end()
  t.same(r.rows, [{ ok: true }], "the victim's connection to pg2 terminated from outside pgraid")
  await waitFor('the victim session to end', () => errs.length > 0, 30_000)
  t.equal(errs[0], '57P01', 'the client got 57P01, as from one PostgreSQL server')
  await t.rejects(victim.query('INSERT INTO h2 VALUES (2)'), 'the session is over')
  await other.query('INSERT INTO h2 VALUES (3)')
  t.same(states(stack), ['enabled', 'enabled', 'enabled'], 'no backend taken out')
  const per = await onEachBackend<{ id: number }>(stack, 'SELECT id FROM h2 ORDER BY id')
  t.same(
    per,
    [
      [{ id: 1 }, { id: 3 }],
      [{ id: 1 }, { id: 3 }],
      [{ id: 1 }, { id: 3 }],
    ],
    'every backend holds rows 1 and 3',
  )
  await assertIdentical(t, stack)
})

t.test('a message every backend hangs up on ends the session, and takes no backend out', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const raw = await RawClient.login(stack.port)
  // A Sync with a 100 kB body: every PostgreSQL backend hangs up on it ("invalid message length").
  raw.send(fe.raw('S', Buffer.alloc(100_000)))
  await t.rejects(raw.until('Z', 30_000), /connection closed/, 'the session ends, as on one PostgreSQL server')
  t.same(states(stack), ['enabled', 'enabled', 'enabled'], 'no backend taken out')
  const c = await client(stack)
  await c.query('CREATE TABLE h3 (id int)')
  await c.query('INSERT INTO h3 VALUES (1)')
  await c.end()
  await assertIdentical(t, stack)
})

t.test('a backend stopped, restored from an older copy and started with no session on it: out, never serves an old row, resync brings it back', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const cli = await cliFor(t, stack)
  const pg2 = stack.cluster.backends[1]!
  const c = await client(stack)
  await c.query('CREATE TABLE h4 (id int PRIMARY KEY)')
  await c.query('INSERT INTO h4 SELECT generate_series(1, 10)')
  await c.end()
  // The older copy, taken from a cleanly stopped server.
  await pg2.stop()
  const backup = await mkdtemp(join(tmpdir(), 'pgraid-h4-'))
  t.teardown(() => rm(backup, { recursive: true, force: true }))
  copyDir(pg2.dataDir, join(backup, 'data'))
  await pg2.start()
  // Nothing was written meanwhile: it comes back by itself.
  await waitFor('pg2 back in service after a clean restart with nothing written', () => allIn(stack), 30_000)
  const w = await client(stack)
  await w.query('INSERT INTO h4 SELECT generate_series(11, 20)')
  await w.end()
  // A reader polls on new sessions throughout: it must never see the old rows.
  let stopReading = false
  const seen = new Map<number, number>()
  const reader = (async () => {
    while (!stopReading) {
      try {
        const r = await client(stack)
        try {
          const n = (await r.query('SELECT count(*)::int AS n FROM h4')).rows[0].n as number
          seen.set(n, (seen.get(n) ?? 0) + 1)
        } finally {
          await r.end().catch(() => {})
        }
      } catch {
        // a session ended with its backend: the next one goes on
      }
    }
  })()
  await pg2.stop()
  copyDir(join(backup, 'data'), pg2.dataDir)
  await pg2.start()
  await waitFor('pg2 found behind', () => stack.proxy.context.states.list[1]!.cause === 'behind', 30_000)
  // Reads go on a while longer with pg2 up: it must stay out.
  const before = [...seen.values()].reduce((a, b) => a + b, 0)
  await waitFor('more reads after pg2 came back up', () => [...seen.values()].reduce((a, b) => a + b, 0) > before + 20, 60_000)
  stopReading = true
  await bounded(reader, 30_000, 'reader')
  t.same([...seen.keys()], [20], `every read saw the 20 current rows (${JSON.stringify(Object.fromEntries(seen))})`)
  const b = stack.proxy.context.states.list[1]!
  t.equal(b.state, 'disabled', 'pg2 is out')
  t.match(b.reason, /restarted|unreachable/, `the reason names what happened: ${b.reason}`)
  t.match(b.reason, /resync/, 'and what to do')
  const status = await cli(['status'])
  t.not(status.code, 0, 'status exits non-zero')
  t.match(status.out + status.err, /pg2/, 'status names pg2')
  const rs = await cli(['resync', 'pg2'])
  t.equal(rs.code, 0, `resync succeeds: ${rs.err.slice(-500)}`)
  t.ok(allIn(stack), 'pg2 is back in service')
  await assertIdentical(t, stack)
})

t.test('a backend wiped and re-initialised: new, and clone brings it back', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const pg3 = stack.cluster.backends[2]! // auth trust: a fresh server needs no password set
  const c = await client(stack)
  await c.query('CREATE TABLE h5 (id int PRIMARY KEY, v text)')
  await c.query("INSERT INTO h5 SELECT g, 'v' || g FROM generate_series(1, 50) g")
  // A fresh server's data directory, from a cluster of its own.
  const fresh = await startCluster({ count: 1, auth: 'trust' })
  const freshDir = fresh.backends[0]!.dataDir
  await fresh.backends[0]!.stop()
  t.teardown(() => fresh.stop())
  await pg3.stop()
  const keep = new Map<string, string>()
  for (const f of ['postgresql.conf', 'postgresql.auto.conf', 'pg_hba.conf', 'pgraid.conf']) keep.set(f, await readFile(join(pg3.dataDir, f), 'utf8'))
  copyDir(freshDir, pg3.dataDir)
  for (const [f, text] of keep) await writeFile(join(pg3.dataDir, f), text)
  await pg3.start()
  await waitFor('pg3 found new', () => stack.proxy.context.states.list[2]!.state === 'new', 30_000)
  t.match(stack.proxy.context.states.list[2]!.reason, /clone/, 'the reason says to clone it')
  const r = await c.query('SELECT count(*)::int AS n FROM h5')
  t.equal(r.rows[0].n, 50, 'clients still read every row (from the others)')
  await c.query("INSERT INTO h5 VALUES (51, 'while pg3 is out')")
  await clone(stack.proxy.context, 2, { notice: () => {} })
  t.ok(allIn(stack), 'pg3 back in service after the clone')
  await c.query("INSERT INTO h5 VALUES (52, 'after the clone')")
  await c.end()
  await assertIdentical(t, stack)
})

t.test('a backend wiped while out, RESYNC asked before the health monitor looked: refused with "clone it" (found by the torture harness), then clone', async (t) => {
  // The monitor looks rarely here, so the operator's RESYNC comes first (it used to fail deep in the replay with 42P01).
  const stack = await stackFor(t, { config: { users: USERS, health: { ...HEALTH, intervalMs: 60_000 } } })
  const pg3 = stack.cluster.backends[2]!
  const c = await client(stack)
  await c.query('CREATE TABLE h5w (id int PRIMARY KEY)')
  await c.query('INSERT INTO h5w SELECT generate_series(1, 20)')
  await pg3.kill()
  await c.query('INSERT INTO h5w VALUES (21)')
  await waitFor('pg3 out', () => states(stack)[2] !== 'enabled', 30_000)
  await pg3.replaceData(null)
  await pg3.start()
  await t.rejects(
    resync(stack.proxy.context, 2, () => {}),
    /no pgraid recovery log there while pg\d has one: wiped or replaced; clone it/,
    'refused, saying to clone it',
  )
  t.equal(states(stack)[2], 'new', 'marked new')
  await clone(stack.proxy.context, 2, { notice: () => {} })
  t.ok(allIn(stack), 'back in service after the clone')
  await c.query('INSERT INTO h5w VALUES (22)')
  await c.end()
  await assertIdentical(t, stack)
})

t.test('a backend killed -9 and restarted with nothing written meanwhile comes back by itself', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const c = await client(stack)
  // A serial key: PostgreSQL pre-logs 32 values, so the killed server resumes its sequence further on.
  await c.query('CREATE TABLE h6 (id serial PRIMARY KEY, v int)')
  await c.query('INSERT INTO h6 (v) VALUES (1)')
  await stack.cluster.backends[2]!.kill()
  await waitFor('pg3 taken out', () => states(stack)[2] !== 'enabled', 30_000)
  t.equal(stack.proxy.context.states.list[2]!.cause, 'unreachable', 'out as unreachable')
  const r = await c.query('SELECT count(*)::int AS n FROM h6')
  t.equal(r.rows[0].n, 1, 'reads go on')
  await stack.cluster.backends[2]!.start()
  await waitFor('pg3 back in service by itself', () => allIn(stack), 30_000)
  t.match(stack.proxy.context.states.list[2]!.reason, /back in service/, 'the reason says why')
  await c.query('INSERT INTO h6 (v) VALUES (2)')
  const per = await onEachBackend<{ id: number }>(stack, 'SELECT id FROM h6 WHERE v = 2')
  t.same(per, [[{ id: 2 }], [{ id: 2 }], [{ id: 2 }]], 'the next serial value is the same on every backend')
  await c.end()
  await assertIdentical(t, stack)
})

t.test("a backend that refuses pgraid's login: taken out with the reason, clients unaffected; back once the login works", async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  // This pgraid's log lines, to count how often the refusal is logged.
  const lines: string[] = []
  await stack.proxy.close()
  const cfg = parseConfig({ ...stack.config, listen: { ...stack.config.listen, port: stack.port } }, 'test')
  stack.proxy = await startPgraid(cfg, createLogger('warn', { write: (l: string) => void lines.push(l) }))
  const pg1 = stack.cluster.backends[0]! // scram-sha-256
  const direct = await pg1.client()
  t.teardown(() => direct.end())
  await direct.query("ALTER ROLE postgres PASSWORD 'not-what-pgraid-has'")
  for (let i = 0; i < 5; i++) {
    const c = await client(stack)
    const r = await c.query('SELECT 1 AS one')
    t.same(r.rows, [{ one: 1 }], `login ${i + 1} through pgraid works`)
    await c.end()
  }
  const b = stack.proxy.context.states.list[0]!
  t.equal(b.state, 'disabled', 'pg1 is out')
  t.equal(b.cause, 'refused', 'because it refused the login')
  t.match(b.reason, /28P01/, `the reason carries the SQLSTATE: ${b.reason}`)
  const outLines = lines.filter((l) => /"backend":"pg1"/.test(l) && /backend taken out of service/.test(l))
  t.equal(outLines.length, 1, 'the takeout is logged once, with the backend name and the reason')
  t.match(outLines[0] ?? '', /"cause":"refused"/, 'and its cause')
  await direct.query(`ALTER ROLE postgres PASSWORD ${direct.escapeLiteral(pg1.password)}`)
  await waitFor('pg1 back once its login works (nothing was written meanwhile)', () => allIn(stack), 30_000)
  // The same through the configuration: a reload gives pg2 a wrong password.
  const wrong = parseConfig({ ...cfg, backends: cfg.backends.map((b) => (b.name === 'pg2' ? { ...b, password: 'wrong' } : b)) }, 'test')
  await stack.proxy.reload({ config: wrong })
  const checked = await (await cliFor(t, { port: stack.port, config: wrong }))(['check-config', '--connect'])
  t.equal(checked.code, 1, 'check-config --connect exits 1')
  t.match(checked.out, /pg1 \([^)]*\): ok/, 'pg1 logs in')
  t.match(checked.out, /pg2 \([^)]*\): FAILED: 28P01/, `pg2 fails with 28P01: ${checked.out}`)
  t.match(checked.out, /pg3 \([^)]*\): ok/, 'pg3 logs in')
  for (let i = 0; i < 3; i++) {
    const c = await client(stack)
    t.same((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }], `login ${i + 1} with pg2's password wrong in the config works`)
    await c.end()
  }
  t.equal(stack.proxy.context.states.list[1]!.cause, 'refused', 'pg2 is out for the refused login')
  await stack.proxy.reload({ config: cfg })
  await waitFor('pg2 back once the config has its password again', () => allIn(stack), 30_000)
  const c = await client(stack)
  await c.query('CREATE TABLE h7 (id int)')
  await c.query('INSERT INTO h7 VALUES (1)')
  await c.end()
  await assertIdentical(t, stack)
})

t.test('pgraid restarted with a backend out: its state is known before any client connects; resync and clone work first thing', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const c = await client(stack)
  await c.query('CREATE TABLE h8 (id int PRIMARY KEY)')
  await c.query('INSERT INTO h8 SELECT generate_series(1, 10)')
  stack.proxy.context.takeOut(2, 'disabled', 'disabled by the test', false, 'operator')
  await c.query('INSERT INTO h8 SELECT generate_series(11, 20)')
  await c.end()
  await waitFor(
    'the state recorded in pg1',
    async () => (await onEachBackend<{ state: string }>(stack, "SELECT state FROM pgraid.backend_state WHERE backend = 'pg3'"))[0]!.some((r) => r.state === 'disabled'),
    30_000,
  )
  await stack.proxy.close()
  const samePort = { ...stack.config, listen: { ...stack.config.listen, port: stack.port } }
  const proxy = await startPgraid(samePort, createLogger(stack.config.log.level))
  stack.proxy = proxy
  t.equal(proxy.context.states.list[2]!.state, 'disabled', 'pg3 is disabled as soon as pgraid is up, before any client')
  await resync(proxy.context, 2, () => {})
  t.same(
    proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'resync as the first thing after a start',
  )
  await assertIdentical(t, stack)
  // And clone as the first thing after another start.
  proxy.context.takeOut(1, 'disabled', 'disabled by the test', false, 'operator')
  await waitFor(
    'the state recorded',
    async () => (await onEachBackend<{ state: string }>(stack, "SELECT state FROM pgraid.backend_state WHERE backend = 'pg2'"))[0]!.some((r) => r.state === 'disabled'),
    30_000,
  )
  await proxy.close()
  const third = await startPgraid(samePort, createLogger(stack.config.log.level))
  stack.proxy = third
  t.equal(third.context.states.list[1]!.state, 'disabled', 'pg2 is disabled as soon as pgraid is up')
  await clone(third.context, 1, { notice: () => {} })
  t.ok(allIn(stack), 'clone as the first thing after a start')
  const d = await client(stack)
  await d.query('INSERT INTO h8 VALUES (21)')
  await d.end()
  await assertIdentical(t, stack)
})

t.test('every backend restarted at once (nothing written meanwhile): the most current comes back first, then the others', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const c = await client(stack)
  await c.query('CREATE TABLE h9 (id int PRIMARY KEY)')
  await c.query('INSERT INTO h9 VALUES (1), (2)')
  await c.end()
  await Promise.all(stack.cluster.backends.map((b) => b.stop()))
  await waitFor('every backend out', () => states(stack).every((s) => s === 'disabled'), 30_000)
  await t.rejects(client(stack), 'no login while every backend is out')
  await Promise.all(stack.cluster.backends.map((b) => b.start()))
  await waitFor('every backend back in service by itself', () => allIn(stack), 60_000)
  // pgraid's writer locks went with the servers: writes wait for it to take them again.
  await waitFor('pgraid to be the writer again', () => stack.proxy.context.ha.isWriter(), 30_000)
  const d = await client(stack)
  d.on('error', () => {})
  t.same((await d.query('SELECT id FROM h9 ORDER BY id')).rows, [{ id: 1 }, { id: 2 }], 'the data is there')
  await d.query('INSERT INTO h9 VALUES (3)')
  await d.end()
  await assertIdentical(t, stack)
})

t.test('a backend added by a reload to a freshly started pgraid: clone works as the first thing', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const c = await client(stack)
  await c.query('CREATE TABLE h10 (id serial PRIMARY KEY, v text)')
  await c.query("INSERT INTO h10 (v) SELECT 'v' || g FROM generate_series(1, 20) g")
  await c.end()
  await stack.proxy.close()
  const samePort = { ...stack.config, listen: { ...stack.config.listen, port: stack.port } }
  const proxy = await startPgraid(samePort, createLogger(stack.config.log.level))
  stack.proxy = proxy
  const extra = await startCluster({ count: 1, auth: 'trust' })
  t.teardown(() => extra.stop())
  const pg4 = extra.backends[0]!
  const added = parseConfig({ ...samePort, backends: [...samePort.backends, { name: 'pg4', host: pg4.host, port: pg4.port, user: pg4.user, password: pg4.password }] }, 'test')
  await proxy.reload({ config: added })
  t.equal(proxy.context.states.list[3]?.state, 'new', 'pg4 is new after the reload')
  await clone(proxy.context, 3, { notice: () => {} })
  t.same(
    proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled', 'enabled'],
    'pg4 cloned and in service, before any client used this pgraid',
  )
  const d = await client(stack)
  await d.query("INSERT INTO h10 (v) VALUES ('after')")
  await d.end()
  const r = await compareBackends([...stack.cluster.backends, pg4], 'postgres')
  t.ok(r.identical, r.identical ? 'all four backends identical' : `backends differ:\n${r.report}`)
})

t.test("a database restored behind pgraid's back on one server, without a restart: found by the monitor, out until resynced", async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const c = await client(stack)
  await c.query('CREATE TABLE h11 (id int PRIMARY KEY)')
  for (let i = 1; i <= 5; i++) await c.query('INSERT INTO h11 VALUES ($1)', [i])
  // What a restore of an older dump of this one database leaves: the last transaction gone, log row and all.
  const pg2 = await stack.cluster.backends[1]!.client()
  await pg2.query('BEGIN')
  await pg2.query('DELETE FROM h11 WHERE id = 5')
  await pg2.query('DELETE FROM pgraid.log WHERE lsn = (SELECT max(lsn) FROM pgraid.log)')
  await pg2.query('COMMIT')
  await pg2.end()
  await waitFor('pg2 found behind by the monitor', () => stack.proxy.context.states.list[1]!.cause === 'behind', 30_000)
  t.match(stack.proxy.context.states.list[1]!.reason, /restored or replaced/, `the reason says what it looks like: ${stack.proxy.context.states.list[1]!.reason}`)
  for (let i = 0; i < 10; i++) t.equal((await c.query('SELECT count(*)::int AS n FROM h11')).rows[0].n, 5, `read ${i + 1} sees every row`)
  await resync(stack.proxy.context, 1, () => {})
  t.ok(allIn(stack), 'back after the resync')
  await c.query('INSERT INTO h11 VALUES (6)')
  await c.end()
  await assertIdentical(t, stack)
})

t.test('pgraid restarted while a backend was out for its own fault: the new pgraid checks it and brings it back, or finds it behind', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS, health: HEALTH } })
  const samePort = { ...stack.config, listen: { ...stack.config.listen, port: stack.port } }
  const c = await client(stack)
  await c.query('CREATE TABLE h12 (id int PRIMARY KEY)')
  await c.query('INSERT INTO h12 VALUES (1)')
  await c.end()
  const restart = async () => {
    await stack.proxy.close()
    stack.proxy = await startPgraid(samePort, createLogger(stack.config.log.level))
  }
  // Read on pg1 (the killed one cannot answer).
  const recorded = (name: string, state: string) => async () => {
    const d = await stack.cluster.backends[0]!.client()
    try {
      return (await d.query('SELECT state FROM pgraid.backend_state WHERE backend = $1', [name])).rows.some((r) => r.state === state)
    } finally {
      await d.end()
    }
  }
  // Out while nothing is written: back by itself after the restart.
  await stack.cluster.backends[2]!.kill()
  await waitFor('pg3 recorded as out', recorded('pg3', 'disabled'), 30_000)
  await stack.cluster.backends[2]!.start()
  await restart()
  await waitFor('pg3 back in service under the new pgraid', () => allIn(stack), 30_000)
  // Out while a write happens: the new pgraid finds it behind.
  await stack.cluster.backends[1]!.kill()
  await waitFor('pg2 recorded as out', recorded('pg2', 'disabled'), 30_000)
  const d = await client(stack)
  await d.query('INSERT INTO h12 VALUES (2)')
  await d.end()
  await stack.cluster.backends[1]!.start()
  await restart()
  await waitFor('pg2 found behind by the new pgraid', () => stack.proxy.context.states.list[1]!.cause === 'behind', 30_000)
  await resync(stack.proxy.context, 1, () => {})
  t.ok(allIn(stack), 'pg2 back after the resync')
  await assertIdentical(t, stack)
})
