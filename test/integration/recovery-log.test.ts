// The recovery log (issue 5, item 1): every committed write transaction gets
// one row in pgraid.log on every backend, inserted in the same transaction
// (pipelined with its COMMIT), with the statements as sent and an LSN in
// commit order; reads, rollbacks and failed transactions get none; clients
// see exactly PostgreSQL's answers; a fresh pgraid continues the LSNs it
// finds in the backends.

import t from 'tap'
import { startPgraid } from '../../src/server.ts'
import { createLogger } from '../../src/observe/logger.ts'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL)')
await setup.query('INSERT INTO acct SELECT g, 100 FROM generate_series(1, 10) g')
await setup.end()

interface LogRow {
  lsn: string
  record: { v: number; settings: string[]; stmts: { q: string; t?: number[]; f?: number[]; p?: (string | null)[] }[] }
}
const logs = () => onEachBackend<LogRow>(stack, 'SELECT lsn, record FROM pgraid.log ORDER BY lsn')
const maxLsn = async () => Number((await onEachBackend<{ m: string }>(stack, 'SELECT coalesce(max(lsn), 0) AS m FROM pgraid.log'))[0]![0]!.m)

t.test('the schema exists on every backend, with its version', async (t) => {
  const v = await onEachBackend<{ value: string }>(stack, "SELECT value FROM pgraid.meta WHERE key = 'schema_version'")
  t.same(
    v.map((r) => r[0]?.value),
    ['2', '2', '2'],
  )
})

t.test('one record per committed write transaction, identical everywhere; none for reads and rollbacks', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const before = await maxLsn()
  await c.query('SELECT * FROM acct') // read: no record
  const r1 = await c.query('UPDATE acct SET bal = bal - 1 WHERE id = 1') // autocommit, simple
  t.equal(r1.command, 'UPDATE')
  t.equal(r1.rowCount, 1, 'the client sees its own CommandComplete, not the log INSERT')
  const r2 = await c.query('UPDATE acct SET bal = bal + $1 WHERE id = $2', [1, 2]) // autocommit, extended
  t.equal(r2.rowCount, 1)
  await c.query('BEGIN')
  await c.query('UPDATE acct SET bal = bal - 5 WHERE id = 3')
  await c.query({ name: 'upd', text: 'UPDATE acct SET bal = bal + $1 WHERE id = $2', values: [5, 4] })
  await c.query('COMMIT') // explicit, simple COMMIT
  await c.query('BEGIN')
  await c.query('UPDATE acct SET bal = 0 WHERE id = 5')
  await c.query('ROLLBACK') // no record
  await c.query('BEGIN')
  await c.query('UPDATE acct SET bal = bal + 1 WHERE id = 6')
  await c.query('SELECT 1/0').catch(() => {})
  await c.query('COMMIT') // failed transaction: rolls back, no record
  const multi = (await c.query('BEGIN; UPDATE acct SET bal = bal + 7 WHERE id = 7; COMMIT')) as unknown as { command: string }[]
  t.same(
    multi.map((r) => r.command),
    ['BEGIN', 'UPDATE', 'COMMIT'],
    'the INSERT spliced before COMMIT is not relayed',
  )
  const auto = (await c.query('UPDATE acct SET bal = bal + 8 WHERE id = 8; UPDATE acct SET bal = bal - 8 WHERE id = 9')) as unknown as { command: string }[]
  t.same(
    auto.map((r) => r.command),
    ['UPDATE', 'UPDATE'],
    'the INSERT appended to an autocommit text is not relayed',
  )
  const per = await logs()
  t.same(per[1], per[0], 'pg2 has the same log as pg1')
  t.same(per[2], per[0], 'pg3 has the same log as pg1')
  const mine = per[0]!.filter((r) => Number(r.lsn) > before)
  t.equal(mine.length, 5, 'five committed write transactions, five records')
  t.same(
    mine.map((r) => r.record.stmts.map((s) => s.q)),
    [
      ['UPDATE acct SET bal = bal - 1 WHERE id = 1'],
      ['UPDATE acct SET bal = bal + $1 WHERE id = $2'],
      ['UPDATE acct SET bal = bal - 5 WHERE id = 3', 'UPDATE acct SET bal = bal + $1 WHERE id = $2'],
      ['UPDATE acct SET bal = bal + 7 WHERE id = 7'],
      ['UPDATE acct SET bal = bal + 8 WHERE id = 8; UPDATE acct SET bal = bal - 8 WHERE id = 9'],
    ],
  )
  t.same(mine[1]!.record.stmts[0]!.p, ['1', '2'], 'bind parameters as sent')
  t.same(mine[2]!.record.stmts[1]!.p, ['5', '4'])
  const lsns = mine.map((r) => Number(r.lsn))
  t.same(
    lsns,
    [...lsns].sort((a, b) => a - b),
    'LSNs increase in commit order',
  )
  await assertIdentical(t, stack)
})

