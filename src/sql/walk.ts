// AST walker for query syntax: FROM items, CTE scoping, locking clauses,
// nested data-modifying statements, and function calls. Everything it does not
// know is walked generically, so new node types still contribute tables and
// functions (RangeVars found generically count as reads or writes by mode).
import type { CommonTableExpr, DeleteStmt, FuncCall, InsertStmt, LockingClause, MergeStmt, Node, RangeVar, SelectStmt, SQLValueFunction, UpdateStmt, WithClause } from '@pgsql/types'
import type { Collector } from './collector.ts'
import type { TableName } from './types.ts'

type Obj = Record<string, unknown>
type Handler = (value: never, c: Collector) => void

/** Walks any AST fragment (node, wrapped node, list, or plain field object). */
export function walkAny(n: unknown, c: Collector): void {
  if (n === null || typeof n !== 'object') return
  if (Array.isArray(n)) {
    for (const x of n) walkAny(x, c)
    return
  }
  const o = n as Obj
  // fields typed RangeVar are stored unwrapped (e.g. IndexStmt.relation): recognise them by shape
  if (typeof o.relname === 'string') {
    c.rangeVar(o as RangeVar)
    return
  }
  for (const k in o) {
    const v = o[k]
    if (v === null || typeof v !== 'object') continue
    const h = HANDLERS[k]
    if (h) (h as (v: unknown, c: Collector) => void)(v, c)
    else walkAny(v, c)
  }
}

const skip: Handler = () => {}

const HANDLERS: Record<string, Handler> = Object.assign(Object.create(null) as Record<string, Handler>, {
  SelectStmt: (s: SelectStmt, c: Collector) => walkSelect(s, c),
  InsertStmt: (s: InsertStmt, c: Collector) => nested(c, () => walkInsert(s, c)),
  UpdateStmt: (s: UpdateStmt, c: Collector) => nested(c, () => walkUpdate(s, c)),
  DeleteStmt: (s: DeleteStmt, c: Collector) => nested(c, () => walkDelete(s, c)),
  MergeStmt: (s: MergeStmt, c: Collector) => nested(c, () => walkMerge(s, c)),
  RangeVar: (rv: RangeVar, c: Collector) => c.rangeVar(rv),
  FuncCall: (f: FuncCall, c: Collector) => walkFuncCall(f, c),
  SQLValueFunction: (f: SQLValueFunction, c: Collector) => valueFunction(f, c),
  MergeSupportFunc: (_: unknown, c: Collector) => c.addFunction('merge_action'),
  // leaves that cannot contain tables or calls: skipping them is only an optimisation
  ColumnRef: skip,
  A_Const: skip,
  ParamRef: skip,
  TypeName: skip,
  Alias: skip,
  String: skip,
  Integer: skip,
  // lockedRels name FROM items, not tables; walkSelect resolves them
  LockingClause: skip,
})

function nested(c: Collector, fn: () => void): void {
  // a DML statement below the top level (a WITH query, a rule action) writes data
  c.dataModifying = true
  fn()
}

/** Opens the CTE scope of a WITH clause (walking the CTE queries); returns whether one was opened. */
function openWith(w: WithClause | undefined, c: Collector): boolean {
  if (!w?.ctes?.length) return false
  const scope = c.pushScope()
  const ctes: CommonTableExpr[] = []
  for (const n of w.ctes) {
    const cte = (n as { CommonTableExpr?: CommonTableExpr }).CommonTableExpr
    if (cte) ctes.push(cte)
  }
  // a recursive WITH sees all its names everywhere; otherwise each CTE sees only earlier ones
  if (w.recursive) for (const cte of ctes) if (cte.ctename) scope.add(cte.ctename)
  for (const cte of ctes) {
    c.withMode('read', () => walkAny(cte.ctequery, c))
    if (cte.ctename) scope.add(cte.ctename)
  }
  return true
}

