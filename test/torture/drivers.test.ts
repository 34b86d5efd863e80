// The torture harness's pgjdbc and psql drivers against a real stack: rows,
// parameters, transactions, SQLSTATEs, odd statement text, destroy(), and
// lost connections surfacing as errors without a SQLSTATE (or class 08),
// never as a silent success or a silent reconnect. Backends end identical.
// The jdbc driver needs default-jdk-headless and libpostgresql-jdbc-java.

import t, { type Test } from 'tap'
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { stackFor, assertIdentical, onEachBackend, bounded } from '../harness/stack.ts'
import { connectJdbc, closeJdbc, jdbcMissing } from '../../tools/torture/drivers/jdbc.ts'
import { connectPsql, parseCsv } from '../../tools/torture/drivers/psql.ts'
import type { ClientSession, Connect, Endpoint } from '../../tools/torture/drivers/driver.ts'

// Before any subtest: awaiting once one ran would let the root test end.
const missing = await jdbcMissing()
const stack = await stackFor(t)
t.teardown(closeJdbc)
const ep: Endpoint = { host: stack.host, port: stack.port, user: stack.user, password: stack.password }

/** A TCP relay in front of pgraid whose connections the test cuts: a connection lost without a word from the server. */
async function relay(target: Endpoint): Promise<{ ep: Endpoint; cut(): void; close(): Promise<void> }> {
  const socks = new Set<net.Socket>()
  const srv = net.createServer((c) => {
    const u = net.connect(target.port, target.host)
    for (const s of [c, u]) {
      socks.add(s)
      s.on('error', () => {})
      s.on('close', () => socks.delete(s))
    }
    c.pipe(u).pipe(c)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const cut = () => socks.forEach((s) => s.destroy())
  return { ep: { ...target, port: (srv.address() as net.AddressInfo).port }, cut, close: () => (cut(), new Promise<void>((r) => srv.close(() => r()))) }
}

/** The error `p` rejects with (a resolution fails the test). */
async function failure(t: Test, p: Promise<unknown>, what: string): Promise<{ code?: string; message: string }> {
  try {
    const r = await bounded(p, 30_000, what)
    t.fail(`${what}: expected an error, got ${JSON.stringify(r)}`)
    return { message: 'no error' }
  } catch (e) {
    return e as { code?: string; message: string }
  }
}

const lostCode = (code: string | undefined) => code === undefined || code.startsWith('08')

t.test('psql CSV parsing: quotes, separators, newlines, empty fields', async (t) => {
  t.same(parseCsv('a,"b, ""c"""\n,"x\ny\r"\n'), [
    ['a', 'b, "c"'],
    ['', 'x\ny\r'],
  ])
})

const drivers: Array<[string, Connect]> = [
  ['jdbc', connectJdbc],
  ['psql', connectPsql],
]

for (const [name, connect] of drivers) {
  t.test(name, async (t) => {
    if (name === 'jdbc' && missing) return void t.fail(missing)
    const table = `drv_${name}`
    const sessions: ClientSession[] = []
    const open = async (e = ep) => {
      const s = await bounded(connect(e), 30_000, `${name} connect`)
      sessions.push(s)
      return s
    }
    t.teardown(() => sessions.forEach((s) => s.destroy()))
    const s = await open()
    t.equal(s.driver, name)
    t.equal(s.cancelKey(), null, 'no cancel key')
    await s.query(`CREATE TABLE ${table} (id serial PRIMARY KEY, v text UNIQUE)`)

    t.test('SELECT with text, int and null parameters', async (t) => {
      const r = await s.query('SELECT $1 AS t, $2::int + 1 AS i, $3::text AS n, $3::text IS NULL AS isnull, $1 || $1 AS tt', ['héllo', 42, null])
      t.same(r.rows, [{ t: 'héllo', i: '43', n: null, isnull: 't', tt: 'héllohéllo' }])
      t.equal(r.rowCount, 1)
      const empty = await s.query(`SELECT '' AS e, NULL::text AS n, 1 AS "col, ""q""" FROM ${table} WHERE false`)
      t.same(empty, { rows: [], rowCount: 0 }, 'no rows')
      const blank = await s.query(`SELECT '' AS e, NULL::text AS n, 1 AS "col, ""q"""`)
      t.same(blank.rows, [{ e: '', n: null, 'col, "q"': '1' }], 'empty string and NULL differ; odd column label')
    })

    t.test('the same statements past pgjdbc prepareThreshold (5): same text values', async (t) => {
      const sql = `SELECT $1::float8 AS f, '\\x78'::bytea AS b, '{1,2}'::int[] AS a, 1.50::numeric AS n, '2024-01-02 03:04:05+00'::timestamptz = $2 AS ts`
      const want = { f: '1e+20', b: '\\x78', a: '{1,2}', n: '1.50', ts: 't' }
      for (let i = 1; i <= 7; i++) {
        await s.query('BEGIN')
        t.same((await s.query(sql, ['1e20', '2024-01-02 03:04:05+00'])).rows, [want], `run ${i}`)
        await s.query('COMMIT')
      }
    })

    t.test('INSERT ... RETURNING id', async (t) => {
      const r = await s.query(`INSERT INTO ${table} (v) VALUES ($1) RETURNING id`, ['first'])
      t.same(r, { rows: [{ id: '1' }], rowCount: 1 })
      const u = await s.query(`UPDATE ${table} SET v = v WHERE id > $1`, [0])
      t.same(u, { rows: [], rowCount: 1 }, 'DML without RETURNING: the update count')
    })

    t.test('BEGIN/INSERT/COMMIT and BEGIN/INSERT/ROLLBACK as statements', async (t) => {
      await s.query('BEGIN')
      await s.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['committed'])
      await s.query('COMMIT')
      await s.query('BEGIN')
      await s.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['rolled back'])
      await s.query('ROLLBACK')
      const r = await s.query(`SELECT v FROM ${table} WHERE v IN ('committed', 'rolled back')`)
      t.same(r.rows, [{ v: 'committed' }])
      const per = await onEachBackend<{ v: string }>(stack, `SELECT v FROM ${table} WHERE v IN ('committed', 'rolled back')`)
      t.same(per, [[{ v: 'committed' }], [{ v: 'committed' }], [{ v: 'committed' }]], 'on every backend')
    })

    t.test('unique violation: 23505, and the session goes on', async (t) => {
      const e = await failure(t, s.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['first']), 'duplicate insert')
      t.equal(e.code, '23505', e.message)
      await s.query('BEGIN')
      t.equal((await failure(t, s.query(`INSERT INTO ${table} (v) VALUES ('first')`), 'duplicate in tx')).code, '23505')
      t.equal((await failure(t, s.query('SELECT 1'), 'statement in aborted tx')).code, '25P02')
      await s.query('ROLLBACK')
      t.same((await s.query('SELECT 1 AS one')).rows, [{ one: '1' }])
    })

    t.test('syntax error: 42601, and the session goes on', async (t) => {
      const e = await failure(t, s.query('SELEC 1'), 'syntax error')
      t.equal(e.code, '42601', e.message)
      t.match(e.message, /syntax error/)
      t.same((await s.query('SELECT 2 AS two')).rows, [{ two: '2' }])
      // psql itself holds back a statement with an open parenthesis; the driver must not wait for it.
      t.equal((await failure(t, s.query('SELECT (1'), 'unclosed parenthesis')).code, '42601')
      t.same((await s.query('SELECT 3 AS three')).rows, [{ three: '3' }])
    })

    t.test('statement text and values with quotes, newlines and separators', async (t) => {
      const v = `it's "quoted", :USER\n\tline 2\r\nback\\slash; semi $x ? end`
      const ins = await s.query(`INSERT INTO ${table} (v)\n  VALUES ($1) -- a comment; with a semicolon\n  RETURNING v;`, [v])
      t.same(ins.rows, [{ v }], 'value round-trips')
      const r = await s.query(`/* leading comment */ SELECT v, 'lit''s "x"' AS lit, E'a\\nb' AS esc\nFROM ${table}\nWHERE v = $1 -- trailing comment`, [v])
      t.same(r.rows, [{ v, lit: `lit's "x"`, esc: 'a\nb' }])
    })

    t.test('destroy(), then a new session works', async (t) => {
      const d = await open()
      d.destroy()
      const e = await failure(t, d.query('SELECT 1'), 'query after destroy')
      t.ok(lostCode(e.code), `no SQLSTATE or class 08 (${e.code}: ${e.message})`)
      const n = await open()
      t.same((await n.query('SELECT 3 AS three')).rows, [{ three: '3' }])
      await n.end()
    })

    t.test('destroy() during pg_sleep(10): the statement fails at once as lost', async (t) => {
      const d = await open()
      const p = d.query('SELECT pg_sleep(10)')
      setTimeout(() => d.destroy(), 300)
      const e = await failure(t, bounded(p, 6000, 'pg_sleep after destroy'), 'pg_sleep after destroy')
      t.ok(lostCode(e.code) && !/hang/.test(e.message), `no SQLSTATE or class 08 (${e.code}: ${e.message})`)
    })

    t.test('connection cut during pg_sleep(10): lost, and the session stays dead', async (t) => {
      const r = await relay(ep)
      t.teardown(r.close)
      const d = await open(r.ep)
      t.same((await d.query('SELECT 4 AS four')).rows, [{ four: '4' }], 'works through the relay')
      const p = d.query('SELECT pg_sleep(10)')
      setTimeout(r.cut, 300)
      const e = await failure(t, bounded(p, 6000, 'pg_sleep on a cut connection'), 'pg_sleep on a cut connection')
      t.ok(lostCode(e.code) && !/hang/.test(e.message), `no SQLSTATE or class 08 (${e.code}: ${e.message})`)
      // The relay still accepts connections: a silent reconnect would make this succeed.
      const again = await failure(t, d.query('SELECT 5'), 'query after the cut')
      t.ok(lostCode(again.code), `still dead (${again.code}: ${again.message})`)
    })

    t.test('sessions at once: one blocked on a row lock, the others go on', async (t) => {
      const [a, b, c] = await Promise.all([open(), open(), open()])
      await a.query('BEGIN')
      await a.query(`UPDATE ${table} SET v = v || '+a' WHERE id = 1`)
      let bDone = false
      const bq = b.query(`UPDATE ${table} SET v = v || '+b' WHERE id = 1`).finally(() => (bDone = true))
      const others = await Promise.all([c.query('SELECT pg_sleep(0.3), 6 AS six'), s.query('SELECT 7 AS seven')])
      t.same([others[0].rows[0].six, others[1].rows], ['6', [{ seven: '7' }]], 'other sessions are not held up')
      t.notOk(bDone, 'b waits for the row lock')
      await a.query('COMMIT')
      t.same(await bounded(bq, 10_000, 'b after the lock is released'), { rows: [], rowCount: 1 })
      t.same((await c.query(`SELECT v FROM ${table} WHERE id = 1`)).rows, [{ v: 'first+a+b' }])
      await Promise.all([a.end(), b.end(), c.end()])
    })

    t.test('end() closes politely', async (t) => {
      await s.end()
      t.ok(lostCode((await failure(t, s.query('SELECT 1'), 'query after end')).code), 'no statements after end()')
    })

    await assertIdentical(t, stack)
  })
}

t.test('closeJdbc() stops the JVM; the next session starts another', { skip: missing ?? false }, async (t) => {
  const jvms = () =>
    execFileSync('ps', ['--ppid', String(process.pid), '-o', 'args='], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('TortureJdbc'))
  const s = await connectJdbc(ep)
  t.equal(jvms().length, 1, 'one JVM for every session')
  const pending = failure(t, s.query('SELECT pg_sleep(10)'), 'statement while the JVM stopped')
  await closeJdbc()
  t.same(jvms(), [], 'no JVM left')
  const e = await pending
  t.ok(lostCode(e.code), `its statement failed as lost (${e.code}: ${e.message})`)
  const n = await connectJdbc(ep)
  t.same((await n.query('SELECT 8 AS eight')).rows, [{ eight: '8' }])
  await n.end()
  await closeJdbc()
  t.same(jvms(), [], 'no JVM left')
})
