// Makes the clock deterministic across backends: now(), CURRENT_TIMESTAMP,
// transaction_timestamp(), LOCALTIMESTAMP, CURRENT_DATE, CURRENT_TIME,
// LOCALTIME (one value per transaction) and statement_timestamp() (one per
// statement) are replaced, by span, with a value pgraid chose: a literal in a
// simple query, an extra bind parameter in a prepared statement (so every
// execution gets the time of its own transaction). The session's TimeZone
// still applies on each backend, because the casts run there.

import { parseSync } from 'libpg-query'

export interface TimeSite {
  /** Byte offsets in the UTF-8 text. */
  start: number
  end: number
  per: 'transaction' | 'statement'
  /** Cast applied to the timestamptz value to give the original type. */
  cast: string
}

export interface TimeAnalysis {
  sites: TimeSite[]
  /** Highest $n referenced by the text. */
  maxParam: number
}

const HINT = /now|current_(timestamp|date|time)|local(time|timestamp)|transaction_timestamp|statement_timestamp/i
const cache = new Map<string, TimeAnalysis | null>()

const SVF: Record<string, { cast: string; n?: boolean }> = {
  SVFOP_CURRENT_DATE: { cast: '::date' },
  SVFOP_CURRENT_TIME: { cast: '::timetz' },
  SVFOP_CURRENT_TIME_N: { cast: '::timetz', n: true },
  SVFOP_CURRENT_TIMESTAMP: { cast: '' },
  SVFOP_CURRENT_TIMESTAMP_N: { cast: '::timestamptz', n: true },
  SVFOP_LOCALTIME: { cast: '::time' },
  SVFOP_LOCALTIME_N: { cast: '::time', n: true },
  SVFOP_LOCALTIMESTAMP: { cast: '::timestamp' },
  SVFOP_LOCALTIMESTAMP_N: { cast: '::timestamp', n: true },
}

const FUNCS: Record<string, TimeSite['per']> = {
  now: 'transaction',
  transaction_timestamp: 'transaction',
  statement_timestamp: 'statement',
}

/** Time sites of a statement text; null when there are none (or it does not parse). */
export function findTimeSites(sql: string): TimeAnalysis | null {
  if (!HINT.test(sql)) return null
  const hit = cache.get(sql)
  if (hit !== undefined) return hit
  let result: TimeAnalysis | null = null
  try {
    const tree = parseSync(sql) as unknown
    const bytes = Buffer.from(sql, 'utf8')
    const sites: TimeSite[] = []
    let maxParam = 0
    walk(tree, (key, node) => {
      if (key === 'ParamRef') maxParam = Math.max(maxParam, Number(node.number ?? 0))
      else if (key === 'SQLValueFunction') {
        const def = SVF[String(node.op)]
        if (!def) return
        const start = Number(node.location)
        let end = wordEnd(bytes, start)
        let cast = def.cast
        if (def.n) {
          end = parenEnd(bytes, end)
          cast = `${def.cast}(${Number(node.typmod)})`
        }
        sites.push({ start, end, per: 'transaction', cast })
      } else if (key === 'FuncCall') {
        const names = (node.funcname as { String?: { sval?: string } }[] | undefined)?.map((n) => n.String?.sval ?? '') ?? []
        const name = names[names.length - 1]
        if (!(name in FUNCS) || (names.length === 2 && names[0] !== 'pg_catalog') || (node.args as unknown[] | undefined)?.length) return
        const start = Number(node.location)
        const open = bytes.indexOf(0x28, start)
        if (open < 0) return
        sites.push({ start, end: parenEnd(bytes, open), per: FUNCS[name], cast: '' })
      }
    })
    sites.sort((a, b) => a.start - b.start)
    result = sites.length ? { sites, maxParam } : null
  } catch {
    result = null
  }
  if (cache.size > 10_000) cache.clear()
  cache.set(sql, result)
  return result
}

/** Replaces each site with a timestamptz literal (simple queries). */
export function withLiterals(sql: string, t: TimeAnalysis, txTime: string, stmtTime: string): string {
  return splice(sql, t, (s) => `('${s.per === 'transaction' ? txTime : stmtTime}'::timestamptz)${s.cast}`)
}

/** Replaces each site with a new parameter $first, $first+1, ... (prepared statements). */
export function withParams(sql: string, t: TimeAnalysis, first: number): string {
  let k = first
  return splice(sql, t, (s) => `($${k++}::timestamptz)${s.cast}`)
}

function splice(sql: string, t: TimeAnalysis, render: (s: TimeSite) => string): string {
  const bytes = Buffer.from(sql, 'utf8')
  const parts: string[] = []
  let at = 0
  for (const s of t.sites) {
    parts.push(bytes.toString('utf8', at, s.start), render(s))
    at = s.end
  }
  parts.push(bytes.toString('utf8', at))
  return parts.join('')
}

function wordEnd(b: Buffer, i: number): number {
  while (i < b.length && /[A-Za-z_]/.test(String.fromCharCode(b[i]))) i++
  return i
}

/** Index just past the parenthesised group starting at or after `i`. */
function parenEnd(b: Buffer, i: number): number {
  while (i < b.length && b[i] !== 0x28) i++
  let depth = 0
  for (; i < b.length; i++) {
    if (b[i] === 0x28) depth++
    else if (b[i] === 0x29 && --depth === 0) return i + 1
  }
  return b.length
}

function walk(node: unknown, visit: (key: string, node: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, visit)
    return
  }
  if (!node || typeof node !== 'object') return
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && /^[A-Z]/.test(k)) visit(k, v as Record<string, unknown>)
    walk(v, visit)
  }
}
