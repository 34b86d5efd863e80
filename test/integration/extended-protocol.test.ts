// The extended protocol at the message level: an error in the middle of a
// pipeline skips to Sync exactly as PostgreSQL does (on every backend),
// Flush answers at once without a Sync, portals suspended by row limits,
// Describe, Close; notices relayed once; a slow reader is not buffered.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'
import { RawClient, fe, errorCode } from '../harness/raw-client.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE ext (id int PRIMARY KEY, v text)')
await setup.end()

t.test('an error mid-pipeline skips to Sync, on every backend', async (t) => {
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.end())
  c.send(
    fe.parse('', "INSERT INTO ext VALUES (1, 'a')"),
    fe.bind('', ''),
    fe.execute(''),
    fe.parse('', "INSERT INTO ext VALUES (1, 'dup')"),
    fe.bind('', ''),
    fe.execute(''),
    fe.parse('', "INSERT INTO ext VALUES (2, 'skipped')"),
    fe.bind('', ''),
    fe.execute(''),
    fe.sync(),
  )
  const msgs = await c.until('Z')
  t.same(
    msgs.map((m) => m.type),
    ['1', '2', 'C', '1', '2', 'E', 'Z'],
    'answers up to the error, then only ReadyForQuery',
  )
  t.equal(errorCode(msgs[5]), '23505')
  t.equal(msgs[6].body.toString(), 'I')
  // The implicit transaction of the pipeline rolled back as a whole.
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM ext')
  t.same(
    per.map((r) => r[0].n),
    [0, 0, 0],
  )
  // The next pipeline works.
  c.send(fe.parse('', "INSERT INTO ext VALUES (3, 'c')"), fe.bind('', ''), fe.execute(''), fe.sync())
  t.same(
    (await c.until('Z')).map((m) => m.type),
    ['1', '2', 'C', 'Z'],
  )
  await assertIdentical(t, stack)
})

t.test('BEGIN pipelined with the next unnamed Parse, as pgjdbc sends it (regression)', async (t) => {
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.end())
  c.send(fe.parse('', 'BEGIN'), fe.bind('', ''), fe.execute(''), fe.parse('', 'INSERT INTO ext VALUES ($1, $2)'), fe.bind('', '', ['50', 'fifty']), fe.describe('P', ''), fe.execute('', 1), fe.sync())
  const msgs = await c.until('Z')
  t.same(
    msgs.map((m) => m.type),
    ['1', '2', 'C', '1', '2', 'n', 'C', 'Z'],
  )
  t.equal(msgs[2].body.toString('utf8', 0, msgs[2].body.length - 1), 'BEGIN')
  t.equal(msgs[6].body.toString('utf8', 0, msgs[6].body.length - 1), 'INSERT 0 1')
  t.equal(msgs[7].body.toString(), 'T')
  c.send(fe.query('COMMIT'))
  await c.until('Z')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM ext WHERE id = 50')
  t.same(
    per.map((r) => r[0].n),
    [1, 1, 1],
  )
})

t.test('Flush answers at once; row-limited portals suspend and resume', async (t) => {
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.end())
  c.send(fe.query('BEGIN'))
  await c.until('Z')
  c.send(fe.parse('s1', 'SELECT g FROM generate_series(1, 10) g'), fe.bind('p1', 's1'), fe.describe('P', 'p1'), fe.execute('p1', 4), fe.flush())
  const first = await c.until('s')
  t.same(
    first.map((m) => m.type),
    ['1', '2', 'T', 'D', 'D', 'D', 'D', 's'],
    'answered without a Sync',
  )
  c.send(fe.execute('p1', 4), fe.flush())
  t.same(
    (await c.until('s')).map((m) => m.type),
    ['D', 'D', 'D', 'D', 's'],
  )
  c.send(fe.execute('p1', 4), fe.close('P', 'p1'), fe.sync())
  t.same(
    (await c.until('Z')).map((m) => m.type),
    ['D', 'D', 'C', '3', 'Z'],
  )
  c.send(fe.describe('S', 's1'), fe.close('S', 's1'), fe.sync())
  t.same(
    (await c.until('Z')).map((m) => m.type),
    ['t', 'T', '3', 'Z'],
  )
  c.send(fe.query('COMMIT'))
  await c.until('Z')
})

t.test('an error after Flush leaves the session skipping until Sync', async (t) => {
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.end())
  c.send(fe.parse('', 'SELECT 1/0'), fe.bind('', ''), fe.execute(''), fe.flush())
  const got = await c.until('E')
  t.equal(errorCode(got[got.length - 1]), '22012')
  c.send(fe.parse('', "INSERT INTO ext VALUES (99, 'must be skipped')"), fe.bind('', ''), fe.execute(''), fe.sync())
  t.same(
    (await c.until('Z')).map((m) => m.type),
    ['Z'],
    'messages before Sync were skipped',
  )
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM ext WHERE id = 99')
  t.same(
    per.map((r) => r[0].n),
    [0, 0, 0],
  )
})

t.test('a notice is relayed once', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const notices: string[] = []
  c.on('notice', (n) => notices.push(n.message ?? ''))
  await c.query("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
  await c.query('SELECT 1')
  t.same(notices, ['hello from plpgsql'])
})

t.test('md5 and trust client authentication', async (t) => {
  const md5 = new pg.Client({ host: stack.host, port: stack.port, user: 'md5user', password: 'md5-secret', database: 'postgres' })
  await md5.connect()
  t.same((await md5.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  await md5.end()
  const bad = new pg.Client({ host: stack.host, port: stack.port, user: 'md5user', password: 'wrong', database: 'postgres' })
  await t.rejects(bad.connect(), { code: '28P01' })
  const trusted = new pg.Client({ host: stack.host, port: stack.port, user: 'trusted', database: 'postgres' })
  await trusted.connect()
  t.same((await trusted.query('SELECT 2 AS two')).rows, [{ two: 2 }])
  await trusted.end()
})

t.test('a slow reader does not make pgraid buffer the result set', async (t) => {
  const c = await RawClient.login(stack.port)
  t.teardown(() => c.socket.destroy())
  global.gc?.()
  const before = process.memoryUsage().rss
  c.socket.pause()
  // About 120 MB of rows, produced faster than this client reads.
  c.send(fe.query("SELECT repeat('x', 2000) FROM generate_series(1, 60000)"))
  let peak = 0
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100))
    peak = Math.max(peak, process.memoryUsage().rss - before)
  }
  t.ok(peak < 64 * 1024 * 1024, `memory grew by ${(peak / 1048576).toFixed(0)} MB while the client was not reading (result ~120 MB)`)
  c.socket.resume()
  const msgs = await c.until('Z', 120_000)
  t.equal(msgs.filter((m) => m.type === 'D').length, 60000, 'every row arrived once the client read')
})
