// Thin wrapper over libpg-query (the real PostgreSQL 18 raw parser, WASM):
// one-time loading, statement splitting with source text, and error mapping.
import './wasm-baseline.ts'
import { loadModule, parseSync } from 'libpg-query'
import type { Node } from '@pgsql/types'

let loaded: Promise<void> | null = null
let ready = false

/** Loads the WASM parser; idempotent and safe to call concurrently. */
export function initParser(): Promise<void> {
  if (!loaded) {
    loaded = loadModule().then(() => {
      ready = true
    })
    // let a failed load be retried by a later call instead of caching the rejection
    loaded.catch(() => {
      loaded = null
    })
  }
  return loaded
}

export function parserReady(): boolean {
  return ready
}

export interface RawStatement {
  node: Node
  text: string
}

export type ParseOutcome = { ok: true; statements: RawStatement[] } | { ok: false; error: string; position?: number }

/**
 * Parses a query string into raw statements. Statement locations from the
 * parser are UTF-8 byte offsets, so non-ASCII text is sliced as bytes.
 */
export function parseStatements(sql: string): ParseOutcome {
  if (!ready) throw new Error('pgraid sql: initParser() must complete before analyze()')
  // libpg-query rejects '' outright; PostgreSQL treats it as an empty query
  if (sql.trim() === '') return { ok: true, statements: [] }
  let result
  try {
    result = parseSync(sql)
  } catch (err) {
    return mapError(err)
  }
  const stmts = result.stmts ?? []
  const ascii = Buffer.byteLength(sql, 'utf8') === sql.length
  const bytes = ascii ? null : Buffer.from(sql, 'utf8')
  const total = ascii ? sql.length : bytes!.length
  const out: RawStatement[] = []
  for (const raw of stmts) {
    if (!raw.stmt) continue
    const start = raw.stmt_location ?? 0
    // stmt_len 0 means "up to the end of the string"
    const end = raw.stmt_len ? start + raw.stmt_len : total
    const text = bytes ? bytes.subarray(start, end).toString('utf8') : sql.slice(start, end)
    out.push({ node: raw.stmt, text: text.trim() })
  }
  return { ok: true, statements: out }
}

function mapError(err: unknown): ParseOutcome {
  const e = err as { message?: unknown; sqlDetails?: { message?: string; cursorPosition?: number } }
  const message = e.sqlDetails?.message ?? (typeof e.message === 'string' ? e.message : String(err))
  const cursor = e.sqlDetails?.cursorPosition
  // libpg-query reports a 0-based cursor; PostgreSQL's ErrorResponse uses 1-based
  return typeof cursor === 'number' && cursor >= 0 ? { ok: false, error: message, position: cursor + 1 } : { ok: false, error: message }
}
