// Routing for simple-protocol reads without a parse per distinct text.
// Clients that inline literals (psql, pgbench -M simple, many ORMs) send a
// new text for every execution, and the analysis cache keyed by exact text
// never hits. Whether a statement is a read does not depend on its literal
// values, so reads are also cached by their "shape": the text with string
// and number literals replaced. Only read-only analyses are stored (a write's
// key values come from its literals), and texts the simple literal scanner
// cannot cut safely (quoted identifiers, dollar quotes, backslashes,
// comments, E'' strings) always take the exact path. A read naming a
// sequence (nextval('s')) is not stored: the literal is its lock.

import { analyze, type Analysis } from './analyze.ts'

const MAX = 10_000
const shapes = new Map<string, Analysis>()
const UNSAFE = /["$\\&]|--|\/\*|\b[eEuUbBxXnN]'/

export function shapeOf(sql: string): string | null {
  if (sql.length > 8192 || UNSAFE.test(sql)) return null
  return sql.replace(/'(?:[^']|'')*'/g, "''").replace(/\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b/g, '0')
}

/** The analysis of `sql`, from the shape cache when a read of the same shape was seen. */
export function analyzeForRouting(sql: string): Analysis {
  const shape = shapeOf(sql)
  if (shape === null) return analyze(sql)
  const hit = shapes.get(shape)
  if (hit) return hit
  const a = analyze(sql)
  if (a.ok && a.statements.length && a.statements.every((s) => s.kind === 'read' && !s.lockingClause && !s.sequences)) {
    if (shapes.size >= MAX) shapes.clear()
    shapes.set(shape, a)
  }
  return a
}