export function walkSelect(s: SelectStmt, c: Collector): void {
  const scoped = openWith(s.withClause, c)
  c.withMode('read', () => {
    if (s.larg) walkSelect(s.larg, c)
    if (s.rarg) walkSelect(s.rarg, c)
    const locking = s.lockingClause?.length ? s.lockingClause : null
    const aliases = locking ? new Map<string, TableName[]>() : null
    const fromTables: TableName[] = []
    for (const item of s.fromClause ?? []) fromTables.push(...fromItem(item, c, aliases))
    walkAny(s.distinctClause, c)
    walkAny(s.targetList, c)
    walkAny(s.whereClause, c)
    walkAny(s.groupClause, c)
    walkAny(s.havingClause, c)
    walkAny(s.windowClause, c)
    walkAny(s.valuesLists, c)
    walkAny(s.sortClause, c)
    walkAny(s.limitOffset, c)
    walkAny(s.limitCount, c)
    if (s.intoClause?.rel) {
      c.selectInto = true
      c.create(s.intoClause.rel)
    }
    if (locking) applyLocking(locking, fromTables, aliases!, c)
  })
  if (scoped) c.popScope()
}

/**
 * Walks one FROM item and returns every table it reads (subqueries included),
 * registering FROM-item names in `aliases` when a locking clause needs them.
 */
function fromItem(item: Node, c: Collector, aliases: Map<string, TableName[]> | null): TableName[] {
  const cap: TableName[] = []
  c.captures.push(cap)
  try {
    const o = item as Obj
    let alias: string | undefined
    if (o.RangeVar) {
      const rv = o.RangeVar as RangeVar
      c.read(rv)
      alias = rv.alias?.aliasname ?? rv.relname
    } else if (o.JoinExpr) {
      const j = o.JoinExpr as { larg?: Node; rarg?: Node; quals?: Node; alias?: { aliasname?: string } }
      if (j.larg) fromItem(j.larg, c, aliases)
      if (j.rarg) fromItem(j.rarg, c, aliases)
      walkAny(j.quals, c)
      alias = j.alias?.aliasname
    } else if (o.RangeTableSample) {
      const r = o.RangeTableSample as { relation?: Node; args?: Node[]; repeatable?: Node }
      if (r.relation) fromItem(r.relation, c, aliases)
      walkAny(r.args, c)
      walkAny(r.repeatable, c)
    } else {
      // RangeSubselect, RangeFunction, JsonTable, RangeTableFunc
      walkAny(item, c)
      const inner = Object.values(o)[0] as { alias?: { aliasname?: string } } | undefined
      alias = inner?.alias?.aliasname
    }
    if (aliases && alias) aliases.set(alias, [...(aliases.get(alias) ?? []), ...cap])
  } finally {
    c.captures.pop()
  }
  return cap
}

function applyLocking(locking: Node[], fromTables: TableName[], aliases: Map<string, TableName[]>, c: Collector): void {
  c.lockingClause = true
  for (const n of locking) {
    const lc = (n as { LockingClause?: LockingClause }).LockingClause
    if (lc?.waitPolicy === 'LockWaitSkip') c.noteLockWait('skip_locked')
    else if (lc?.waitPolicy === 'LockWaitError') c.noteLockWait('nowait')
    const rels = lc?.lockedRels ?? []
    // no OF list: every table of this SELECT's FROM (sub-selects included) is locked
    if (rels.length === 0) {
      for (const t of fromTables) c.addWrite(t)
      continue
    }
    for (const r of rels) {
      const name = (r as { RangeVar?: RangeVar }).RangeVar?.relname
      // an OF name we cannot resolve (PostgreSQL would reject it) locks everything, to be safe
      const hit = name !== undefined ? aliases.get(name) : undefined
      for (const t of hit ?? fromTables) c.addWrite(t)
    }
  }
}

export function walkInsert(s: InsertStmt, c: Collector): void {
  const scoped = openWith(s.withClause, c)
  if (s.relation) c.write(s.relation)
  c.withMode('read', () => {
    walkAny(s.cols, c)
    walkAny(s.selectStmt, c)
    walkAny(s.onConflictClause, c)
    walkAny(s.returningClause, c)
  })
  if (scoped) c.popScope()
}

