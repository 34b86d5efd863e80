// The order of a schema dump's pre-data: edges from pg_depend between the nodes, then a
// topological sort with kind and OID (creation order) breaking ties; views, and whatever needs
// one, are moved after the data and keys.

import { FIRST_USER_OID } from './sql.ts'
import type { Dump, Kind, Node } from './state.ts'

const RANK: Record<Kind, number> = { collation: 0, type: 1, sequence: 2, function: 3, table: 4, view: 5 }

/** Depth-first topological order: dependencies before dependents, `items`' order breaking ties. */
export function topoSort<T>(items: T[], key: (t: T) => string, deps: (t: T) => string[], onCycle: (t: T) => void): T[] {
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

/** Edges between nodes from pg_depend, each end mapped to the node that creates it. */
export async function dependencies(dump: Dump): Promise<void> {
  const edges = await dump.q<{ from: string; to: string }>(
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
    const from = dump.nodes.get(e.from)
    // A sequence's only outgoing edge is OWNED BY (a column), set after the data.
    if (from && from.kind !== 'sequence' && dump.nodes.has(e.to)) from.deps.add(e.to)
  }
}

export function order(dump: Dump): Node[] {
  // Ties go by kind, then by OID (creation order), so the script reads like the source's history.
  const byRank = (a: Node, b: Node) => RANK[a.kind] - RANK[b.kind] || a.oid - b.oid
  const sorted = topoSort(
    [...dump.nodes.values()].sort(byRank),
    (n) => n.key,
    (n) =>
      [...n.deps]
        .map((d) => dump.nodes.get(d)!)
        .sort(byRank)
        .map((d) => d.key),
    (n) => dump.skipped.push(`${n.label}: part of a dependency cycle; created in catalog order, the script may fail there`),
  )
  // Views come after the keys (a GROUP BY may rely on a primary key); what needs a view follows it.
  for (const n of sorted) {
    if (!n.post && n.kind !== 'table' && n.kind !== 'sequence' && [...n.deps].some((d) => dump.nodes.get(d)!.post)) n.post = true
  }
  return sorted
}
