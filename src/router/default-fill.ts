// Makes volatile column defaults explicit. An INSERT that leaves a column
// with DEFAULT now() or DEFAULT gen_random_uuid() to the backends would get a
// different value on each one; pgraid adds the column to the statement with
// the default's own expression, its clock and random calls replaced by slots
// (values pgraid supplies, the same for every backend). Where the row count
// is unknown (INSERT ... SELECT, COPY, MERGE) the write is refused with a
// message naming the column and what to do. Sequence defaults (nextval) are
// not touched: sequence locks order them (plan.ts).

import '../sql/wasm-baseline.ts'
import { parseSync } from 'libpg-query'
import type { CatalogData, VolatileDefault } from '../scheduler/catalog.ts'
import { walk, type Edit, type Slot } from '../sql/time-rewrite.ts'

export interface Refusal {
  message: string
  hint: string
  /** Byte offset in the statement text. */
  position: number
}

export interface DefaultFill {
  edits: Edit[]
  refusal: Refusal | null
  /** Highest $n the text references (new parameters go after it). */
  maxParam: number
}

type Node = Record<string, unknown>

export const NONE: DefaultFill = { edits: [], refusal: null, maxParam: 0 }
const caches = new WeakMap<CatalogData, Map<string, DefaultFill>>()

/** Edits making the volatile defaults an INSERT relies on explicit (cached per catalog and text). */
export function fillDefaults(sql: string, cat: CatalogData, allowed: readonly string[]): DefaultFill {
  if (!cat.volatileDefaults.size || !/insert|update|copy|merge/i.test(sql)) return NONE
  let cache = caches.get(cat)
  if (!cache) caches.set(cat, (cache = new Map()))
  const key = allowed.length ? `${allowed.join(',')}\u0000${sql}` : sql
  const hit = cache.get(key)
  if (hit) return hit
  let result: DefaultFill
  try {
    result = compute(sql, cat, allowed)
  } catch {
    result = NONE // does not parse: the backends will say so
  }
  if (cache.size > 5000) cache.clear()
  cache.set(key, result)
  return result
}

