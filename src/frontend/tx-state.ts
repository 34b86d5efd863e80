// Where a session stands in its transaction, as its client sees it: the
// status its ReadyForQuery reports, savepoints, the isolation and
// SET LOCAL timeouts in force, whether the transaction changed the schema or
// took its snapshot, and the extended-protocol state up to the next Sync.
// The session updates it from each batch; the planner reads it.

import type { TxStatus } from '../protocol/encode.ts'
import type { StatementInfo } from '../sql/types.ts'
import type { SnapshotState } from '../router/snapshot-point.ts'
import { durationMs } from './timeouts.ts'

export class TxState {
  /** What the client was told: idle, in a transaction, in a failed transaction. */
  status: TxStatus = 'I'
  savepoints = 0
  /** Backends sent messages since the client's last Sync (an implicit transaction may be open there). */
  readonly sinceSync = new Set<number>()
  /** An error in an extended-protocol batch: the client's messages are skipped until its Sync, as PostgreSQL does. */
  clientSkipping = false
  /** Isolation of the session's transactions, as far as pgraid saw it being set. */
  defaultIsolation = 'read committed'
  isolation: string | null = null
  /** SET LOCAL statement_timeout / lock_timeout in ms, until the transaction ends. */
  readonly localTimeouts = new Map<string, number>()
  /** This transaction changed the schema: the catalog is reloaded when it ends. */
  ddl = false
  /** The open REPEATABLE READ / SERIALIZABLE transaction has its snapshot (router/snapshot-point.ts). */
  snapshotTaken = false
  /** When the transaction (or autocommit statement) began: now() and friends are fixed to it. */
  startedAt = 0
  /** The backend reads of this transaction go to (one snapshot, read-your-writes). */
  sticky: number | null = null
  /** Transaction defaults this session set on every backend and nothing can have changed since (known-settings.ts). */
  readonly knownSettings = new Map<string, string>()

  /** Between transactions: nothing open on any backend, nothing of a batch pending (a COPY in progress counts). */
  between(copying: boolean): boolean {
    return this.status === 'I' && !this.sinceSync.size && !copying
  }

  /** What one executed statement changes here. */
  track(s: StatementInfo): void {
    if (s.session?.op === 'set_local' && (s.session.name === 'statement_timeout' || s.session.name === 'lock_timeout')) this.localTimeouts.set(s.session.name, durationMs(s.session.value ?? '') ?? 0)
    if ((s.tx?.op === 'begin' || s.tx?.op === 'set_transaction') && s.tx.isolation) this.isolation = s.tx.isolation
    if (s.tx?.op === 'savepoint') this.savepoints++
    const op = s.session?.op
    const name = s.session?.name
    if (op === 'set' && name === 'default_transaction_isolation' && s.session?.value) this.defaultIsolation = s.session.value.toLowerCase()
    else if (op === 'set' && name === 'transaction_isolation' && s.session?.value) this.isolation = s.session.value.toLowerCase()
    else if ((op === 'reset' && name === 'default_transaction_isolation') || op === 'reset_all' || op === 'discard_all') this.defaultIsolation = 'read committed'
  }

  /** The transaction ended: what belonged to it is forgotten. True when it had changed the schema. */
  end(): boolean {
    const ddl = this.ddl
    this.ddl = false
    this.isolation = null
    this.snapshotTaken = false
    this.localTimeouts.clear()
    this.sticky = null
    this.savepoints = 0
    return ddl
  }

  /** Where this session stands for router/snapshot-point.ts (one object, updated per batch). */
  snapshotState(): SnapshotState {
    const st = this.snapshot
    st.inTransaction = this.status === 'T'
    st.taken = this.snapshotTaken
    st.isolation = this.isolation ?? this.defaultIsolation
    st.defaultIsolation = this.defaultIsolation
    return st
  }
  private readonly snapshot: SnapshotState = { inTransaction: false, taken: false, isolation: '', defaultIsolation: '' }
}
