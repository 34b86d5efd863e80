// The SQL that recreates a source database's schema in an empty database of the same major
// version, for `pgraid clone`: schema first (preData), then the rows by COPY (`tables`), then
// the sequence positions and everything that is cheaper or only possible once the rows are
// there (postData: keys, indexes, views, triggers, foreign keys...).
//
// Why not pg_dump: there is no pg_dump of the backends' major version (18) on the machine, and
// an older pg_dump refuses a newer server. PostgreSQL's own deparse functions (format_type,
// pg_get_expr, pg_get_constraintdef, pg_get_indexdef, pg_get_viewdef, pg_get_functiondef,
// pg_get_triggerdef, ...) give exact definitions, so only the statement shells and the order
// are ours. The order comes from pg_depend (a topological sort, catalog order breaking ties).
// While we read, the source session's search_path is empty (restored after), as in pg_dump,
// so that every deparsed name is schema-qualified.

import type pg from 'pg'

export interface SchemaScript {
  /** Before data: schemas, extensions, collations, types, functions, sequences, tables (with CHECK and NOT NULL). */
  preData: string[]
  /** After data: keys, indexes, views, materialized views, NOT VALID checks, OWNED BY, foreign keys, triggers, rules, policies, statistics, comments, grants. */
  postData: string[]
  /** Tables to COPY (leaves only: no partitioned parents, views or foreign tables), with quoted names and non-generated columns. */
  tables: { name: string; columns: string[]; estimatedRows: number }[]
  /** One setval per sequence (identity ones too), with the source's last_value and is_called. */
  sequences: string[]
  /** Objects found but not recreated (or not faithfully), one human sentence each. */
  skipped: string[]
}

export interface SchemaScriptOptions {
  /** Schemas left out entirely, e.g. ['pgraid']. */
  excludeSchemas?: string[]
}

/** Objects with lower OIDs were made by initdb and exist in every new database. */
const FIRST_USER_OID = 16384

/** User schemas; $1 is the excluded list. pg_ is reserved for system schemas (pg_toast, pg_temp_N...). */
const USER_NS = `(SELECT oid FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' AND nspname <> ALL ($1::text[]))`
/**
 * Members of an extension are recreated by CREATE EXTENSION. With `internal`, also objects made
 * along with another one (a range type's constructor functions): pg_class and pg_type have
 * internal dependencies of their own (identity sequences, composite types) and are handled apart.
 */
const notExt = (catalog: string, oid: string, internal = false) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = '${catalog}'::regclass AND x.objid = ${oid} AND x.deptype IN ('e'${internal ? ", 'i'" : ''}))`

type Kind = 'collation' | 'type' | 'sequence' | 'function' | 'table' | 'view'
const RANK: Record<Kind, number> = { collation: 0, type: 1, sequence: 2, function: 3, table: 4, view: 5 }

interface Node {
  key: string
  kind: Kind
  oid: number
  label: string
  sql: string[]
  post: boolean
  deps: Set<string>
}

interface Rel {
  oid: number
  kind: string
  persistence: string
  qname: string
  ispartition: boolean
  bound: string | null
  partkey: string | null
  parents: string[]
  options: string[] | null
  toast_options: string[] | null
  am: string | null
  oftype: string | null
  tablespace: string | null
  rls: boolean
  force_rls: boolean
  replident: string
  populated: boolean
  tuples: number
  reltype: number
  viewdef: string | null
}

interface Col {
  rel: number
  attnum: number
  name: string
  type: string
  collate: string | null
  notnull: boolean
  identity: string
  generated: string
  islocal: boolean
  def: string | null
  storage: string | null
  stattarget: number | null
  compression: string | null
  options: string[] | null
  identity_seq: number | null
}

interface Con {
  oid: number
  name: string
  type: string
  rel: number
  typ: number
  islocal: boolean
  validated: boolean
  parent: number
  def: string
}

interface Seq {
  oid: number
  qname: string
  type: string
  start: string
  inc: string
  min: string
  max: string
  cache: string
  cycle: boolean
  persistence: string
  identity: boolean
  owned_by: string | null
  owner_rel: number | null
}

/** Where COMMENT ON and GRANT ... ON point for one object. */
interface Target {
  comment: string
  grant?: string
  column?: { table: string; name: string }
}

const lit = (s: string) => `'${s.replace(/'/g, "''")}'`

/** reloptions ("key=value") as a WITH list; values quoted, which every option accepts. */
function withList(options: string[] | null, prefix = ''): string[] {
  return (options ?? []).map((o) => {
    const i = o.indexOf('=')
    return `${prefix}${o.slice(0, i)}=${lit(o.slice(i + 1))}`
  })
}

function seqOptions(s: Seq): string {
  return `INCREMENT BY ${s.inc} MINVALUE ${s.min} MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache} ${s.cycle ? 'CYCLE' : 'NO CYCLE'}`
}

/** Depth-first topological order: dependencies before dependents, `items`' order breaking ties. */
function topoSort<T>(items: T[], key: (t: T) => string, deps: (t: T) => string[], onCycle: (t: T) => void): T[] {
  const byKey = new Map(items.map((t) => [key(t), t]))
  const state = new Map<string, 'open' | 'done'>()
  const out: T[] = []
  const visit = (t: T) => {
    const k = key(t)
    const s = state.get(k)
    if (s === 'done') return
    if (s === 'open') return onCycle(t)
    state.set(k, 'open')
    for (const d of deps(t)) {
      const dt = byKey.get(d)
      if (dt !== undefined && d !== k) visit(dt)
    }
    state.set(k, 'done')
    out.push(t)
  }
  for (const t of items) visit(t)
  return out
}

export async function schemaScript(source: pg.Client, opts: SchemaScriptOptions = {}): Promise<SchemaScript> {
  const saved = (await source.query<{ p: string }>(`SELECT pg_catalog.current_setting('search_path') AS p`)).rows[0]!.p
  // Not SET LOCAL: the caller may run in autocommit; restored below either way (a ROLLBACK restores it too).
  await source.query(`SELECT pg_catalog.set_config('search_path', '', false)`)
  try {
    return await new Builder(source, opts.excludeSchemas ?? []).build()
  } finally {
    await source.query(`SELECT pg_catalog.set_config('search_path', $1, false)`, [saved]).catch(() => {})
  }
}

class Builder {
  private version = 0
  private readonly nodes = new Map<string, Node>()
  private readonly targets = new Map<string, Target>()
  private readonly rels = new Map<number, Rel>()
  private readonly cols = new Map<number, Col[]>()
  private readonly seqs = new Map<number, Seq>()
  private cons: Con[] = []
  private readonly consBy = new Map<string, Con[]>() // 'r<oid>' for a relation's, 't<oid>' for a domain's
  private readonly head: string[] = ['SET check_function_bodies = off', `SELECT pg_catalog.set_config('search_path', '', false)`]
  private readonly keys: string[] = []
  private readonly matviewIndexes: string[] = []
  private readonly refresh = new Map<string, string>() // by node key: issued in dependency order
  private readonly late: string[] = []
  private readonly fks: string[] = []
  private readonly objects: string[] = [] // triggers, rules, policies, statistics
  private readonly skipped: string[] = []

