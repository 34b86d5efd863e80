// Makes the clock deterministic across backends: now(), CURRENT_TIMESTAMP,
// transaction_timestamp(), LOCALTIMESTAMP, CURRENT_DATE, CURRENT_TIME,
// LOCALTIME (one value per transaction) and statement_timestamp() (one per
// statement) are replaced, by span, with a value pgraid chose: a literal in a
// simple query, an extra bind parameter in a prepared statement (so every
// execution gets the time of its own transaction). The session's TimeZone
// still applies on each backend, because the casts run there.

import './wasm-baseline.ts'
import { parseSync } from 'libpg-query'
import { randomBytes, randomUUID } from 'node:crypto'

/** A value pgraid supplies: the clock, or a fresh random value per occurrence and execution. */
export interface Slot {
  per: 'transaction' | 'statement' | 'random' | 'uuid'
  /** Cast applied to the supplied value to give the original type. */
  cast: string
}

/** Replaces the bytes [start, end) of the text with fixed text and slots. */
export interface Edit {
  /** Byte offsets in the UTF-8 text (start = end: an insertion). */
  start: number
  end: number
  pieces: (string | Slot)[]
  /**
   * The call names an output column (SELECT now() is column "now"): the value
   * goes in a scalar subquery with that name, which PostgreSQL gives the
   * column, instead of a cast, which would name it after the type.
   */
  column?: string
  /** The call is a FROM item without an alias (`FROM now()`): the subquery gets the name PostgreSQL gives the function. */
  fromAlias?: string
}

/** A call replaced by one slot (the common edit). */
export interface TimeSite extends Edit {
  per: Slot['per']
}

/** The SQL type of the value pgraid supplies for a slot. */
export function siteType(s: Slot): string {
  return s.per === 'random' ? 'float8' : s.per === 'uuid' ? 'uuid' : 'timestamptz'
}

const RANDOM_FUNCS: Record<string, 'random' | 'uuid'> = {
  random: 'random',
  gen_random_uuid: 'uuid',
  uuid_generate_v4: 'uuid',
  uuidv4: 'uuid',
}

export interface TimeAnalysis {
  edits: Edit[]
  /** Highest $n referenced by the text. */
  maxParam: number
  /** Random functions every call of which was replaced (the rest of the text has none left). */
  covered: Set<string>
}

/** Slots of a set of edits, in text order (one parameter each in a prepared statement). */
export function slotsOf(edits: readonly Edit[]): Slot[] {
  const out: Slot[] = []
  for (const e of edits) for (const p of e.pieces) if (typeof p !== 'string') out.push(p)
  return out
}

function site(start: number, end: number, per: Slot['per'], cast: string): TimeSite {
  return { start, end, per, pieces: [{ per, cast }] }
}

/** Texts without a match have no clock or random call (the cheap test before a parse). */
export const HINT = /now|current_(timestamp|date|time)|local(time|timestamp)|transaction_timestamp|statement_timestamp|clock_timestamp|random|uuid/i
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

const FUNCS: Record<string, Slot['per']> = {
  now: 'transaction',
  transaction_timestamp: 'transaction',
  statement_timestamp: 'statement',
  // Refused in writes unless determinism.allowFunctions lists it; then one value per statement.
  clock_timestamp: 'statement',
}