export function walkUpdate(s: UpdateStmt, c: Collector): void {
  const scoped = openWith(s.withClause, c)
  if (s.relation) c.write(s.relation)
  c.withMode('read', () => {
    walkAny(s.targetList, c)
    walkAny(s.fromClause, c)
    walkAny(s.whereClause, c)
    walkAny(s.returningClause, c)
  })
  if (scoped) c.popScope()
}

export function walkDelete(s: DeleteStmt, c: Collector): void {
  const scoped = openWith(s.withClause, c)
  if (s.relation) c.write(s.relation)
  c.withMode('read', () => {
    walkAny(s.usingClause, c)
    walkAny(s.whereClause, c)
    walkAny(s.returningClause, c)
  })
  if (scoped) c.popScope()
}

export function walkMerge(s: MergeStmt, c: Collector): void {
  const scoped = openWith(s.withClause, c)
  if (s.relation) c.write(s.relation)
  c.withMode('read', () => {
    walkAny(s.sourceRelation, c)
    walkAny(s.joinCondition, c)
    walkAny(s.mergeWhenClauses, c)
    walkAny(s.returningClause, c)
  })
  if (scoped) c.popScope()
}

export function funcName(names: Node[] | undefined): string {
  const parts: string[] = []
  for (const n of names ?? []) {
    const s = (n as { String?: { sval?: string } }).String?.sval
    if (s !== undefined) parts.push(s)
  }
  return parts.join('.')
}

export function walkFuncCall(f: FuncCall, c: Collector): void {
  const name = funcName(f.funcname)
  if (name) {
    c.addFunction(name)
    const base = name.slice(name.lastIndexOf('.') + 1)
    if (base === 'nextval' || base === 'setval' || base === 'currval') c.sequences.add(sequenceArg(f.args?.[0]) ?? '*')
    if ((name === 'pg_notify' || name === 'pg_catalog.pg_notify') && !c.notify) {
      const first = f.args?.[0] as { A_Const?: { sval?: { sval?: string } } } | undefined
      const channel = first?.A_Const?.sval?.sval
      c.notify = channel !== undefined ? { channel } : {}
    }
  }
  walkAny(f.args, c)
  walkAny(f.agg_order, c)
  walkAny(f.agg_filter, c)
  walkAny(f.over, c)
}

/**
 * The sequence a nextval('name')-style argument names, folded like a regclass
 * input: unquoted parts lowercased, the schema dropped (the catalog keys
 * sequences by name). null when the argument is not a constant.
 */
export function sequenceArg(arg: unknown): string | null {
  let node = arg as { A_Const?: { sval?: { sval?: string } }; TypeCast?: { arg?: unknown } } | undefined
  if (node?.TypeCast) node = node.TypeCast.arg as typeof node
  const text = node?.A_Const?.sval?.sval
  if (text === undefined) return null
  const parts: string[] = []
  const re = /\s*(?:"((?:[^"]|"")*)"|([^."]+))\s*(?:\.|$)/y
  let m: RegExpExecArray | null
  while (re.lastIndex < text.length && (m = re.exec(text))) parts.push(m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2].trim().toLowerCase())
  return parts.length ? parts[parts.length - 1] : null
}

// SQL-standard value functions are evaluated like these catalog functions
const VALUE_FUNCTIONS: Record<string, string> = {
  CURRENT_DATE: 'now',
  CURRENT_TIME: 'now',
  CURRENT_TIMESTAMP: 'now',
  LOCALTIME: 'now',
  LOCALTIMESTAMP: 'now',
  CURRENT_ROLE: 'current_user',
  CURRENT_USER: 'current_user',
  USER: 'current_user',
  SESSION_USER: 'current_user',
  CURRENT_CATALOG: 'current_database',
  CURRENT_SCHEMA: 'current_schema',
}

function valueFunction(f: SQLValueFunction, c: Collector): void {
  const keyword = (f.op ?? '').replace(/^SVFOP_/, '').replace(/_N$/, '')
  c.sqlValueFunctions.add(keyword.toLowerCase())
  c.addFunction(VALUE_FUNCTIONS[keyword] ?? keyword.toLowerCase())
}
