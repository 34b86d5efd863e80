// What a schema dump's caller copies besides the DDL: the tables whose rows go by COPY, and the
// sequence positions to set once they are there.

import { lit } from './sql.ts'
import type { Dump } from './state.ts'

/** A table to COPY, with its quoted name and non-generated columns. */
export interface CopyTable {
  name: string
  columns: string[]
  estimatedRows: number
}

export function copyList(dump: Dump): CopyTable[] {
  const out: CopyTable[] = []
  for (const r of dump.rels.values()) {
    if (r.kind !== 'r') continue
    const columns = (dump.cols.get(r.oid) ?? []).filter((c) => !c.generated).map((c) => c.name)
    out.push({ name: r.qname, columns, estimatedRows: Math.max(0, Math.round(r.tuples)) })
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

export async function setvals(dump: Dump): Promise<string[]> {
  const identity = new Set(
    [...dump.cols.values()]
      .flat()
      .filter((c) => dump.rels.get(c.rel)?.kind !== 'c')
      .map((c) => c.identity_seq),
  )
  const seqs = [...dump.seqs.values()].filter((s) => (s.identity ? identity.has(s.oid) : dump.nodes.has(`c${s.oid}`)))
  const out: string[] = []
  // Sequences are not transactional: this is their current position, at or after the snapshot's.
  for (let i = 0; i < seqs.length; i += 100) {
    const chunk = seqs.slice(i, i + 100)
    const sql = chunk.map((s, j) => `SELECT ${j} AS i, last_value::text AS v, is_called AS c FROM ${s.qname}`).join(' UNION ALL ')
    for (const r of await dump.q<{ i: number; v: string; c: boolean }>(sql, [])) {
      out.push(`SELECT pg_catalog.setval(${lit(chunk[r.i]!.qname)}, ${r.v}, ${r.c})`)
    }
  }
  return out.sort()
}