/** Time sites of a statement text; null when there are none (or it does not parse). */
export function findTimeSites(sql: string): TimeAnalysis | null {
  if (!HINT.test(sql)) return null
  const hit = cache.get(sql)
  if (hit !== undefined) return hit
  let result: TimeAnalysis | null = null
  try {
    const tree = { stmts: evaluated(parseSync(sql)) }
    const bytes = Buffer.from(sql, 'utf8')
    const sites: TimeSite[] = clockSites(tree, bytes)
    let maxParam = 0
    walk(tree, (key, node) => {
      if (key === 'ParamRef') maxParam = Math.max(maxParam, Number(node.number ?? 0))
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
      for (const st of (tree as { stmts?: { stmt?: Record<string, unknown> }[] }).stmts ?? []) {
        const ins = st.stmt?.InsertStmt as { selectStmt?: { SelectStmt?: { valuesLists?: unknown } } } | undefined
        const rows = ins?.selectStmt?.SelectStmt?.valuesLists
        if (!rows) continue
        walk(
          rows,
          (key, node) => {
            if (key !== 'FuncCall') return
            const n = funcName(node)
            if (!n || !(n in RANDOM_FUNCS) || (node.args as unknown[] | undefined)?.length) return
            const start = Number(node.location)
            const open = bytes.indexOf(0x28, start)
            if (open < 0) return
            sites.push(site(start, parenEnd(bytes, open), RANDOM_FUNCS[n], ''))
            replaced.set(n, (replaced.get(n) ?? 0) + 1)
          },
          'SubLink',
        )
      }
    }
    const covered = new Set([...total].filter(([n, c]) => replaced.get(n) === c).map(([n]) => n))
    nameColumns(tree, sites)
    nameFromItems(tree, sites)
    sites.sort((a, b) => a.start - b.start)
    result = sites.length ? { edits: sites, maxParam, covered } : null
  } catch {
    result = null
  }
  if (cache.size > 10_000) cache.clear()
  cache.set(sql, result)
  return result
}

/**
 * Statements whose expressions run now, once: DML, queries, CREATE TABLE AS.
 * Everything else stores its expressions for later (a column default, a view,
 * a function body, a materialized view refreshed later, PREPARE): a literal
 * there would freeze the clock forever, so those are never rewritten.
 */
const EVALUATED = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'ExplainStmt', 'DeclareCursorStmt', 'CopyStmt', 'CreateTableAsStmt'])

function evaluated(tree: unknown): { stmt?: Record<string, unknown> }[] {
  return ((tree as { stmts?: { stmt?: Record<string, unknown> }[] }).stmts ?? []).filter((st) => {
    const [type, node] = Object.entries(st.stmt ?? {})[0] ?? []
    if (!type || !EVALUATED.has(type)) return false
    return type !== 'CreateTableAsStmt' || (node as { objtype?: string }).objtype !== 'OBJECT_MATVIEW'
  })
}

const SVF_COLUMNS: Record<string, string> = {
  SVFOP_CURRENT_DATE: 'current_date',
  SVFOP_CURRENT_TIME: 'current_time',
  SVFOP_CURRENT_TIME_N: 'current_time',
  SVFOP_CURRENT_TIMESTAMP: 'current_timestamp',
  SVFOP_CURRENT_TIMESTAMP_N: 'current_timestamp',
  SVFOP_LOCALTIME: 'localtime',
  SVFOP_LOCALTIME_N: 'localtime',
  SVFOP_LOCALTIMESTAMP: 'localtimestamp',
  SVFOP_LOCALTIMESTAMP_N: 'localtimestamp',
}

/**
 * Marks the sites that name an output column: the expression of a target
 * without AS whose name PostgreSQL's FigureColname takes from the call
 * (through casts, COLLATE and a CASE's ELSE, as FigureColname does).
 */
function nameColumns(tree: unknown, sites: TimeSite[]): void {
  const at = new Map(sites.map((s) => [s.start, s]))
  walk(tree, (key, node) => {
    if (key !== 'ResTarget' || node.name !== undefined || !node.val) return
    let n = node.val as Record<string, Record<string, unknown>>
    for (;;) {
      const next = n.TypeCast?.arg ?? n.CollateClause?.arg ?? n.CaseExpr?.defresult
      if (!next) break
      n = next as Record<string, Record<string, unknown>>
    }
    const call = n.FuncCall ?? n.SQLValueFunction
    const site = call && at.get(Number(call.location))
    if (!site) return
    const column = n.FuncCall ? funcName(n.FuncCall) : SVF_COLUMNS[String(n.SQLValueFunction!.op)]
    if (column) site.column = column
  })
}

