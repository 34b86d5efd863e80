// The recovery log's side of planning one batch (plan.ts, pass 2): the open
// transaction's entries as the batch's messages are planned, and the log
// INSERT where a write transaction commits (log-plan.ts says what is logged).
// One object per batch: its methods are not closures remade for every batch
// (under tsx each named closure also costs a defineProperty of its name).

import { F } from '../protocol/codes.ts'
import type { PlannedMsg } from '../broadcast/exchange.ts'
import type { StatementInfo } from '../sql/analyze.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import { queryMessage } from './time-params.ts'
import { changesData, drawnSequences, isCommit, logged, statementSpans, type BatchLogEntry, type LogCommit, type LogContext } from './log-plan.ts'
import { insertText, logBind, logExecute, logParse, recordJson, replayableDatabases, type LogEntry } from '../recovery/record.ts'

/** The fields of plan.ts's Plan written here (not imported from there: plan.ts imports this file). */
export interface LoggedPlan {
  msgs: PlannedMsg[]
  logEntries: BatchLogEntry[]
  logReset: boolean
  commit: LogCommit | null
  logParse: number | null
  tagged: BatchLogEntry[]
}

/** BEGIN, ROLLBACK or COMMIT: the open transaction's entries start over there. */
export function txControl(s: StatementInfo): boolean {
  return s.tx?.op === 'begin' || s.tx?.op === 'rollback' || isCommit(s)
}

export class BatchLog {
  /** Backends that got messages since the last Sync, this batch's included: where Sync and Flush go. */
  readonly touched: Set<number>
  /** The open transaction's entries so far, and whether one of them changes data. */
  cur: LogEntry[]
  curWrites: boolean

  constructor(
    private readonly plan: LoggedPlan,
    /** null: nothing is logged (a batch on one backend, or no recovery log). */
    readonly log: LogContext | null,
    private readonly catalog: CatalogData,
    private readonly inTransaction: boolean,
    private readonly route: number[],
    sinceSync: Set<number>,
    /** Tie-safe autocommit: the session commits the batch (and its record) once the answers agreed. */
    readonly tieSafe: boolean,
  ) {
    this.touched = new Set<number>(sinceSync)
    this.cur = log ? [...log.pending] : []
    this.curWrites = log?.pendingWrites ?? false
  }

  /** A message into the plan, remembering where it went. */
  push(m: PlannedMsg): void {
    for (const t of m.targets) this.touched.add(t)
    this.plan.msgs.push(m)
  }

  restart(): void {
    this.cur = []
    this.curWrites = false
    this.plan.logEntries = []
    this.plan.logReset = true
  }

  add(msg: number, entry: LogEntry, writes: boolean, unit: number | undefined, stmts: readonly StatementInfo[]): void {
    const sq = writes ? drawnSequences(stmts, this.catalog) : undefined
    if (sq) entry.sq = sq
    for (const s of stmts) if (s.databases) (entry.db ??= []).push(...(replayableDatabases(s.command, s.databases) ?? []))
    this.cur.push(entry)
    this.curWrites ||= writes
    const e: BatchLogEntry = { msg, entry, writes, unit }
    this.plan.logEntries.push(e)
    this.plan.tagged.push(e)
  }

  /** Log INSERT as extended-protocol messages (named statement and portal: the client's unnamed ones stay). */
  injectExtended(): void {
    const log = this.log!
    const plan = this.plan
    const json = recordJson(log.settings, this.cur)
    const lacking = this.route.filter((t) => !log.prepared.has(t))
    if (lacking.length) {
      plan.logParse = plan.msgs.length
      this.push({ code: F.Parse, bytes: logParse(), targets: lacking, swallow: true, surfaceErrors: true })
    }
    const idx = plan.msgs.length
    this.push({ code: F.Bind, bytes: Buffer.alloc(0), targets: this.route, swallow: true, surfaceErrors: true })
    this.push({ code: F.Execute, bytes: logExecute(), targets: this.route, swallow: true, surfaceErrors: true })
    plan.commit = this.commitAt(json, idx, (lsn, at) => logBind(lsn, at, json))
  }

  /** The log INSERT at message idx, built once the LSN is known. */
  private commitAt(json: string, idx: number, build: (lsn: number, at: string) => Buffer): LogCommit {
    const plan = this.plan
    const c: LogCommit = {
      json,
      entries: [...this.cur],
      fill(lsn, at) {
        c.lsn = lsn
        c.at = at
        plan.msgs[idx]!.bytes = build(lsn, at)
      },
    }
    return c
  }

  /** A simple query's statements into the log: the INSERT added to the text where the transaction commits. */
  query(stmts: StatementInfo[], sent: string, idx: number, m: PlannedMsg): void {
    const cat = this.catalog
    if (!stmts.some(txControl)) {
      const writes = stmts.some((s) => changesData(s, cat))
      const copy = stmts.some((s) => s.kind === 'copy-in')
      // One statement in the text: its CommandComplete is the message's first.
      const unit = stmts.length === 1 ? 0 : undefined
      if (this.inTransaction) {
        if (stmts.some((s) => logged(s, cat))) this.add(idx, copy ? { q: sent, copy: true } : { q: sent }, writes, unit, stmts)
        return
      }
      // Autocommit: the text is one implicit transaction; the INSERT is its last statement.
      // COPY (data not in the record) and statements refusing a transaction block are not logged.
      if (!writes || copy || stmts.some((s) => s.noTransactionBlock)) return
      this.add(idx, { q: sent }, writes, unit, stmts)
      if (this.tieSafe) return // committed by the session after the answers agreed
      const json = recordJson(this.log!.settings, this.cur)
      this.plan.commit = this.commitAt(json, idx, (lsn, at) => queryMessage(`${sent}\n;${insertText(lsn, at, json)}`))
      m.dropUnit = stmts.length
      this.restart()
      return
    }
    const spans = statementSpans(sent)
    if (!spans || spans.length !== stmts.length) return
    const bytes = Buffer.from(sent, 'utf8')
    let spliced = false
    for (let k = 0; k < stmts.length; k++) {
      const s = stmts[k]!
      const span = spans[k]!
      if (s.tx?.op === 'begin' || s.tx?.op === 'rollback') this.restart()
      else if (isCommit(s)) {
        if (this.curWrites && !spliced) {
          // One INSERT per text: it goes just before the (first) COMMIT, and its answer is not relayed.
          spliced = true
          const json = recordJson(this.log!.settings, this.cur)
          const head = bytes.toString('utf8', 0, span.start)
          const tail = bytes.toString('utf8', span.start)
          this.plan.commit = this.commitAt(json, idx, (lsn, at) => queryMessage(`${head}${insertText(lsn, at, json)};\n${tail}`))
          m.dropUnit = k
        }
        this.restart()
      } else if (logged(s, cat)) this.add(idx, { q: bytes.toString('utf8', span.start, span.end) }, changesData(s, cat), k, [s])
    }
  }
}
