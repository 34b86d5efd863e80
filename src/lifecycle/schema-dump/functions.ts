// Functions, procedures and aggregates of a schema dump, as nodes of the dependency graph:
// pg_get_functiondef for the first two, CREATE AGGREGATE rebuilt from pg_aggregate.

import { USER_NS, lit, notExt } from './sql.ts'
import type { Dump } from './state.ts'

export async function functions(dump: Dump): Promise<void> {
  const rows = await dump.q<{ oid: number; kind: string; qname: string; args: string; def: string | null }>(
    `SELECT p.oid, p.prokind AS kind, format('%I.%I', n.nspname, p.proname) AS qname,
            pg_get_function_identity_arguments(p.oid) AS args,
            CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS def
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.pronamespace IN ${USER_NS} AND ${notExt('pg_proc', 'p.oid', true)} ORDER BY p.oid`,
  )
  const aggs = new Map((await aggregates(dump)).map((a) => [a.oid, a.sql]))
  for (const f of rows) {
    const word = f.kind === 'p' ? 'PROCEDURE' : f.kind === 'a' ? 'AGGREGATE' : 'FUNCTION'
    const sql = f.kind === 'a' ? aggs.get(f.oid) : f.def?.trim()
    if (!sql) continue
    dump.node('function', `p${f.oid}`, f.oid, `${word.toLowerCase()} ${f.qname}(${f.args})`, [sql])
    const sig = `${f.qname}(${f.kind === 'a' && !f.args ? '*' : f.args})`
    dump.target('pg_proc', f.oid, { comment: `${word} ${sig}`, grant: `${f.kind === 'p' ? 'PROCEDURE' : 'FUNCTION'} ${sig}` })
  }
}

/** pg_get_functiondef does not do aggregates; CREATE AGGREGATE from pg_aggregate. */
async function aggregates(dump: Dump): Promise<{ oid: number; sql: string }[]> {
  const rows = await dump.q<Record<string, string | number | boolean | null> & { oid: number; qname: string; args: string }>(
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