  constructor(
    private readonly c: pg.Client,
    private readonly exclude: string[],
  ) {}

  private async q<T extends pg.QueryResultRow>(sql: string, params: unknown[] = [this.exclude]): Promise<T[]> {
    return (await this.c.query<T>(sql, params)).rows
  }

  async build(): Promise<SchemaScript> {
    this.version = Number((await this.q<{ v: string }>(`SELECT current_setting('server_version_num') AS v`, []))[0]!.v)
    await this.schemas()
    await this.extensions()
    await this.loadRelations()
    await this.collations()
    await this.types()
    await this.functions()
    await this.sequenceNodes()
    this.relationNodes()
    await this.dependencies()
    const ordered = this.order()
    const pre = [...this.head, ...ordered.filter((n) => !n.post).flatMap((n) => n.sql)]
    await this.indexes()
    const viewsEtc = ordered.filter((n) => n.post).flatMap((n) => n.sql)
    this.constraintsAfterData()
    await this.triggersRulesPolicies()
    const comments = await this.comments()
    const grants = await this.grants()
    await this.inventory()
    return {
      preData: pre,
      postData: [
        ...this.keys,
        ...viewsEtc,
        ...this.matviewIndexes,
        ...ordered.flatMap((n) => this.refresh.get(n.key) ?? []),
        ...this.late,
        ...this.fks,
        ...this.objects,
        ...comments,
        ...grants,
      ],
      tables: this.copyList(),
      sequences: await this.setvals(),
      skipped: this.skipped,
    }
  }

  private target(catalog: string, oid: number, t: Target, sub = 0): void {
    this.targets.set(sub ? `${catalog}:${oid}:${sub}` : `${catalog}:${oid}`, t)
  }

  private node(kind: Kind, key: string, oid: number, label: string, sql: string[]): Node {
    const n: Node = { key, kind, oid, label, sql, post: kind === 'view', deps: new Set() }
    this.nodes.set(key, n)
    return n
  }

  // -------------------------------------------------------------------------------------------
  // Schemas and extensions: first, in this order

  private async schemas(): Promise<void> {
    const rows = await this.q<{ oid: number; name: string }>(
      `SELECT n.oid, quote_ident(n.nspname) AS name FROM pg_namespace n WHERE n.oid IN ${USER_NS} AND ${notExt('pg_namespace', 'n.oid')} ORDER BY n.oid`,
    )
    for (const r of rows) {
      this.head.push(`CREATE SCHEMA IF NOT EXISTS ${r.name}`) // `public` exists in every new database
      this.target('pg_namespace', r.oid, { comment: `SCHEMA ${r.name}`, grant: `SCHEMA ${r.name}` })
    }
  }

  private async extensions(): Promise<void> {
    const rows = await this.q<{ oid: number; name: string; schema: string; nspname: string; version: string; requires: number[]; config: string[] | null }>(
      `SELECT e.oid, quote_ident(e.extname) AS name, quote_ident(n.nspname) AS schema, n.nspname, e.extversion AS version,
              ARRAY(SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_extension'::regclass AND d.objid = e.oid
                    AND d.refclassid = 'pg_extension'::regclass) AS requires,
              ARRAY(SELECT x::regclass::text FROM unnest(e.extconfig) x) AS config
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
       WHERE e.oid >= ${FIRST_USER_OID} ORDER BY e.oid`,
      [],
    )
    const kept = rows.filter((r) => {
      if (!this.exclude.includes(r.nspname)) return true
      this.skipped.push(`extension ${r.name}: lives in excluded schema ${r.schema}, not created`)
      return false
    })
    const sorted = topoSort(kept, (r) => String(r.oid), (r) => r.requires.map(String), (r) => this.skipped.push(`extension ${r.name}: dependency cycle`))
    for (const r of sorted) {
      this.head.push(`CREATE EXTENSION IF NOT EXISTS ${r.name} WITH SCHEMA ${r.schema} VERSION ${lit(r.version)}`)
      this.target('pg_extension', r.oid, { comment: `EXTENSION ${r.name}` })
      if (r.config?.length) this.skipped.push(`extension ${r.name}: rows of its configuration table(s) ${r.config.join(', ')} not copied`)
    }
  }

  // -------------------------------------------------------------------------------------------
  // Pre-data objects: each becomes a node of the dependency graph

  private async collations(): Promise<void> {
    const rows = await this.q<{ oid: number; qname: string; provider: string; deterministic: boolean; lc_collate: string | null; lc_ctype: string | null; locale: string | null; rules: string | null }>(
      `SELECT c.oid, format('%I.%I', n.nspname, c.collname) AS qname, c.collprovider AS provider, c.collisdeterministic AS deterministic,
              c.collcollate AS lc_collate, c.collctype AS lc_ctype,
              coalesce(to_jsonb(c) ->> 'colllocale', to_jsonb(c) ->> 'colliculocale') AS locale, to_jsonb(c) ->> 'collicurules' AS rules
       FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
       WHERE c.collnamespace IN ${USER_NS} AND ${notExt('pg_collation', 'c.oid')} ORDER BY c.oid`,
    )
    const providers: Record<string, string> = { c: 'libc', i: 'icu', b: 'builtin' }
    for (const r of rows) {
      const provider = providers[r.provider]
      if (!provider) {
        this.skipped.push(`collation ${r.qname}: provider '${r.provider}' cannot be created`)
        continue
      }
      const o = [`provider = ${provider}`]
      if (provider === 'libc') o.push(`lc_collate = ${lit(r.lc_collate ?? '')}`, `lc_ctype = ${lit(r.lc_ctype ?? '')}`)
      else o.push(`locale = ${lit(r.locale ?? '')}`)
      if (!r.deterministic) o.push('deterministic = false')
      if (r.rules) o.push(`rules = ${lit(r.rules)}`)
      this.node('collation', `l${r.oid}`, r.oid, `collation ${r.qname}`, [`CREATE COLLATION ${r.qname} (${o.join(', ')})`])
      this.target('pg_collation', r.oid, { comment: `COLLATION ${r.qname}` })
    }
  }

