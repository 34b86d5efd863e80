// Table-driven tests of key access (StatementInfo.keys): the rows an INSERT,
// UPDATE, DELETE or SELECT ... FOR UPDATE provably touches, with the
// statements real clients send (pgbench, ActiveMQ's JDBC store, pgjdbc's
// rewritten batches) and the cases that must give no keys at all.
import t, { type Test } from 'tap'
import { analyze, initParser, type KeyAccess, type KeyValue } from '../../src/sql/analyze.ts'
import { MAX_KEY_ROWS } from '../../src/sql/keys.ts'

await initParser()

const p = (index: number): KeyValue => ({ kind: 'param', index })
const int = (text: string): KeyValue => ({ kind: 'const', text, type: 'int' })
const str = (text: string): KeyValue => ({ kind: 'const', text, type: 'string' })
const flt = (text: string): KeyValue => ({ kind: 'const', text, type: 'float' })
const bool = (b: boolean): KeyValue => ({ kind: 'const', text: String(b), type: 'bool' })
const nul: KeyValue = { kind: 'const', text: 'NULL', type: 'null' }
const tbl = (name: string, schema: string | null = null) => ({ schema, name })

/** expected keys: one KeyAccess, or undefined for "no keys" */
type Case = [sql: string, expect: KeyAccess | undefined]

function run(t: Test, cases: Case[]): void {
  for (const [sql, expect] of cases) {
    const name = sql.length > 120 ? `${sql.slice(0, 117)}...` : sql
    const a = analyze(sql)
    if (!a.ok) {
      t.fail(`parse error for ${name}: ${a.error}`)
      continue
    }
    t.equal(a.statements.length, 1, `one statement: ${name}`)
    t.same(a.statements[0]!.keys, expect === undefined ? undefined : [expect], name)
  }
}

t.test('pgbench TPC-B', async (t) => {
  run(t, [
    ['UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;', { table: tbl('pgbench_accounts'), op: 'update', rows: [{ aid: p(2) }], setColumns: ['abalance'] }],
    ['UPDATE pgbench_tellers SET tbalance = tbalance + 5 WHERE tid = 3', { table: tbl('pgbench_tellers'), op: 'update', rows: [{ tid: int('3') }], setColumns: ['tbalance'] }],
    ['UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2', { table: tbl('pgbench_branches'), op: 'update', rows: [{ bid: p(2) }], setColumns: ['bbalance'] }],
    [
      'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);',
      { table: tbl('pgbench_history'), op: 'insert', rows: [{ tid: p(1), bid: p(2), aid: p(3), delta: p(4) }] },
    ],
    // a plain read takes no row locks: no keys
    ['SELECT abalance FROM pgbench_accounts WHERE aid = $1', undefined],
  ])
})

t.test('ActiveMQ JDBC store', async (t) => {
  run(t, [
    [
      'INSERT INTO ACTIVEMQ_MSGS(ID, MSGID_PROD, MSGID_SEQ, CONTAINER, EXPIRATION, PRIORITY, MSG, XID) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      {
        table: tbl('activemq_msgs'),
        op: 'insert',
        rows: [{ id: p(1), msgid_prod: p(2), msgid_seq: p(3), container: p(4), expiration: p(5), priority: p(6), msg: p(7), xid: p(8) }],
      },
    ],
    ['DELETE FROM ACTIVEMQ_MSGS WHERE ID=$1', { table: tbl('activemq_msgs'), op: 'delete', rows: [{ id: p(1) }] }],
    ['UPDATE ACTIVEMQ_LOCK SET TIME=$1 WHERE ID=1', { table: tbl('activemq_lock'), op: 'update', rows: [{ id: int('1') }], setColumns: ['time'] }],
    [
      'UPDATE ACTIVEMQ_LOCK SET BROKER_NAME=$1, TIME=$2 WHERE (TIME IS NULL OR TIME < $3) AND ID = 1',
      { table: tbl('activemq_lock'), op: 'update', rows: [{ id: int('1') }], setColumns: ['broker_name', 'time'] },
    ],
    ['SELECT * FROM ACTIVEMQ_LOCK FOR UPDATE', undefined],
    [
      'UPDATE ACTIVEMQ_ACKS SET LAST_ACKED_ID=$1 WHERE CONTAINER=$2 AND CLIENT_ID=$3 AND SUB_NAME=$4',
      {
        table: tbl('activemq_acks'),
        op: 'update',
        rows: [{ container: p(2), client_id: p(3), sub_name: p(4) }],
        setColumns: ['last_acked_id'],
      },
    ],
    // a range is not a key
    ['DELETE FROM ACTIVEMQ_MSGS WHERE EXPIRATION <> 0 AND EXPIRATION < $1', undefined],
  ])
})

