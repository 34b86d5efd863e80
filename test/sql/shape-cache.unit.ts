// The shape cache analyses simple-protocol statements without a parse per
// literal: texts differing only in literals share a shape; a read's analysis
// is reused as is, a write's gets the new text's literals as key values; and
// anything the literal scanner cannot cut safely has no shape. The property
// test compares every answer from the cache with a fresh analysis.

import t from 'tap'
import { analyze, analyzeTraced, initParser, type Analysis } from '../../src/sql/analyze.ts'
import { analyzeForRouting, clearShapeCache, shapeOf, timeSitesByShape } from '../../src/sql/shape-cache.ts'
import { findTimeSites } from '../../src/sql/time-rewrite.ts'

await initParser()

t.test('literals are replaced, everything else kept', async (t) => {
  t.equal(shapeOf('SELECT abalance FROM pgbench_accounts WHERE aid = 12345;'), 'SELECT abalance FROM pgbench_accounts WHERE aid = 0;')
  t.equal(shapeOf("SELECT * FROM t1 WHERE name = 'O''Brien' AND x > 1.5e3"), "SELECT * FROM t1 WHERE name = '' AND x > 0")
  t.equal(shapeOf('SELECT * FROM t1'), 'SELECT * FROM t1', 'digits inside identifiers stay')
})

t.test('texts the scanner cannot cut safely have no shape', async (t) => {
  for (const sql of ['SELECT "a 1" FROM t', 'SELECT $$x$$', "SELECT E'a\\'b'", 'SELECT 1 -- c', 'SELECT /* c */ 1', "SELECT U&'d'", "SELECT B'101'"]) t.equal(shapeOf(sql), null, sql)
})

t.test('reads are served by shape; writes get their own key values', async (t) => {
  clearShapeCache()
  const a1 = analyzeForRouting('SELECT v FROM shape_t WHERE id = 1')
  const a2 = analyzeForRouting('SELECT v FROM shape_t WHERE id = 2')
  t.equal(a1, a2, 'the second read of the shape reuses the first analysis')
  const w1 = analyzeForRouting('UPDATE shape_t SET v = 1 WHERE id = 1')
  const w2 = analyzeForRouting('UPDATE shape_t SET v = 1 WHERE id = 2')
  t.not(w1, w2, 'each write has its own analysis')
  t.same(w2.ok && w2.statements[0].keys?.[0].rows[0].id, { kind: 'const', text: '2', type: 'int' }, 'the second text keys on its own literal')
  t.equal(w2.ok && w2.statements[0].text, 'UPDATE shape_t SET v = 1 WHERE id = 2', 'and carries its own text')
  const l1 = analyzeForRouting('SELECT v FROM shape_t WHERE id = 1 FOR UPDATE')
  t.ok(l1.ok && l1.statements[0].kind === 'write', 'a locking read is a write')
})

t.test('a literal that changes more than key values keeps its text out of the shape cache', async (t) => {
  clearShapeCache()
  // EXPLAIN's ANALYZE option decides whether the UPDATE runs: a read shape must not answer for it
  const plan = analyzeForRouting("EXPLAIN (ANALYZE 'off') UPDATE shape_t SET v = 1 WHERE id = 1")
  const run = analyzeForRouting("EXPLAIN (ANALYZE 'on') UPDATE shape_t SET v = 1 WHERE id = 1")
  t.equal(plan.ok && plan.statements[0].kind, 'read')
  t.equal(run.ok && run.statements[0].kind, 'write')
  // nextval's literal names the sequence, which is its lock
  analyzeForRouting("INSERT INTO shape_t (id) VALUES (nextval('s1'))")
  const s2 = analyzeForRouting("INSERT INTO shape_t (id) VALUES (nextval('s2'))")
  t.same(s2.ok && s2.statements[0].sequences, ['s2'])
  // equal values merged into one key: a text with different values needs its own rows
  analyzeForRouting('DELETE FROM shape_t WHERE id IN (1, 1)')
  const two = analyzeForRouting('DELETE FROM shape_t WHERE id IN (1, 2)')
  t.equal(two.ok && two.statements[0].keys?.[0].rows.length, 2)
  // a string continued on the next line is one constant
  analyzeForRouting("DELETE FROM shape_t WHERE name = 'a'\n'b'")
  const cont = analyzeForRouting("DELETE FROM shape_t WHERE name = 'c'\n'd'")
  t.same(cont.ok && cont.statements[0].keys?.[0].rows[0].name, { kind: 'const', text: 'cd', type: 'string' })
})

// ---- property: the cache answers exactly what a fresh analysis answers ----