  private async loadRelations(): Promise<void> {
    const rels = await this.q<Rel>(
      `SELECT c.oid, c.relkind AS kind, c.relpersistence AS persistence, format('%I.%I', n.nspname, c.relname) AS qname,
              c.relispartition AS ispartition, pg_get_expr(c.relpartbound, c.oid) AS bound,
              CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
              ARRAY(SELECT i.inhparent::int8 FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno) AS parents,
              c.reloptions AS options, tc.reloptions AS toast_options,
              CASE WHEN am.amname <> 'heap' THEN quote_ident(am.amname) END AS am,
              CASE WHEN c.reloftype <> 0 THEN format_type(c.reloftype, NULL) END AS oftype,
              ts.spcname AS tablespace, c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls, c.relreplident AS replident,
              c.relispopulated AS populated, c.reltuples AS tuples, c.reltype,
              CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
       LEFT JOIN pg_am am ON am.oid = c.relam
       LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND c.relnamespace IN ${USER_NS} AND ${notExt('pg_class', 'c.oid')}
       ORDER BY c.oid`,
    )
    for (const r of rels) {
      // Not created at all: nothing else (triggers, grants, comments) may refer to them.
      if (r.kind === 'f') this.skipped.push(`foreign table ${r.qname}: not copied`)
      else this.rels.set(r.oid, r)
    }
    const cols = await this.q<Col>(
      `SELECT a.attrelid AS rel, a.attnum, quote_ident(a.attname) AS name, format_type(a.atttypid, a.atttypmod) AS type,
              CASE WHEN a.attcollation <> t.typcollation THEN format('%I.%I', cn.nspname, co.collname) END AS collate,
              a.attnotnull AS notnull, a.attidentity AS identity, a.attgenerated AS generated, a.attislocal AS islocal,
              pg_get_expr(d.adbin, d.adrelid) AS def,
              CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END AS storage,
              nullif(a.attstattarget, -1) AS stattarget, nullif(a.attcompression::text, '') AS compression, a.attoptions AS options,
              (SELECT s.objid FROM pg_depend s JOIN pg_class sc ON sc.oid = s.objid AND sc.relkind = 'S'
               WHERE s.classid = 'pg_class'::regclass AND s.refclassid = 'pg_class'::regclass AND s.refobjid = a.attrelid
                 AND s.refobjsubid = a.attnum AND s.deptype = 'i') AS identity_seq
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = ANY ($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attrelid, a.attnum`,
      [[...this.rels.keys()]],
    )
    for (const col of cols) {
      let list = this.cols.get(col.rel)
      if (!list) this.cols.set(col.rel, (list = []))
      list.push(col)
    }
    this.cons = await this.q<Con>(
      `SELECT co.oid, quote_ident(co.conname) AS name, co.contype AS type, co.conrelid AS rel, co.contypid AS typ,
              co.conislocal AS islocal, co.convalidated AS validated, co.conparentid AS parent, pg_get_constraintdef(co.oid) AS def
       FROM pg_constraint co WHERE co.connamespace IN ${USER_NS} ORDER BY co.oid`,
    )
    for (const k of this.cons) {
      const key = k.rel ? `r${k.rel}` : `t${k.typ}`
      this.consBy.set(key, [...(this.consBy.get(key) ?? []), k])
    }
    const seqs = await this.q<Seq>(
      `SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS qname, format_type(s.seqtypid, NULL) AS type,
              s.seqstart AS start, s.seqincrement AS inc, s.seqmin AS min, s.seqmax AS max, s.seqcache AS cache, s.seqcycle AS cycle,
              c.relpersistence AS persistence,
              EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'i') AS identity,
              o.owned_by, o.owner_rel
       FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN LATERAL (
         SELECT format('%I.%I.%I', tn.nspname, t.relname, a.attname) AS owned_by, t.oid AS owner_rel
         FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
       ) o ON true
       WHERE c.relnamespace IN ${USER_NS} AND ${notExt('pg_class', 'c.oid')} ORDER BY c.oid`,
    )
    for (const s of seqs) this.seqs.set(s.oid, s)
  }

  private constraintsOf(oid: number, field: 'rel' | 'typ'): Con[] {
    return this.consBy.get(`${field === 'rel' ? 'r' : 't'}${oid}`) ?? []
  }

  private async types(): Promise<void> {
    const rows = await this.q<{
      oid: number; kind: string; qname: string; rel: number; labels: string | null; base: string | null; collate: string | null
      notnull: boolean; def: string | null; subtype: string | null; subopclass: string | null; rngcollate: string | null
      canonical: boolean; subdiff: string | null; multirange: string | null
    }>(
      `SELECT t.oid, t.typtype AS kind, format('%I.%I', n.nspname, t.typname) AS qname, t.typrelid AS rel,
              (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
              CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base,
              CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation THEN
                (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation) END AS collate,
              t.typnotnull AS notnull, coalesce(pg_get_expr(t.typdefaultbin, 0), t.typdefault) AS def,
              format_type(r.rngsubtype, NULL) AS subtype,
              CASE WHEN NOT oc.opcdefault THEN format('%I.%I', ocn.nspname, oc.opcname) END AS subopclass,
              CASE WHEN r.rngcollation <> st.typcollation THEN
                (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = r.rngcollation) END AS rngcollate,
              coalesce(r.rngcanonical::oid <> 0, false) AS canonical,
              CASE WHEN r.rngsubdiff::oid <> 0 THEN r.rngsubdiff::text END AS subdiff,
              CASE WHEN r.rngmultitypid <> 0 THEN format_type(r.rngmultitypid, NULL) END AS multirange
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
       LEFT JOIN pg_class rc ON rc.oid = t.typrelid
       LEFT JOIN pg_range r ON r.rngtypid = t.oid
       LEFT JOIN pg_type st ON st.oid = r.rngsubtype
       LEFT JOIN pg_opclass oc ON oc.oid = r.rngsubopc LEFT JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace
       WHERE t.typnamespace IN ${USER_NS} AND ${notExt('pg_type', 't.oid')}
         AND t.typtype IN ('b', 'c', 'd', 'e', 'r') AND (t.typtype <> 'c' OR rc.relkind = 'c')
         AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
       ORDER BY t.oid`,
    )
    for (const t of rows) {
      let sql: string
      if (t.kind === 'e') sql = `CREATE TYPE ${t.qname} AS ENUM (${t.labels ?? ''})`
      else if (t.kind === 'c') {
        const attrs = (this.cols.get(t.rel) ?? []).map((a) => {
          this.target('pg_class', t.rel, { comment: `COLUMN ${t.qname}.${a.name}` }, a.attnum)
          return `${a.name} ${a.type}${a.collate ? ` COLLATE ${a.collate}` : ''}`
        })
        sql = `CREATE TYPE ${t.qname} AS (${attrs.join(', ')})`
      } else if (t.kind === 'd') sql = this.domainSql(t.oid, t.qname, t.base!, t.collate, t.def, t.notnull)
      else if (t.kind === 'r') {
        if (t.canonical) {
          this.skipped.push(`range type ${t.qname}: has a canonical function (needs a shell type), not created`)
          continue
        }
        const o = [`subtype = ${t.subtype}`]
        if (t.subopclass) o.push(`subtype_opclass = ${t.subopclass}`)
        if (t.rngcollate) o.push(`collation = ${t.rngcollate}`)
        if (t.subdiff) o.push(`subtype_diff = ${t.subdiff}`)
        if (t.multirange) o.push(`multirange_type_name = ${t.multirange}`)
        sql = `CREATE TYPE ${t.qname} AS RANGE (${o.join(', ')})`
      } else {
        this.skipped.push(`base type ${t.qname}: user-defined base types (C input/output functions) are not created`)
        continue
      }
      this.node('type', `t${t.oid}`, t.oid, `type ${t.qname}`, [sql])
      const word = t.kind === 'd' ? 'DOMAIN' : 'TYPE'
      this.target('pg_type', t.oid, { comment: `${word} ${t.qname}`, grant: `${word} ${t.qname}` })
    }
  }

