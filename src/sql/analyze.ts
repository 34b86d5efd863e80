// Public entry point of statement analysis: parse with the real PostgreSQL
// grammar, classify each statement for routing and locking, and cache the
// result by exact query text. See docs/sql.md for the rules.
import { classifyNode } from './classify.ts'
import { conservative, emptyStatement } from './draft.ts'
import { LruCache, type CacheLimits } from './cache.ts'
import { initParser, parseStatements } from './parser.ts'
import { traceConsts, type ConstTrace } from './keys.ts'
import type { Analysis, StatementInfo } from './types.ts'

export type { Analysis, CopyInfo, Isolation, KeyAccess, KeyValue, Kind, SessionInfo, StatementInfo, TableName, TxInfo } from './types.ts'
export { initParser }

const cache = new LruCache<Analysis>()

/**
 * Analyses a query string (one or more statements). Synchronous once
 * initParser() has resolved. Results are shared between callers and frozen:
 * do not mutate them.
 */
export function analyze(sql: string): Analysis {
  const hit = cache.get(sql)
  if (hit) return hit
  const result = deepFreeze(compute(sql))
  cache.set(sql, result)
  return result
}

/**
 * A fresh (uncached) analysis with the sources of its literal key values
 * recorded (keys.ts traceConsts), for the shape cache.
 */
export function analyzeTraced(sql: string): { analysis: Analysis; trace: ConstTrace } {
  const { result, trace } = traceConsts(() => compute(sql))
  return { analysis: deepFreeze(result), trace }
}

function compute(sql: string): Analysis {
  const parsed = parseStatements(sql)
  if (!parsed.ok) {
    // the backends reject the whole string too, but the caller must still send it
    // everywhere (it aborts an open transaction on each), so the fallback is a write
    const base = { ok: false as const, error: parsed.error, fallback: conservative(sql.trim(), 'UNKNOWN') }
    return parsed.position !== undefined ? { ...base, position: parsed.position } : base
  }
  // PostgreSQL answers an empty or comment-only query with EmptyQueryResponse
  if (parsed.statements.length === 0) return { ok: true, statements: [emptyStatement(sql.trim())] }
  const statements: StatementInfo[] = parsed.statements.map((s) => classifyNode(s.node, s.text))
  return { ok: true, statements }
}

/** The conservative classification (a write of unknown tables), for callers that cannot analyse. */
export function unknownStatement(sql: string): StatementInfo {
  return conservative(sql, 'UNKNOWN')
}

export function setCacheLimits(limits: Partial<CacheLimits>): void {
  cache.setLimits(limits)
}

export function cacheStats(): { size: number; hits: number; misses: number } {
  return { size: cache.size, hits: cache.hits, misses: cache.misses }
}

export function clearCache(): void {
  cache.clear()
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}
