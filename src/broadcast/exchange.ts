// One batch of frontend messages (up to Sync, Flush or a Query) in flight on
// one or more backends, and the merging of their answers into one answer for
// the client. Each message has its own target backends. A message answered by
// one backend is relayed live, byte for byte; a message sent to several is
// compared unit by unit (CommandComplete tags, SQLSTATEs, transaction status)
// and one backend's bytes go to the client only when all have answered that
// unit. Everything here runs synchronously in the backends' data callbacks,
// so a unit is never split or reordered. Its types are in exchange-types.ts,
// each backend's progress in link-progress.ts, reading the answers collected
// in answers.ts, the vote in vote.ts.

import { createHash } from 'node:crypto'
import { B, F } from '../protocol/codes.ts'
import { errorFields } from '../protocol/decode.ts'
import { isTerminator, ResponseTracker } from './tracker.ts'
import { CLIENT_CAUSED, clientCaused, compareUnits, majority, type Unit } from './vote.ts'
import type { ExchangeHost, Outcome, PlannedMsg } from './exchange-types.ts'
import { newLink, rowEnded, settle, type LinkProgress } from './link-progress.ts'
import { answered, committedOn, describeAnswers, skippedAfterClientError, statementTag, type Responses } from './answers.ts'

export type { RowDigest, Unit } from './vote.ts'
export type { ExchangeHost, Outcome, PlannedMsg } from './exchange-types.ts'

/**
 * What a backend answers before any result: safe to hold back while a read may
 * still be retried. Notices too: a dying backend warns (57P01) before it goes.
 */
const PREAMBLE = new Set<number>([B.ParseComplete, B.BindComplete, B.ParameterDescription, B.RowDescription, B.NoData, B.CloseComplete, B.NoticeResponse])

export class Exchange {
  private cursor = 0
  /** Units consumed so far of the message at the cursor (multi-target). */
  private consumed = 0
  private links = new Map<number, LinkProgress>()
  private responses: Responses = []
  private finished: Set<number>[] = []
  private resolveDone!: (o: Outcome) => void
  readonly done: Promise<Outcome>
  readonly outcome: Outcome = { diverged: null, status: new Map(), errored: new Set(), errorCode: null, answers: new Map(), expelled: [], excused: [] }
  /** The batch carries its transaction's commit (log record): see Outcome.clientError. */
  completeOnExcuse = false
  /** Backends that answered a client-caused error in this batch (they skip the rest to the Sync). */
  private readonly clientFailed = new Map<number, Record<string, string>>()

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
        if (!lp) this.links.set(t, (lp = newLink(initialSkipping(t))))
        lp.queue.push(i)
        this.responses[i].set(t, [])
      }
    })
    for (const [idx, lp] of this.links) settle(idx, lp, this.msgs, this.finished)
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
      if (type === B.DataRow) rowEnded(this.links.get(idx))
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
      settle(idx, lp, this.msgs, this.finished)
      if (this.cancelLater?.has(idx) && lp.qpos < lp.queue.length && !this.msgs[lp.queue[lp.qpos]!]!.swallow) {
        this.cancelLater.delete(idx)
        this.host.cancel(idx)
      }
    }
    this.advance()
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
      if (msg.perServer)
        winner = Math.max(
          0,
          units.findIndex((u) => !!u),
        )
      else if (have < targets.length || compareUnits(units as Unit[])) {
        // Only answers that differ are looked at further: the common path compares and moves on.
        const caused = clientCaused(units) ?? skippedAfterClientError(this.clientFailed, targets, units)
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
          const describe = describeAnswers(this.host.names, i, targets, units)
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
    if (unit.type === B.ErrorResponse && unit.body && !this.outcome.errorCode && !msg.swallow) this.outcome.errorCode = errorFields(unit.body).C ?? null
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

  private diverge(i: number, targets: number[], units: (Unit | undefined)[]): void {
    this.outcome.diverged = describeAnswers(this.host.names, i, targets, units)
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
    return answered(this.responses, i, t, type)
  }

  /**
   * The CommandComplete tag ending statement `k` of message `i` (0 for an
   * Execute; the k-th statement of a simple query, pgraid's own statement
   * skipped), as the backends that decided the message answered it.
   */
  statementTag(i: number, k: number): string | undefined {
    return statementTag(this.msgs, this.responses, i, k)
  }

  /** Backends whose answers to this batch include a COMMIT that succeeded (CommandComplete "COMMIT"). */
  committedOn(): number[] {
    return committedOn(this.responses)
  }

  /** Skipping state of each backend after the batch. */
  skippingAfter(idx: number): boolean | undefined {
    return this.links.get(idx)?.skipping
  }
}
