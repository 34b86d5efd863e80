// The state of each configured backend, shared by every session: enabled
// backends get reads and writes; a backend that failed (connection lost,
// refused, stalled) is `disabled`, one whose answers disagreed with the
// majority is `inconsistent`. Neither comes back by itself (issue 5, item 7):
// only the lifecycle commands (resync/clone/enable) may re-enable it.
// Each change is recorded in the remaining backends (pgraid.backend_state),
// so a pgraid started later learns it from the backends themselves.

import { EventEmitter } from 'node:events'

export type BackendStateName = 'enabled' | 'disabled' | 'inconsistent'

export interface BackendStatus {
  index: number
  name: string
  state: BackendStateName
  reason: string | null
  since: Date
}

export class BackendStates extends EventEmitter {
  readonly list: BackendStatus[]

  constructor(names: string[]) {
    super()
    this.list = names.map((name, index) => ({ index, name, state: 'enabled', reason: null, since: new Date() }))
  }

  enabled(): number[] {
    return this.list.filter((b) => b.state === 'enabled').map((b) => b.index)
  }

  isEnabled(index: number): boolean {
    return this.list[index]?.state === 'enabled'
  }

  /** Takes a backend out of service; the first reason wins. Returns false if it already was out. */
  takeOut(index: number, state: Exclude<BackendStateName, 'enabled'>, reason: string): boolean {
    const b = this.list[index]
    if (!b || b.state !== 'enabled') return false
    b.state = state
    b.reason = reason
    b.since = new Date()
    this.emit('out', b)
    return true
  }

  /** Puts a backend back in service (after resync/clone, or ENABLE FORCE); sessions attach it. */
  enable(index: number, reason: string): boolean {
    const b = this.list[index]
    if (!b || b.state === 'enabled') return false
    b.state = 'enabled'
    b.reason = reason
    b.since = new Date()
    this.emit('in', b)
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
