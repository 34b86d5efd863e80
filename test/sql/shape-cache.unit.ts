// The shape cache routes simple-protocol reads without a parse per literal:
// texts differing only in literals share a shape; anything the literal
// scanner cannot cut safely has no shape; writes are never served from it.

import t from 'tap'
import { initParser } from '../../src/sql/analyze.ts'
import { analyzeForRouting, shapeOf } from '../../src/sql/shape-cache.ts'

await initParser()

t.test('literals are replaced, everything else kept', async (t) => {
  t.equal(shapeOf('SELECT abalance FROM pgbench_accounts WHERE aid = 12345;'), 'SELECT abalance FROM pgbench_accounts WHERE aid = 0;')
  t.equal(shapeOf("SELECT * FROM t1 WHERE name = 'O''Brien' AND x > 1.5e3"), "SELECT * FROM t1 WHERE name = '' AND x > 0")
  t.equal(shapeOf('SELECT * FROM t1'), 'SELECT * FROM t1', 'digits inside identifiers stay')
})

t.test('texts the scanner cannot cut safely have no shape', async (t) => {
  for (const sql of ['SELECT "a 1" FROM t', 'SELECT $$x$$', "SELECT E'a\\'b'", 'SELECT 1 -- c', 'SELECT /* c */ 1', "SELECT U&'d'", "SELECT B'101'"]) t.equal(shapeOf(sql), null, sql)
})

t.test('reads are served by shape, writes never', async (t) => {
  const a1 = analyzeForRouting('SELECT v FROM shape_t WHERE id = 1')
  const a2 = analyzeForRouting('SELECT v FROM shape_t WHERE id = 2')
  t.equal(a1, a2, 'the second read of the shape reuses the first analysis')
  const w1 = analyzeForRouting('UPDATE shape_t SET v = 1 WHERE id = 1')
  const w2 = analyzeForRouting('UPDATE shape_t SET v = 1 WHERE id = 2')
  t.not(w1, w2, 'writes are analysed from their exact text (their keys differ)')
  t.ok(w2.ok && w2.statements[0].keys?.[0].rows[0].id?.kind === 'const')
  const l1 = analyzeForRouting('SELECT v FROM shape_t WHERE id = 1 FOR UPDATE')
  t.ok(l1.ok && l1.statements[0].kind === 'write', 'a locking read is a write')
})