const TEMPLATES = [
  'UPDATE pgbench_accounts SET abalance = abalance + -4711 WHERE aid = 5;',
  'UPDATE pgbench_tellers SET tbalance = tbalance + 17 WHERE tid = 3',
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, -4, CURRENT_TIMESTAMP);',
  "INSERT INTO t (id, name, flag, n) VALUES (1, 'a', true, NULL), (2, 'b''c', false, 1.5)",
  "INSERT INTO t (id, name) VALUES (7, 'x') ON CONFLICT (id) DO UPDATE SET name = 'y'",
  'DELETE FROM t WHERE id = 1 OR id = 2',
  'DELETE FROM t WHERE (id = 1 OR id = 2) AND x > 0',
  'DELETE FROM t WHERE a = 1 AND b IN (2, 3)',
  'DELETE FROM t WHERE id = -5',
  'DELETE FROM t WHERE id = - 5',
  'DELETE FROM t WHERE id = -5::int',
  "DELETE FROM t WHERE id = '5'::int8",
  'DELETE FROM t WHERE name = 5::text',
  "DELETE FROM t WHERE (a, b) = (1, 'x')",
  'DELETE FROM t WHERE id = ANY(ARRAY[1, 2, 3])',
  'UPDATE t SET v = v * 2 WHERE id IN (10, 20) RETURNING id',
  "SELECT * FROM t WHERE id = 3 AND name = 'q' FOR UPDATE",
  'DELETE FROM t WHERE id = 99999999999999999999',
  'DELETE FROM t WHERE id = 1.0',
  'DELETE FROM t WHERE id = 5. AND k = .5',
  "UPDATE t SET v = 'z' WHERE k = 1e3",
  "DELETE FROM t WHERE name IN ('a', 'b') AND id = 5 AND id = 6",
  "INSERT INTO t (id, name) VALUES (5, 'x'), (5, 'x'), (6, 'y')",
  'DELETE FROM t WHERE id=-5 OR id = - -5',
  "UPDATE t SET v = 1 WHERE id = 5 RETURNING 'done', 3",
  "UPDATE ACTIVEMQ_ACKS SET LAST_ACKED_ID=5 WHERE CONTAINER='q://x' AND CLIENT_ID='c1' AND SUB_NAME='s'",
]
const LITERAL = /'(?:[^']|'')*'|\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b/g
const POOL = ['0', '1', '2', '42', '2147483648', '99999999999999999999', '1.5', '2.0', '7e2', "'0'", "'x'", "''", "'it''s'", "'5'", "' 5 '", "'1.5'"]

function random(seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648
  }
}

function normal(a: Analysis): string {
  return JSON.stringify(a)
}

t.test('every answer from the cache equals a fresh analysis of the same text', async (t) => {
  const rnd = random(7)
  let served = 0
  for (const template of TEMPLATES) {
    clearShapeCache()
    t.equal(normal(analyzeForRouting(template)), normal(analyzeTraced(template).analysis), `template: ${template}`)
    for (let i = 0; i < 40; i++) {
      const variant = template.replace(LITERAL, () => POOL[Math.floor(rnd() * POOL.length)]!)
      const fromCache = analyzeForRouting(variant)
      const fresh = analyzeTraced(variant).analysis
      if (normal(fromCache) !== normal(fresh)) t.fail(`differs for ${JSON.stringify(variant)}`, { found: fromCache, wanted: fresh })
      if (fromCache !== analyze(variant)) served++
    }
  }
  t.pass(`${TEMPLATES.length * 40} variants compared`)
  t.ok(served > TEMPLATES.length * 10, `most variants were answered from the shape cache (${served})`)
})

const CLOCK_TEMPLATES = [
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, -4, CURRENT_TIMESTAMP);',
  "UPDATE t SET at = now(), note = 'x' WHERE id = 5 AND at < now() - interval '1 day'",
  'INSERT INTO t (id, u, r, at) VALUES (1, gen_random_uuid(), random(), CURRENT_TIMESTAMP(3)), (2, gen_random_uuid(), 0.5, LOCALTIMESTAMP)',
  "SELECT now(), 'now', 42, statement_timestamp() FROM t WHERE id = 7",
  'INSERT INTO t (id, d) VALUES (12, CURRENT_DATE + 3)',
]

t.test('clock and random calls found on the shape equal those found on the text', async (t) => {
  const rnd = random(11)
  for (const template of CLOCK_TEMPLATES) {
    t.same(timeSitesByShape(template), findTimeSites(template), template)
    for (let i = 0; i < 40; i++) {
      const variant = template.replace(LITERAL, () => POOL[Math.floor(rnd() * POOL.length)]!)
      const byShape = timeSitesByShape(variant)
      const exact = findTimeSites(variant)
      if (JSON.stringify(byShape) !== JSON.stringify(exact)) t.fail(`differs for ${JSON.stringify(variant)}`, { found: byShape, wanted: exact })
    }
  }
  t.pass(`${CLOCK_TEMPLATES.length * 40} variants compared`)
})
