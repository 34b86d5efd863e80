// Which statements of a batch go into the recovery log, and where the log
// INSERT is placed so it commits with the transaction: before the COMMIT
// (extended protocol: a named statement; simple query: a statement spliced
// into the text), or, for an autocommit write, before the Sync / at the end
// of the text. The LSN is filled in after the batch's locks are granted, so
// conflicting transactions get LSNs in their commit order.

import '../sql/wasm-baseline.ts'
import { parseSync } from 'libpg-query'
import type { StatementInfo } from '../sql/types.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import type { LogEntry } from '../recovery/record.ts'

export interface LogContext {
  /** Session-level SET statements in effect. */
  settings: readonly string[]
  /** Entries of the open transaction so far, and whether one changes data. */
  pending: readonly LogEntry[]
  pendingWrites: boolean
  /** Backends whose connection has the log statement prepared (updated by the planner). */
  prepared: Set<number>
}

export interface BatchLogEntry {
  /** Index of the message in the plan (success is checked on its answer). */
  msg: number
  entry: LogEntry
  writes: boolean
  /** Which statement of the message it is (its CommandComplete among the message's statement ends); undefined = not one statement. */
  unit?: number
}

/** The log INSERT of a committing batch; `fill` writes LSN and time into its message. */
export interface LogCommit {
  fill(lsn: number, at: string): void
  /** The record as inserted (JSON), and after fill its LSN and time: replayed on backends the session lacks. */
  json: string
  /** Its entries (the same objects: tags learnt after the answers are on them). */
  entries: LogEntry[]
  lsn?: number
  at?: string
}

function unqualified(name: string): string {
  const dot = name.lastIndexOf('.')
  return dot >= 0 ? name.slice(dot + 1) : name
}

/** Changes data, so the transaction needs a log record. */
export function changesData(s: StatementInfo, cat: CatalogData): boolean {
  if (s.kind === 'write' || s.kind === 'ddl' || s.kind === 'copy-in') return true
  if (s.kind === 'read' || s.kind === 'copy-out') return !!s.sequences || s.functions.some((f) => !cat.nonVolatile.has(unqualified(f)))
  // A cursor changes data only if its query does (FOR UPDATE, a data-modifying WITH, volatile functions).
  const q = s.session?.cursorQuery
  return !!q && (q.kind !== 'read' || changesData(q, cat))
}

const DRAWING = new Set(['nextval', 'setval'])

/**
 * Sequences a statement may draw from, for the record (docs/recovery.md, "Sequences"): the ones
 * it names in nextval()/setval() ('*' when named at run time), and those the column defaults and
 * identity columns of every table it writes draw from. Their states are kept with the log row.
 */
export function drawnSequences(stmts: readonly StatementInfo[], cat: CatalogData): string[] | undefined {
  let out: Set<string> | undefined
  for (const s of stmts) {
    if (s.sequences && s.functions.some((f) => DRAWING.has(unqualified(f)))) for (const n of s.sequences) (out ??= new Set()).add(n)
    for (const w of s.writes) for (const n of cat.sequencesQualified.get(w.name) ?? []) (out ??= new Set()).add(n)
  }
  return out && [...out]
}

/** Belongs in the record: everything sent everywhere except plain reads and BEGIN/COMMIT/ROLLBACK themselves. */
export function logged(s: StatementInfo, cat: CatalogData): boolean {
  if (s.kind === 'empty') return false
  if (s.kind === 'transaction') return s.tx?.op === 'savepoint' || s.tx?.op === 'release' || s.tx?.op === 'rollback_to' || s.tx?.op === 'set_transaction'
  if (s.kind === 'read' || s.kind === 'copy-out') return changesData(s, cat)
  return true
}

export function isCommit(s: StatementInfo): boolean {
  return s.tx?.op === 'commit' || s.tx?.op === 'prepare'
}

type Spans = readonly { readonly start: number; readonly end: number }[] | null

/** Transaction control texts (BEGIN, COMMIT, END) repeat verbatim: their spans are kept. */
const spansCache = new Map<string, Spans>()

/** Byte spans of each statement in a text, from the parser; null if it does not parse. */
export function statementSpans(text: string): Spans {
  let hit = spansCache.get(text)
  if (hit === undefined) {
    hit = computeSpans(text)
    if (text.length <= 1024) {
      if (spansCache.size >= 1000) spansCache.clear()
      spansCache.set(text, hit)
    }
  }
  return hit
}

function computeSpans(text: string): Spans {
  try {
    const tree = parseSync(text) as { stmts?: { stmt_location?: number; stmt_len?: number }[] }
    const total = Buffer.byteLength(text, 'utf8')
    return (tree.stmts ?? []).map((s) => {
      const start = s.stmt_location ?? 0
      return { start, end: s.stmt_len ? start + s.stmt_len : total }
    })
  } catch {
    return null
  }
}
