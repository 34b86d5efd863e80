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
import { queryText } from '../protocol/decode.ts'
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
  // Asked of every autocommit simple Query: most are not a BEGIN, and need no analysis to say so.
  if (text === null || !BEGIN_TEXT.test(text)) return false
  const a = analyzeForRouting(text)
  if (!a.ok || a.statements.length !== 1) return false
  const tx = a.statements[0]!.tx
  return tx?.op === 'begin' && tx.isolation === undefined && tx.readOnly === undefined && tx.deferrable === undefined
}

/** Would this simple Query, inside a transaction, go to every backend (and is it no COPY)? */
export function carriesBegin(f: Frame, cat: CatalogData): boolean {
  const text = textOf(f)
  if (text === null) return false
  const a = analyzeForRouting(text)
  if (!a.ok) return false
  if (a.statements.some((s) => s.kind === 'copy-in' || s.kind === 'copy-out')) return false
  return needsAll(a, cat, true) || anyTxOrSession(a)
}
