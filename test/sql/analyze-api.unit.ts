// Behaviour of the analyze() API around the classification itself: empty
// input, multi-statement strings, parse errors and their fallback, nested
// statements (PREPARE, DECLARE), the result cache, and parse cost.
import t from 'tap'
import { analyze, cacheStats, clearCache, initParser, setCacheLimits } from '../../src/sql/analyze.ts'
import { LruCache } from '../../src/sql/cache.ts'
import { checkInfo, fmt } from './helpers.ts'

await initParser()
await initParser() // idempotent

t.test('empty and comment-only strings are one empty statement', async (t) => {
  for (const sql of ['', '   ', '-- just a comment', '/* block */ ;', ';;']) {
    const a = analyze(sql)
    t.ok(a.ok, sql)
    if (!a.ok) continue
    t.equal(a.statements.length, 1)
    t.hasStrict(a.statements[0], { kind: 'empty', command: '', unknownWrites: false, reads: [], writes: [] }, sql)
  }
})

t.test('multi-statement string: one result per statement, in order, with text', async (t) => {
  const sql = "BEGIN; UPDATE t SET v = 'é' WHERE id = 1; /* note */ SELECT v FROM t;\nCOMMIT"
  const a = analyze(sql)
  if (!a.ok) return t.fail(a.error)
  t.same(
    a.statements.map((s) => [s.kind, s.command, s.text]),
    [
      ['transaction', 'BEGIN', 'BEGIN'],
      ['write', 'UPDATE', "UPDATE t SET v = 'é' WHERE id = 1"],
      ['read', 'SELECT', 'SELECT v FROM t'],
      ['transaction', 'COMMIT', 'COMMIT'],
    ],
  )
})

t.test('syntax error: PostgreSQL message, 1-based position, conservative fallback', async (t) => {
  const a = analyze('SELECT 1; SELEC 2')
  t.equal(a.ok, false)
  if (a.ok) return
  t.equal(a.error, 'syntax error at or near "SELEC"')
  t.equal(a.position, 11)
  t.hasStrict(a.fallback, { kind: 'write', unknownWrites: true })
  const b = analyze("SELECT 'unterminated")
  t.equal(b.ok, false)
  if (!b.ok) t.match(b.error, /unterminated quoted string/)
})

t.test('extended-protocol parameters parse anywhere an expression may appear', async (t) => {
  const a = analyze('SELECT * FROM t WHERE a = $1 AND b = ANY($2::int[]) LIMIT $3 OFFSET $4')
  t.ok(a.ok)
  if (a.ok) checkInfo(t, a.statements[0]!, { kind: 'read', reads: ['t'] })
})

t.test('PREPARE analyses the prepared statement', async (t) => {
  const a = analyze('PREPARE upd (int, int) AS UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2')
  if (!a.ok) return t.fail(a.error)
  const s = a.statements[0]!
  checkInfo(t, s, { kind: 'session', command: 'PREPARE', session: { op: 'prepare', name: 'upd' } })
  t.ok(s.session?.prepared)
  checkInfo(t, s.session!.prepared!, { kind: 'write', command: 'UPDATE', writes: ['pgbench_accounts'] })
})

t.test('DECLARE CURSOR: session unless its query writes or locks', async (t) => {
  const a = analyze('DECLARE c1 CURSOR WITH HOLD FOR SELECT * FROM t ORDER BY id')
  if (!a.ok) return t.fail(a.error)
  checkInfo(t, a.statements[0]!, {
    kind: 'session',
    command: 'DECLARE CURSOR',
    reads: ['t'],
    session: { op: 'declare_cursor', name: 'c1', withHold: true, cursorQuery: { kind: 'read' } },
  })
  const b = analyze('DECLARE c2 CURSOR FOR SELECT * FROM t FOR UPDATE')
  if (!b.ok) return t.fail(b.error)
  checkInfo(t, b.statements[0]!, {
    kind: 'write',
    reads: ['t'],
    writes: ['t'],
    lockingClause: true,
    session: { op: 'declare_cursor', name: 'c2', withHold: false },
  })
})

t.test('EXPLAIN ANALYZE of CREATE TABLE AS is a write creating the table', async (t) => {
  const a = analyze('EXPLAIN ANALYZE CREATE TEMP TABLE x AS SELECT * FROM t')
  if (!a.ok) return t.fail(a.error)
  checkInfo(t, a.statements[0]!, { kind: 'write', command: 'EXPLAIN', reads: ['t'], writes: ['x'], temp: true })
})

t.test('results are cached by exact text, shared and frozen', async (t) => {
  clearCache()
  const sql = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'
  const a = analyze(sql)
  const b = analyze(sql)
  t.equal(a, b, 'same object on a hit')
  t.ok(Object.isFrozen(a))
  if (a.ok) t.throws(() => (a.statements[0]!.reads as unknown[]).push(1))
  t.not(analyze(sql + ' '), a, 'different text, different entry')
  t.hasStrict(cacheStats(), { size: 2, hits: 1, misses: 2 })
})

t.test('the cache is bounded (LRU)', async (t) => {
  const c = new LruCache<number>({ maxEntries: 2, maxTotalChars: 100, maxKeyChars: 10 })
  c.set('a', 1)
  c.set('b', 2)
  c.get('a') // a is now the most recent
  c.set('c', 3) // evicts b
  t.equal(c.get('b'), undefined)
  t.equal(c.get('a'), 1)
  t.equal(c.get('c'), 3)
  c.set('x'.repeat(11), 4) // too long to cache
  t.equal(c.size, 2)
  setCacheLimits({ maxEntries: 1 })
  analyze('SELECT 1')
  analyze('SELECT 2')
  t.equal(cacheStats().size, 1)
  setCacheLimits({ maxEntries: 10_000 })
})

t.test('parse cost (pgbench statements)', async (t) => {
  const stmts = [
    'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2',
    'SELECT abalance FROM pgbench_accounts WHERE aid = $1',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)',
  ]
  const n = 2000
  for (let i = 0; i < n; i++) analyze(`${stmts[i % 3]} -- warm-up ${i}`)
  // uncached: a unique trailing comment defeats the cache without changing the statement
  let t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) analyze(`${stmts[i % 3]} -- ${i}`)
  const uncached = Number(process.hrtime.bigint() - t0) / 1000 / n
  t0 = process.hrtime.bigint()
  for (let i = 0; i < n * 10; i++) analyze(stmts[i % 3]!)
  const cached = Number(process.hrtime.bigint() - t0) / 1000 / (n * 10)
  t.comment(`uncached ${uncached.toFixed(1)} µs/statement, cached ${cached.toFixed(2)} µs/hit`)
  t.ok(cached < uncached, 'a cache hit is cheaper than a parse')
  const a = analyze(stmts[0]!)
  if (a.ok) t.same(a.statements[0]!.writes.map(fmt), ['pgbench_accounts'])
})