t.test('WHERE shapes', async (t) => {
  run(t, [
    [
      'DELETE FROM t WHERE a = 1 AND b IN (2, 3)',
      {
        table: tbl('t'),
        op: 'delete',
        rows: [
          { a: int('1'), b: int('2') },
          { a: int('1'), b: int('3') },
        ],
      },
    ],
    ['DELETE FROM t WHERE id = 1 OR id = 2', { table: tbl('t'), op: 'delete', rows: [{ id: int('1') }, { id: int('2') }] }],
    ['DELETE FROM t WHERE (id = 1 OR id = 2) AND x > 0', { table: tbl('t'), op: 'delete', rows: [{ id: int('1') }, { id: int('2') }] }],
    ["DELETE FROM t WHERE id = 1 OR name = 'x'", undefined],
    ['DELETE FROM t WHERE id = 1 OR x > 2', undefined],
    ['DELETE FROM t WHERE id > 5', undefined],
    ['DELETE FROM t WHERE id <> 5', undefined],
    ['DELETE FROM t WHERE id NOT IN (1, 2)', undefined],
    ['DELETE FROM t WHERE NOT (id = 1)', undefined],
    ['DELETE FROM t WHERE id IS NOT DISTINCT FROM 1', undefined],
    ['DELETE FROM t WHERE id = other_col', undefined],
    ['DELETE FROM t WHERE id = 1 + 1', undefined],
    ["DELETE FROM t WHERE lower(name) = 'x'", undefined],
    ['UPDATE t SET x = 1', undefined],
    ['DELETE FROM t', undefined],
    ['DELETE FROM t WHERE 5 = id', { table: tbl('t'), op: 'delete', rows: [{ id: int('5') }] }],
    ['DELETE FROM t WHERE id OPERATOR(pg_catalog.=) 5', { table: tbl('t'), op: 'delete', rows: [{ id: int('5') }] }],
    ['DELETE FROM t WHERE id OPERATOR(myschema.=) 5', undefined],
    ['DELETE FROM t WHERE id = ANY(ARRAY[$1, $2, 3])', { table: tbl('t'), op: 'delete', rows: [{ id: p(1) }, { id: p(2) }, { id: int('3') }] }],
    ['DELETE FROM t WHERE id = ANY(ARRAY[1, 2]::int8[])', { table: tbl('t'), op: 'delete', rows: [{ id: int('1') }, { id: int('2') }] }],
    ['DELETE FROM t WHERE id = ANY($1)', undefined],
    ['DELETE FROM t WHERE id = ALL(ARRAY[1])', undefined],
    ['DELETE FROM t WHERE id IN (SELECT id FROM u)', undefined],
    // row-wise comparisons, also for composite keys
    ['DELETE FROM t WHERE (a, b) = ($1, $2)', { table: tbl('t'), op: 'delete', rows: [{ a: p(1), b: p(2) }] }],
    [
      "DELETE FROM t WHERE (a, b) IN ((1, 'x'), (2, 'y'))",
      {
        table: tbl('t'),
        op: 'delete',
        rows: [
          { a: int('1'), b: str('x') },
          { a: int('2'), b: str('y') },
        ],
      },
    ],
    [
      'DELETE FROM t WHERE (a = 1 AND b = 2) OR (a = 3 AND b = 4)',
      {
        table: tbl('t'),
        op: 'delete',
        rows: [
          { a: int('1'), b: int('2') },
          { a: int('3'), b: int('4') },
        ],
      },
    ],
    // OR branches binding different columns keep only the shared ones
    ['DELETE FROM t WHERE (a = 1 AND b = 2) OR (a = 3)', { table: tbl('t'), op: 'delete', rows: [{ a: int('1') }, { a: int('3') }] }],
    // a column bound twice: the first conjunct is kept (the second only narrows)
    ['DELETE FROM t WHERE id IN (1, 2) AND id = 2', { table: tbl('t'), op: 'delete', rows: [{ id: int('1') }, { id: int('2') }] }],
    // duplicates collapse
    ['DELETE FROM t WHERE id IN (1, 1, 01)', { table: tbl('t'), op: 'delete', rows: [{ id: int('1') }] }],
    ['DELETE FROM t WHERE id = 1 AND EXISTS (SELECT 1 FROM u WHERE u.tid = t.id)', { table: tbl('t'), op: 'delete', rows: [{ id: int('1') }] }],
    ['DELETE FROM t WHERE id = 1 AND x IN (SELECT x FROM t WHERE y = 2)', undefined],
    ['DELETE FROM s.t WHERE id = 1 AND x IN (SELECT x FROM other.t)', undefined],
    ['UPDATE t SET x = (SELECT max(x) FROM t) WHERE id = 1', undefined],
    ['DELETE FROM t WHERE id = 1 RETURNING (SELECT count(*) FROM t)', undefined],
    ['WITH d AS (DELETE FROM u RETURNING id) UPDATE t SET x = 1 WHERE id = 1', undefined],
    ['WITH c AS (SELECT 1) DELETE FROM t WHERE id = 1', undefined],
    ['DELETE FROM t WHERE CURRENT OF cur', undefined],
    ['UPDATE t SET x = 1 WHERE CURRENT OF cur', undefined],
  ])
})