  private domainSql(oid: number, qname: string, base: string, collate: string | null, def: string | null, notnull: boolean): string {
    let sql = `CREATE DOMAIN ${qname} AS ${base}`
    if (collate) sql += ` COLLATE ${collate}`
    if (def !== null) sql += ` DEFAULT ${def}`
    const cons = this.constraintsOf(oid, 'typ')
    // Before 17 a domain's NOT NULL is only typnotnull, not a named constraint.
    if (notnull && !cons.some((k) => k.type === 'n')) sql += ' NOT NULL'
    for (const k of cons) {
      this.target('pg_constraint', k.oid, { comment: `CONSTRAINT ${k.name} ON DOMAIN ${qname}` })
      // NOT VALID constraints go after the data, so that rows the source never checked load.
      if (k.validated) sql += ` CONSTRAINT ${k.name} ${k.def}`
      else this.late.push(`ALTER DOMAIN ${qname} ADD CONSTRAINT ${k.name} ${k.def}`)
    }
    return sql
  }

  private async functions(): Promise<void> {
    const rows = await this.q<{ oid: number; kind: string; qname: string; args: string; def: string | null }>(
      `SELECT p.oid, p.prokind AS kind, format('%I.%I', n.nspname, p.proname) AS qname,
              pg_get_function_identity_arguments(p.oid) AS args,
              CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS def
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE p.pronamespace IN ${USER_NS} AND ${notExt('pg_proc', 'p.oid', true)} ORDER BY p.oid`,
    )
    const aggs = new Map((await this.aggregates()).map((a) => [a.oid, a.sql]))
    for (const f of rows) {
      const word = f.kind === 'p' ? 'PROCEDURE' : f.kind === 'a' ? 'AGGREGATE' : 'FUNCTION'
      const sql = f.kind === 'a' ? aggs.get(f.oid) : f.def?.trim()
      if (!sql) continue
      this.node('function', `p${f.oid}`, f.oid, `${word.toLowerCase()} ${f.qname}(${f.args})`, [sql])
      const sig = `${f.qname}(${f.kind === 'a' && !f.args ? '*' : f.args})`
      this.target('pg_proc', f.oid, { comment: `${word} ${sig}`, grant: `${f.kind === 'p' ? 'PROCEDURE' : 'FUNCTION'} ${sig}` })
    }
  }

  /** pg_get_functiondef does not do aggregates; CREATE AGGREGATE from pg_aggregate. */
  private async aggregates(): Promise<{ oid: number; sql: string }[]> {
    const rows = await this.q<Record<string, string | number | boolean | null> & { oid: number; qname: string; args: string }>(
      `SELECT a.aggfnoid::oid AS oid, format('%I.%I', n.nspname, p.proname) AS qname, pg_get_function_arguments(p.oid) AS args, a.aggkind AS kind,
              a.aggtransfn::text AS sfunc, format_type(a.aggtranstype, NULL) AS stype, a.aggtransspace AS sspace,
              CASE WHEN a.aggfinalfn::oid <> 0 THEN a.aggfinalfn::text END AS finalfunc, a.aggfinalextra AS finalextra, a.aggfinalmodify AS finalmodify,
              CASE WHEN a.aggcombinefn::oid <> 0 THEN a.aggcombinefn::text END AS combinefunc,
              CASE WHEN a.aggserialfn::oid <> 0 THEN a.aggserialfn::text END AS serialfunc,
              CASE WHEN a.aggdeserialfn::oid <> 0 THEN a.aggdeserialfn::text END AS deserialfunc,
              a.agginitval AS initcond,
              CASE WHEN a.aggmtransfn::oid <> 0 THEN a.aggmtransfn::text END AS msfunc,
              CASE WHEN a.aggminvtransfn::oid <> 0 THEN a.aggminvtransfn::text END AS minvfunc,
              CASE WHEN a.aggmtranstype <> 0 THEN format_type(a.aggmtranstype, NULL) END AS mstype, a.aggmtransspace AS msspace,
              CASE WHEN a.aggmfinalfn::oid <> 0 THEN a.aggmfinalfn::text END AS mfinalfunc, a.aggmfinalextra AS mfinalextra,
              a.aggmfinalmodify AS mfinalmodify, a.aggminitval AS minitcond,
              (SELECT format('OPERATOR(%I.%s)', opn.nspname, o.oprname) FROM pg_operator o JOIN pg_namespace opn ON opn.oid = o.oprnamespace
               WHERE o.oid = a.aggsortop) AS sortop,
              p.proparallel AS parallel
       FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE p.pronamespace IN ${USER_NS} AND ${notExt('pg_proc', 'p.oid')}`,
    )
    const modify: Record<string, string> = { r: 'READ_ONLY', s: 'SHAREABLE', w: 'READ_WRITE' }
    const parallel: Record<string, string> = { s: 'SAFE', r: 'RESTRICTED', u: 'UNSAFE' }
    return rows.map((a) => {
      const o = [`SFUNC = ${a.sfunc}`, `STYPE = ${a.stype}`]
      if (Number(a.sspace)) o.push(`SSPACE = ${a.sspace}`)
      if (a.finalfunc) o.push(`FINALFUNC = ${a.finalfunc}`, `FINALFUNC_MODIFY = ${modify[String(a.finalmodify)]}`)
      if (a.finalextra) o.push('FINALFUNC_EXTRA')
      if (a.combinefunc) o.push(`COMBINEFUNC = ${a.combinefunc}`)
      if (a.serialfunc) o.push(`SERIALFUNC = ${a.serialfunc}`, `DESERIALFUNC = ${a.deserialfunc}`)
      if (a.initcond !== null) o.push(`INITCOND = ${lit(String(a.initcond))}`)
      if (a.msfunc) {
        o.push(`MSFUNC = ${a.msfunc}`, `MINVFUNC = ${a.minvfunc}`, `MSTYPE = ${a.mstype}`)
        if (Number(a.msspace)) o.push(`MSSPACE = ${a.msspace}`)
        if (a.mfinalfunc) o.push(`MFINALFUNC = ${a.mfinalfunc}`, `MFINALFUNC_MODIFY = ${modify[String(a.mfinalmodify)]}`)
        if (a.mfinalextra) o.push('MFINALFUNC_EXTRA')
        if (a.minitcond !== null) o.push(`MINITCOND = ${lit(String(a.minitcond))}`)
      }
      if (a.sortop) o.push(`SORTOP = ${a.sortop}`)
      if (a.kind === 'h') o.push('HYPOTHETICAL')
      o.push(`PARALLEL = ${parallel[String(a.parallel)]}`)
      return { oid: a.oid, sql: `CREATE AGGREGATE ${a.qname} (${a.args || '*'}) (${o.join(', ')})` }
    })
  }

