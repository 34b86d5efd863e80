// The writes pgraid refuses (0A000) because run on every backend they would
// leave the backends different, with the error and its position in the text.

import type { StatementInfo } from '../sql/analyze.ts'
import { findCall, findSystemColumn } from '../sql/time-rewrite.ts'
import { nonDeterministicCall, NON_DETERMINISTIC } from '../sql/nondeterministic.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import { errors, type PgError } from '../errors.ts'
import { ddlEvaluatesVolatile } from './default-fill.ts'
import type { Rewrite } from './time-params.ts'

/** What refusal() reads of the planner's context (PlanContext has it; not imported: plan.ts imports this file). */
export interface RefusalContext {
  catalog: CatalogData
  allowFunctions: readonly string[]
  allowTriggers: readonly string[]
}

/**
 * Why a write executed on every backend would leave them different, as the
 * error to send: a per-backend function pgraid cannot supply, a volatile
 * default it cannot place, or a trigger computing per-backend values.
 */
export function refusal(s: StatementInfo, text: string, rw: Rewrite | null, ctx: RefusalContext): PgError | null {
  if (s.kind === 'ddl' && s.command !== 'CREATE TABLE AS') {
    // Defining a default or a function body calls nothing; filling existing rows does.
    if (!/\badd\b|materialized/i.test(text)) return null
    const r = ddlEvaluatesVolatile(text, (f) => NON_DETERMINISTIC.has(f) && !ctx.allowFunctions.includes(f))
    return r && errors.volatileDefault(r.message, r.hint, charPosition(text, r.position))
  }
  const fn = nonDeterministicCall(s.functions, rw ? [...ctx.allowFunctions, ...rw.covered] : ctx.allowFunctions)
  if (fn) return errors.nonDeterministic(fn, charPosition(text, findCall(text, fn)))
  const sys = findSystemColumn(text)
  if (sys) return errors.systemColumn(sys.name, charPosition(text, sys.at))
  if (rw?.refusal) return errors.volatileDefault(rw.refusal.message, rw.refusal.hint, charPosition(text, rw.refusal.position))
  for (const w of s.writes) {
    for (const tr of ctx.catalog.volatileTriggers.get(w.name) ?? []) {
      if (!ctx.allowTriggers.includes(tr.trigger) && !ctx.allowTriggers.includes('*')) return errors.volatileTrigger(w.name, tr.trigger, tr.function, tr.reason)
    }
  }
  return null
}

/** PostgreSQL's error position: 1-based, in characters. */
function charPosition(text: string, byteOffset: number): number | undefined {
  if (byteOffset < 0) return undefined
  return Buffer.from(text, 'utf8').toString('utf8', 0, byteOffset).length + 1
}