t.test('values: constants, params, casts, signs', async (t) => {
  run(t, [
    ["DELETE FROM t WHERE name = 'O''Brien'", { table: tbl('t'), op: 'delete', rows: [{ name: str("O'Brien") }] }],
    ["DELETE FROM t WHERE name = E'a\\tb'", { table: tbl('t'), op: 'delete', rows: [{ name: str('a\tb') }] }],
    ["DELETE FROM t WHERE name = ''", { table: tbl('t'), op: 'delete', rows: [{ name: str('') }] }],
    ['DELETE FROM t WHERE id = 007', { table: tbl('t'), op: 'delete', rows: [{ id: int('7') }] }],
    ['DELETE FROM t WHERE id = 0', { table: tbl('t'), op: 'delete', rows: [{ id: int('0') }] }],
    ['DELETE FROM t WHERE id = -5', { table: tbl('t'), op: 'delete', rows: [{ id: int('-5') }] }],
    ['DELETE FROM t WHERE id = - 5', { table: tbl('t'), op: 'delete', rows: [{ id: int('-5') }] }],
    ['DELETE FROM t WHERE id = -(5)', { table: tbl('t'), op: 'delete', rows: [{ id: int('-5') }] }],
    ['DELETE FROM t WHERE id = -5::int', { table: tbl('t'), op: 'delete', rows: [{ id: int('-5') }] }],
    ['DELETE FROM t WHERE id = +5', { table: tbl('t'), op: 'delete', rows: [{ id: int('5') }] }],
    ['DELETE FROM t WHERE id = -$1', undefined],
    ['DELETE FROM t WHERE id = 0x1F', { table: tbl('t'), op: 'delete', rows: [{ id: int('31') }] }],
    ['DELETE FROM t WHERE id = 1_000', { table: tbl('t'), op: 'delete', rows: [{ id: int('1000') }] }],
    ['DELETE FROM t WHERE id = 9223372036854775808', { table: tbl('t'), op: 'delete', rows: [{ id: int('9223372036854775808') }] }],
    ['DELETE FROM t WHERE id = -9223372036854775808', { table: tbl('t'), op: 'delete', rows: [{ id: int('-9223372036854775808') }] }],
    ['DELETE FROM t WHERE id = 000000000000000000000012', { table: tbl('t'), op: 'delete', rows: [{ id: int('12') }] }],
    ['DELETE FROM t WHERE x = 1.50', { table: tbl('t'), op: 'delete', rows: [{ x: flt('1.5') }] }],
    ['DELETE FROM t WHERE x = -0.25', { table: tbl('t'), op: 'delete', rows: [{ x: flt('-0.25') }] }],
    ['DELETE FROM t WHERE x = 1.0', { table: tbl('t'), op: 'delete', rows: [{ x: flt('1') }] }],
    ['DELETE FROM t WHERE x = 1e3', { table: tbl('t'), op: 'delete', rows: [{ x: flt('1000') }] }],
    ['DELETE FROM t WHERE x = .5e-2', { table: tbl('t'), op: 'delete', rows: [{ x: flt('0.005') }] }],
    ['DELETE FROM t WHERE x = 0.0', { table: tbl('t'), op: 'delete', rows: [{ x: flt('0') }] }],
    ['DELETE FROM t WHERE flag = true AND other = FALSE', { table: tbl('t'), op: 'delete', rows: [{ flag: bool(true), other: bool(false) }] }],
    ['DELETE FROM t WHERE id = NULL', { table: tbl('t'), op: 'delete', rows: [{ id: nul }] }],
    // casts: the inner value when the cast keeps it
    ["DELETE FROM t WHERE id = '5'::int", { table: tbl('t'), op: 'delete', rows: [{ id: str('5') }] }],
    ['DELETE FROM t WHERE id = $1::bigint', { table: tbl('t'), op: 'delete', rows: [{ id: p(1) }] }],
    ['DELETE FROM t WHERE id = CAST($1 AS integer)', { table: tbl('t'), op: 'delete', rows: [{ id: p(1) }] }],
    ["DELETE FROM t WHERE id = int8 '12'", { table: tbl('t'), op: 'delete', rows: [{ id: str('12') }] }],
    ['DELETE FROM t WHERE id = $1::text', { table: tbl('t'), op: 'delete', rows: [{ id: p(1) }] }],
    ["DELETE FROM t WHERE id = '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid", { table: tbl('t'), op: 'delete', rows: [{ id: str('6ba7b810-9dad-11d1-80b4-00c04fd430c8') }] }],
    ['DELETE FROM t WHERE x = 1.5::numeric', { table: tbl('t'), op: 'delete', rows: [{ x: flt('1.5') }] }],
    // ... and none when it may change it (rounding, truncation, dropped parts, unknown types)
    ['DELETE FROM t WHERE id = 5.7::int', undefined],
    ['DELETE FROM t WHERE x = 0.1::float4', undefined],
    ['DELETE FROM t WHERE x = 1.25::numeric(5,1)', undefined],
    ["DELETE FROM t WHERE name = 'abcdef'::varchar(3)", undefined],
    ["DELETE FROM t WHERE d = '2020-01-01 10:00'::date", undefined],
    ['DELETE FROM t WHERE d = $1::date', undefined],
    ['DELETE FROM t WHERE x = $1::mydomain', undefined],
    ["DELETE FROM t WHERE x = '5'::text::int", undefined],
    ['DELETE FROM t WHERE x = 1.50::text', undefined],
    ['DELETE FROM t WHERE name = \'x\' COLLATE "C"', undefined],
    ["DELETE FROM t WHERE bits = B'101'", undefined],
  ])
})

