// A plain BEGIN sent alone (psql, psycopg2, node-postgres and pgbench -M
// simple send it as its own Query) is answered by pgraid at once and sent to
// the backends together with the transaction's next statement: one round trip
// to every backend less per transaction. PostgreSQL's BEGIN only changes the
// session's state (it cannot fail outside a transaction, and a statement's
// snapshot is taken by the statement, not by BEGIN), and now() is pgraid's own
// clock, fixed when the client's BEGIN arrived. BEGIN with options
// (ISOLATION LEVEL, READ ONLY, DEFERRABLE), or under a snapshot isolation
// default, is not deferred: its snapshot handling starts at the BEGIN.
//
// The next statement carries the BEGIN only if it goes to every backend anyway
// (a write, a transaction or session command, a volatile call); otherwise, and
// before any refusal or extended-protocol batch, the BEGIN goes alone first.

import type { Frame } from '../protocol/framer.ts'
import { F } from '../protocol/codes.ts'
import { bindHead, describeOrClose, executeMsg, parseBind, parseMsg, queryText } from '../protocol/decode.ts'
import { B } from '../protocol/codes.ts'
import { commandComplete, message } from '../protocol/encode.ts'
import type { StatementRegistry } from '../router/statements.ts'
import { analyzeForRouting } from '../sql/shape-cache.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import { anyTxOrSession, needsAll } from '../router/read-kinds.ts'

const BEGIN_TEXT = /^\s*(begin|start)\b/i

function textOf(f: Frame): string | null {
  if (f.type !== F.Query) return null
  return queryText(f.bytes.subarray(f.bodyOffset))
}

/** The first byte after leading whitespace is b/B/s/S (BEGIN, START TRANSACTION). */
function beginsWithBOrS(bytes: Buffer, from: number): boolean {
  for (let i = from; i < bytes.length; i++) {
    const c = bytes[i]!
    if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) continue
    const lower = c | 0x20
    return lower === 0x62 || lower === 0x73
  }
  return false
}

/** A simple Query holding exactly one BEGIN / START TRANSACTION without options. */
export function isPlainBegin(f: Frame): boolean {
  // Asked of every single-message batch: its first letter says no to most without decoding the text.
  if (f.type !== F.Query || !beginsWithBOrS(f.bytes, f.bodyOffset)) return false
  const text = textOf(f)
  return text !== null && plainBeginText(text)
}

function plainBeginText(text: string): boolean {
  // Asked of every autocommit simple Query: most are not a BEGIN, and need no analysis to say so.
  if (!BEGIN_TEXT.test(text)) return false
  const a = analyzeForRouting(text)
  if (!a.ok || a.statements.length !== 1) return false
  const tx = a.statements[0]!.tx
  return tx?.op === 'begin' && tx.isolation === undefined && tx.readOnly === undefined && tx.deferrable === undefined
}

/**
 * What a deferred extended-protocol BEGIN becomes on its way to the backends: the same plain BEGIN
 * as a simple Query (its answers are swallowed either way; the client's portal was answered here).
 */
export const BEGIN_FRAME: Frame = { type: F.Query, bytes: message(F.Query, Buffer.from('BEGIN\0', 'utf8')), bodyOffset: 5 }

const BIND_COMPLETE = message(B.BindComplete)
const NO_DATA = message(B.NoData)
const BEGIN_COMPLETE = commandComplete('BEGIN')

/**
 * Bind of a prepared plain BEGIN without parameters, a Describe of its portal (libpq's
 * PQsendQueryPrepared sends one), Execute, Sync: pgbench -M prepared, and any client preparing its
 * BEGIN. Returns the answers PostgreSQL gives them (ReadyForQuery aside), or null.
 */
export function extendedPlainBegin(frames: Frame[], registry: StatementRegistry): Buffer[] | null {
  if (frames.length < 3 || frames.length > 4 || frames[0]!.type !== F.Bind || frames[frames.length - 1]!.type !== F.Sync) return null
  const body = (f: Frame) => f.bytes.subarray(f.bodyOffset)
  try {
    // Asked of every short extended batch between transactions (a prepared autocommit write): the
    // statement's text says no to most before the Bind's values are read.
    const head = bindHead(body(frames[0]!))
    const st = registry.statements.get(head.statement)
    if (!st || !plainBeginText(st.query) || parseBind(body(frames[0]!)).values.length) return null
    const out = [BIND_COMPLETE]
    for (const f of frames.slice(1, -1)) {
      if (f.type === F.Describe && out.length === 1) {
        const d = describeOrClose(body(f))
        if (d.kind !== 'P' || d.name !== head.portal) return null
        out.push(NO_DATA)
      } else if (f.type === F.Execute && f === frames[frames.length - 2] && executeMsg(body(f)).portal === head.portal) out.push(BEGIN_COMPLETE)
      else return null
    }
    return out[out.length - 1] === BEGIN_COMPLETE ? out : null
  } catch {
    return null // unreadable: the usual path answers it as PostgreSQL does
  }
}

/** Would this simple Query, inside a transaction, go to every backend (and is it no COPY)? */
export function carriesBegin(f: Frame, cat: CatalogData): boolean {
  const text = textOf(f)
  return text !== null && goesEverywhere(text, cat)
}

function goesEverywhere(text: string, cat: CatalogData): boolean {
  const a = analyzeForRouting(text)
  if (!a.ok) return false
  if (a.statements.some((s) => s.kind === 'copy-in' || s.kind === 'copy-out')) return false
  return needsAll(a, cat, true) || anyTxOrSession(a)
}

const EXTENDED = new Set<number>([F.Parse, F.Bind, F.Describe, F.Execute, F.Sync])

/** The same for an extended-protocol batch ending with Sync: every statement it binds goes to every backend. */
export function extendedCarriesBegin(frames: Frame[], cat: CatalogData, registry: StatementRegistry): boolean {
  if (frames.length < 2 || frames[frames.length - 1]!.type !== F.Sync) return false
  const parsed = new Map<string, string>()
  let binds = 0
  try {
    for (const f of frames) {
      if (!EXTENDED.has(f.type)) return false
      const body = f.bytes.subarray(f.bodyOffset)
      if (f.type === F.Parse) {
        const p = parseMsg(body)
        parsed.set(p.name, p.query)
      } else if (f.type === F.Bind) {
        const { statement } = bindHead(body)
        const text = parsed.get(statement) ?? registry.statements.get(statement)?.query
        if (text === undefined || !goesEverywhere(text, cat)) return false
        binds++
      }
    }
  } catch {
    return false
  }
  return binds > 0
}