function compute(sql: string, cat: CatalogData, allowed: readonly string[]): DefaultFill {
  const tree = parseSync(sql) as unknown
  const bytes = Buffer.from(sql, 'utf8')
  const edits: Edit[] = []
  let refusal: Refusal | null = null
  const refuse = (r: Refusal) => void (refusal ??= r)
  const template = (table: string, column: string, d: VolatileDefault, at: number): (string | Slot)[] | null => {
    const bad = d.nonDeterministic.find((f) => !allowed.includes(f))
    if (bad) {
      refuse({
        message: `pgraid refuses this write: column "${table}"."${column}" would take its default ${d.expr}, and ${bad}() differs on each backend`,
        hint: `give the column a value in the statement, or add "${bad}" to determinism.allowFunctions in the pgraid configuration`,
        position: at,
      })
      return null
    }
    return ['(', ...d.pieces, ')']
  }
  let maxParam = 0
  walk(tree, (key, node) => {
    if (key === 'ParamRef') maxParam = Math.max(maxParam, Number(node.number ?? 0))
    else if (key === 'InsertStmt') insert(node)
    else if (key === 'UpdateStmt') setDefaults(relName(node.relation), node.targetList)
    else if (key === 'OnConflictClause') {
      // ON CONFLICT DO UPDATE SET c = DEFAULT: the table is the enclosing INSERT's (handled there).
    } else if (key === 'CopyStmt' && node.is_from) copy(node)
    else if (key === 'MergeStmt') merge(node)
  })
  edits.sort((a, b) => a.start - b.start)
  return edits.length || refusal ? { edits, refusal, maxParam } : NONE

  function insert(ins: Node): void {
    const table = relName(ins.relation)
    const vd = table ? cat.volatileDefaults.get(table) : undefined
    if (!table || !vd) return
    const conflict = (ins.onConflictClause as Node | undefined)?.targetList
    if (conflict) setDefaults(table, conflict)
    const cols = (ins.cols as { ResTarget: Node }[] | undefined)?.map((c) => c.ResTarget)
    const select = (ins.selectStmt as { SelectStmt?: Node } | undefined)?.SelectStmt
    const relLoc = Number((ins.relation as Node).location ?? 0)
    if (!select) {
      // INSERT ... DEFAULT VALUES
      const at = findFrom(bytes, relLoc, /\bdefault\s+values\b/i)
      if (at < 0) return refuse(cannotPlace(table, [...vd.keys()][0]!, vd, relLoc))
      const len = /^default\s+values/i.exec(bytes.toString('latin1', at))![0].length
      const names: string[] = []
      const values: (string | Slot)[] = []
      for (const [c, d] of vd) {
        const tpl = template(table, c, d, at)
        if (!tpl) return
        names.push(quoteIdent(c))
        if (values.length) values.push(', ')
        values.push(...tpl)
      }
      edits.push({ start: at, end: at + len, pieces: [`(${names.join(', ')}) VALUES (`, ...values, ')'] })
      return
    }
    const rows = select.valuesLists as { List: { items: unknown[] } }[] | undefined
    const names = cols ? cols.map((c) => String(c.name)) : null
    const missing: string[] = []
    for (const [c, d] of vd) {
      const idx = names ? names.indexOf(c) : (cat.columns.get(table) ?? []).indexOf(c)
      const given = names ? idx >= 0 : idx >= 0 && idx < (rows ? (rows[0]?.List.items.length ?? 0) : selectWidth(select))
      if (!given) {
        missing.push(c)
        continue
      }
      if (!rows) continue // INSERT ... SELECT naming the column: its value comes from the query
      for (const row of rows) {
        const item = row.List.items[idx] as { SetToDefault?: Node } | undefined
        if (item?.SetToDefault) {
          const at = Number(item.SetToDefault.location)
          const tpl = template(table, c, d, at)
          if (tpl) edits.push({ start: at, end: at + 7, pieces: tpl })
        }
      }
    }
    if (!missing.length) return
    if (!rows || !rows.length) return refuse(cannotPlace(table, missing[0]!, vd, relLoc))
    // Add the missing columns first in the column list and first in each row.
    const rowStarts: number[] = []
    for (const row of rows) {
      const at = rowStart(bytes, row.List.items[0])
      if (at < 0) return refuse(cannotPlace(table, missing[0]!, vd, relLoc))
      rowStarts.push(at)
    }
    const newNames = missing.map(quoteIdent)
    if (cols) {
      edits.push({ start: Number(cols[0]!.location), end: Number(cols[0]!.location), pieces: [newNames.join(', ') + ', '] })
    } else {
      const all = cat.columns.get(table)
      const width = rows[0]!.List.items.length
      const at = valuesKeyword(bytes, rowStarts[0]!, ins.override === 'OVERRIDING_USER_VALUE' || ins.override === 'OVERRIDING_SYSTEM_VALUE')
      if (!all || at < 0 || width > all.length) return refuse(cannotPlace(table, missing[0]!, vd, relLoc))
      edits.push({ start: at, end: at, pieces: [`(${[...newNames, ...all.slice(0, width).map(quoteIdent)].join(', ')}) `] })
    }
    for (const at of rowStarts) {
      const pieces: (string | Slot)[] = []
      for (const c of missing) {
        const tpl = template(table, c, vd.get(c)!, at)
        if (!tpl) return
        pieces.push(...tpl, ', ')
      }
      edits.push({ start: at, end: at, pieces })
    }
  }

  function setDefaults(table: string | null, targets: unknown): void {
    const vd = table ? cat.volatileDefaults.get(table) : undefined
    if (!table || !vd) return
    for (const t of (targets as { ResTarget?: Node }[] | undefined) ?? []) {
      const rt = t.ResTarget
      const def = (rt?.val as { SetToDefault?: Node } | undefined)?.SetToDefault
      const d = rt && vd.get(String(rt.name))
      if (!def || !d) continue
      const at = Number(def.location)
      const tpl = template(table, String(rt.name), d, at)
      if (tpl) edits.push({ start: at, end: at + 7, pieces: tpl })
    }
  }

  function copy(node: Node): void {
    const table = relName(node.relation)
    const vd = table ? cat.volatileDefaults.get(table) : undefined
    if (!table || !vd) return
    const listed = (node.attlist as { String?: { sval?: string } }[] | undefined)?.map((a) => a.String?.sval)
    const missing = [...vd.keys()].find((c) => listed && !listed.includes(c))
    if (missing) refuse(cannotPlace(table, missing, vd, Number((node.relation as Node).location ?? 0), 'COPY'))
  }

  function merge(node: Node): void {
    const table = relName(node.relation)
    const vd = table ? cat.volatileDefaults.get(table) : undefined
    if (!table || !vd) return
    for (const w of (node.mergeWhenClauses as { MergeWhenClause?: Node }[] | undefined) ?? []) {
      const c = w.MergeWhenClause
      if (c?.commandType !== 'CMD_INSERT') {
        if (c) setDefaults(table, c.targetList)
        continue
      }
      const listed = (c.targetList as { ResTarget?: Node }[] | undefined)?.map((t) => String(t.ResTarget?.name))
      const missing = [...vd.keys()].find((col) => !listed || !listed.includes(col))
      if (missing) return refuse(cannotPlace(table, missing, vd, Number((node.relation as Node).location ?? 0), 'MERGE ... INSERT'))
    }
  }
}

function cannotPlace(table: string, column: string, vd: Map<string, VolatileDefault>, position: number, what = 'INSERT ... SELECT'): Refusal {
  return {
    message: `pgraid refuses this ${what}: column "${table}"."${column}" would take its default ${vd.get(column)!.expr} on each backend separately, and the copies would differ`,
    hint: `name the column and give its value in the statement (now() and CURRENT_TIMESTAMP are fine there: pgraid fixes them per transaction)`,
    position,
  }
}

