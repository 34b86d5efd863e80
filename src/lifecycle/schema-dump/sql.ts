// SQL fragments every step of a schema dump uses: which catalog rows are the user's (not
// initdb's, not an extension's, not in an excluded schema), and quoting of literals and options.

import type { Seq } from './state.ts'

/** Objects with lower OIDs were made by initdb and exist in every new database. */
export const FIRST_USER_OID = 16384

/** User schemas; $1 is the excluded list. pg_ is reserved for system schemas (pg_toast, pg_temp_N...). */
export const USER_NS = `(SELECT oid FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' AND nspname <> ALL ($1::text[]))`
/**
 * Members of an extension are recreated by CREATE EXTENSION. With `internal`, also objects made
 * along with another one (a range type's constructor functions): pg_class and pg_type have
 * internal dependencies of their own (identity sequences, composite types) and are handled apart.
 */
export const notExt = (catalog: string, oid: string, internal = false) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = '${catalog}'::regclass AND x.objid = ${oid} AND x.deptype IN ('e'${internal ? ", 'i'" : ''}))`

export const lit = (s: string) => `'${s.replace(/'/g, "''")}'`

/** reloptions ("key=value") as a WITH list; values quoted, which every option accepts. */
export function withList(options: string[] | null, prefix = ''): string[] {
  return (options ?? []).map((o) => {
    const i = o.indexOf('=')
    return `${prefix}${o.slice(0, i)}=${lit(o.slice(i + 1))}`
  })
}

export function seqOptions(s: Seq): string {
  return `INCREMENT BY ${s.inc} MINVALUE ${s.min} MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache} ${s.cycle ? 'CYCLE' : 'NO CYCLE'}`
}