  private async sequenceNodes(): Promise<void> {
    for (const s of this.seqs.values()) {
      if (s.identity) continue // created by its column's GENERATED ... AS IDENTITY
      const sql = `CREATE ${s.persistence === 'u' ? 'UNLOGGED ' : ''}SEQUENCE ${s.qname} AS ${s.type} ${seqOptions(s)}`
      this.node('sequence', `c${s.oid}`, s.oid, `sequence ${s.qname}`, [sql])
      // Ownership ties the sequence to a column; set after the data, when nothing depends on order.
      if (s.owned_by && s.owner_rel !== null && this.rels.has(s.owner_rel)) this.late.push(`ALTER SEQUENCE ${s.qname} OWNED BY ${s.owned_by}`)
    }
  }

  private relationNodes(): void {
    for (const r of this.rels.values()) {
      const cols = this.cols.get(r.oid) ?? []
      const word = { r: 'TABLE', p: 'TABLE', v: 'VIEW', m: 'MATERIALIZED VIEW', S: 'SEQUENCE', c: 'TYPE' }[r.kind]!
      if (r.kind === 'c') continue // a composite type's columns are targets of types()
      this.target('pg_class', r.oid, { comment: `${word} ${r.qname}`, grant: `${r.kind === 'S' ? 'SEQUENCE' : 'TABLE'} ${r.qname}` })
      for (const col of cols) this.target('pg_class', r.oid, { comment: `COLUMN ${r.qname}.${col.name}`, column: { table: `TABLE ${r.qname}`, name: col.name } }, col.attnum)
      if (r.tablespace) this.skipped.push(`${word.toLowerCase()} ${r.qname}: in tablespace ${r.tablespace}, created in the default tablespace`)
      if (r.kind === 'r' || r.kind === 'p') this.node('table', `c${r.oid}`, r.oid, `table ${r.qname}`, this.tableSql(r, cols))
      else if (r.kind === 'v' || r.kind === 'm') this.node('view', `c${r.oid}`, r.oid, `view ${r.qname}`, this.viewSql(r, cols))
    }
  }

  private tableSql(r: Rel, cols: Col[]): string[] {
    // Partitions and typed tables get every column from the parent or type; inheritance children declare their own.
    const derived = r.ispartition || r.oftype !== null
    const elements = derived ? [] : cols.filter((c) => c.islocal).map((c) => this.columnDef(c))
    for (const k of this.constraintsOf(r.oid, 'rel')) {
      this.target('pg_constraint', k.oid, { comment: `CONSTRAINT ${k.name} ON ${r.qname}` })
      if ((k.type !== 'c' && k.type !== 'n') || !k.islocal) continue // inherited ones come with the parent
      if (k.validated) elements.push(`CONSTRAINT ${k.name} ${k.def}`)
      // Without ONLY, an inheritable constraint reaches the children, as it did on the source.
      else this.late.push(`ALTER TABLE ${/ NO INHERIT\b/.test(k.def) ? 'ONLY ' : ''}${r.qname} ADD CONSTRAINT ${k.name} ${k.def}`)
    }
    const parents = r.parents.map((p) => this.rels.get(Number(p))?.qname ?? `[missing relation ${p}]`)
    let sql = `CREATE ${r.persistence === 'u' ? 'UNLOGGED ' : ''}TABLE ${r.qname}`
    const list = elements.length ? ` (${elements.join(', ')})` : ''
    if (r.ispartition) sql += ` PARTITION OF ${parents[0]}${list} ${r.bound}`
    else if (r.oftype) sql += ` OF ${r.oftype}${list}`
    else sql += ` (${elements.join(', ')})${parents.length ? ` INHERITS (${parents.join(', ')})` : ''}`
    if (r.partkey) sql += ` PARTITION BY ${r.partkey}`
    if (r.am) sql += ` USING ${r.am}`
    const w = [...withList(r.options), ...withList(r.toast_options, 'toast.')]
    if (w.length) sql += ` WITH (${w.join(', ')})`
    const out = [sql]
    for (const c of cols) {
      // Inherited columns take the parent's default; fix those that differ.
      if ((derived || !c.islocal) && !c.generated && !c.identity) {
        const expected = this.inheritedDefault(r, c.name)
        if (c.def !== expected) out.push(`ALTER TABLE ONLY ${r.qname} ALTER COLUMN ${c.name} ${c.def === null ? 'DROP DEFAULT' : `SET DEFAULT ${c.def}`}`)
      }
      out.push(...this.columnSettings(r.qname, c))
    }
    return out
  }

