// Makes the clock deterministic across backends: now(), CURRENT_TIMESTAMP,
// transaction_timestamp(), LOCALTIMESTAMP, CURRENT_DATE, CURRENT_TIME,
// LOCALTIME (one value per transaction) and statement_timestamp() (one per
// statement) are replaced, by span, with a value pgraid chose: a literal in a
// simple query, an extra bind parameter in a prepared statement (so every
// execution gets the time of its own transaction). The session's TimeZone
// still applies on each backend, because the casts run there.

import { parseSync } from 'libpg-query'
import { randomBytes, randomUUID } from 'node:crypto'

export interface TimeSite {
  /** Byte offsets in the UTF-8 text. */
  start: number
  end: number
  /** Which value replaces the call: the clock, or a fresh random value per call site and execution. */
  per: 'transaction' | 'statement' | 'random' | 'uuid'
  /** Cast applied to the timestamptz value to give the original type. */
  cast: string
}

/** The SQL type of the value pgraid supplies for a site. */
export function siteType(s: TimeSite): string {
  return s.per === 'random' ? 'float8' : s.per === 'uuid' ? 'uuid' : 'timestamptz'
}

const RANDOM_FUNCS: Record<string, 'random' | 'uuid'> = {
  random: 'random',
  gen_random_uuid: 'uuid',
  uuid_generate_v4: 'uuid',
  uuidv4: 'uuid',
}

export interface TimeAnalysis {
  sites: TimeSite[]
  /** Highest $n referenced by the text. */
  maxParam: number
  /** Random functions every call of which was replaced (the rest of the text has none left). */
  covered: Set<string>
}

const HINT = /now|current_(timestamp|date|time)|local(time|timestamp)|transaction_timestamp|statement_timestamp|random|uuid/i
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
    // random()/uuids: only in the rows of INSERT ... VALUES, where each call runs exactly once
    // per execution (not inside a subquery, which may run it any number of times).
    const total = new Map<string, number>()
    walk(tree, (key, node) => {
      if (key !== 'FuncCall') return
      const n = funcName(node)
      if (n && n in RANDOM_FUNCS) total.set(n, (total.get(n) ?? 0) + 1)
    })
    const replaced = new Map<string, number>()
    if (total.size) {
      for (const st of ((tree as { stmts?: { stmt?: Record<string, unknown> }[] }).stmts ?? [])) {
        const ins = st.stmt?.InsertStmt as { selectStmt?: { SelectStmt?: { valuesLists?: unknown } } } | undefined
        const rows = ins?.selectStmt?.SelectStmt?.valuesLists
        if (!rows) continue
        walk(rows, (key, node) => {
          if (key !== 'FuncCall') return
          const n = funcName(node)
          if (!n || !(n in RANDOM_FUNCS) || (node.args as unknown[] | undefined)?.length) return
          const start = Number(node.location)
          const open = bytes.indexOf(0x28, start)
          if (open < 0) return
          sites.push({ start, end: parenEnd(bytes, open), per: RANDOM_FUNCS[n], cast: '' })
          replaced.set(n, (replaced.get(n) ?? 0) + 1)
        }, 'SubLink')
      }
    }
    const covered = new Set([...total].filter(([n, c]) => replaced.get(n) === c).map(([n]) => n))
    sites.sort((a, b) => a.start - b.start)
    result = sites.length ? { sites, maxParam, covered } : null
  } catch {
    result = null
  }
  if (cache.size > 10_000) cache.clear()
  cache.set(sql, result)
  return result
}

/** The value pgraid chooses for one site (clock, or a fresh random value). */
export function siteValue(s: TimeSite, txTime: string, stmtTime: string): string {
  switch (s.per) {
    case 'transaction':
      return txTime
    case 'statement':
      return stmtTime
    case 'random':
      // 52 random bits, as PostgreSQL's drandom: a float8 in [0, 1).
      return String(Number(randomBytes(8).readBigUInt64BE() >> 12n) / 2 ** 52)
    case 'uuid':
      return randomUUID()
  }
}

/** Replaces each site with a literal (simple queries). */
export function withLiterals(sql: string, t: TimeAnalysis, txTime: string, stmtTime: string): string {
  return splice(sql, t, (s) => `('${siteValue(s, txTime, stmtTime)}'::${siteType(s)})${s.cast}`)
}

/** Replaces each site with a new parameter $first, $first+1, ... (prepared statements). */
export function withParams(sql: string, t: TimeAnalysis, first: number): string {
  let k = first
  return splice(sql, t, (s) => `($${k++}::${siteType(s)})${s.cast}`)
}

function funcName(node: Record<string, unknown>): string | null {
  const names = (node.funcname as { String?: { sval?: string } }[] | undefined)?.map((n) => n.String?.sval ?? '') ?? []
  if (names.length === 2 && names[0] !== 'pg_catalog' && names[0] !== 'public') return null
  return names[names.length - 1] ?? null
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

function walk(node: unknown, visit: (key: string, node: Record<string, unknown>) => void, skip?: string): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, visit, skip)
    return
  }
  if (!node || typeof node !== 'object') return
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (k === skip) continue
    if (v && typeof v === 'object' && !Array.isArray(v) && /^[A-Z]/.test(k)) visit(k, v as Record<string, unknown>)
    walk(v, visit, skip)
  }
}
