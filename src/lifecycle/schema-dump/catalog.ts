// The catalog rows several steps of a schema dump need, read once: relations (tables, views,
// sequences, composite types' relations), their columns, every constraint, and sequences with
// their options and owning column. Foreign tables are left out here, so that nothing else
// (triggers, grants, comments) refers to them.

import { USER_NS, notExt } from './sql.ts'
import type { Col, Con, Dump, Rel, Seq } from './state.ts'

export async function loadRelations(dump: Dump): Promise<void> {
  const rels = await dump.q<Rel>(
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
    if (r.kind === 'f') dump.skipped.push(`foreign table ${r.qname}: not copied`)
    else dump.rels.set(r.oid, r)
  }
  const cols = await dump.q<Col>(
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
    [[...dump.rels.keys()]],
  )
  for (const col of cols) {
    let list = dump.cols.get(col.rel)
    if (!list) dump.cols.set(col.rel, (list = []))
    list.push(col)
  }
  dump.cons = await dump.q<Con>(
    `SELECT co.oid, quote_ident(co.conname) AS name, co.contype AS type, co.conrelid AS rel, co.contypid AS typ,
            co.conislocal AS islocal, co.convalidated AS validated, co.conparentid AS parent, pg_get_constraintdef(co.oid) AS def
     FROM pg_constraint co WHERE co.connamespace IN ${USER_NS} ORDER BY co.oid`,
  )
  for (const k of dump.cons) {
    const key = k.rel ? `r${k.rel}` : `t${k.typ}`
    dump.consBy.set(key, [...(dump.consBy.get(key) ?? []), k])
  }
  const seqs = await dump.q<Seq>(
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
  for (const s of seqs) dump.seqs.set(s.oid, s)
}
