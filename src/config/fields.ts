// Leaf builders shared by the config sections (connections.ts, operation.ts), so that the same kind
// of value is checked, and its problem worded, the same way in every section.
import { z } from 'zod'

// Node's timers overflow above 2^31-1 ms and then fire after 1 ms, so a huge timeout would act like a tiny one.
const MAX_TIMER_MS = 2_147_483_647

// Each leaf carries one sentence saying what belongs there; the formatter adds what was found instead.
export function intIn(min: number, max: number, expectation: string) {
  return z.int(expectation).min(min, expectation).max(max, expectation)
}
export function nonEmpty(expectation: string) {
  return z.string(expectation).min(1, expectation)
}
export function timeoutMs(defaultMs: number, meaning: string) {
  return intIn(0, MAX_TIMER_MS, `must be an integer number of milliseconds 0-${MAX_TIMER_MS} (0 = disabled)`).default(defaultMs).describe(meaning)
}
