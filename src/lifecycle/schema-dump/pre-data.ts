// Pre-data of a schema dump, all but functions (functions.ts) and tables and views
// (relations.ts): schemas and extensions first, in this order, then collations, types, domains
// and sequences, each a node of the dependency graph (order.ts) rather than a statement.

import { topoSort } from './order.ts'
import { FIRST_USER_OID, USER_NS, lit, notExt, seqOptions } from './sql.ts'
import type { Dump } from './state.ts'

// -------------------------------------------------------------------------------------------
// Schemas and extensions: first, in this order

export async function schemas(dump: Dump): Promise<void> {
  const rows = await dump.q<{ oid: number; name: string }>(
    `SELECT n.oid, quote_ident(n.nspname) AS name FROM pg_namespace n WHERE n.oid IN ${USER_NS} AND ${notExt('pg_namespace', 'n.oid')} ORDER BY n.oid`,
  )
  for (const r of rows) {
    dump.head.push(`CREATE SCHEMA IF NOT EXISTS ${r.name}`) // `public` exists in every new database
    dump.target('pg_namespace', r.oid, { comment: `SCHEMA ${r.name}`, grant: `SCHEMA ${r.name}` })
  }
}

export async function extensions(dump: Dump): Promise<void> {
  const rows = await dump.q<{ oid: number; name: string; schema: string; nspname: string; version: string; requires: number[]; config: string[] | null }>(
    `SELECT e.oid, quote_ident(e.extname) AS name, quote_ident(n.nspname) AS schema, n.nspname, e.extversion AS version,
            ARRAY(SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_extension'::regclass AND d.objid = e.oid
                  AND d.refclassid = 'pg_extension'::regclass) AS requires,
            ARRAY(SELECT x::regclass::text FROM unnest(e.extconfig) x) AS config
     FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.oid >= ${FIRST_USER_OID} ORDER BY e.oid`,
    [],
  )
  const kept = rows.filter((r) => {
    if (!dump.exclude.includes(r.nspname)) return true
    dump.skipped.push(`extension ${r.name}: lives in excluded schema ${r.schema}, not created`)
    return false
  })
  const sorted = topoSort(
    kept,
    (r) => String(r.oid),
    (r) => r.requires.map(String),
    (r) => dump.skipped.push(`extension ${r.name}: dependency cycle`),
  )
  for (const r of sorted) {
    dump.head.push(`CREATE EXTENSION IF NOT EXISTS ${r.name} WITH SCHEMA ${r.schema} VERSION ${lit(r.version)}`)
    dump.target('pg_extension', r.oid, { comment: `EXTENSION ${r.name}` })
    if (r.config?.length) dump.skipped.push(`extension ${r.name}: rows of its configuration table(s) ${r.config.join(', ')} not copied`)
  }
}

// -------------------------------------------------------------------------------------------
// Pre-data objects: each becomes a node of the dependency graph

export async function collations(dump: Dump): Promise<void> {
  const rows = await dump.q<{ oid: number; qname: string; provider: string; deterministic: boolean; lc_collate: string | null; lc_ctype: string | null; locale: string | null; rules: string | null }>(
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
      dump.skipped.push(`collation ${r.qname}: provider '${r.provider}' cannot be created`)
      continue
    }
    const o = [`provider = ${provider}`]
    if (provider === 'libc') o.push(`lc_collate = ${lit(r.lc_collate ?? '')}`, `lc_ctype = ${lit(r.lc_ctype ?? '')}`)
    else o.push(`locale = ${lit(r.locale ?? '')}`)
    if (!r.deterministic) o.push('deterministic = false')
    if (r.rules) o.push(`rules = ${lit(r.rules)}`)
    dump.node('collation', `l${r.oid}`, r.oid, `collation ${r.qname}`, [`CREATE COLLATION ${r.qname} (${o.join(', ')})`])
    dump.target('pg_collation', r.oid, { comment: `COLLATION ${r.qname}` })
  }
}

