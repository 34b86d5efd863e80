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
 * `removed`: taken out of the configuration by a reload (src/control/reload.ts): drained, never used again;
 * its index is never reused, so every other backend keeps its index.
 */
export type BackendStateName = 'enabled' | 'disabled' | 'inconsistent' | 'new' | 'removed'

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
}

export class BackendStates extends EventEmitter {
  readonly list: BackendStatus[]

  constructor(names: string[]) {
    super()
    this.list = names.map((name, index) => ({ index, name, state: 'enabled', reason: null, since: new Date(), activity: null, drain: false }))
  }

  enabled(): number[] {
    return this.list.filter((b) => b.state === 'enabled').map((b) => b.index)
  }

  isEnabled(index: number): boolean {
    return this.list[index]?.state === 'enabled'
  }

  /** Takes a backend out of service; the first reason wins. Returns false if it already was out. */
  takeOut(index: number, state: Exclude<BackendStateName, 'enabled'>, reason: string, drain = false): boolean {
    const b = this.list[index]
    if (!b || b.state !== 'enabled') return false
    b.drain = drain
    b.state = state
    b.reason = reason
    b.since = new Date()
    this.emit('out', b)
    return true
  }

  /** Appends a backend added by a reload (at the next index; nothing is renumbered). */
  add(name: string, state: Exclude<BackendStateName, 'enabled'>, reason: string): BackendStatus {
    const b: BackendStatus = { index: this.list.length, name, state, reason, since: new Date(), activity: null, drain: false }
    this.list.push(b)
    return b
  }

  /** Puts a backend back in service (after resync/clone, or ENABLE FORCE); sessions attach it. A removed one never comes back. */
  enable(index: number, reason: string): boolean {
    const b = this.list[index]
    if (!b || b.state === 'enabled' || b.state === 'removed') return false
    b.state = 'enabled'
    b.reason = reason
    b.since = new Date()
    this.emit('in', b)
    return true
  }

  /** Changes why a backend is out (clone: `new` while copying, `disabled` once it only lacks log records). */
  mark(index: number, state: Exclude<BackendStateName, 'enabled'>, reason: string): boolean {
    const b = this.list[index]
    if (!b || b.state === 'enabled' || b.state === 'removed') return false
    b.state = state
    b.reason = reason
    b.since = new Date()
    return true
  }

  /** Sets a state learnt from the backends' own records at startup. */
  restore(index: number, state: BackendStateName, reason: string | null): void {
    const b = this.list[index]
    if (!b) return
    b.state = state
    b.reason = reason
  }
}
