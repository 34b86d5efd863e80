// One batch of frontend messages (up to Sync, Flush or a Query) in flight on
// one or more backends, and the merging of their answers into one answer for
// the client. Each message has its own target backends. A message answered by
// one backend is relayed live, byte for byte; a message sent to several is
// compared unit by unit (CommandComplete tags, SQLSTATEs, transaction status)
// and one backend's bytes go to the client only when all have answered that
// unit. Everything here runs synchronously in the backends' data callbacks,
// so a unit is never split or reordered.

import { createHash, type Hash } from 'node:crypto'
import { B, F } from '../protocol/codes.ts'
import { errorFields } from '../protocol/decode.ts'
import { isTerminator, ResponseTracker } from './tracker.ts'
import { CLIENT_CAUSED, clientCaused, compareUnits, describeUnit, majority, type RowDigest, type Unit } from './vote.ts'

export type { RowDigest, Unit } from './vote.ts'

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

const MOD48 = 2 ** 48

/**
 * What a backend answers before any result: safe to hold back while a read may
 * still be retried. Notices too: a dying backend warns (57P01) before it goes.
 */
const PREAMBLE = new Set<number>([B.ParseComplete, B.BindComplete, B.ParameterDescription, B.RowDescription, B.NoData, B.CloseComplete, B.NoticeResponse])

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

interface LinkProgress {
  queue: number[]
  qpos: number
  tracker: ResponseTracker | null
  slices: Buffer[]
  skipping: boolean
  /** The DataRow being hashed, and the rows of the current unit. */
  row: Hash | null
  rows: RowDigest | null
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

export class Exchange {
  private cursor = 0
  /** Units consumed so far of the message at the cursor (multi-target). */
  private consumed = 0
  private links = new Map<number, LinkProgress>()
  private responses: Map<number, Unit[]>[] = []
  private finished: Set<number>[] = []
  private resolveDone!: (o: Outcome) => void
  readonly done: Promise<Outcome>
  readonly outcome: Outcome = { diverged: null, status: new Map(), errored: new Set(), errorCode: null, answers: new Map(), expelled: [], excused: [] }
  /** The batch carries its transaction's commit (log record): see Outcome.clientError. */
  completeOnExcuse = false
  /** Backends that answered a client-caused error in this batch (they skip the rest to the Sync). */
  private readonly clientFailed = new Map<number, Record<string, string>>()

  /** A backend with no answer here because a client-caused error earlier in the batch made it skip. */
  private skippedAfterClientError(targets: number[], units: (Unit | undefined)[]): Record<string, string> | null {
    for (const [k, u] of units.entries()) {
      const f = !u ? this.clientFailed.get(targets[k]!) : undefined
      if (f) return f
    }
    return null
  }