/**
 * A clock call used as a table in FROM (`SELECT * FROM now()`, `FROM current_timestamp AS t(x)`):
 * a literal there is a syntax error, a scalar subquery is a table with the function's column (and,
 * without an alias, its name). WITH ORDINALITY and ROWS FROM need a function call: those sites are
 * left as they are (their statement then runs with each backend's own clock).
 */
function nameFromItems(tree: unknown, sites: TimeSite[]): void {
  const at = new Map(sites.map((s) => [s.start, s]))
  const drop = new Set<TimeSite>()
  walk(tree, (key, node) => {
    if (key !== 'RangeFunction') return
    walk(node.functions, (k, call) => {
      if (k !== 'FuncCall' && k !== 'SQLValueFunction') return
      const site = at.get(Number(call.location))
      if (!site) return
      if (node.ordinality || node.is_rowsfrom) return void drop.add(site)
      const name = k === 'FuncCall' ? funcName(call) : SVF_COLUMNS[String(call.op)]
      if (!name) return void drop.add(site)
      // A scalar function's column takes the table alias when there is one without column names, as PostgreSQL names it.
      const alias = node.alias as { aliasname?: string; colnames?: unknown[] } | undefined
      site.column = alias?.aliasname && !alias.colnames?.length ? alias.aliasname : name
      if (!alias) site.fromAlias = name
    })
  })
  for (let i = sites.length - 1; i >= 0; i--) if (drop.has(sites[i]!)) sites.splice(i, 1)
}

/** Clock calls anywhere in a parse tree: now() & co. per transaction, statement_timestamp() per statement. */
function clockSites(tree: unknown, bytes: Buffer): TimeSite[] {
  const sites: TimeSite[] = []
  walk(tree, (key, node) => {
    if (key === 'SQLValueFunction') {
      const def = SVF[String(node.op)]
      if (!def) return
      const start = Number(node.location)
      let end = wordEnd(bytes, start)
      let cast = def.cast
      if (def.n) {
        end = parenEnd(bytes, end)
        cast = `${def.cast}(${Number(node.typmod)})`
      }
      sites.push(site(start, end, 'transaction', cast))
    } else if (key === 'FuncCall') {
      const names = (node.funcname as { String?: { sval?: string } }[] | undefined)?.map((n) => n.String?.sval ?? '') ?? []
      const name = names[names.length - 1]
      if (!(name in FUNCS) || (names.length === 2 && names[0] !== 'pg_catalog') || (node.args as unknown[] | undefined)?.length) return
      const start = Number(node.location)
      const open = bytes.indexOf(0x28, start)
      if (open < 0) return
      sites.push(site(start, parenEnd(bytes, open), FUNCS[name], ''))
    }
  })
  return sites
}

/**
 * A column default expression (pg_get_expr text) as text and slots: every
 * clock call and every random()/uuid call becomes a slot, so each row that
 * relies on the default gets pgraid's values. `nonDeterministic` lists the
 * functions left that differ per backend (clock_timestamp() is also listed:
 * it becomes a per-statement value only where the configuration allows it).
 */
export function expressionTemplate(expr: string, isNonDeterministic: (fn: string) => boolean): { pieces: (string | Slot)[]; nonDeterministic: string[] } {
  const sql = `SELECT ${expr}`
  const prefix = 7
  const tree = parseSync(sql) as unknown
  const bytes = Buffer.from(sql, 'utf8')
  const sites = clockSites(tree, bytes)
  const bad = new Set<string>()
  walk(tree, (key, node) => {
    if (key !== 'FuncCall') return
    const n = funcName(node)
    if (!n) return
    if (n in RANDOM_FUNCS && !(node.args as unknown[] | undefined)?.length) {
      const start = Number(node.location)
      const open = bytes.indexOf(0x28, start)
      if (open >= 0) return void sites.push(site(start, parenEnd(bytes, open), RANDOM_FUNCS[n], ''))
    }
    if (n === 'clock_timestamp' || (!(n in FUNCS) && isNonDeterministic(n))) bad.add(n)
  })
  sites.sort((a, b) => a.start - b.start)
  const pieces: (string | Slot)[] = []
  let at = prefix
  for (const s of sites) {
    pieces.push(bytes.toString('utf8', at, s.start), ...s.pieces)
    at = s.end
  }
  pieces.push(bytes.toString('utf8', at))
  return { pieces: pieces.filter((p) => p !== ''), nonDeterministic: [...bad] }
}