t.test('names: folding, quoting, aliases, qualification', async (t) => {
  run(t, [
    ['UPDATE accounts a SET bal = 0 WHERE a.id = 7', { table: tbl('accounts'), op: 'update', rows: [{ id: int('7') }], setColumns: ['bal'] }],
    ['UPDATE accounts AS a SET bal = 0 WHERE id = 7', { table: tbl('accounts'), op: 'update', rows: [{ id: int('7') }], setColumns: ['bal'] }],
    // with an alias the table name no longer qualifies columns
    ['UPDATE accounts a SET bal = 0 WHERE accounts.id = 7', undefined],
    ['DELETE FROM t WHERE other.id = 1', undefined],
    ['DELETE FROM t WHERE t.id = 1 AND other.x = 2', { table: tbl('t'), op: 'delete', rows: [{ id: int('1') }] }],
    ['DELETE FROM s.t WHERE s.t.id = 1', { table: tbl('t', 's'), op: 'delete', rows: [{ id: int('1') }] }],
    ['DELETE FROM s.t WHERE t.id = 1', { table: tbl('t', 's'), op: 'delete', rows: [{ id: int('1') }] }],
    ['DELETE FROM t WHERE public.t.id = 1', undefined],
    ['UPDATE "Accounts" SET "Bal" = 0 WHERE "Id" = 1 AND "Accounts"."Region" = \'EU\'', { table: tbl('Accounts'), op: 'update', rows: [{ Id: int('1'), Region: str('EU') }], setColumns: ['Bal'] }],
    ['UPDATE Sch.Tbl SET (a, b) = (1, 2), c[1] = 3, a = 4 WHERE ID = $1', { table: tbl('tbl', 'sch'), op: 'update', rows: [{ id: p(1) }], setColumns: ['a', 'b', 'c'] }],
    // joins: an unqualified column may belong to the other table
    ['DELETE FROM t USING u WHERE t.id = u.id', undefined],
    ['DELETE FROM t USING u WHERE t.id = 1', undefined],
    ['UPDATE t SET x = u.x FROM u WHERE t.id = 1 AND u.id = t.uid', undefined],
  ])
})

