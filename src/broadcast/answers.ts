// The answers an exchange collected, per message and per backend, read: did a
// backend answer a message with a given unit, the tag that ended a statement,
// which backends committed (after the batch), and, when backends' answers
// differ, which one skipped after a client's error and how the answers are
// named in a failure message. Pure functions over the exchange's records, so
// the exchange keeps only the path every message takes.

import { B } from '../protocol/codes.ts'
import { describeUnit, type Unit } from './vote.ts'
import type { PlannedMsg } from './exchange-types.ts'

/** Per message index: each target backend's units, in order. */
export type Responses = Map<number, Unit[]>[]

/** Did backend `t` answer message `i` with a unit of `type`? */
export function answered(responses: Responses, i: number, t: number, type: number): boolean {
  return responses[i]?.get(t)?.some((u) => u.type === type) ?? false
}

/**
 * The CommandComplete tag ending statement `k` of message `i` (0 for an
 * Execute; the k-th statement of a simple query, pgraid's own statement
 * skipped), as the backends that decided the message answered it.
 */
export function statementTag(msgs: PlannedMsg[], responses: Responses, i: number, k: number): string | undefined {
  const msg = msgs[i]
  const t = msg?.targets[0]
  if (t === undefined) return undefined
  const at = msg.dropUnit !== undefined && k >= msg.dropUnit ? k + 1 : k
  let n = 0
  for (const u of responses[i]?.get(t) ?? []) {
    if (u.type !== B.CommandComplete && u.type !== B.ErrorResponse && u.type !== B.EmptyQueryResponse) continue
    if (n++ === at) return u.type === B.CommandComplete && u.body ? u.body.toString('utf8', 0, u.body.length - 1) : undefined
  }
  return undefined
}

/** Backends whose answers to this batch include a COMMIT that succeeded (CommandComplete "COMMIT"). */
export function committedOn(responses: Responses): number[] {
  const out = new Set<number>()
  for (const byBackend of responses)
    for (const [t, units] of byBackend ?? []) if (units.some((u) => u.type === B.CommandComplete && u.body?.length === 7 && u.body.toString('latin1', 0, 6) === 'COMMIT')) out.add(t)
  return [...out]
}

/** A backend with no answer here because a client-caused error earlier in the batch made it skip. */
export function skippedAfterClientError(clientFailed: Map<number, Record<string, string>>, targets: number[], units: (Unit | undefined)[]): Record<string, string> | null {
  for (const [k, u] of units.entries()) {
    const f = !u ? clientFailed.get(targets[k]!) : undefined
    if (f) return f
  }
  return null
}

/** What each backend answered to message `i`, for a divergence or an expulsion. */
export function describeAnswers(names: string[], i: number, targets: number[], units: (Unit | undefined)[]): string {
  return targets.map((t, k) => `${names[t] ?? t} answered ${describeUnit(units[k])}`).join('; ') + ` (message ${i + 1} of the batch)`
}