  private columnDef(c: Col): string {
    let s = `${c.name} ${c.type}`
    if (c.collate) s += ` COLLATE ${c.collate}`
    if (c.generated) s += ` GENERATED ALWAYS AS (${c.def}) ${c.generated === 'v' ? 'VIRTUAL' : 'STORED'}`
    else if (c.identity) {
      const seq = c.identity_seq !== null ? this.seqs.get(c.identity_seq) : undefined
      const o = seq ? ` (SEQUENCE NAME ${seq.qname} ${seqOptions(seq)})` : ''
      s += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${o}`
    } else if (c.def !== null) s += ` DEFAULT ${c.def}`
    // From 18 on, NOT NULL is a named pg_constraint row, emitted as a table constraint instead.
    if (this.version < 180000 && c.notnull) s += ' NOT NULL'
    return s
  }

  private inheritedDefault(r: Rel, name: string): string | null {
    for (const p of r.parents) {
      const col = this.cols.get(Number(p))?.find((c) => c.name === name)
      if (col) return col.generated || col.identity ? null : col.def
    }
    return null
  }

  private columnSettings(qname: string, c: Col): string[] {
    const out: string[] = []
    const alter = `ALTER TABLE ONLY ${qname} ALTER COLUMN ${c.name}`
    const storage: Record<string, string> = { p: 'PLAIN', e: 'EXTERNAL', m: 'MAIN', x: 'EXTENDED' }
    if (c.storage) out.push(`${alter} SET STORAGE ${storage[c.storage]}`)
    if (c.stattarget !== null) out.push(`${alter} SET STATISTICS ${c.stattarget}`)
    if (c.compression) out.push(`${alter} SET COMPRESSION ${c.compression === 'l' ? 'lz4' : 'pglz'}`)
    if (c.options?.length) out.push(`${alter} SET (${withList(c.options).join(', ')})`)
    return out
  }

  private viewSql(r: Rel, cols: Col[]): string[] {
    const def = (r.viewdef ?? '').trim().replace(/;$/, '')
    const opts = (r.options ?? []).filter((o) => !o.startsWith('check_option='))
    const w = opts.length ? ` WITH (${withList(opts).join(', ')})` : ''
    if (r.kind === 'm') {
      if (r.populated) this.refresh.set(`c${r.oid}`, `REFRESH MATERIALIZED VIEW ${r.qname}`)
      // WITH NO DATA: the query may read tables whose rows are loaded only after preData.
      return [`CREATE MATERIALIZED VIEW ${r.qname}${r.am ? ` USING ${r.am}` : ''}${w} AS ${def} WITH NO DATA`]
    }
    const check = (r.options ?? []).find((o) => o.startsWith('check_option='))?.slice('check_option='.length)
    const out = [`CREATE VIEW ${r.qname}${w} AS ${def}${check ? ` WITH ${check.toUpperCase()} CHECK OPTION` : ''}`]
    for (const c of cols) if (c.def !== null) out.push(`ALTER VIEW ${r.qname} ALTER COLUMN ${c.name} SET DEFAULT ${c.def}`)
    return out
  }

  // -------------------------------------------------------------------------------------------
  // Order

  /** Edges between nodes from pg_depend, each end mapped to the node that creates it. */
  private async dependencies(): Promise<void> {
    const edges = await this.q<{ from: string; to: string }>(
      `WITH own(cls, oid, key) AS (
         SELECT 'pg_class'::regclass::oid, c.oid, CASE WHEN c.relkind = 'c' THEN 't' || c.reltype ELSE 'c' || c.oid END
         FROM pg_class c WHERE c.oid >= ${FIRST_USER_OID}
         UNION ALL
         SELECT 'pg_type'::regclass::oid, t.oid, CASE WHEN b.typrelid <> 0 AND bc.relkind <> 'c' THEN 'c' || b.typrelid ELSE 't' || b.oid END
         FROM pg_type t
         CROSS JOIN LATERAL (SELECT coalesce((SELECT e.oid FROM pg_type e WHERE e.typarray = t.oid), t.oid) AS o) s1
         CROSS JOIN LATERAL (SELECT coalesce((SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = s1.o), s1.o) AS o) s2
         JOIN pg_type b ON b.oid = s2.o LEFT JOIN pg_class bc ON bc.oid = b.typrelid
         WHERE t.oid >= ${FIRST_USER_OID}
         UNION ALL SELECT 'pg_proc'::regclass::oid, p.oid, 'p' || p.oid FROM pg_proc p WHERE p.oid >= ${FIRST_USER_OID}
         UNION ALL SELECT 'pg_collation'::regclass::oid, c.oid, 'l' || c.oid FROM pg_collation c WHERE c.oid >= ${FIRST_USER_OID}
         UNION ALL SELECT 'pg_attrdef'::regclass::oid, d.oid, 'c' || d.adrelid FROM pg_attrdef d
         UNION ALL SELECT 'pg_constraint'::regclass::oid, k.oid, CASE WHEN k.contypid <> 0 THEN 't' || k.contypid ELSE 'c' || k.conrelid END
         FROM pg_constraint k WHERE k.contypid <> 0 OR k.contype IN ('c', 'n')
         UNION ALL SELECT 'pg_rewrite'::regclass::oid, w.oid, 'c' || w.ev_class FROM pg_rewrite w WHERE w.rulename = '_RETURN'
       )
       SELECT DISTINCT a.key AS from, b.key AS to
       FROM pg_depend d JOIN own a ON a.cls = d.classid AND a.oid = d.objid JOIN own b ON b.cls = d.refclassid AND b.oid = d.refobjid
       WHERE d.deptype IN ('n', 'a') AND a.key <> b.key`,
      [],
    )
    for (const e of edges) {
      const from = this.nodes.get(e.from)
      // A sequence's only outgoing edge is OWNED BY (a column), set after the data.
      if (from && from.kind !== 'sequence' && this.nodes.has(e.to)) from.deps.add(e.to)
    }
  }

  private order(): Node[] {
    // Ties go by kind, then by OID (creation order), so the script reads like the source's history.
    const byRank = (a: Node, b: Node) => RANK[a.kind] - RANK[b.kind] || a.oid - b.oid
    const sorted = topoSort(
      [...this.nodes.values()].sort(byRank),
      (n) => n.key,
      (n) => [...n.deps].map((d) => this.nodes.get(d)!).sort(byRank).map((d) => d.key),
      (n) => this.skipped.push(`${n.label}: part of a dependency cycle; created in catalog order, the script may fail there`),
    )
    // Views come after the keys (a GROUP BY may rely on a primary key); what needs a view follows it.
    for (const n of sorted) {
      if (!n.post && n.kind !== 'table' && n.kind !== 'sequence' && [...n.deps].some((d) => this.nodes.get(d)!.post)) n.post = true
    }
    return sorted
  }

  // -------------------------------------------------------------------------------------------
  // Post-data objects

  private async indexes(): Promise<void> {
    const rows = await this.q<{ oid: number; rel: number; name: string; qname: string; def: string; clustered: boolean; replident: boolean; parent: number | null; for_constraint: boolean; tablespace: string | null }>(
      `SELECT i.indexrelid AS oid, i.indrelid AS rel, quote_ident(ic.relname) AS name, format('%I.%I', n.nspname, ic.relname) AS qname,
              pg_get_indexdef(i.indexrelid) AS def,
              i.indisclustered AS clustered, i.indisreplident AS replident,
              (SELECT h.inhparent FROM pg_inherits h WHERE h.inhrelid = i.indexrelid) AS parent,
              EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')) AS for_constraint,
              ts.spcname AS tablespace
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
       LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
       WHERE ic.relnamespace IN ${USER_NS} ORDER BY i.indexrelid`,
    )
    const mine = rows.filter((i) => this.rels.has(i.rel))
    const byOid = new Map(mine.map((i) => [i.oid, i]))
    // Keys first: each partition's own, as pg_dump does, then attached to the parent's index so names are kept.
    for (const k of this.cons) {
      const r = this.rels.get(k.rel)
      if (r && 'pux'.includes(k.type)) this.keys.push(`ALTER TABLE ONLY ${r.qname} ADD CONSTRAINT ${k.name} ${k.def}`)
    }
    for (const i of mine) {
      const r = this.rels.get(i.rel)!
      this.target('pg_class', i.oid, { comment: `INDEX ${i.qname}` })
      if (i.tablespace) this.skipped.push(`index ${i.qname}: in tablespace ${i.tablespace}, created in the default tablespace`)
      if (!i.for_constraint) (r.kind === 'm' ? this.matviewIndexes : this.keys).push(i.def)
      if (i.clustered) this.late.push(`ALTER TABLE ${r.qname} CLUSTER ON ${i.name}`)
      if (i.replident) this.late.push(`ALTER TABLE ONLY ${r.qname} REPLICA IDENTITY USING INDEX ${i.name}`)
    }
    // Deepest first: an intermediate partitioned index becomes valid once its own partitions are attached.
    const depth = (i: { parent: number | null }): number => (i.parent !== null && byOid.has(i.parent) ? 1 + depth(byOid.get(i.parent)!) : 0)
    const attached = mine.filter((i) => i.parent !== null && byOid.has(i.parent)).sort((a, b) => depth(b) - depth(a) || a.oid - b.oid)
    for (const i of attached) this.keys.push(`ALTER INDEX ${byOid.get(i.parent!)!.qname} ATTACH PARTITION ${i.qname}`)
  }

  private constraintsAfterData(): void {
    for (const r of this.rels.values()) {
      if (r.kind !== 'r' && r.kind !== 'p') continue // views and foreign tables say 'n' without it being set
      if (r.replident === 'f' || r.replident === 'n') this.late.push(`ALTER TABLE ONLY ${r.qname} REPLICA IDENTITY ${r.replident === 'f' ? 'FULL' : 'NOTHING'}`)
    }
    for (const k of this.cons) {
      const r = this.rels.get(k.rel)
      // Foreign keys cloned onto partitions (conparentid) come back with the parent's.
      if (!r || k.type !== 'f' || k.parent !== 0) continue
      this.fks.push(`ALTER TABLE ${r.kind === 'p' ? '' : 'ONLY '}${r.qname} ADD CONSTRAINT ${k.name} ${k.def}`)
    }
  }

  private async triggersRulesPolicies(): Promise<void> {
    // tgenabled / ev_enabled: O (the default) needs nothing.
    const modes: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' }
    const state = (what: string, qname: string, name: string, enabled: string) =>
      modes[enabled] ? [`ALTER TABLE ${qname} ${modes[enabled]} ${what} ${name}`] : []
    const triggers = await this.q<{ oid: number; rel: number; name: string; def: string; enabled: string }>(
      `SELECT t.oid, t.tgrelid AS rel, quote_ident(t.tgname) AS name, pg_get_triggerdef(t.oid) AS def, t.tgenabled AS enabled
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       WHERE c.relnamespace IN ${USER_NS} AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.oid`,
    )
    for (const t of triggers) {
      const r = this.rels.get(t.rel)
      if (!r) continue
      this.objects.push(t.def, ...state('TRIGGER', r.qname, t.name, t.enabled))
      this.target('pg_trigger', t.oid, { comment: `TRIGGER ${t.name} ON ${r.qname}` })
    }
    const rules = await this.q<{ oid: number; rel: number; name: string; def: string; enabled: string }>(
      `SELECT w.oid, w.ev_class AS rel, quote_ident(w.rulename) AS name, pg_get_ruledef(w.oid) AS def, w.ev_enabled AS enabled
       FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
       WHERE c.relnamespace IN ${USER_NS} AND w.rulename <> '_RETURN' ORDER BY w.oid`,
    )
    for (const w of rules) {
      const r = this.rels.get(w.rel)
      if (!r) continue
      this.objects.push(w.def.trim().replace(/;$/, ''), ...state('RULE', r.qname, w.name, w.enabled))
      this.target('pg_rewrite', w.oid, { comment: `RULE ${w.name} ON ${r.qname}` })
    }
    for (const r of this.rels.values()) {
      if (r.kind !== 'r' && r.kind !== 'p') continue
      if (r.rls) this.objects.push(`ALTER TABLE ONLY ${r.qname} ENABLE ROW LEVEL SECURITY`)
      if (r.force_rls) this.objects.push(`ALTER TABLE ONLY ${r.qname} FORCE ROW LEVEL SECURITY`)
    }
    const policies = await this.q<{ oid: number; rel: number; name: string; cmd: string; permissive: boolean; roles: string[]; qual: string | null; withcheck: string | null }>(
      `SELECT p.oid, p.polrelid AS rel, quote_ident(p.polname) AS name, p.polcmd AS cmd, p.polpermissive AS permissive,
              ARRAY(SELECT CASE WHEN u.r = 0 THEN 'PUBLIC' ELSE quote_ident(ro.rolname) END
                    FROM unnest(p.polroles) WITH ORDINALITY u(r, i) LEFT JOIN pg_roles ro ON ro.oid = u.r ORDER BY u.i) AS roles,
              pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS withcheck
       FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace IN ${USER_NS} ORDER BY p.oid`,
    )
    const cmds: Record<string, string> = { '*': 'ALL', r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE' }
    for (const p of policies) {
      const r = this.rels.get(p.rel)
      if (!r) continue
      let sql = `CREATE POLICY ${p.name} ON ${r.qname} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${cmds[p.cmd]} TO ${p.roles.join(', ')}`
      if (p.qual !== null) sql += ` USING (${p.qual})`
      if (p.withcheck !== null) sql += ` WITH CHECK (${p.withcheck})`
      this.objects.push(sql)
      this.target('pg_policy', p.oid, { comment: `POLICY ${p.name} ON ${r.qname}` })
    }
    const stats = await this.q<{ oid: number; rel: number; qname: string; def: string; target: number | null }>(
      `SELECT s.oid, s.stxrelid AS rel, format('%I.%I', n.nspname, s.stxname) AS qname, pg_get_statisticsobjdef(s.oid) AS def,
              nullif(s.stxstattarget, -1) AS target
       FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
       WHERE s.stxnamespace IN ${USER_NS} AND ${notExt('pg_statistic_ext', 's.oid')} ORDER BY s.oid`,
    )
    for (const s of stats) {
      if (!this.rels.has(s.rel)) continue
      this.objects.push(s.def)
      if (s.target !== null) this.objects.push(`ALTER STATISTICS ${s.qname} SET STATISTICS ${s.target}`)
      this.target('pg_statistic_ext', s.oid, { comment: `STATISTICS ${s.qname}` })
    }
  }

  // -------------------------------------------------------------------------------------------
  // Comments and privileges: only for objects recreated above (their targets)

  private async comments(): Promise<string[]> {
    const rows = await this.q<{ cls: string; oid: number; sub: number; description: string }>(
      `SELECT classoid::regclass::text AS cls, objoid AS oid, objsubid AS sub, description FROM pg_description
       WHERE objoid >= ${FIRST_USER_OID} OR (classoid = 'pg_namespace'::regclass AND description <> 'standard public schema')
       ORDER BY classoid, objoid, objsubid`,
      [],
    )
    return rows.flatMap((r) => {
      const t = this.targets.get(r.sub ? `${r.cls}:${r.oid}:${r.sub}` : `${r.cls}:${r.oid}`)
      return t ? [`COMMENT ON ${t.comment} IS ${lit(r.description)}`] : []
    })
  }

  /**
   * GRANT/REVOKE for the difference between each ACL and its default, as pg_dump does. The
   * owner's own entries are left out (the copy belongs to whoever runs the script), and so are
   * grants made by someone else than the owner (GRANTED BY must be the current user).
   */
  private async grants(): Promise<string[]> {
    const rows = await this.q<{ cls: string; oid: number; sub: number; op: string; priv: string; grantable: boolean; grantee: string; by_owner: boolean; grantor: string }>(
      `WITH objs(cls, oid, sub, acl, base, owner) AS (
         SELECT 'pg_class', c.oid, 0, c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner), c.relowner
         FROM pg_class c WHERE c.relacl IS NOT NULL
         UNION ALL SELECT 'pg_class', a.attrelid, a.attnum, a.attacl, acldefault('c', c.relowner), c.relowner
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE a.attacl IS NOT NULL AND NOT a.attisdropped
         UNION ALL SELECT 'pg_namespace', n.oid, 0, n.nspacl,
           -- public's ACL as initdb leaves it (PostgreSQL 15+): only changes to it are copied
           CASE WHEN n.oid < ${FIRST_USER_OID} THEN ARRAY[makeaclitem(n.nspowner, n.nspowner, 'USAGE, CREATE', false), makeaclitem(0, n.nspowner, 'USAGE', false)]
                ELSE acldefault('n', n.nspowner) END, n.nspowner
         FROM pg_namespace n WHERE n.nspacl IS NOT NULL
         UNION ALL SELECT 'pg_proc', p.oid, 0, p.proacl, acldefault('f', p.proowner), p.proowner FROM pg_proc p WHERE p.proacl IS NOT NULL
         UNION ALL SELECT 'pg_type', t.oid, 0, t.typacl, acldefault('T', t.typowner), t.typowner FROM pg_type t WHERE t.typacl IS NOT NULL
       )
       SELECT o.cls, o.oid, o.sub, g.op, g.privilege_type AS priv, g.is_grantable AS grantable,
              CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee,
              g.grantor = o.owner AS by_owner, quote_ident(gr.rolname) AS grantor
       FROM objs o
       CROSS JOIN LATERAL (
         (SELECT a.*, 'GRANT' AS op FROM aclexplode(o.acl) a EXCEPT SELECT b.*, 'GRANT' FROM aclexplode(o.base) b)
         UNION ALL
         (SELECT b.*, 'REVOKE' FROM aclexplode(o.base) b EXCEPT SELECT a.*, 'REVOKE' FROM aclexplode(o.acl) a)
       ) g
       LEFT JOIN pg_roles r ON r.oid = g.grantee LEFT JOIN pg_roles gr ON gr.oid = g.grantor
       WHERE g.grantee <> o.owner
       ORDER BY o.cls, o.oid, o.sub, g.op DESC, g.privilege_type, 7`,
      [],
    )
    const out: string[] = []
    for (const g of rows) {
      const t = this.targets.get(g.sub ? `${g.cls}:${g.oid}:${g.sub}` : `${g.cls}:${g.oid}`)
      const on = t?.column ? `${g.priv} (${t.column.name}) ON ${t.column.table}` : t?.grant ? `${g.priv} ON ${t.grant}` : undefined
      if (!on) continue
      if (!g.by_owner) this.skipped.push(`privilege ${g.priv} on ${t!.comment} for ${g.grantee}, granted by ${g.grantor}: not copied (only the owner's grants are)`)
      else if (g.op === 'GRANT') out.push(`GRANT ${on} TO ${g.grantee}${g.grantable ? ' WITH GRANT OPTION' : ''}`)
      else out.push(`REVOKE ${on} FROM ${g.grantee}`)
    }
    return out
  }

