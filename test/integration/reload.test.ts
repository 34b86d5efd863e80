// Reload (issue 8, item 5): pgraid started by the real CLI from a config file,
// under a node-postgres write load. SIGHUP with a valid file (a new user, a
// changed weight, timeout and log level, a new backend that comes up `new`),
// then with an invalid one (refused, logged, the old config keeps running);
// RELOAD through psql in the admin console, refused (F0000, every reason) and
// applied (a removed backend is drained and gone). No session is dropped and
// the load sees no error throughout.

import t from 'tap'
import pg from 'pg'
import { spawn } from 'node:child_process'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, bounded, waitFor, freePort, client, onEachBackend } from '../harness/stack.ts'
import { exec } from '../harness/proc.ts'
import { parseConfig } from '../../src/config/schema.ts'
import { ReloadRefused } from '../../src/config/reload-plan.ts'

t.test('SIGHUP and RELOAD under load: applied live, invalid configs refused, no session dropped', async (t) => {
  const stack = await stackFor(t)

  // First the in-process pgraid of the stack (started from a Config object): reload() takes a new one.
  await t.test('in process: a removed backend is drained (an open transaction finishes there), then left', async (t) => {
    const app = await client(stack)
    await app.query('CREATE TABLE dr (id int PRIMARY KEY)')
    await app.query('BEGIN')
    await app.query('INSERT INTO dr VALUES (1)')
    const next = parseConfig({ ...stack.config, backends: stack.config.backends.slice(0, 2), writeQuorum: undefined }, 'test')
    const r = await stack.proxy.reload({ config: next })
    t.ok(
      r.changes.some((c) => /^backends: pg3 removed/.test(c)),
      'pg3 removed',
    )
    t.equal(stack.proxy.context.states.list[2]!.state, 'removed')
    t.equal(stack.proxy.context.writeQuorum, 2, 'a majority of the two backends left')
    await app.query('INSERT INTO dr VALUES (2)')
    await app.query('COMMIT')
    await app.query('INSERT INTO dr VALUES (3)')
    t.same(
      (await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM dr')).map((rows) => rows[0]!.n),
      [3, 3, 2],
      'the transaction finished on pg3, the next write no longer went there',
    )
    t.same(
      stack.proxy.context.sessions().map((s) => s.backendNames.join(',')),
      ['pg1,pg2'],
      'the session left pg3',
    )
    const e = await stack.proxy.reload().catch((err: unknown) => err)
    t.ok(e instanceof ReloadRefused && /without a config file/.test(e.problems[0]!), 'no file to re-read: refused')
    await app.end()
  })
  await stack.proxy.close()
  const [pg1, pg2, pg3] = stack.config.backends
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-reload-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await freePort()
  const file = join(dir, 'pgraid.json')
  const users = [
    { name: 'app', password: 'app-secret' },
    { name: 'ops', password: 'ops-secret', admin: true },
  ]
  const first = { listen: { host: '127.0.0.1', port }, backends: [pg1, pg2], users, log: { level: 'info' }, timeouts: { shutdownMs: 5000 } }
  await writeFile(file, JSON.stringify(first))
  const child = spawn(process.execPath, ['bin/pgraid.js', 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => void child.kill('SIGKILL'))
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  let logs = ''
  child.stderr!.on('data', (b: Buffer) => (logs += b.toString()))
  await bounded(new Promise<void>((r) => child.stdout!.on('data', (b: Buffer) => /listening/.test(b.toString()) && r())), 30_000, 'pgraid to listen')
  /** The log lines written since `from` that match `re` (waits for one). */
  const logLine = async (re: RegExp, from: number) => {
    await waitFor(
      `a log line matching ${re}`,
      () =>
        logs
          .slice(from)
          .split('\n')
          .some((l) => re.test(l)),
      20_000,
    )
    return logs
      .slice(from)
      .split('\n')
      .find((l) => re.test(l))!
  }

  const connect = async (user = 'app', password = 'app-secret', database = 'postgres') => {
    const c = new pg.Client({ host: '127.0.0.1', port, user, password, database })
    c.on('error', () => {})
    await c.connect()
    return c
  }
  const admin = await connect('ops', 'ops-secret', 'pgraid')
  t.teardown(() => admin.end().catch(() => {}))
  const backends = async () => (await admin.query<{ name: string; state: string; weight: string }>('SHOW BACKENDS')).rows
  const setting = async (key: string) => (await admin.query<{ key: string; value: string }>('SHOW CONFIG')).rows.find((r) => r.key === key)?.value
  const psql = (sql: string) =>
    exec('psql', ['-X', '-At', '-v', 'VERBOSITY=verbose', '-h', '127.0.0.1', '-p', String(port), '-U', 'ops', '-d', 'pgraid', '-c', sql], { env: { PGPASSWORD: 'ops-secret' } })

  // The load: four sessions writing (autocommit and transactions) and reading, opened before any reload.
  const setup = await connect()
  await setup.query('CREATE TABLE rl (w int, n int, v int, PRIMARY KEY (w, n))')
  await setup.end()
  const idle = await connect()
  t.teardown(() => idle.end().catch(() => {}))
  const errors: string[] = []
  const done = [0, 0, 0, 0]
  let stop = false
  /** While set, the load waits between operations (sessions stay open, idle between transactions). */
  let hold: Promise<void> | null = null
  const load = done.map(async (_, w) => {
    const c = await connect()
    try {
      for (let n = 1; !stop; n++) {
        if (hold) await hold
        try {
          if (n % 3 === 0) {
            await c.query('BEGIN')
            await c.query('INSERT INTO rl (w, n, v) VALUES ($1, $2, 0)', [w, n])
            await c.query('UPDATE rl SET v = v + 1 WHERE w = $1 AND n = $2', [w, n])
            await c.query('COMMIT')
          } else await c.query('INSERT INTO rl (w, n, v) VALUES ($1, $2, 1)', [w, n])
          if (n % 5 === 0) await c.query('SELECT count(*) FROM rl WHERE w = $1', [w])
          done[w] = n
        } catch (e) {
          errors.push(`worker ${w}, n=${n}: ${(e as Error).message}`)
          return
        }
      }
    } finally {
      await c.end().catch(() => {})
    }
  })
  const progressed = async (what: string) => {
    const before = [...done]
    await waitFor(`every load session to commit more (${what})`, () => errors.length > 0 || done.every((d, i) => d > before[i]! + 2), 20_000)
    t.same(errors, [], `the load saw no error (${what})`)
  }
  await progressed('before any reload')

  await t.test('SIGHUP with a valid file: new user, weight, timeout, log level, new backend', async (t) => {
    const second = {
      ...first,
      backends: [pg1, { ...pg2, weight: 3 }, pg3],
      users: [...users, { name: 'app2', password: 'app2-secret' }],
      log: { level: 'debug' },
      timeouts: { shutdownMs: 5000, connectMs: 5000 },
    }
    await writeFile(file, JSON.stringify(second))
    const from = logs.length
    child.kill('SIGHUP')
    const line = await logLine(/configuration reloaded/, from)
    t.match(line, /"level":"info"/)
    for (const c of ['users: app2 added', 'backends[pg2].weight: 1 -> 3', 'timeouts.connectMs: 10000 -> 5000', 'log.level: \\"info\\" -> \\"debug\\"', 'backends: pg3 added'])
      t.ok(line.includes(c), `the log names the change ${c}`)
    const app2 = await connect('app2', 'app2-secret')
    t.same((await app2.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the new user logs in')
    await app2.end()
    await logLine(/"level":"debug"/, from)
    t.pass('the new log level applies')
    const b = await backends()
    t.same(
      b.map((r) => [r.name, r.state, r.weight]),
      [
        ['pg1', 'enabled', '1'],
        ['pg2', 'enabled', '3'],
        ['pg3', 'new', '1'],
      ],
      'pg3 is new (to be cloned); pg2 weighs 3',
    )
    t.equal(await setting('timeouts.connectMs'), '5000')
    t.equal(await setting('writeQuorum'), '2', 'majority of three configured backends')
    t.same((await idle.query('SELECT 2 AS two')).rows, [{ two: 2 }], 'a session opened before the reload goes on')
    await progressed('after SIGHUP')
  })

  await t.test('SIGHUP with an invalid file: refused and logged; the old config keeps running', async (t) => {
    await writeFile(file, JSON.stringify({ ...first, backends: [pg1, pg2, pg3], timeouts: { connectMs: 'soon' }, listne: {} }))
    const from = logs.length
    child.kill('SIGHUP')
    const line = await logLine(/configuration not reloaded/, from)
    t.match(line, /"level":"error"/)
    t.match(line, /timeouts\.connectMs: must be an integer/, 'the log names the bad key')
    t.match(line, /listne/, 'and the unknown one')
    t.equal(await setting('timeouts.connectMs'), '5000', 'still the config of the last good reload')
    const app2 = await connect('app2', 'app2-secret')
    await app2.end()
    t.pass('the user it added still logs in')
    t.equal(child.exitCode, null, 'pgraid runs on')
    await progressed('after a refused SIGHUP')
  })

  const second = { ...first, backends: [pg1, { ...pg2, weight: 3 }, pg3], users: [...users, { name: 'app2', password: 'app2-secret' }], log: { level: 'info' } }
  await t.test('RELOAD in psql: refused with every reason (F0000), nothing changes', async (t) => {
    // Another port needs a restart; removing pg2 while pg3 is still new would leave pg1 alone below the quorum of 2.
    await writeFile(file, JSON.stringify({ ...second, listen: { host: '127.0.0.1', port: port + 1 }, backends: [pg1, pg3] }))
    const r = await psql('RELOAD')
    t.not(r.code, 0, 'psql fails')
    t.match(r.err, /ERROR:\s+F0000: configuration in .* not reloaded/)
    t.match(r.err, /listen\.port: \d+ -> \d+: cannot change while pgraid runs/)
    t.match(r.err, /writeQuorum: the reload would leave 1 backend\(s\) in service/)
    t.same(
      (await backends()).map((b) => b.state),
      ['enabled', 'enabled', 'new'],
      'backends unchanged',
    )
  })

  await t.test('CLONE brings the new backend in; RELOAD in psql removes pg2, drained under load', async (t) => {
    await writeFile(file, JSON.stringify(second))
    // Clone under load is tested elsewhere (lifecycle-load); here the load pauses so the clone is quick.
    let resume!: () => void
    hold = new Promise<void>((r) => (resume = r))
    try {
      const cloned = await admin.query<{ state: string }>('CLONE pg3')
      t.same(
        cloned.rows.map((r) => r.state),
        ['enabled'],
        'CLONE pg3 in the console',
      )
    } finally {
      hold = null
      resume()
    }
    t.equal((await backends()).find((b) => b.name === 'pg3')?.state, 'enabled')
    await progressed('after the clone')
    const third = { ...second, backends: [pg1, pg3] }
    await writeFile(file, JSON.stringify(third))
    const dry = await psql('RELOAD DRY RUN')
    t.equal(dry.code, 0, dry.err)
    t.match(dry.out, /backends: pg2 removed/)
    t.equal((await backends()).find((b) => b.name === 'pg2')?.state, 'enabled', 'a dry run changes nothing')
    const r = await psql('RELOAD')
    t.equal(r.code, 0, r.err)
    t.match(r.out, /backends: pg2 removed \(enabled: sessions finish their work there, then leave it\)/)
    t.match(r.out, /log\.level: "debug" -> "info"/)
    await waitFor('pg2 to be drained and gone from SHOW BACKENDS', async () => !(await backends()).some((b) => b.name === 'pg2'), 20_000)
    t.same(
      (await backends()).map((b) => b.name),
      ['pg1', 'pg3'],
    )
    const sessions = (await admin.query<{ user: string; backends: string }>('SHOW SESSIONS')).rows.filter((s) => s.user === 'app')
    t.ok(sessions.length >= 5, 'the load sessions and the idle one are still there')
    t.notOk(
      sessions.some((s) => s.backends.split(',').includes('pg2')),
      'no session uses pg2 any more',
    )
    t.same((await idle.query('SELECT 3 AS three')).rows, [{ three: 3 }], 'the session opened at the start goes on')
    await progressed('after pg2 was removed')
  })

  stop = true
  await bounded(Promise.all(load), 20_000, 'the load to stop')
  t.same(errors, [], 'no load session saw an error')
  // pg1 and pg3 hold every acknowledged write (pg2 stopped getting them when it was removed).
  const sums = await Promise.all(
    [stack.cluster.backends[0]!, stack.cluster.backends[2]!].map(async (b) => {
      const c = await b.client('postgres')
      try {
        return (await c.query<{ n: number; v: number }>('SELECT count(*)::int AS n, sum(v)::int AS v FROM rl')).rows[0]
      } finally {
        await c.end()
      }
    }),
  )
  const total = done.reduce((a, b) => a + b, 0)
  t.same(
    sums,
    [
      { n: total, v: total },
      { n: total, v: total },
    ],
    'pg1 and pg3 hold every acknowledged write',
  )
  await idle.end()
  await admin.end()
  child.kill('SIGTERM')
  t.equal(await bounded(exited, 20_000, 'pgraid to exit'), 0, 'pgraid exits cleanly')
})
