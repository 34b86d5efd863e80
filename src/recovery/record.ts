// One recovery-log record: what a committed write transaction did, exactly
// as pgraid sent it (statement texts after rewriting, bind parameters with
// their types and formats) and the session settings it ran under. And the
// ways pgraid inserts it, in the same transaction, pipelined with COMMIT: a
// named prepared statement in extended-protocol batches, a statement added
// to the text of a simple query.

import { F } from '../protocol/codes.ts'
import { message } from '../protocol/encode.ts'
import { paramFormat, parseBind } from '../protocol/decode.ts'

/** One statement of a transaction as sent to every backend. */
export interface LogEntry {
  /** Query text after pgraid's rewrites (a whole simple-query text, or one prepared statement). */
  q: string
  /** Extended protocol: parameter type OIDs of the Parse, format codes and values of the Bind. */
  t?: number[]
  f?: number[]
  /** Text values as strings, binary values base64-encoded (f[i] = 1); null = SQL NULL. */
  p?: (string | null)[]
  /** COPY FROM STDIN: the data is not in the record (replay impossible; clone instead). */
  copy?: true
  /** A statement that ran outside a transaction block (CREATE DATABASE, CREATE INDEX CONCURRENTLY, ...): recorded after it, not replayed. */
  noTx?: true
  /**
   * Its CommandComplete tag when it first ran ("DELETE 1"), where known before
   * the record was written: a replay changing another number of rows is caught.
   */
  n?: string
  /** Sequences it may draw from (qualified or as written; '*' = any): their states are kept with the record. */
  sq?: string[]
  /**
   * CREATE DATABASE (from template0/template1), DROP DATABASE, ALTER DATABASE ... RENAME: the
   * databases it creates, drops or renames. A resync replays such records first, in commit order,
   * so the target holds the same databases before each one's own log is replayed.
   */
  db?: string[]
}

export interface LogRecord {
  v: 1
  /** Session-level SET statements in effect, in order (replayed before the transaction). */
  settings: string[]
  stmts: LogEntry[]
  /** Every sequence its statements may draw from (the union of theirs); absent when none. */
  sq?: string[]
}

export const LOG_STATEMENT = '__pgraid_log'
/** The row also keeps this backend's state of the record's sequences, taken after the transaction's statements. */
const INSERT = 'INSERT INTO pgraid.log (lsn, at, record, seqs) VALUES ($1, $2, $3, pgraid.seqs_of($3))'
const INT8 = 20
const TIMESTAMPTZ = 1184
const JSONB = 3802

/** The entry for an executed prepared statement: its text and the Bind's parameters. */
export function entryFromBind(query: string, paramTypes: readonly number[], bindBody: Buffer): LogEntry {
  const { formats, values } = parseBind(bindBody)
  const n = values.length
  const f = values.map((_, i) => paramFormat(formats, i))
  const p = values.map((v, i) => (v === null ? null : f[i] === 1 ? v.toString('base64') : v.toString('utf8')))
  const e: LogEntry = { q: query }
  if (n || paramTypes.length) {
    e.t = [...paramTypes]
    e.f = f
    e.p = p
  }
  return e
}

export function recordJson(settings: readonly string[], stmts: readonly LogEntry[]): string {
  let sq: Set<string> | null = null
  for (const e of stmts) if (e.sq) for (const n of e.sq) (sq ??= new Set()).add(n)
  // `sq` first, when there is one: insertText tells from the head whether the row keeps sequence states.
  const rec: Readonly<Omit<LogRecord, 'settings' | 'stmts'>> & { settings: readonly string[]; stmts: readonly LogEntry[] } = sq ? { v: 1, sq: [...sq], settings, stmts } : { v: 1, settings, stmts }
  return JSON.stringify(rec)
}

/** The record names sequences (recordJson puts them first). */
function namesSequences(json: string): boolean {
  return json.startsWith('{"v":1,"sq":[')
}

/** The INSERT of a record as SQL text, to add to a simple query (dollar-quoted: no escaping rules apply). */
export function insertText(lsn: number, at: string, json: string): string {
  let tag = 'pgraid'
  for (let i = 0; json.includes(`$${tag}$`); i++) tag = `pgraid${i}`
  const rec = `$${tag}$${json}$${tag}$`
  // The sequence states only when the record names sequences: no function call on the common path.
  return namesSequences(json)
    ? `INSERT INTO pgraid.log (lsn, at, record, seqs) VALUES (${lsn}, '${at}', ${rec}, pgraid.seqs_of(${rec}))`
    : `INSERT INTO pgraid.log (lsn, at, record) VALUES (${lsn}, '${at}', ${rec})`
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8')
}

/** Parse of the log INSERT as a named statement (once per backend connection). */
export function logParse(): Buffer {
  const types = Buffer.alloc(2 + 12)
  types.writeInt16BE(3, 0)
  types.writeInt32BE(INT8, 2)
  types.writeInt32BE(TIMESTAMPTZ, 6)
  types.writeInt32BE(JSONB, 10)
  return message(F.Parse, Buffer.concat([cstr(LOG_STATEMENT), cstr(INSERT), types]))
}

const LOG_NAME = cstr(LOG_STATEMENT)

/** Bind of the log INSERT to a named portal (the client's unnamed portal is left alone); built in one buffer, once per commit. */
export function logBind(lsn: number, at: string, json: string): Buffer {
  const lsnText = String(lsn)
  const vals = [lsnText, at, json]
  let size = 5 + 2 * LOG_NAME.length + 2 + 2 + 2
  for (const v of vals) size += 4 + Buffer.byteLength(v, 'utf8')
  const out = Buffer.allocUnsafe(size)
  out[0] = F.Bind
  out.writeInt32BE(size - 1, 1)
  let o = 5
  o += LOG_NAME.copy(out, o)
  o += LOG_NAME.copy(out, o)
  o = out.writeInt16BE(0, o) // no parameter format codes: all text
  o = out.writeInt16BE(3, o)
  for (const v of vals) {
    const at4 = o
    o += 4
    const n = out.write(v, o, 'utf8')
    out.writeInt32BE(n, at4)
    o += n
  }
  out.writeInt16BE(0, o) // no result format codes
  return out
}

const LOG_EXECUTE = message(F.Execute, Buffer.concat([LOG_NAME, Buffer.alloc(4)]))

/** Execute of the log INSERT's portal (the same bytes every time: callers must not change them). */
export function logExecute(): Buffer {
  return LOG_EXECUTE
}

/** The databases a statement changes in a way a replay can repeat (LogEntry.db); null when it cannot. */
export function replayableDatabases(command: string, databases: readonly string[] | undefined): string[] | null {
  if (!databases?.length) return null
  // A copy of another database holds that database's state at that moment: only a clone can give it.
  if (command === 'CREATE DATABASE') return databases.slice(1).every((t) => t === 'template0' || t === 'template1') ? [databases[0]!] : null
  if (command === 'DROP DATABASE' || command === 'ALTER DATABASE') return [...databases]
  return null
}