t.test('SELECT ... FOR UPDATE / SHARE', async (t) => {
  run(t, [
    ['SELECT * FROM q WHERE id = 4 FOR UPDATE NOWAIT', { table: tbl('q'), op: 'lock', rows: [{ id: int('4') }] }],
    ['SELECT * FROM q WHERE id = $1 FOR SHARE', { table: tbl('q'), op: 'lock', rows: [{ id: p(1) }] }],
    ['SELECT * FROM q WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED', { table: tbl('q'), op: 'lock', rows: [{ id: p(1) }] }],
    ['SELECT * FROM q WHERE id = $1 FOR KEY SHARE', { table: tbl('q'), op: 'lock', rows: [{ id: p(1) }] }],
    ['SELECT x FROM s.q AS z WHERE z.id IN (1, 2) ORDER BY x LIMIT 1 FOR UPDATE OF z', { table: tbl('q', 's'), op: 'lock', rows: [{ id: int('1') }, { id: int('2') }] }],
    ['SELECT * FROM q WHERE id = 1 FOR UPDATE OF other', undefined],
    ['SELECT * FROM q AS z(a, b) WHERE a = 1 FOR UPDATE', undefined],
    ['SELECT * FROM q, r WHERE q.id = 1 FOR UPDATE', undefined],
    ['SELECT * FROM q JOIN r ON r.id = q.rid WHERE q.id = 1 FOR UPDATE OF q', undefined],
    ['SELECT * FROM (SELECT * FROM q WHERE id = 1 FOR UPDATE) s', undefined],
    ['WITH c AS (SELECT 1) SELECT * FROM q WHERE id = 1 FOR UPDATE', undefined],
    ['SELECT * FROM q WHERE id = 1 AND x = (SELECT max(x) FROM q) FOR UPDATE', undefined],
    ['SELECT * FROM q WHERE id > 1 FOR UPDATE', undefined],
  ])
})

t.test('INSERT', async (t) => {
  run(t, [
    // pgjdbc's reWriteBatchedInserts
    [
      'INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)',
      {
        table: tbl('t'),
        op: 'insert',
        rows: [
          { a: p(1), b: p(2) },
          { a: p(3), b: p(4) },
          { a: p(5), b: p(6) },
        ],
      },
    ],
    [
      "INSERT INTO t (a, b, c) VALUES (1, DEFAULT, 'x'), (-2, now(), (SELECT 1)), (1, 2, 3)",
      {
        table: tbl('t'),
        op: 'insert',
        rows: [{ a: int('1'), c: str('x') }, { a: int('-2') }, { a: int('1'), b: int('2'), c: int('3') }],
      },
    ],
    [
      'INSERT INTO t (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = t.n + 1',
      {
        table: tbl('t'),
        op: 'insert',
        rows: [{ id: p(1), v: p(2) }],
        onConflict: 'update',
        conflict: ['id'],
        setColumns: ['v', 'n'],
      },
    ],
    ['INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING', { table: tbl('t'), op: 'insert', rows: [{ id: int('1') }], onConflict: 'nothing' }],
    ['INSERT INTO t (id) VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING', { table: tbl('t'), op: 'insert', rows: [{ id: int('1') }], onConflict: 'nothing' }],
    ['INSERT INTO t (id, e) VALUES (1, 2) ON CONFLICT ((lower(e))) DO NOTHING', { table: tbl('t'), op: 'insert', rows: [{ id: int('1'), e: int('2') }], onConflict: 'nothing' }],
    ['INSERT INTO "S"."T" ("Id", a[1]) VALUES (1, 2) RETURNING *', { table: tbl('T', 'S'), op: 'insert', rows: [{ Id: int('1') }] }],
    // a value computed from the table itself depends on the order of other writes
    ['INSERT INTO t (id, x) VALUES (1, (SELECT max(x) FROM t))', undefined],
    ['INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET x = (SELECT max(x) FROM t)', undefined],
    ['INSERT INTO t (id, x) OVERRIDING SYSTEM VALUE VALUES (1, 2)', { table: tbl('t'), op: 'insert', rows: [{ id: int('1'), x: int('2') }] }],
    // identity columns get their default instead of the given value
    ['INSERT INTO t (id, x) OVERRIDING USER VALUE VALUES (1, 2)', undefined],
    ['INSERT INTO t VALUES (1, 2)', undefined],
    ['INSERT INTO t DEFAULT VALUES', undefined],
    ['INSERT INTO t (a) SELECT a FROM u', undefined],
    ['INSERT INTO t (a) SELECT 1', undefined],
    ['WITH c AS (SELECT 1) INSERT INTO t (a) VALUES (1)', undefined],
    ['INSERT INTO t (a, a) VALUES (1, 2)', undefined],
    ['INSERT INTO t (a, b) VALUES (1)', undefined],
  ])
})

