// Literal tracing for key access: while an analysis runs under traceConsts,
// key-literals.ts records where each literal key value came from, so that the
// shape cache (shape-cache.ts) can reuse one analysis for texts that differ
// only in literals. Kept apart so that the value and WHERE modules share one
// recorder without importing each other.
import type { KeyValue } from './types.ts'

/**
 * Where each literal key value came from, recorded while tracing: the byte
 * offset of its constant and whether a sign was applied to it. The shape
 * cache (shape-cache.ts) uses it to reuse one analysis for texts that differ
 * only in literals. `valueDependent`: the result depended on the values
 * themselves (duplicate rows were merged), not only on where they stand.
 */
export interface ConstTrace {
  sources: Map<KeyValue, { at: number; neg: boolean }>
  valueDependent: boolean
}

let tracing: ConstTrace | null = null

/** Runs `fn` (an analysis) recording where its literal key values came from. */
export function traceConsts<T>(fn: () => T): { result: T; trace: ConstTrace } {
  const prev = tracing
  const trace: ConstTrace = { sources: new Map(), valueDependent: false }
  tracing = trace
  try {
    return { result: fn(), trace }
  } finally {
    tracing = prev
  }
}

/** The trace being recorded, or null outside traceConsts. */
export function activeTrace(): ConstTrace | null {
  return tracing
}
