// The shapes an Exchange works with: what the router plans for each message
// (PlannedMsg), what the session provides to it (ExchangeHost), and what it
// reports when the batch is done (Outcome). Types only, so the router can
// describe a batch without depending on the exchange's code.

export interface PlannedMsg {
  code: number
  bytes: Buffer
  targets: number[]
  /** Injected by pgraid (lazy Parse): its answer is consumed, not relayed. */
  swallow?: boolean
  describeStatement?: boolean
  /** A read sent to several backends (REPEATABLE READ snapshots): its rows are not compared (LIMIT without ORDER BY may pick different rows). */
  rowsMayDiffer?: boolean
  /**
   * Its answer is the server's own (pg_terminate_backend, pg_backend_pid...): per backend by nature,
   * so never voted on; the first backend's answer is relayed (DESIGN invariant 6).
   */
  perServer?: boolean
  /** Swallowed, but an ErrorResponse still reaches the client (pgraid's log INSERT failing must not pass silently). */
  surfaceErrors?: boolean
  /** The CommandComplete ending statement number dropUnit (0-based) of a simple query is pgraid's own statement added to the text: not relayed. */
  dropUnit?: number
  /** A swallowed query of pgraid's own whose answer it reads: every unit's raw bytes are kept here. */
  collect?: Buffer[]
}

export interface ExchangeHost {
  /** Writes bytes to the client. */
  out(slice: Buffer): void
  /** Called before a ReadyForQuery is relayed (deliver queued notifications). */
  beforeReady(): void
  /** Backend `idx` disagreed with the majority: take it out of service as inconsistent. */
  inconsistent(idx: number, detail: string): void
  /** Backend `idx` sent a FATAL error in the middle of a batch: its session there is over. */
  backendFatal(idx: number, what: string, fields: Record<string, string>): void
  /** Forwards a client's cancel to backend `idx` (deferred until it reached the client's message). */
  cancel(idx: number): void
  /** A CopyInResponse was relayed: client CopyData must now go to `targets`. */
  enterCopyIn(targets: number[], extended: boolean): void
  names: string[]
}

export interface Outcome {
  /** Per message: units from each target (terminator types only are kept for decisions). */
  diverged: string | null
  /** Last ReadyForQuery status per backend index that answered a Sync/Query. */
  status: Map<number, string>
  /** Backends that disagreed with the majority, taken out during this batch. */
  expelled: { backend: number; detail: string }[]
  /**
   * A difference a client or concurrency causes (CLIENT_CAUSED on some backends, another answer on
   * others): never voted on. Where the batch carries its commit (`completeOnExcuse`), the backends
   * that failed leave the batch (`excused`) and get the commit replayed; otherwise the batch is
   * refused with this error and the transaction fails everywhere (DESIGN invariant 6).
   */
  clientError?: Record<string, string>
  excused: number[]
  /** A read's only backend was lost: the batch must be retried or failed by the session. */
  lostRead?: boolean
  /** Backends whose answer contained an ErrorResponse. */
  errored: Set<number>
  /** First error SQLSTATE seen on the primary answer, if any. */
  errorCode: string | null
  /** Per message index: the terminator types the primary answered (for registry bookkeeping). */
  answers: Map<number, Map<number, number[]>>
}
