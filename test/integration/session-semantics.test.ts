// Session and transaction semantics across backends: SET / SET LOCAL / RESET
// / DISCARD ALL, temp tables, SQL PREPARE/EXECUTE, statements that cannot run
// in a transaction block, the failed-transaction state, ReadyForQuery status,
// large bytea values both ways, and the deterministic clock.

import t from 'tap'
import { randomBytes, createHash } from 'node:crypto'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend } from '../harness/stack.ts'

const stack = await stackFor(t)

t.test('SET, SET LOCAL, RESET and DISCARD ALL apply on every backend', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query("SET application_name = 'pgraid-test'")
  // Reads are balanced: ask several times so every backend answers at least once.
  for (let i = 0; i < 9; i++) t.equal((await c.query('SHOW application_name')).rows[0].application_name, 'pgraid-test')
  await c.query('BEGIN')
  await c.query("SET LOCAL search_path = 'nowhere'")
  t.equal((await c.query('SHOW search_path')).rows[0].search_path, 'nowhere')
  await c.query('COMMIT')
  for (let i = 0; i < 6; i++) t.equal((await c.query('SHOW search_path')).rows[0].search_path, '"$user", public', 'SET LOCAL ended with the transaction')
  await c.query('RESET application_name')
  for (let i = 0; i < 6; i++) t.equal((await c.query('SHOW application_name')).rows[0].application_name, '')
  await c.query("SET TimeZone = 'Asia/Tokyo'")
  await c.query('DISCARD ALL')
  for (let i = 0; i < 6; i++) t.not((await c.query('SHOW TimeZone')).rows[0].TimeZone, 'Asia/Tokyo', 'DISCARD ALL reset the session everywhere')
})

t.test('temp tables live on every backend of the session', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TEMP TABLE scratch (id int, v text)')
  await c.query("INSERT INTO scratch VALUES (1, 'a'), (2, 'b')")
  for (let i = 0; i < 6; i++) t.equal((await c.query('SELECT count(*)::int AS n FROM scratch')).rows[0].n, 2)
  await c.query('INSERT INTO scratch SELECT id + 10, v FROM scratch')
  t.equal((await c.query('SELECT count(*)::int AS n FROM scratch')).rows[0].n, 4)
})

t.test('SQL-level PREPARE / EXECUTE / DEALLOCATE', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE sqlprep (id int PRIMARY KEY, v int)')
  await c.query('PREPARE ins(int, int) AS INSERT INTO sqlprep VALUES ($1, $2)')
  await c.query('EXECUTE ins(1, 10)')
  await c.query('EXECUTE ins(2, 20)')
  await c.query('PREPARE sel(int) AS SELECT v FROM sqlprep WHERE id = $1')
  t.equal((await c.query('EXECUTE sel(2)')).rows[0].v, 20)
  await c.query('DEALLOCATE ins')
  await t.rejects(c.query('EXECUTE ins(3, 30)'), { code: '26000' })
  await assertIdentical(t, stack)
})

t.test('VACUUM and CREATE INDEX CONCURRENTLY run outside transaction blocks', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE maint (id int, v text)')
  await c.query("INSERT INTO maint SELECT g, 'x' FROM generate_series(1, 1000) g")
  await c.query('VACUUM ANALYZE maint')
  await c.query('CREATE INDEX CONCURRENTLY maint_v ON maint (v)')
  const per = await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'maint_v'")
  t.same(
    per.map((r) => r[0].n),
    [1, 1, 1],
    'index built on every backend',
  )
  await c.query('BEGIN')
  await t.rejects(c.query('VACUUM maint'), { code: '25001' }, 'VACUUM inside a transaction block fails as in PostgreSQL')
  await c.query('ROLLBACK')
  await assertIdentical(t, stack)
})

t.test('an error inside a transaction leaves it failed until ROLLBACK', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE failed_tx (id int PRIMARY KEY)')
  await c.query('BEGIN')
  await c.query('INSERT INTO failed_tx VALUES (1)')
  await t.rejects(c.query('INSERT INTO failed_tx VALUES (1)'), { code: '23505' })
  await t.rejects(c.query('INSERT INTO failed_tx VALUES (2)'), { code: '25P02' })
  await t.rejects(c.query('SELECT 1'), { code: '25P02' })
  await c.query('ROLLBACK')
  t.equal((await c.query('SELECT count(*)::int AS n FROM failed_tx')).rows[0].n, 0)
  await assertIdentical(t, stack)
})

