// What the lock manager must know from the catalog of one database: foreign
// keys (cascades and checks write or lock tables a statement does not name),
// tables with user triggers, tables whose inserts draw from sequences, and
// which functions are volatile. Read from one backend, refreshed after DDL.

import type pg from 'pg'
import { controlClient } from '../backend/control-client.ts'
import type { BackendTarget } from '../backend/connection.ts'
import { expressionTemplate, type Slot } from '../sql/time-rewrite.ts'
import { NON_DETERMINISTIC, triggerNonDeterminism } from '../sql/nondeterministic.ts'

export interface UniqueIndex {
  columns: string[]
  types: string[]
  primary: boolean
}

/** A column default that differs per backend unless pgraid supplies its value. */
export interface VolatileDefault {
  /** The expression as PostgreSQL prints it. */
  expr: string
  /** The expression with its clock/random calls as slots. */
  pieces: (string | Slot)[]
  /** Functions in it pgraid cannot supply (refused unless determinism.allowFunctions lists them). */
  nonDeterministic: string[]
}

/** A user trigger whose function may compute something different on each backend. */
export interface VolatileTrigger {
  trigger: string
  function: string
  /** What makes it non-deterministic (a function it calls, or its language). */
  reason: string
}

export interface CatalogData {
  /** table → tables it references (parents). */
  parents: Map<string, Set<string>>
  /** table → tables referencing it (children). */
  children: Map<string, Set<string>>
  triggers: Set<string>
  sequenceDefaults: Set<string>
  /** table → the sequences its column defaults and identity columns draw from. */
  sequencesOf: Map<string, Set<string>>
  /** The same, schema-qualified and quoted: what the recovery log records the states of. */
  sequencesQualified: Map<string, Set<string>>
  /** Function names (unqualified) that are not volatile: safe in reads. */
  nonVolatile: Set<string>
  /** table → its plain unique indexes (primary key included): column names and type names, in index order. */
  uniques: Map<string, UniqueIndex[]>
  /** Tables in an inheritance or partition tree, with every other member of it. */
  family: Map<string, Set<string>>
  /** Views and tables with rules: a write to them lands on tables the statement does not name. */
  indirect: Set<string>
  /** Tables with a unique index on expressions or with a predicate, or an exclusion constraint: never key-locked. */
  complexUnique: Set<string>
  /** table → column → its default, for defaults with clock/random/per-backend calls (nextval is ordered instead). */
  volatileDefaults: Map<string, Map<string, VolatileDefault>>
  /** table → column names in table order (tables with volatile defaults: positional INSERTs). */
  columns: Map<string, string[]>
  /** table → its triggers that call per-backend functions. */
  volatileTriggers: Map<string, VolatileTrigger[]>
}