/** Number of columns a positional INSERT ... SELECT supplies; 0 when unknown (SELECT *, set operations). */
function selectWidth(select: Node): number {
  const targets = select.targetList as { ResTarget?: { val?: { ColumnRef?: { fields?: { A_Star?: unknown }[] } } } }[] | undefined
  if (!targets || (select.op !== 'SETOP_NONE' && select.op !== undefined)) return 0
  if (targets.some((t) => t.ResTarget?.val?.ColumnRef?.fields?.some((f) => 'A_Star' in f))) return 0
  return targets.length
}

function relName(rel: unknown): string | null {
  return ((rel as Node | undefined)?.relname as string | undefined) ?? null
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`
}

function findFrom(bytes: Buffer, from: number, re: RegExp): number {
  const tail = bytes.toString('utf8', from)
  const m = re.exec(tail)
  return m ? from + Buffer.byteLength(tail.slice(0, m.index), 'utf8') : -1
}

/** Smallest `location` in a subtree: where an expression's first token starts (or just after its parentheses). */
function leftmost(node: unknown): number {
  let min = Infinity
  const visit = (n: unknown): void => {
    if (Array.isArray(n)) return n.forEach(visit)
    if (!n || typeof n !== 'object') return
    for (const [k, v] of Object.entries(n as Node)) {
      if (k === 'location' && typeof v === 'number' && v >= 0) min = Math.min(min, v)
      else visit(v)
    }
  }
  visit(node)
  return min
}

/**
 * Byte offset just after the '(' that opens a VALUES row, found from its
 * first item: back over spaces and the item's own parentheses to the ',' or
 * VALUES before the row. -1 when something else (a comment) is in the way.
 */
function rowStart(bytes: Buffer, firstItem: unknown): number {
  let i = leftmost(firstItem) - 1
  if (!Number.isFinite(i)) return -1
  let open = -1
  for (; i >= 0; i--) {
    const ch = bytes[i]!
    if (ch === 0x28) open = i
    else if (ch !== 0x20 && ch !== 0x09 && ch !== 0x0a && ch !== 0x0d) break
  }
  if (open < 0 || i < 0) return -1
  const ch = String.fromCharCode(bytes[i]!)
  return ch === ',' || /s/i.test(ch) ? open + 1 : -1
}

/** Offset of the VALUES keyword (or OVERRIDING ... VALUE before it) preceding the first row. */
function valuesKeyword(bytes: Buffer, firstRowInside: number, override: boolean): number {
  const head = bytes.toString('latin1', 0, firstRowInside - 1)
  const m = (override ? /overriding\s+(system|user)\s+value\s+values\s*$/i : /values\s*$/i).exec(head)
  return m ? m.index : -1
}

const CLOCK = new Set(['now', 'transaction_timestamp', 'statement_timestamp', 'clock_timestamp'])

/**
 * A DDL statement that evaluates a per-backend expression into existing rows
 * or stored data: ALTER TABLE ... ADD COLUMN with a volatile default (each
 * backend fills its rows with its own now() or uuids), or a materialized
 * view whose query calls one (evaluated at every REFRESH). null if none.
 */
export function ddlEvaluatesVolatile(sql: string, isNonDeterministic: (fn: string) => boolean): Refusal | null {
  let out: Refusal | null = null
  const volatileIn = (node: unknown): { fn: string; at: number } | null => {
    let hit: { fn: string; at: number } | null = null
    walk(node, (key, n) => {
      if (hit) return
      if (key === 'SQLValueFunction' && /TIME|DATE/.test(String(n.op))) hit = { fn: 'CURRENT_TIMESTAMP', at: Number(n.location) }
      else if (key === 'FuncCall') {
        const names = (n.funcname as { String?: { sval?: string } }[] | undefined) ?? []
        const f = names[names.length - 1]?.String?.sval ?? ''
        if (CLOCK.has(f) || isNonDeterministic(f)) hit = { fn: `${f}()`, at: Number(n.location) }
      }
    })
    return hit
  }
  try {
    walk(parseSync(sql), (key, node) => {
      if (out) return
      if (key === 'AlterTableCmd' && node.subtype === 'AT_AddColumn') {
        const col = (node.def as { ColumnDef?: Node } | undefined)?.ColumnDef
        for (const c of (col?.constraints as { Constraint?: Node }[] | undefined) ?? []) {
          if (c.Constraint?.contype !== 'CONSTR_DEFAULT') continue
          const hit = volatileIn(c.Constraint.raw_expr)
          if (hit)
            out = {
              message: `pgraid refuses ADD COLUMN "${String(col!.colname)}" with default ${hit.fn}: each backend would fill the existing rows with its own values`,
              hint: 'add the column without a default (or with a constant one), fill it with an UPDATE, then ALTER COLUMN ... SET DEFAULT',
              position: hit.at,
            }
        }
      } else if (key === 'CreateTableAsStmt' && node.objtype === 'OBJECT_MATVIEW') {
        const hit = volatileIn(node.query)
        if (hit)
          out = {
            message: `pgraid refuses a materialized view calling ${hit.fn}: each backend would compute its own values at every REFRESH`,
            hint: 'use a table filled by INSERT ... SELECT (pgraid fixes the clock there), or a plain view',
            position: hit.at,
          }
      }
    })
  } catch {
    return null
  }
  return out
}