t.test('session settings and rewritten values are in the record', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query("SET TimeZone = 'Asia/Tokyo'")
  await c.query('CREATE TABLE stamped_log (id int PRIMARY KEY, at timestamptz)')
  await c.query('INSERT INTO stamped_log VALUES (1, now())')
  const per = await logs()
  const last = per[0]![per[0]!.length - 1]!.record
  t.match(last.settings.join(';'), /TimeZone/i, 'the SET is replayed before the transaction')
  t.notMatch(last.stmts[0]!.q, /now\(\)/, 'the record holds the literal pgraid sent, not now()')
  t.match(last.stmts[0]!.q, /'\d{4}-\d\d-\d\dT[\d:.]+Z'::timestamptz/)
})

t.test('settings from the startup packet (and its options) are in the record', async (t) => {
  const c = await client(stack, { options: '-c statement_timeout=50000' })
  t.teardown(() => c.end())
  await c.query('UPDATE acct SET bal = bal WHERE id = 1')
  const per = await logs()
  const last = per[0]![per[0]!.length - 1]!.record
  t.ok(last.settings.includes("SET statement_timeout = '50000'"), `settings: ${last.settings.join('; ')}`)
})

t.test('conflicting transactions get LSNs in the order they commit', async (t) => {
  const a = await client(stack)
  const b = await client(stack)
  t.teardown(() => Promise.all([a.end(), b.end()]))
  await a.query('BEGIN')
  await a.query('UPDATE acct SET bal = 1000 WHERE id = 10')
  const pb = b.query('UPDATE acct SET bal = 2000 WHERE id = 10') // waits for a
  await new Promise((r) => setTimeout(r, 100))
  await a.query('COMMIT')
  await pb
  const per = await logs()
  const rows = per[0]!.filter((r) => r.record.stmts.some((s) => /id = 10/.test(s.q)))
  t.same(
    rows.map((r) => r.record.stmts[0]!.q),
    ['UPDATE acct SET bal = 1000 WHERE id = 10', 'UPDATE acct SET bal = 2000 WHERE id = 10'],
  )
  t.ok(Number(rows[0]!.lsn) < Number(rows[1]!.lsn))
})