  constructor(
    readonly msgs: PlannedMsg[],
    private readonly host: ExchangeHost,
    initialSkipping: (idx: number) => boolean,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r))
    msgs.forEach((m, i) => {
      this.responses.push(new Map())
      this.finished.push(new Set())
      for (const t of m.targets) {
        let lp = this.links.get(t)
        if (!lp) this.links.set(t, (lp = { queue: [], qpos: 0, tracker: null, slices: [], skipping: initialSkipping(t), row: null, rows: null }))
        lp.queue.push(i)
        this.responses[i].set(t, [])
      }
    })
    for (const [idx, lp] of this.links) this.settle(idx, lp)
    this.advance()
  }

  /** Bytes each backend must be sent, in order. */
  payloads(): Map<number, Buffer[]> {
    const out = new Map<number, Buffer[]>()
    this.msgs.forEach((m) => {
      for (const t of m.targets) {
        let l = out.get(t)
        if (!l) out.set(t, (l = []))
        l.push(m.bytes)
      }
    })
    return out
  }

  /** Backends that still owe answers (for cancel). */
  pendingBackends(): number[] {
    const out: number[] = []
    for (const [idx, lp] of this.links) if (lp.qpos < lp.queue.length) out.push(idx)
    return out
  }

  /**
   * A client's cancel: the backends working on a client's message now. One still on a message of
   * pgraid's own (the BEGIN that makes an autocommit write undoable) gets it when it reaches the
   * client's: cut there, the client's statement would run outside pgraid's transaction.
   */
  cancelTargets(): number[] {
    const out: number[] = []
    for (const [idx, lp] of this.links) {
      if (lp.qpos >= lp.queue.length) continue
      if (this.msgs[lp.queue[lp.qpos]!]!.swallow) (this.cancelLater ??= new Set()).add(idx)
      else out.push(idx)
    }
    return out
  }
  private cancelLater: Set<number> | null = null

  get complete(): boolean {
    return this.isComplete
  }
  private isComplete = false

  /** Raw bytes from backend `idx`. Returns false if they were not expected. */
  data(idx: number, type: number, slice: Buffer): void {
    if (type === B.NotificationResponse) return
    const lp = this.links.get(idx)
    if (!lp || lp.qpos >= lp.queue.length) return
    const m = lp.queue[lp.qpos]
    const msg = this.msgs[m]
    if (m === this.cursor && msg.targets.length === 1 && !msg.swallow && !this.outcome.diverged && msg.dropUnit === undefined && !(this.deferReady && m === this.msgs.length - 1)) {
      // Until a result arrives, the answer's preamble is held back: if the backend dies now, the
      // client has seen nothing and the read can run again elsewhere.
      if (this.holdPreamble && !this.relayed && PREAMBLE.has(type)) {
        this.held.push(slice)
        return
      }
      // An error is relayed once whole: a FATAL one means the backend is going away, not an answer.
      if (type === B.ErrorResponse) {
        this.errorHeld.push(slice)
        return
      }
      this.releaseHeld()
      this.host.out(slice)
      this.relayed = true
      // Bytes still owed of the message being relayed (a slice that starts one carries its header).
      if (!this.midMessage) this.owed = slice.length >= 5 ? 1 + slice.readInt32BE(1) - slice.length : 0
      else this.owed -= slice.length
      this.midMessage = true
    } else {
      lp.slices.push(slice)
      // RETURNING rows, sequence values, ...: what several backends answered must match too.
      if (type === B.DataRow && msg.targets.length > 1 && !msg.rowsMayDiffer) (lp.row ??= createHash('md5')).update(slice)
    }
  }

  /** A whole message from backend `idx` ended. */
  end(idx: number, type: number, body: Buffer | null): void {
    this.midMessage = false
    if (type === B.ErrorResponse && body) {
      const f = errorFields(body)
      const severity = f.V ?? f.S
      // What it skips after this error (to the Sync) is this client-caused failure too, not a disagreement.
      if (CLIENT_CAUSED.has(f.C ?? '')) this.clientFailed.set(idx, f)
      if (severity === 'FATAL' || severity === 'PANIC') {
        this.errorHeld = []
        const lp = this.links.get(idx)
        if (lp) lp.slices = []
        this.host.backendFatal(idx, `${f.C}: ${f.M}`, f)
        return
      }
      if (this.errorHeld.length) {
        this.releaseHeld()
        for (const s of this.errorHeld) this.host.out(s)
        this.errorHeld = []
        this.relayed = true
      }
    }
    if (!isTerminator(type)) {
      if (type === B.DataRow) this.rowEnded(idx)
      return
    }
    const lp = this.links.get(idx)
    if (!lp || lp.qpos >= lp.queue.length) return
    const m = lp.queue[lp.qpos]
    const unit: Unit = { type, body, slices: lp.slices }
    lp.slices = []
    if (lp.rows) {
      unit.rows = lp.rows
      lp.rows = null
    }
    this.responses[m].get(idx)!.push(unit)
    if (type === B.ErrorResponse) {
      this.outcome.errored.add(idx)
      if (this.msgs[m].code !== F.Query) lp.skipping = true
    }
    if (type === B.ReadyForQuery && body) {
      this.outcome.status.set(idx, String.fromCharCode(body[0]))
      lp.skipping = false
    }
    if (!lp.tracker) lp.tracker = new ResponseTracker(this.msgs[m].code, !!this.msgs[m].describeStatement)
    if (lp.tracker.step(type)) {
      this.finished[m].add(idx)
      lp.qpos++
      lp.tracker = null
      this.settle(idx, lp)
      if (this.cancelLater?.has(idx) && lp.qpos < lp.queue.length && !this.msgs[lp.queue[lp.qpos]!]!.swallow) {
        this.cancelLater.delete(idx)
        this.host.cancel(idx)
      }
    }
    this.advance()
  }

  private rowEnded(idx: number): void {
    const lp = this.links.get(idx)
    if (!lp?.row) return
    const d = lp.row.digest()
    lp.row = null
    const r = (lp.rows ??= { count: 0, s1: 0, s2: 0 })
    r.count++
    r.s1 = (r.s1 + d.readUIntBE(0, 6)) % MOD48
    r.s2 = (r.s2 + d.readUIntBE(6, 6)) % MOD48
  }

  /** Messages a skipping backend will ignore are answered with nothing. */
  private settle(idx: number, lp: LinkProgress): void {
    while (lp.qpos < lp.queue.length) {
      const m = lp.queue[lp.qpos]
      const code = this.msgs[m].code
      if (lp.skipping && code !== F.Sync) {
        this.finished[m].add(idx)
        lp.qpos++
        continue
      }
      if (code === F.Flush) {
        this.finished[m].add(idx)
        lp.qpos++
        continue
      }
      break
    }
  }

  private advance(): void {
    while (this.cursor < this.msgs.length) {
      const i = this.cursor
      const msg = this.msgs[i]
      const targets = msg.targets
      if (targets.length === 0) {
        this.next()
        continue
      }
      if (targets.length === 1 && !this.outcome.diverged && msg.dropUnit === undefined && !(this.deferReady && i === this.msgs.length - 1)) {
        const t = targets[0]
        const units = this.responses[i].get(t)!
        // pgraid's own message to one backend (a lazy Parse) cut by the client's timeout or cancel, in a
        // batch the others carry on to its commit: that backend leaves the batch and gets the commit
        // replayed, the client is not told of it.
        if (msg.swallow && this.completeOnExcuse && this.links.size > 1 && units[0]?.type === B.ErrorResponse && this.clientFailed.has(t)) {
          this.excuse(t)
          this.next()
          continue
        }
        // Units buffered before the cursor got here go out now; the rest flow live.
        while (this.consumed < units.length) this.emit(msg, units[this.consumed++], [t], i)
        if (!this.finished[i].has(t)) {
          const lp = this.links.get(t)!
          if (lp.queue[lp.qpos] === i && lp.slices.length && !msg.swallow) {
            this.releaseHeld()
            for (const s of lp.slices) this.host.out(s)
            this.relayed = true
            lp.slices = []
          }
          return
        }
        this.next()
        continue
      }
      // Several targets: wait until each has its next unit or has finished.
      let ready = true
      let have = 0
      for (const t of targets) {
        const units = this.responses[i].get(t)!
        if (units.length > this.consumed) have++
        else if (!this.finished[i].has(t)) ready = false
      }
      if (!ready) return
      if (have === 0) {
        this.next()
        continue
      }
      const units = targets.map((t) => this.responses[i].get(t)![this.consumed])
      this.consumed++
      if (this.outcome.diverged) continue
      let winner = 0
      if (msg.perServer) winner = Math.max(0, units.findIndex((u) => !!u))
      else if (have < targets.length || compareUnits(units as Unit[])) {
        // Only answers that differ are looked at further: the common path compares and moves on.
        const caused = clientCaused(units) ?? this.skippedAfterClientError(targets, units)
        if (caused) {
          const ok = units.findIndex((u) => !!u && u.type !== B.ErrorResponse)
          if (!this.completeOnExcuse || ok < 0) {
            this.outcome.clientError ??= caused
            this.diverge(i, targets, units)
            continue
          }
          // The others went on to their COMMIT: those that failed leave the batch, the commit is replayed there.
          units.forEach((u, k) => {
            if (u?.type === B.ErrorResponse || (!u && this.clientFailed.has(targets[k]!))) this.excuse(targets[k]!)
          })
          winner = ok
        } else {
          // Invariant 6: the majority's answer goes to the client, the minority is taken out.
          const v = majority(units)
          if (!v) {
            this.diverge(i, targets, units)
            continue
          }
          const describe = this.describeAll(i, targets, units)
          for (const k of v.losers) this.expel(targets[k]!, describe)
          winner = v.winner
          if (!units[winner]) continue
        }
      }
      const u = units[winner]!
      // Statements of a simple query end with exactly one of these; count them to find pgraid's own.
      const ends = u.type === B.CommandComplete || u.type === B.ErrorResponse || u.type === B.EmptyQueryResponse ? this.statementEnds++ : -1
      this.emit(msg, u, targets, i, msg.dropUnit === ends && u.type === B.CommandComplete)
    }
    this.maybeFinish()
  }

  /** Called once every backend has answered message `index` (and the cursor moves past it). */
  onPassed: { index: number; fn: () => void } | null = null

  private next(): void {
    if (this.onPassed?.index === this.cursor) {
      const fn = this.onPassed.fn
      this.onPassed = null
      fn()
    }
    this.cursor++
    this.consumed = 0
    this.statementEnds = 0
  }
  private statementEnds = 0

  private emit(msg: PlannedMsg, unit: Unit, targets: number[], i: number, drop = false): void {
    let a = this.outcome.answers.get(i)
    if (!a) this.outcome.answers.set(i, (a = new Map()))
    for (const t of targets) {
      let l = a.get(t)
      if (!l) a.set(t, (l = []))
      l.push(unit.type)
    }
    if (unit.type === B.ErrorResponse && unit.body && !this.outcome.errorCode && !msg.swallow)
      this.outcome.errorCode = errorFields(unit.body).C ?? null
    if (msg.collect) msg.collect.push(...unit.slices)
    if ((msg.swallow && !(msg.surfaceErrors && unit.type === B.ErrorResponse)) || drop) return
    if (unit.slices.length) this.releaseHeld()
    if (unit.type === B.ReadyForQuery && this.deferReady && i === this.msgs.length - 1) {
      this.deferred.push(...unit.slices)
      return
    }
    if (unit.type === B.ReadyForQuery) this.host.beforeReady()
    for (const s of unit.slices) this.host.out(s)
    if (unit.slices.length) this.relayed = true
    if (unit.type === B.CopyInResponse) this.host.enterCopyIn(targets, msg.code === F.Execute)
  }

  /**
   * Takes a backend that disagreed with the majority out of this batch (the
   * host takes it out of service): it no longer owes or decides anything.
   */
  private expel(idx: number, detail: string): void {
    this.leave(idx)
    this.outcome.expelled.push({ backend: idx, detail })
    this.host.inconsistent(idx, detail)
  }

  /** Like expel, for a client-caused failure: out of this batch only, the backend stays in service. */
  private excuse(idx: number): void {
    // The commit is completed where it failed before the client hears of it: its ReadyForQuery waits.
    this.deferReady = true
    this.leave(idx)
    this.outcome.excused.push(idx)
  }

  /** Backend `idx` no longer owes or decides anything in this batch. */
  private leave(idx: number): void {
    this.links.delete(idx)
    this.msgs.forEach((m, i) => {
      if (!m.targets.includes(idx)) return
      m.targets = m.targets.filter((t) => t !== idx)
      this.responses[i]!.delete(idx)
      this.finished[i]!.delete(idx)
    })
    this.outcome.status.delete(idx)
    this.outcome.errored.delete(idx)
  }

  private describeAll(i: number, targets: number[], units: (Unit | undefined)[]): string {
    return targets.map((t, k) => `${this.host.names[t] ?? t} answered ${describeUnit(units[k])}`).join('; ') + ` (message ${i + 1} of the batch)`
  }

  private diverge(i: number, targets: number[], units: (Unit | undefined)[]): void {
    this.outcome.diverged = this.describeAll(i, targets, units)
  }

  private maybeFinish(): void {
    if (this.isComplete) return
    if (this.outcome.diverged) {
      for (const lp of this.links.values()) if (lp.qpos < lp.queue.length) return
    } else if (this.cursor < this.msgs.length) return
    if (!this.outcome.diverged) this.releaseHeld()
    this.isComplete = true
    this.resolveDone(this.outcome)
  }

  /** Some answer bytes of this batch reached the client (a lost read can no longer be retried). */
  relayed = false
  /** The batch's final ReadyForQuery is kept in `deferred` for the session to send (a commit still to replay elsewhere). */
  deferReady = false
  deferred: Buffer[] = []
  /** Hold ParseComplete/BindComplete/RowDescription... until a result comes (set for reads ending in Sync). */
  holdPreamble = false
  private held: Buffer[] = []
  private errorHeld: Buffer[] = []

  private releaseHeld(): void {
    if (!this.held.length) return
    for (const h of this.held) this.host.out(h)
    this.held = []
    this.relayed = true
  }

  /**
   * Backend `idx` is gone (taken out of service). Messages it shared with
   * other backends are decided by the others; returns true if it was the only
   * target of a message still unanswered (a read: the caller retries or fails
   * the batch).
   */
  dropBackend(idx: number): boolean {
    if (!this.links.delete(idx)) return false
    let lostSingle = false
    this.msgs.forEach((m, i) => {
      if (!m.targets.includes(idx)) return
      // A client's message that only this backend was answering (a read). pgraid's own messages to it
      // alone (a lazy Parse, the log statement's Parse) just go with it: retrying the batch for them
      // would run its writes and COMMIT a second time on the others.
      if (m.targets.length === 1 && !m.swallow) {
        if (!this.finished[i]!.has(idx)) lostSingle = true
        return
      }
      m.targets = m.targets.filter((t) => t !== idx)
      this.responses[i]!.delete(idx)
      this.finished[i]!.delete(idx)
    })
    this.outcome.status.delete(idx)
    this.outcome.errored.delete(idx)
    if (!lostSingle && !this.isComplete) this.advance()
    return lostSingle
  }

  /** True when no message is half-relayed to the client (an ErrorResponse may be written). */
  atBoundary(): boolean {
    return !this.midMessage
  }
  private midMessage = false
  private owed = 0

  /**
   * The backend relaying a message died in the middle of it: the client's
   * stream is completed with zero bytes up to the length the header promised,
   * so the error that follows is read as a message of its own and the session
   * survives (the half row is garbage, and the query reports the error).
   */
  completeMessage(): void {
    if (!this.midMessage) return
    if (this.owed > 0) this.host.out(Buffer.alloc(this.owed))
    this.owed = 0
    this.midMessage = false
  }

  /** Gives up on the batch (session closed): settles `done` so nothing waits forever. */
  abort(reason: string): void {
    if (this.isComplete) return
    this.outcome.diverged ??= reason
    this.isComplete = true
    this.resolveDone(this.outcome)
  }

  /** Did backend `t` answer message `i` with a unit of `type`? */
  answered(i: number, t: number, type: number): boolean {
    return this.responses[i]?.get(t)?.some((u) => u.type === type) ?? false
  }

  /**
   * The CommandComplete tag ending statement `k` of message `i` (0 for an
   * Execute; the k-th statement of a simple query, pgraid's own statement
   * skipped), as the backends that decided the message answered it.
   */
  statementTag(i: number, k: number): string | undefined {
    const msg = this.msgs[i]
    const t = msg?.targets[0]
    if (t === undefined) return undefined
    const at = msg.dropUnit !== undefined && k >= msg.dropUnit ? k + 1 : k
    let n = 0
    for (const u of this.responses[i]?.get(t) ?? []) {
      if (u.type !== B.CommandComplete && u.type !== B.ErrorResponse && u.type !== B.EmptyQueryResponse) continue
      if (n++ === at) return u.type === B.CommandComplete && u.body ? u.body.toString('utf8', 0, u.body.length - 1) : undefined
    }
    return undefined
  }

  /** Backends whose answers to this batch include a COMMIT that succeeded (CommandComplete "COMMIT"). */
  committedOn(): number[] {
    const out = new Set<number>()
    for (const byBackend of this.responses)
      for (const [t, units] of byBackend ?? [])
        if (units.some((u) => u.type === B.CommandComplete && u.body?.length === 7 && u.body.toString('latin1', 0, 6) === 'COMMIT')) out.add(t)
    return [...out]
  }

  /** Skipping state of each backend after the batch. */
  skippingAfter(idx: number): boolean | undefined {
    return this.links.get(idx)?.skipping
  }
}
