// The SQL that recreates a source database's schema in an empty database of the same major
// version, for `pgraid clone`: schema first (preData), then the rows by COPY (`tables`), then
// the sequence positions and everything that is cheaper or only possible once the rows are
// there (postData: keys, indexes, views, triggers, foreign keys...). This module runs the steps
// (the other files of schema-dump/) in their order and puts their statements together.
//
// Why not pg_dump: there is no pg_dump of the backends' major version (18) on the machine, and
// an older pg_dump refuses a newer server. PostgreSQL's own deparse functions (format_type,
// pg_get_expr, pg_get_constraintdef, pg_get_indexdef, pg_get_viewdef, pg_get_functiondef,
// pg_get_triggerdef, ...) give exact definitions, so only the statement shells and the order
// are ours. The order comes from pg_depend (a topological sort, catalog order breaking ties).
// While we read, the source session's search_path is empty (restored after), as in pg_dump,
// so that every deparsed name is schema-qualified.

import type pg from 'pg'
import { loadRelations } from './catalog.ts'
import { comments, grants } from './comments-acl.ts'
import { copyList, setvals, type CopyTable } from './data.ts'
import { functions } from './functions.ts'
import { inventory } from './inventory.ts'
import { dependencies, order } from './order.ts'
import { constraintsAfterData, indexes, triggersRulesPolicies } from './post-data.ts'
import { collations, extensions, schemas, sequenceNodes, types } from './pre-data.ts'
import { relationNodes } from './relations.ts'
import { Dump } from './state.ts'

export interface SchemaScript {
  /** Before data: schemas, extensions, collations, types, functions, sequences, tables (with CHECK and NOT NULL). */
  preData: string[]
  /** After data: keys, indexes, views, materialized views, NOT VALID checks, OWNED BY, foreign keys, triggers, rules, policies, statistics, comments, grants. */
  postData: string[]
  /** Tables to COPY (leaves only: no partitioned parents, views or foreign tables), with quoted names and non-generated columns. */
  tables: CopyTable[]
  /** One setval per sequence (identity ones too), with the source's last_value and is_called. */
  sequences: string[]
  /** Objects found but not recreated (or not faithfully), one human sentence each. */
  skipped: string[]
}

export interface SchemaScriptOptions {
  /** Schemas left out entirely, e.g. ['pgraid']. */
  excludeSchemas?: string[]
}

export async function schemaScript(source: pg.Client, opts: SchemaScriptOptions = {}): Promise<SchemaScript> {
  const saved = (await source.query<{ p: string }>(`SELECT pg_catalog.current_setting('search_path') AS p`)).rows[0]!.p
  // Not SET LOCAL: the caller may run in autocommit; restored below either way (a ROLLBACK restores it too).
  await source.query(`SELECT pg_catalog.set_config('search_path', '', false)`)
  try {
    return await build(new Dump(source, opts.excludeSchemas ?? []))
  } finally {
    await source.query(`SELECT pg_catalog.set_config('search_path', $1, false)`, [saved]).catch(() => {})
  }
}

async function build(dump: Dump): Promise<SchemaScript> {
  dump.version = Number((await dump.q<{ v: string }>(`SELECT current_setting('server_version_num') AS v`, []))[0]!.v)
  await schemas(dump)
  await extensions(dump)
  await loadRelations(dump)
  await collations(dump)
  await types(dump)
  await functions(dump)
  await sequenceNodes(dump)
  relationNodes(dump)
  await dependencies(dump)
  const ordered = order(dump)
  const pre = [...dump.head, ...ordered.filter((n) => !n.post).flatMap((n) => n.sql)]
  await indexes(dump)
  const viewsEtc = ordered.filter((n) => n.post).flatMap((n) => n.sql)
  constraintsAfterData(dump)
  await triggersRulesPolicies(dump)
  const commentSql = await comments(dump)
  const grantSql = await grants(dump)
  await inventory(dump)
  return {
    preData: pre,
    postData: [...dump.keys, ...viewsEtc, ...dump.matviewIndexes, ...ordered.flatMap((n) => dump.refresh.get(n.key) ?? []), ...dump.late, ...dump.fks, ...dump.objects, ...commentSql, ...grantSql],
    tables: copyList(dump),
    sequences: await setvals(dump),
    skipped: dump.skipped,
  }
}