t.test('a second pgraid on the same backends is a standby; when the first goes it continues after the highest LSN it finds', async (t) => {
  const before = await maxLsn()
  const other = await startPgraid({ ...stack.config, listen: { ...stack.config.listen, port: 0 } }, createLogger('silent'))
  t.equal(other.context.ha.role, 'standby', 'the first pgraid holds the writer lock')
  const pg = (await import('pg')).default
  const connect = async () => {
    const c = new pg.Client({ host: other.host, port: other.port, user: 'app', password: 'app-secret', database: 'postgres' })
    await c.connect()
    return c
  }
  const s = await connect()
  const refused = await s.query('UPDATE acct SET bal = bal WHERE id = 1').then(
    () => null,
    (e: { code?: string }) => e.code,
  )
  t.equal(refused, '25006', 'a standby refuses writes')
  await s.end()
  t.equal(await maxLsn(), before, 'and writes nothing')
  // The first goes away (closing releases its locks): the second takes over.
  await stack.proxy.close()
  const until = Date.now() + 15_000
  while (!other.context.ha.isWriter()) {
    if (Date.now() > until) throw new Error('the second pgraid did not become the writer within 15 s')
    await new Promise((r) => setTimeout(r, 20))
  }
  const c = await connect()
  await c.query('UPDATE acct SET bal = bal WHERE id = 1')
  await c.end()
  t.equal(await maxLsn(), before + 1 + 10_000, 'after the highest, with a margin for commits a killed pgraid had in flight')
  // The tests below connect to the stack's port: the second pgraid hands over to one listening there.
  await other.close()
  const again = await startPgraid({ ...stack.config, listen: { ...stack.config.listen, port: stack.port } }, createLogger('silent'))
  t.equal(again.context.ha.role, 'writer')
  stack.proxy = again
})

t.test('retention: old records are purged everywhere, but not while a backend is out', async (t) => {
  const s2 = await stackFor(t, { config: { recovery: { retainRecords: 5, purgeIntervalMs: 200 } } })
  const c = await client(s2)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE ret (id int PRIMARY KEY)')
  for (let i = 0; i < 20; i++) await c.query('INSERT INTO ret VALUES ($1)', [i])
  const counts = async () => (await onEachBackend<{ n: number }>(s2, 'SELECT count(*)::int AS n FROM pgraid.log')).map((r) => r[0]!.n)
  let n: number[] = []
  for (let i = 0; i < 50; i++) {
    n = await counts()
    if (n.every((x) => x <= 6)) break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.ok(
    n.every((x) => x <= 6),
    `at most retainRecords + 1 records left on each backend (${n.join(', ')})`,
  )
  await s2.cluster.backends[2]!.kill()
  await c.query('SELECT 1').catch(() => {})
  for (let i = 20; i < 40; i++) await c.query('INSERT INTO ret VALUES ($1)', [i])
  await new Promise((r) => setTimeout(r, 600))
  const left = await Promise.all(
    [0, 1].map(async (i) => {
      const d = await s2.cluster.backends[i]!.client()
      const r = (await d.query('SELECT count(*)::int AS n FROM pgraid.log')).rows[0].n
      await d.end()
      return r
    }),
  )
  t.ok(
    left.every((x) => x >= 20),
    `nothing purged while pg3 is out: it will need them (${left.join(', ')})`,
  )
})

t.test('autocommit COPY and CREATE INDEX CONCURRENTLY leave a marker record a resync must refuse', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE copied (id int PRIMARY KEY)')
  const { from } = await import('pg-copy-streams')
  const stream = c.query(from('COPY copied FROM STDIN'))
  await new Promise<void>((resolve, reject) => {
    stream.on('finish', resolve)
    stream.on('error', reject)
    for (let i = 0; i < 100; i++) stream.write(`${i}\n`)
    stream.end()
  })
  await c.query('CREATE INDEX CONCURRENTLY copied_idx ON copied (id)')
  await c.query('VACUUM copied')
  const per = await logs()
  t.same(per[1], per[0])
  t.same(per[2], per[0])
  const stmts = per[0]!.map((r) => r.record.stmts[0] as { q: string; copy?: boolean; noTx?: boolean })
  t.ok(
    stmts.some((x) => x.q === 'COPY copied FROM STDIN' && x.copy),
    'COPY marked: its data is not in the log',
  )
  t.ok(
    stmts.some((x) => x.q === 'CREATE INDEX CONCURRENTLY copied_idx ON copied (id)' && x.noTx),
    'CREATE INDEX CONCURRENTLY marked',
  )
  t.notOk(
    stmts.some((x) => /^VACUUM/.test(x.q)),
    'VACUUM changes nothing a replica holds: no record',
  )
})