t.test('row cap', async (t) => {
  const list = (n: number, from = 0) => Array.from({ length: n }, (_, i) => i + from).join(', ')
  const ok = analyze(`DELETE FROM t WHERE id IN (${list(MAX_KEY_ROWS)})`)
  t.equal(ok.ok && ok.statements[0]!.keys?.[0]?.rows.length, MAX_KEY_ROWS)
  run(t, [
    [`DELETE FROM t WHERE id IN (${list(MAX_KEY_ROWS + 1)})`, undefined],
    [`DELETE FROM t WHERE a IN (${list(40)}) AND b IN (${list(30)})`, undefined],
  ])
  const product = analyze(`DELETE FROM t WHERE a IN (${list(20)}) AND b IN (${list(50)})`)
  t.equal(product.ok && product.statements[0]!.keys?.[0]?.rows.length, 1000)
  const values = Array.from({ length: MAX_KEY_ROWS + 1 }, (_, i) => `(${i})`).join(', ')
  run(t, [[`INSERT INTO t (id) VALUES ${values}`, undefined]])
})

t.test('multi-statement strings, nested statements and the cache', async (t) => {
  const sql = 'BEGIN; UPDATE a SET x = 1 WHERE id = 1; SELECT * FROM b WHERE id = 2; DELETE FROM c WHERE id = $1; COMMIT'
  const a = analyze(sql)
  if (!a.ok) return t.fail(a.error)
  t.same(
    a.statements.map((s) => s.keys),
    [undefined, [{ table: tbl('a'), op: 'update', rows: [{ id: int('1') }], setColumns: ['x'] }], undefined, [{ table: tbl('c'), op: 'delete', rows: [{ id: p(1) }] }], undefined],
  )
  // cached with the analysis: the same frozen object on a hit
  const b = analyze(sql)
  t.equal(b, a)
  if (b.ok) {
    t.ok(Object.isFrozen(b.statements[1]!.keys![0]!.rows[0]!.id))
  }
  const prep = analyze('PREPARE up (int) AS UPDATE t SET x = 0 WHERE id = $1')
  t.same(prep.ok && prep.statements[0]!.session?.prepared?.keys, [{ table: tbl('t'), op: 'update', rows: [{ id: p(1) }], setColumns: ['x'] }])
  t.equal(prep.ok && prep.statements[0]!.keys, undefined, 'PREPARE itself touches nothing')
  const cur = analyze('DECLARE c CURSOR FOR SELECT * FROM t WHERE id = 3 FOR UPDATE')
  t.same(cur.ok && cur.statements[0]!.session?.cursorQuery?.keys, [{ table: tbl('t'), op: 'lock', rows: [{ id: int('3') }] }])
  // EXPLAIN ANALYZE runs the statement, but the outer analysis claims no keys
  const ex = analyze('EXPLAIN ANALYZE DELETE FROM t WHERE id = 1')
  t.equal(ex.ok && ex.statements[0]!.keys, undefined)
})

t.test('a column named __proto__ is an ordinary key', async (t) => {
  const a = analyze('DELETE FROM t WHERE "__proto__" = 1')
  const rows = a.ok ? a.statements[0]!.keys?.[0]?.rows : undefined
  t.ok(rows && Object.hasOwn(rows[0]!, '__proto__'), 'own property')
  t.equal(Object.getPrototypeOf(rows![0]!), Object.prototype, 'plain object')
  t.same(rows![0]!['__proto__'], int('1'))
})