  // -------------------------------------------------------------------------------------------
  // Rows and sequence positions

  private copyList(): SchemaScript['tables'] {
    const out: SchemaScript['tables'] = []
    for (const r of this.rels.values()) {
      if (r.kind !== 'r') continue
      const columns = (this.cols.get(r.oid) ?? []).filter((c) => !c.generated).map((c) => c.name)
      out.push({ name: r.qname, columns, estimatedRows: Math.max(0, Math.round(r.tuples)) })
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  private async setvals(): Promise<string[]> {
    const identity = new Set([...this.cols.values()].flat().filter((c) => this.rels.get(c.rel)?.kind !== 'c').map((c) => c.identity_seq))
    const seqs = [...this.seqs.values()].filter((s) => (s.identity ? identity.has(s.oid) : this.nodes.has(`c${s.oid}`)))
    const out: string[] = []
    // Sequences are not transactional: this is their current position, at or after the snapshot's.
    for (let i = 0; i < seqs.length; i += 100) {
      const chunk = seqs.slice(i, i + 100)
      const sql = chunk.map((s, j) => `SELECT ${j} AS i, last_value::text AS v, is_called AS c FROM ${s.qname}`).join(' UNION ALL ')
      for (const r of await this.q<{ i: number; v: string; c: boolean }>(sql, [])) {
        out.push(`SELECT pg_catalog.setval(${lit(chunk[r.i]!.qname)}, ${r.v}, ${r.c})`)
      }
    }
    return out.sort()
  }

  // -------------------------------------------------------------------------------------------
  // What this module does not recreate

  private async inventory(): Promise<void> {
    const rows = await this.q<{ what: string }>(
      `SELECT pg_describe_object(x.cls, x.oid, 0) AS what FROM (
         SELECT 'pg_operator'::regclass::oid AS cls, oid, oprnamespace AS nsp FROM pg_operator
         UNION ALL SELECT 'pg_opclass'::regclass::oid, oid, opcnamespace FROM pg_opclass
         UNION ALL SELECT 'pg_opfamily'::regclass::oid, oid, opfnamespace FROM pg_opfamily
         UNION ALL SELECT 'pg_cast'::regclass::oid, oid, NULL FROM pg_cast
         UNION ALL SELECT 'pg_ts_config'::regclass::oid, oid, cfgnamespace FROM pg_ts_config
         UNION ALL SELECT 'pg_ts_dict'::regclass::oid, oid, dictnamespace FROM pg_ts_dict
         UNION ALL SELECT 'pg_ts_parser'::regclass::oid, oid, prsnamespace FROM pg_ts_parser
         UNION ALL SELECT 'pg_ts_template'::regclass::oid, oid, tmplnamespace FROM pg_ts_template
         UNION ALL SELECT 'pg_conversion'::regclass::oid, oid, connamespace FROM pg_conversion
         UNION ALL SELECT 'pg_foreign_data_wrapper'::regclass::oid, oid, NULL FROM pg_foreign_data_wrapper
         UNION ALL SELECT 'pg_foreign_server'::regclass::oid, oid, NULL FROM pg_foreign_server
         UNION ALL SELECT 'pg_user_mapping'::regclass::oid, oid, NULL FROM pg_user_mapping
         UNION ALL SELECT 'pg_event_trigger'::regclass::oid, oid, NULL FROM pg_event_trigger
         UNION ALL SELECT 'pg_publication'::regclass::oid, oid, NULL FROM pg_publication
         UNION ALL SELECT 'pg_subscription'::regclass::oid, oid, NULL FROM pg_subscription
           WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         UNION ALL SELECT 'pg_transform'::regclass::oid, oid, NULL FROM pg_transform
         UNION ALL SELECT 'pg_am'::regclass::oid, oid, NULL FROM pg_am
         UNION ALL SELECT 'pg_language'::regclass::oid, oid, NULL FROM pg_language
         UNION ALL SELECT 'pg_default_acl'::regclass::oid, oid, nullif(defaclnamespace, 0) FROM pg_default_acl
       ) x
       WHERE x.oid >= ${FIRST_USER_OID} AND (x.nsp IS NULL OR x.nsp IN ${USER_NS})
         AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = x.cls AND e.objid = x.oid AND e.deptype IN ('e', 'i'))
       ORDER BY 1`,
    )
    for (const r of rows) this.skipped.push(`${r.what}: not recreated`)
    const [counts] = await this.q<{ lo: string; labels: string }>(
      `SELECT (SELECT count(*) FROM pg_largeobject_metadata) AS lo, (SELECT count(*) FROM pg_seclabel) AS labels`,
      [],
    )
    if (Number(counts!.lo)) this.skipped.push(`${counts!.lo} large object(s): not copied`)
    if (Number(counts!.labels)) this.skipped.push(`${counts!.labels} security label(s): not copied`)
  }
}
