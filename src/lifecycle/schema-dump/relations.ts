// Tables, views and materialized views of a schema dump, as nodes of the dependency graph:
// CREATE TABLE with its columns, CHECK and NOT NULL constraints (keys and indexes come after the
// data, post-data.ts), the per-column settings, and the targets of their comments and grants.

import { seqOptions, withList } from './sql.ts'
import type { Col, Dump, Rel } from './state.ts'

export function relationNodes(dump: Dump): void {
  for (const r of dump.rels.values()) {
    const cols = dump.cols.get(r.oid) ?? []
    const word = { r: 'TABLE', p: 'TABLE', v: 'VIEW', m: 'MATERIALIZED VIEW', S: 'SEQUENCE', c: 'TYPE' }[r.kind]!
    if (r.kind === 'c') continue // a composite type's columns are targets of types() (pre-data.ts)
    dump.target('pg_class', r.oid, { comment: `${word} ${r.qname}`, grant: `${r.kind === 'S' ? 'SEQUENCE' : 'TABLE'} ${r.qname}` })
    for (const col of cols) dump.target('pg_class', r.oid, { comment: `COLUMN ${r.qname}.${col.name}`, column: { table: `TABLE ${r.qname}`, name: col.name } }, col.attnum)
    if (r.tablespace) dump.skipped.push(`${word.toLowerCase()} ${r.qname}: in tablespace ${r.tablespace}, created in the default tablespace`)
    if (r.kind === 'r' || r.kind === 'p') dump.node('table', `c${r.oid}`, r.oid, `table ${r.qname}`, tableSql(dump, r, cols))
    else if (r.kind === 'v' || r.kind === 'm') dump.node('view', `c${r.oid}`, r.oid, `view ${r.qname}`, viewSql(dump, r, cols))
  }
}

function tableSql(dump: Dump, r: Rel, cols: Col[]): string[] {
  // Partitions and typed tables get every column from the parent or type; inheritance children declare their own.
  const derived = r.ispartition || r.oftype !== null
  const elements = derived ? [] : cols.filter((c) => c.islocal).map((c) => columnDef(dump, c))
  for (const k of dump.constraintsOf(r.oid, 'rel')) {
    dump.target('pg_constraint', k.oid, { comment: `CONSTRAINT ${k.name} ON ${r.qname}` })
    if ((k.type !== 'c' && k.type !== 'n') || !k.islocal) continue // inherited ones come with the parent
    if (k.validated) elements.push(`CONSTRAINT ${k.name} ${k.def}`)
    // Without ONLY, an inheritable constraint reaches the children, as it did on the source.
    else dump.late.push(`ALTER TABLE ${/ NO INHERIT\b/.test(k.def) ? 'ONLY ' : ''}${r.qname} ADD CONSTRAINT ${k.name} ${k.def}`)
  }
  const parents = r.parents.map((p) => dump.rels.get(Number(p))?.qname ?? `[missing relation ${p}]`)
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
      const expected = inheritedDefault(dump, r, c.name)
      if (c.def !== expected) out.push(`ALTER TABLE ONLY ${r.qname} ALTER COLUMN ${c.name} ${c.def === null ? 'DROP DEFAULT' : `SET DEFAULT ${c.def}`}`)
    }
    out.push(...columnSettings(dump, r.qname, c))
  }
  return out
}

function columnDef(dump: Dump, c: Col): string {
  let s = `${c.name} ${c.type}`
  if (c.collate) s += ` COLLATE ${c.collate}`
  if (c.generated) s += ` GENERATED ALWAYS AS (${c.def}) ${c.generated === 'v' ? 'VIRTUAL' : 'STORED'}`
  else if (c.identity) {
    const seq = c.identity_seq !== null ? dump.seqs.get(c.identity_seq) : undefined
    const o = seq ? ` (SEQUENCE NAME ${seq.qname} ${seqOptions(seq)})` : ''
    s += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${o}`
  } else if (c.def !== null) s += ` DEFAULT ${c.def}`
  // From 18 on, NOT NULL is a named pg_constraint row, emitted as a table constraint instead.
  if (dump.version < 180000 && c.notnull) s += ' NOT NULL'
  return s
}

function inheritedDefault(dump: Dump, r: Rel, name: string): string | null {
  for (const p of r.parents) {
    const col = dump.cols.get(Number(p))?.find((c) => c.name === name)
    if (col) return col.generated || col.identity ? null : col.def
  }
  return null
}

function columnSettings(dump: Dump, qname: string, c: Col): string[] {
  const out: string[] = []
  const alter = `ALTER TABLE ONLY ${qname} ALTER COLUMN ${c.name}`
  const storage: Record<string, string> = { p: 'PLAIN', e: 'EXTERNAL', m: 'MAIN', x: 'EXTENDED' }
  if (c.storage) out.push(`${alter} SET STORAGE ${storage[c.storage]}`)
  if (c.stattarget !== null) out.push(`${alter} SET STATISTICS ${c.stattarget}`)
  if (c.compression) out.push(`${alter} SET COMPRESSION ${c.compression === 'l' ? 'lz4' : 'pglz'}`)
  if (c.options?.length) out.push(`${alter} SET (${withList(c.options).join(', ')})`)
  return out
}

function viewSql(dump: Dump, r: Rel, cols: Col[]): string[] {
  const def = (r.viewdef ?? '').trim().replace(/;$/, '')
  const opts = (r.options ?? []).filter((o) => !o.startsWith('check_option='))
  const w = opts.length ? ` WITH (${withList(opts).join(', ')})` : ''
  if (r.kind === 'm') {
    if (r.populated) dump.refresh.set(`c${r.oid}`, `REFRESH MATERIALIZED VIEW ${r.qname}`)
    // WITH NO DATA: the query may read tables whose rows are loaded only after preData.
    return [`CREATE MATERIALIZED VIEW ${r.qname}${r.am ? ` USING ${r.am}` : ''}${w} AS ${def} WITH NO DATA`]
  }
  const check = (r.options ?? []).find((o) => o.startsWith('check_option='))?.slice('check_option='.length)
  const out = [`CREATE VIEW ${r.qname}${w} AS ${def}${check ? ` WITH ${check.toUpperCase()} CHECK OPTION` : ''}`]
  for (const c of cols) if (c.def !== null) out.push(`ALTER VIEW ${r.qname} ALTER COLUMN ${c.name} SET DEFAULT ${c.def}`)
  return out
}
