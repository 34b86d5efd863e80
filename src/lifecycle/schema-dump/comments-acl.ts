// Comments and privileges of a schema dump: only for objects recreated by the other steps (their
// targets), so nothing refers to an object the script does not create.

import { FIRST_USER_OID, lit } from './sql.ts'
import type { Dump } from './state.ts'

export async function comments(dump: Dump): Promise<string[]> {
  const rows = await dump.q<{ cls: string; oid: number; sub: number; description: string }>(
    `SELECT classoid::regclass::text AS cls, objoid AS oid, objsubid AS sub, description FROM pg_description
     WHERE objoid >= ${FIRST_USER_OID} OR (classoid = 'pg_namespace'::regclass AND description <> 'standard public schema')
     ORDER BY classoid, objoid, objsubid`,
    [],
  )
  return rows.flatMap((r) => {
    const t = dump.targets.get(r.sub ? `${r.cls}:${r.oid}:${r.sub}` : `${r.cls}:${r.oid}`)
    return t ? [`COMMENT ON ${t.comment} IS ${lit(r.description)}`] : []
  })
}

/**
 * GRANT/REVOKE for the difference between each ACL and its default, as pg_dump does. The
 * owner's own entries are left out (the copy belongs to whoever runs the script), and so are
 * grants made by someone else than the owner (GRANTED BY must be the current user).
 */
export async function grants(dump: Dump): Promise<string[]> {
  const rows = await dump.q<{ cls: string; oid: number; sub: number; op: string; priv: string; grantable: boolean; grantee: string; by_owner: boolean; grantor: string }>(
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
    const t = dump.targets.get(g.sub ? `${g.cls}:${g.oid}:${g.sub}` : `${g.cls}:${g.oid}`)
    const on = t?.column ? `${g.priv} (${t.column.name}) ON ${t.column.table}` : t?.grant ? `${g.priv} ON ${t.grant}` : undefined
    if (!on) continue
    if (!g.by_owner) dump.skipped.push(`privilege ${g.priv} on ${t!.comment} for ${g.grantee}, granted by ${g.grantor}: not copied (only the owner's grants are)`)
    else if (g.op === 'GRANT') out.push(`GRANT ${on} TO ${g.grantee}${g.grantable ? ' WITH GRANT OPTION' : ''}`)
    else out.push(`REVOKE ${on} FROM ${g.grantee}`)
  }
  return out
}