t.test('bytea of 8 MiB and more both ways', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL)')
  const big = randomBytes(8 * 1024 * 1024 + 123)
  await c.query('INSERT INTO blobs VALUES ($1, $2)', [1, big])
  const back = await c.query('SELECT data FROM blobs WHERE id = 1')
  t.ok(Buffer.compare(back.rows[0].data, big) === 0, '8 MiB value read back intact')
  const sha = createHash('sha256').update(big).digest('hex')
  const per = await onEachBackend<{ h: string }>(stack, "SELECT encode(sha256(data), 'hex') AS h FROM blobs WHERE id = 1")
  t.same(
    per.map((r) => r[0].h),
    [sha, sha, sha],
    'every backend stored the same bytes',
  )
  // The simple protocol carries it as hex text: twice the size.
  const hex = big.subarray(0, 2 * 1024 * 1024).toString('hex')
  await c.query(`INSERT INTO blobs VALUES (2, '\\x${hex}')`)
  const r2 = await c.query('SELECT length(data) AS n FROM blobs WHERE id = 2')
  t.equal(r2.rows[0].n, 2 * 1024 * 1024)
  await assertIdentical(t, stack)
})

t.test('now() and CURRENT_TIMESTAMP give the same value on every backend', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE clock (id int PRIMARY KEY, a timestamptz, b timestamptz, d date, l timestamp)')
  await c.query('INSERT INTO clock VALUES (1, now(), CURRENT_TIMESTAMP, CURRENT_DATE, LOCALTIMESTAMP)')
  await c.query('BEGIN')
  await c.query('INSERT INTO clock VALUES ($1, now(), transaction_timestamp(), current_date, localtimestamp(2))', [2])
  await new Promise((r) => setTimeout(r, 20))
  await c.query('INSERT INTO clock VALUES ($1, now(), CURRENT_TIMESTAMP(3), current_date, localtimestamp)', [3])
  await c.query('COMMIT')
  // CURRENT_TIMESTAMP(3) is now() rounded to milliseconds, as in PostgreSQL.
  const rows = (await c.query('SELECT id, a::timestamptz(3) = b::timestamptz(3) AS same, b = b::timestamptz(3) AS rounded FROM clock ORDER BY id')).rows
  t.same(rows, [
    { id: 1, same: true, rounded: rows[0].rounded },
    { id: 2, same: true, rounded: rows[1].rounded },
    { id: 3, same: true, rounded: true },
  ])
  const inTx = (await c.query('SELECT count(DISTINCT a)::int AS n FROM clock WHERE id IN (2, 3)')).rows[0].n
  t.equal(inTx, 1, 'now() is the same for every statement of a transaction')
  await assertIdentical(t, stack)
})

t.test('a clock or random call keeps the output column name PostgreSQL gives it', async (t) => {
  const c = await client(stack)
  t.teardown(() => c.end())
  const sql =
    'SELECT now(), CURRENT_TIMESTAMP, current_date, localtimestamp(2), now()::date, CASE WHEN true THEN 1 ELSE random() END, ' +
    "statement_timestamp() AS st, gen_random_uuid(), transaction_timestamp() + interval '1 day'"
  const b = stack.cluster.backends[0]!
  const raw = new pg.Client({ host: b.host, port: b.port, user: b.user, password: b.password, database: 'postgres' })
  await raw.connect()
  const direct = (await raw.query(sql)).fields.map((f) => f.name)
  await raw.end()
  const names = (await c.query(sql)).fields.map((f) => f.name)
  const prepared = (await c.query({ text: `${sql} WHERE $1::int = 1`, values: [1] })).fields.map((f) => f.name)
  const expected = ['now', 'current_timestamp', 'current_date', 'localtimestamp', 'now', 'random', 'st', 'gen_random_uuid', '?column?']
  t.same(direct, expected, 'PostgreSQL itself names them so')
  t.same(names, expected, 'simple protocol through pgraid: the same names')
  t.same(prepared, expected, 'extended protocol: the same names')
  const { rows } = await c.query<{ now: Date; current_date: Date }>('SELECT now(), current_date')
  t.ok(rows[0]!.now instanceof Date && rows[0]!.current_date instanceof Date, 'and the values arrive under those names')
  await c.query('CREATE TABLE named_ret (id int PRIMARY KEY, at timestamptz)')
  const ret = await c.query('INSERT INTO named_ret VALUES (1, now()) RETURNING now(), at')
  t.same(
    ret.fields.map((f) => f.name),
    ['now', 'at'],
    'RETURNING too',
  )
  await assertIdentical(t, stack)
})
