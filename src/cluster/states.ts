// The state of each configured backend, shared by every session: enabled
// backends get reads and writes; a backend that failed (connection lost,
// refused, stalled) is `disabled`, one whose answers disagreed with the
// majority is `inconsistent`. Neither comes back by itself (issue 5, item 7):
// only the lifecycle commands (resync/clone/enable) may re-enable it.
// Each change is recorded in the remaining backends (pgraid.backend_state),
// so a pgraid started later learns it from the backends themselves.

import { EventEmitter } from 'node:events'

/**
 * `new`: a database added to the configuration (or found without a recovery log) that must be cloned first.
 * `removed`: taken out of the configuration by a reload (src/config/reload-plan.ts): drained, never used again;
 * its index is never reused, so every other backend keeps its index.
 */
export type BackendStateName = 'enabled' | 'disabled' | 'inconsistent' | 'new' | 'removed'

/**
 * Why a backend is out of service, as a closed set (logs, status, metrics): the reason text says
 * the details. `unreachable`, `refused` and `restarted` are the backend's own faults that the
 * health monitor clears by itself once the backend answers and its recovery log proves current.
 */
export type OutCause =
  | 'unreachable' // the server did not answer (connection refused, reset, timed out, shutting down)
  | 'refused' // the server refused pgraid's login (28P01, 28000, 53300, 3D000)
  | 'restarted' // the server restarted (new postmaster start time, timeline): quarantined until checked
  | 'behind' // it lacks committed records the others have: resync it
  | 'new-system' // a different system identifier or no recovery log: clone it
  | 'stalled' // it lagged the others on a statement by timeouts.stallMs
  | 'diverged' // it disagreed with the majority
  | 'replay-failed' // a replay to it failed
  | 'unlogged-change' // a change without a log record happened while it came back
  | 'operator' // DISABLE, or a lifecycle command's step
  | 'recorded' // learnt from the backends' records at start
  | 'removed' // removed from the configuration
  | 'other'

/** Causes the health monitor clears by itself (docs/recovery.md, "Backend health"). */
export const SELF_HEALING: ReadonlySet<OutCause> = new Set<OutCause>(['unreachable', 'refused', 'restarted'])

export interface BackendStatus {
  index: number
  name: string
  state: BackendStateName
  reason: string | null
  since: Date
  /** Taken out by DISABLE: sessions finish what they have in flight there before leaving it. */
  drain: boolean
  /** What a lifecycle command is doing to it right now ('cloning', 'catching up'), shown by status. */
  activity: string | null
  /** Why it is out (null while enabled). */
  cause: OutCause | null
  /**
   * A resync's tail is aligning its sequences (commits held): a transaction that drew without it and
   * ends now aligns it too, as it would once it is enabled. Cleared if such an alignment fails.
   */
  joining: boolean
}

export class BackendStates extends EventEmitter {
  readonly list: BackendStatus[]

  constructor(names: string[]) {
    super()
    this.list = names.map((name, index) => ({ index, name, state: 'enabled', reason: null, since: new Date(), activity: null, drain: false, cause: null, joining: false }))
  }

  enabled(): number[] {
    return this.list.filter((b) => b.state === 'enabled').map((b) => b.index)
  }

  /** Backends whose sequences a transaction that drew without them must align when it ends: in service, or joining. */
  sequenceTargets(): number[] {
    return this.list.filter((b) => b.state === 'enabled' || b.joining).map((b) => b.index)
  }

  isEnabled(index: number): boolean {
    return this.list[index]?.state === 'enabled'
  }

  /** Takes a backend out of service; the first reason wins. Returns false if it already was out. */
  takeOut(index: number, state: Exclude<BackendStateName, 'enabled'>, reason: string, drain: boolean, cause: OutCause): boolean {
    const b = this.list[index]
    if (b?.joining) b.joining = false
    if (!b || b.state !== 'enabled') return false
    b.drain = drain
    b.cause = cause
    b.state = state
    b.reason = reason
    b.since = new Date()
    this.emit('out', b)
    return true
  }

  /** Appends a backend added by a reload (at the next index; nothing is renumbered). */
  add(name: string, state: Exclude<BackendStateName, 'enabled'>, reason: string): BackendStatus {
    const b: BackendStatus = { index: this.list.length, name, state, reason, since: new Date(), activity: null, drain: false, cause: 'new-system', joining: false }
    this.list.push(b)
    return b
  }

  /** Puts a backend back in service (after resync/clone, or ENABLE FORCE); sessions attach it. A removed one never comes back. */
  enable(index: number, reason: string): boolean {
    const b = this.list[index]
    if (!b || b.state === 'enabled' || b.state === 'removed') return false
    b.state = 'enabled'
    b.reason = reason
    b.cause = null
    b.since = new Date()
    this.emit('in', b)
    return true
  }

  /** Changes why a backend is out (clone: `new` while copying, `disabled` once it only lacks log records). */
  mark(index: number, state: Exclude<BackendStateName, 'enabled'>, reason: string, cause: OutCause): boolean {
    const b = this.list[index]
    if (!b || b.state === 'enabled' || b.state === 'removed') return false
    b.cause = cause
    b.state = state
    b.reason = reason
    b.since = new Date()
    return true
  }

  /** Sets a state learnt from the backends' own records at startup. */
  restore(index: number, state: BackendStateName, reason: string | null): void {
    const b = this.list[index]
    if (!b) return
    const wasOut = b.state !== 'enabled'
    b.state = state
    b.reason = reason
    b.cause = state === 'enabled' ? null : 'recorded'
    if (wasOut && state === 'enabled') this.emit('in', b)
  }
}
