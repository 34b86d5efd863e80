// Post-data of a schema dump, what is cheaper or only possible once the rows are there: keys and
// indexes, partition indexes attached, clustering and replica identity, NOT VALID checks' and
// foreign keys' ALTER TABLE, triggers, rules, row security and policies, extended statistics.

import { USER_NS, notExt } from './sql.ts'
import type { Dump } from './state.ts'

export async function indexes(dump: Dump): Promise<void> {
  const rows = await dump.q<{
    oid: number
    rel: number
    name: string
    qname: string
    def: string
    clustered: boolean
    replident: boolean
    parent: number | null
    for_constraint: boolean
    tablespace: string | null
  }>(
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
  const mine = rows.filter((i) => dump.rels.has(i.rel))
  const byOid = new Map(mine.map((i) => [i.oid, i]))
  // Keys first: each partition's own, as pg_dump does, then attached to the parent's index so names are kept.
  for (const k of dump.cons) {
    const r = dump.rels.get(k.rel)
    if (r && 'pux'.includes(k.type)) dump.keys.push(`ALTER TABLE ONLY ${r.qname} ADD CONSTRAINT ${k.name} ${k.def}`)
  }
  for (const i of mine) {
    const r = dump.rels.get(i.rel)!
    dump.target('pg_class', i.oid, { comment: `INDEX ${i.qname}` })
    if (i.tablespace) dump.skipped.push(`index ${i.qname}: in tablespace ${i.tablespace}, created in the default tablespace`)
    if (!i.for_constraint) (r.kind === 'm' ? dump.matviewIndexes : dump.keys).push(i.def)
    if (i.clustered) dump.late.push(`ALTER TABLE ${r.qname} CLUSTER ON ${i.name}`)
    if (i.replident) dump.late.push(`ALTER TABLE ONLY ${r.qname} REPLICA IDENTITY USING INDEX ${i.name}`)
  }
  // Deepest first: an intermediate partitioned index becomes valid once its own partitions are attached.
  const depth = (i: { parent: number | null }): number => (i.parent !== null && byOid.has(i.parent) ? 1 + depth(byOid.get(i.parent)!) : 0)
  const attached = mine.filter((i) => i.parent !== null && byOid.has(i.parent)).sort((a, b) => depth(b) - depth(a) || a.oid - b.oid)
  for (const i of attached) dump.keys.push(`ALTER INDEX ${byOid.get(i.parent!)!.qname} ATTACH PARTITION ${i.qname}`)
}

export function constraintsAfterData(dump: Dump): void {
  for (const r of dump.rels.values()) {
    if (r.kind !== 'r' && r.kind !== 'p') continue // views and foreign tables say 'n' without it being set
    if (r.replident === 'f' || r.replident === 'n') dump.late.push(`ALTER TABLE ONLY ${r.qname} REPLICA IDENTITY ${r.replident === 'f' ? 'FULL' : 'NOTHING'}`)
  }
  for (const k of dump.cons) {
    const r = dump.rels.get(k.rel)
    // Foreign keys cloned onto partitions (conparentid) come back with the parent's.
    if (!r || k.type !== 'f' || k.parent !== 0) continue
    dump.fks.push(`ALTER TABLE ${r.kind === 'p' ? '' : 'ONLY '}${r.qname} ADD CONSTRAINT ${k.name} ${k.def}`)
  }
}

export async function triggersRulesPolicies(dump: Dump): Promise<void> {
  // tgenabled / ev_enabled: O (the default) needs nothing.
  const modes: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' }
  const state = (what: string, qname: string, name: string, enabled: string) => (modes[enabled] ? [`ALTER TABLE ${qname} ${modes[enabled]} ${what} ${name}`] : [])
  const triggers = await dump.q<{ oid: number; rel: number; name: string; def: string; enabled: string }>(
    `SELECT t.oid, t.tgrelid AS rel, quote_ident(t.tgname) AS name, pg_get_triggerdef(t.oid) AS def, t.tgenabled AS enabled
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace IN ${USER_NS} AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.oid`,
  )
  for (const t of triggers) {
    const r = dump.rels.get(t.rel)
    if (!r) continue
    dump.objects.push(t.def, ...state('TRIGGER', r.qname, t.name, t.enabled))
    dump.target('pg_trigger', t.oid, { comment: `TRIGGER ${t.name} ON ${r.qname}` })
  }
  const rules = await dump.q<{ oid: number; rel: number; name: string; def: string; enabled: string }>(
    `SELECT w.oid, w.ev_class AS rel, quote_ident(w.rulename) AS name, pg_get_ruledef(w.oid) AS def, w.ev_enabled AS enabled
     FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
     WHERE c.relnamespace IN ${USER_NS} AND w.rulename <> '_RETURN' ORDER BY w.oid`,
  )
  for (const w of rules) {
    const r = dump.rels.get(w.rel)
    if (!r) continue
    dump.objects.push(w.def.trim().replace(/;$/, ''), ...state('RULE', r.qname, w.name, w.enabled))
    dump.target('pg_rewrite', w.oid, { comment: `RULE ${w.name} ON ${r.qname}` })
  }
  for (const r of dump.rels.values()) {
    if (r.kind !== 'r' && r.kind !== 'p') continue
    if (r.rls) dump.objects.push(`ALTER TABLE ONLY ${r.qname} ENABLE ROW LEVEL SECURITY`)
    if (r.force_rls) dump.objects.push(`ALTER TABLE ONLY ${r.qname} FORCE ROW LEVEL SECURITY`)
  }
  const policies = await dump.q<{ oid: number; rel: number; name: string; cmd: string; permissive: boolean; roles: string[]; qual: string | null; withcheck: string | null }>(
    `SELECT p.oid, p.polrelid AS rel, quote_ident(p.polname) AS name, p.polcmd AS cmd, p.polpermissive AS permissive,
            ARRAY(SELECT CASE WHEN u.r = 0 THEN 'PUBLIC' ELSE quote_ident(ro.rolname) END
                  FROM unnest(p.polroles) WITH ORDINALITY u(r, i) LEFT JOIN pg_roles ro ON ro.oid = u.r ORDER BY u.i) AS roles,
            pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS withcheck
     FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace IN ${USER_NS} ORDER BY p.oid`,
  )
  const cmds: Record<string, string> = { '*': 'ALL', r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE' }
  for (const p of policies) {
    const r = dump.rels.get(p.rel)
    if (!r) continue
    let sql = `CREATE POLICY ${p.name} ON ${r.qname} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${cmds[p.cmd]} TO ${p.roles.join(', ')}`
    if (p.qual !== null) sql += ` USING (${p.qual})`
    if (p.withcheck !== null) sql += ` WITH CHECK (${p.withcheck})`
    dump.objects.push(sql)
    dump.target('pg_policy', p.oid, { comment: `POLICY ${p.name} ON ${r.qname}` })
  }
  const stats = await dump.q<{ oid: number; rel: number; qname: string; def: string; target: number | null }>(
    `SELECT s.oid, s.stxrelid AS rel, format('%I.%I', n.nspname, s.stxname) AS qname, pg_get_statisticsobjdef(s.oid) AS def,
            nullif(s.stxstattarget, -1) AS target
     FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
     WHERE s.stxnamespace IN ${USER_NS} AND ${notExt('pg_statistic_ext', 's.oid')} ORDER BY s.oid`,
  )
  for (const s of stats) {
    if (!dump.rels.has(s.rel)) continue
    dump.objects.push(s.def)
    if (s.target !== null) dump.objects.push(`ALTER STATISTICS ${s.qname} SET STATISTICS ${s.target}`)
    dump.target('pg_statistic_ext', s.oid, { comment: `STATISTICS ${s.qname}` })
  }
}