/** The catalog as (kind, a, b) text rows; also run inside a session's transaction (frontend/own-statements.ts catalogInTx, after DDL). */
export const CATALOG_QUERY = `
select 'fk' as k, cl.relname::text as a, pl.relname::text as b -- text: a union of name columns would cut every row at 63 bytes
  from pg_constraint k join pg_class cl on cl.oid = k.conrelid join pg_class pl on pl.oid = k.confrelid
 where k.contype = 'f'
union all
select 'trg', c.relname, t.tgname || '\t' || p.proname || '\t' || l.lanname || '\t' || coalesce(p.prosrc, '')
  from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_proc p on p.oid = t.tgfoid join pg_language l on l.oid = p.prolang
 where not t.tgisinternal
union all
select 'def', c.relname, a.attname || '\t' || pg_get_expr(d.adbin, d.adrelid)
  from pg_attrdef d join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
  join pg_class c on c.oid = d.adrelid join pg_namespace n on n.oid = c.relnamespace
 where not a.attisdropped and a.attgenerated = '' and n.nspname not in ('pg_catalog', 'information_schema')
   and pg_get_expr(d.adbin, d.adrelid) !~ '^nextval[(]'
union all
select 'col', c.relname, (select string_agg(a.attname, '\n' order by a.attnum) from pg_attribute a
                           where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
  from pg_class c where exists (select 1 from pg_attrdef d where d.adrelid = c.oid and pg_get_expr(d.adbin, d.adrelid) !~ '^nextval[(]')
union all
select distinct 'seq', c.relname, null from pg_attrdef d join pg_class c on c.oid = d.adrelid
 where pg_get_expr(d.adbin, d.adrelid) ilike '%nextval%'
union all
select distinct 'seq', c.relname, null from pg_attribute a join pg_class c on c.oid = a.attrelid
 where a.attidentity <> '' and not a.attisdropped
union all
select case when i.indisprimary then 'pk' else 'uk' end, c.relname,
       (select string_agg(a.attname || '\t' || t.typname, '\n' order by k.ord)
          from unnest(i.indkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
          join pg_type t on t.oid = a.atttypid)
  from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
 where i.indisunique and i.indexprs is null and i.indpred is null and n.nspname not in ('pg_catalog', 'information_schema')
union all
select 'ukx', c.relname, null
  from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
 where n.nspname not in ('pg_catalog', 'information_schema')
   and ((i.indisunique and (i.indexprs is not null or i.indpred is not null)) or i.indisexclusion)
union all
select 'sq', c.relname, s.relname
  from pg_attrdef ad join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
  join pg_class s on s.oid = d.refobjid and s.relkind = 'S' join pg_class c on c.oid = ad.adrelid
union all
select 'sq', c.relname, s.relname
  from pg_depend d join pg_class s on s.oid = d.objid and s.relkind = 'S' join pg_class c on c.oid = d.refobjid
 where d.deptype = 'i' and d.refclassid = 'pg_class'::regclass
union all
select 'sqq', c.relname, format('%I.%I', sn.nspname, s.relname)
  from pg_attrdef ad join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
  join pg_class s on s.oid = d.refobjid and s.relkind = 'S' join pg_namespace sn on sn.oid = s.relnamespace join pg_class c on c.oid = ad.adrelid
union all
select 'sqq', c.relname, format('%I.%I', sn.nspname, s.relname)
  from pg_depend d join pg_class s on s.oid = d.objid and s.relkind = 'S' join pg_namespace sn on sn.oid = s.relnamespace join pg_class c on c.oid = d.refobjid
 where d.deptype = 'i' and d.refclassid = 'pg_class'::regclass
union all
select 'inh', c.relname, p.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
union all
select 'ind', c.relname, null from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname not in ('pg_catalog', 'information_schema') and (c.relkind in ('v', 'f') or c.relhasrules)
union all
select 'fn', proname, null from (select proname from pg_proc group by proname having bool_and(provolatile <> 'v')) f`

/** A catalog that knows nothing yet (filled by a load; tests build on it). */
export function emptyCatalog(): CatalogData {
  return {
    parents: new Map(),
    children: new Map(),
    triggers: new Set(),
    sequenceDefaults: new Set(),
    sequencesOf: new Map(),
    sequencesQualified: new Map(),
    nonVolatile: new Set(),
    uniques: new Map(),
    complexUnique: new Set(),
    family: new Map(),
    indirect: new Set(),
    volatileDefaults: new Map(),
    columns: new Map(),
    volatileTriggers: new Map(),
  }
}

export class Catalog {
  private data: CatalogData | null = null
  private loading: Promise<CatalogData> | null = null
  private generation = 0

  constructor(
    private readonly source: () => BackendTarget,
    private readonly database: string,
  ) {}

  /** Marks the catalog stale (after DDL); the next get() reloads. */
  invalidate(): void {
    this.generation++
    this.data = null
  }

  async get(): Promise<CatalogData> {
    if (this.data) return this.data
    // A load started before the last invalidate() may not see the change that caused it (a column's
    // volatile default added by the DDL that just committed): it is not handed out; a new one starts.
    if (!this.loading || this.loadingGen !== this.generation) {
      const gen = this.generation
      const p: Promise<CatalogData> = this.load().then(
        (d) => {
          if (this.loading === p) this.loading = null
          if (gen === this.generation) this.data = d
          return d
        },
        (e) => {
          if (this.loading === p) this.loading = null
          throw e
        },
      )
      this.loading = p
      this.loadingGen = gen
    }
    return this.loading
  }
  private loadingGen = -1

  /** Kept open between reloads: after each DDL a reload must not cost a new login. */
  private client: pg.Client | null = null

  private idle: NodeJS.Timeout | null = null

  private async connection(): Promise<pg.Client> {
    if (this.idle) clearTimeout(this.idle)
    this.idle = null
    if (this.client) return this.client
    const t = this.source()
    const client = controlClient(t, this.database, 'catalog')
    client.on('error', () => {
      if (this.client === client) this.client = null
    })
    await client.connect()
    this.client = client
    return client
  }

  async close(): Promise<void> {
    if (this.idle) clearTimeout(this.idle)
    this.idle = null
    const c = this.client
    this.client = null
    await c?.end().catch(() => {})
  }