export async function types(dump: Dump): Promise<void> {
  const rows = await dump.q<{
    oid: number
    kind: string
    qname: string
    rel: number
    labels: string | null
    base: string | null
    collate: string | null
    notnull: boolean
    def: string | null
    subtype: string | null
    subopclass: string | null
    rngcollate: string | null
    canonical: boolean
    subdiff: string | null
    multirange: string | null
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
      const attrs = (dump.cols.get(t.rel) ?? []).map((a) => {
        dump.target('pg_class', t.rel, { comment: `COLUMN ${t.qname}.${a.name}` }, a.attnum)
        return `${a.name} ${a.type}${a.collate ? ` COLLATE ${a.collate}` : ''}`
      })
      sql = `CREATE TYPE ${t.qname} AS (${attrs.join(', ')})`
    } else if (t.kind === 'd') sql = domainSql(dump, t.oid, t.qname, t.base!, t.collate, t.def, t.notnull)
    else if (t.kind === 'r') {
      if (t.canonical) {
        dump.skipped.push(`range type ${t.qname}: has a canonical function (needs a shell type), not created`)
        continue
      }
      const o = [`subtype = ${t.subtype}`]
      if (t.subopclass) o.push(`subtype_opclass = ${t.subopclass}`)
      if (t.rngcollate) o.push(`collation = ${t.rngcollate}`)
      if (t.subdiff) o.push(`subtype_diff = ${t.subdiff}`)
      if (t.multirange) o.push(`multirange_type_name = ${t.multirange}`)
      sql = `CREATE TYPE ${t.qname} AS RANGE (${o.join(', ')})`
    } else {
      dump.skipped.push(`base type ${t.qname}: user-defined base types (C input/output functions) are not created`)
      continue
    }
    dump.node('type', `t${t.oid}`, t.oid, `type ${t.qname}`, [sql])
    const word = t.kind === 'd' ? 'DOMAIN' : 'TYPE'
    dump.target('pg_type', t.oid, { comment: `${word} ${t.qname}`, grant: `${word} ${t.qname}` })
  }
}

function domainSql(dump: Dump, oid: number, qname: string, base: string, collate: string | null, def: string | null, notnull: boolean): string {
  let sql = `CREATE DOMAIN ${qname} AS ${base}`
  if (collate) sql += ` COLLATE ${collate}`
  if (def !== null) sql += ` DEFAULT ${def}`
  const cons = dump.constraintsOf(oid, 'typ')
  // Before 17 a domain's NOT NULL is only typnotnull, not a named constraint.
  if (notnull && !cons.some((k) => k.type === 'n')) sql += ' NOT NULL'
  for (const k of cons) {
    dump.target('pg_constraint', k.oid, { comment: `CONSTRAINT ${k.name} ON DOMAIN ${qname}` })
    // NOT VALID constraints go after the data, so that rows the source never checked load.
    if (k.validated) sql += ` CONSTRAINT ${k.name} ${k.def}`
    else dump.late.push(`ALTER DOMAIN ${qname} ADD CONSTRAINT ${k.name} ${k.def}`)
  }
  return sql
}

export async function sequenceNodes(dump: Dump): Promise<void> {
  for (const s of dump.seqs.values()) {
    if (s.identity) continue // created by its column's GENERATED ... AS IDENTITY
    const sql = `CREATE ${s.persistence === 'u' ? 'UNLOGGED ' : ''}SEQUENCE ${s.qname} AS ${s.type} ${seqOptions(s)}`
    dump.node('sequence', `c${s.oid}`, s.oid, `sequence ${s.qname}`, [sql])
    // Ownership ties the sequence to a column; set after the data, when nothing depends on order.
    if (s.owned_by && s.owner_rel !== null && dump.rels.has(s.owner_rel)) dump.late.push(`ALTER SEQUENCE ${s.qname} OWNED BY ${s.owned_by}`)
  }
}