/** The value pgraid chooses for one site (clock, or a fresh random value). */
export function siteValue(s: Slot, txTime: string, stmtTime: string): string {
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

/** Applies the edits with a literal per slot (simple queries). */
export function withLiterals(sql: string, edits: readonly Edit[], txTime: string, stmtTime: string): string {
  return splice(sql, edits, (s) => `('${siteValue(s, txTime, stmtTime)}'::${siteType(s)})${s.cast}`)
}

/** Applies the edits with a new parameter per slot: $first, $first+1, ... (prepared statements). */
export function withParams(sql: string, edits: readonly Edit[], first: number): string {
  let k = first
  return splice(sql, edits, (s) => `($${k++}::${siteType(s)})${s.cast}`)
}

export function funcName(node: Record<string, unknown>): string | null {
  const names = (node.funcname as { String?: { sval?: string } }[] | undefined)?.map((n) => n.String?.sval ?? '') ?? []
  if (names.length === 2 && names[0] !== 'pg_catalog' && names[0] !== 'public') return null
  return names[names.length - 1] ?? null
}

function splice(sql: string, edits: readonly Edit[], render: (s: Slot) => string): string {
  const bytes = Buffer.from(sql, 'utf8')
  const parts: string[] = []
  let at = 0
  for (const e of edits) {
    parts.push(bytes.toString('utf8', at, e.start))
    if (e.column) parts.push('(SELECT ')
    for (const p of e.pieces) parts.push(typeof p === 'string' ? p : render(p))
    if (e.column) parts.push(` AS "${e.column}")`)
    if (e.fromAlias) parts.push(` AS "${e.fromAlias}"`)
    at = e.end
  }
  parts.push(bytes.toString('utf8', at))
  return parts.join('')
}

function wordEnd(b: Buffer, i: number): number {
  while (i < b.length && /[A-Za-z_]/.test(String.fromCharCode(b[i]))) i++
  return i
}

/** Index just past the parenthesised group starting at or after `i`. */
export function parenEnd(b: Buffer, i: number): number {
  while (i < b.length && b[i] !== 0x28) i++
  let depth = 0
  for (; i < b.length; i++) {
    if (b[i] === 0x28) depth++
    else if (b[i] === 0x29 && --depth === 0) return i + 1
  }
  return b.length
}

export function walk(node: unknown, visit: (key: string, node: Record<string, unknown>) => void, skip?: string): void {
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

/** Byte offset of the first call of function `name` in the text (-1 if not found). */
export function findCall(sql: string, name: string): number {
  let at = -1
  try {
    walk(parseSync(sql), (key, node) => {
      if (at < 0 && key === 'FuncCall' && funcName(node) === name) at = Number(node.location)
    })
  } catch {
    return -1
  }
  return at
}

const SYSTEM_COLUMNS = /\b(ctid|xmin|xmax|cmin|cmax|tableoid)\b/i

/** The first system column a statement names (ctid, xmin, ... differ per backend), with its byte offset. */
export function findSystemColumn(sql: string): { name: string; at: number } | null {
  if (!SYSTEM_COLUMNS.test(sql)) return null
  let hit: { name: string; at: number } | null = null
  try {
    walk(parseSync(sql), (key, node) => {
      if (hit || key !== 'ColumnRef') return
      const fields = (node.fields as { String?: { sval?: string } }[] | undefined) ?? []
      const last = fields[fields.length - 1]?.String?.sval
      if (last && SYSTEM_COLUMNS.test(last) && last.length <= 8) hit = { name: last, at: Number(node.location) }
    })
  } catch {
    return null
  }
  return hit
}