  /**
   * The catalog of a backend in service. One that is lost meanwhile (its connection ends) is not this
   * batch's failure: the read is tried again, on the backend in service then (the health monitor takes
   * the lost one out within moments).
   */
  private async load(): Promise<CatalogData> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.loadOnce()
      } catch (e) {
        const code = (e as { code?: string }).code ?? ''
        const lost = !code || code.startsWith('08') || code.startsWith('57P')
        if (!lost || attempt >= 4) throw e
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)))
      }
    }
  }

  private async loadOnce(): Promise<CatalogData> {
    let client: pg.Client
    try {
      client = await this.connection()
    } catch (e) {
      this.client = null
      throw e
    }
    try {
      const res = await client.query<CatalogRow>(CATALOG_QUERY)
      const d = buildCatalog(res.rows)
      // Closed soon after a burst of DDL: an idle connection would hold up DROP DATABASE.
      this.idle = setTimeout(() => void this.close(), 1000)
      this.idle.unref()
      return d
    } catch (e) {
      if (this.client === client) this.client = null
      await client.end().catch(() => {})
      throw e
    }
  }
}

export interface CatalogRow {
  k: string
  a: string
  b: string | null
}

/** CatalogData from the rows of CATALOG_QUERY. */
export function buildCatalog(rows: CatalogRow[]): CatalogData {
  const d = emptyCatalog()
  for (const r of rows) {
    if (r.k === 'fk' && r.b) {
      addTo(d.parents, r.a, r.b)
      addTo(d.children, r.b, r.a)
    } else if (r.k === 'trg' && r.b) {
      d.triggers.add(r.a)
      const [trigger, fn, lang, ...src] = r.b.split('\t')
      const reason = triggerNonDeterminism(fn, lang, src.join('\t'))
      if (reason) {
        let list = d.volatileTriggers.get(r.a)
        if (!list) d.volatileTriggers.set(r.a, (list = []))
        list.push({ trigger, function: fn, reason })
      }
    } else if (r.k === 'def' && r.b) {
      const tab = r.b.indexOf('\t')
      const column = r.b.slice(0, tab)
      const expr = r.b.slice(tab + 1)
      const t = safeTemplate(expr)
      if (t.pieces.some((p) => typeof p !== 'string') || t.nonDeterministic.length) {
        let m = d.volatileDefaults.get(r.a)
        if (!m) d.volatileDefaults.set(r.a, (m = new Map()))
        m.set(column, { expr, ...t })
      }
    } else if (r.k === 'col' && r.b) d.columns.set(r.a, r.b.split('\n'))
    else if (r.k === 'seq') d.sequenceDefaults.add(r.a)
    else if (r.k === 'sq' && r.b) addTo(d.sequencesOf, r.a, r.b)
    else if (r.k === 'sqq' && r.b) addTo(d.sequencesQualified, r.a, r.b)
    else if (r.k === 'fn') d.nonVolatile.add(r.a)
    else if (r.k === 'ukx') d.complexUnique.add(r.a)
    else if (r.k === 'ind') d.indirect.add(r.a)
    else if (r.k === 'inh' && r.b) {
      addTo(d.family, r.a, r.b)
      addTo(d.family, r.b, r.a)
    } else if ((r.k === 'uk' || r.k === 'pk') && r.b) {
      const cols = r.b.split('\n').map((l) => l.split('\t'))
      let list = d.uniques.get(r.a)
      if (!list) d.uniques.set(r.a, (list = []))
      list.push({ columns: cols.map((c) => c[0]), types: cols.map((c) => c[1]), primary: r.k === 'pk' })
    }
  }
  closeFamilies(d.family)
  // Table order, so messages and added columns do not depend on the catalog query's row order.
  for (const [table, m] of d.volatileDefaults) {
    const order = d.columns.get(table) ?? []
    d.volatileDefaults.set(table, new Map([...m].sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))))
  }
  return d
}

/** A default that does not parse alone is treated as refused rather than guessed. */
function safeTemplate(expr: string): { pieces: (string | Slot)[]; nonDeterministic: string[] } {
  try {
    return expressionTemplate(expr, (f) => NON_DETERMINISTIC.has(f))
  } catch {
    return { pieces: [expr], nonDeterministic: [expr] }
  }
}

function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k)
  if (!s) m.set(k, (s = new Set()))
  s.add(v)
}

/** Makes each inheritance tree a clique: grandparents and siblings meet too. */
function closeFamilies(family: Map<string, Set<string>>): void {
  for (const [t, rel] of family) {
    const seen = new Set<string>([t])
    const stack = [...rel]
    while (stack.length) {
      const x = stack.pop()!
      if (seen.has(x)) continue
      seen.add(x)
      for (const y of family.get(x) ?? []) stack.push(y)
    }
    seen.delete(t)
    family.set(t, seen)
  }
}
