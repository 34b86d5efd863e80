// Compares the user data of several backends: per table a row count and an order-independent checksum,
// per sequence its position.
import { createHash } from 'node:crypto'
import type pg from 'pg'

export interface TableDigest {
  table: string // qualified, quoted name, e.g. public.pgbench_accounts
  rows: number
  checksum: string
}

// Everything that is not user data: system schemas, TOAST and temp schemas, and pgraid's own bookkeeping.
const TABLES_SQL = `
  SELECT format('%I.%I', n.nspname, c.relname) AS qname, c.relkind = 'S' AS seq
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'S')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgraid')
    AND n.nspname NOT LIKE 'pg\\_toast%'
    AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  ORDER BY 1`

// The sum of per-row hashes is independent of heap order and needs neither a sort nor moving
// rows to JS: pgbench_accounts (1M rows) digests in about a second. hashtextextended (the
// built-in 64-bit hash, PostgreSQL >= 11) is ~3x faster than md5 + hex parsing; two seeds give
// ~128 bits, numeric sums do not overflow, and count(*) is part of the digest, so rows are
// compared as a multiset. OFFSET 0 keeps the planner from computing row::text twice.
function digestSql(qname: string, seq: boolean): string {
  // A sequence's state is (last_value, is_called); log_cnt follows each backend's checkpoints.
  if (seq) return `SELECT 1 AS rows, last_value::text AS s1, is_called::text AS s2 FROM ${qname}`
  return `
    SELECT count(*) AS rows,
           coalesce(sum(hashtextextended(x, 0)), 0)::text AS s1,
           coalesce(sum(hashtextextended(x, 1)), 0)::text AS s2
    FROM (SELECT t::text AS x FROM ${qname} t OFFSET 0) s`
}

export async function digestDatabase(client: pg.Client): Promise<TableDigest[]> {
  // One snapshot for all tables, and fixed output formats: row::text must not depend on a
  // backend's TimeZone/DateStyle/float settings, only on the data.
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
  try {
    await client.query(`SET LOCAL TimeZone = 'UTC'`)
    await client.query(`SET LOCAL DateStyle = 'ISO, MDY'`)
    await client.query(`SET LOCAL IntervalStyle = 'postgres'`)
    await client.query(`SET LOCAL extra_float_digits = 3`)
    await client.query(`SET LOCAL bytea_output = 'hex'`)
    const tables = (await client.query<{ qname: string; seq: boolean }>(TABLES_SQL)).rows
    const out: TableDigest[] = []
    for (const { qname: table, seq } of tables) {
      const r = (await client.query<{ rows: string; s1: string; s2: string }>(digestSql(table, seq))).rows[0]!
      const checksum = createHash('md5').update(`${r.rows}:${r.s1}:${r.s2}`).digest('hex')
      out.push({ table, rows: Number(r.rows), checksum })
    }
    // Sort in JS too: SQL ORDER BY follows the database collation, which may differ per backend.
    return out.sort((a, b) => (a.table < b.table ? -1 : a.table > b.table ? 1 : 0))
  } finally {
    await client.query('COMMIT').catch(() => {})
  }
}

interface Digestible {
  client(db?: string): Promise<pg.Client>
  name?: string
}

export async function compareBackends(backends: Digestible[], database?: string): Promise<{ identical: boolean; report: string; digests: TableDigest[][] }> {
  const names = backends.map((b, i) => b.name ?? `backend[${i}]`)
  const digests = await Promise.all(
    backends.map(async (b) => {
      const c = await b.client(database)
      try {
        return await digestDatabase(c)
      } finally {
        await c.end().catch(() => {})
      }
    }),
  )
  const byBackend = digests.map((ds) => new Map(ds.map((d) => [d.table, d])))
  const allTables = [...new Set(digests.flat().map((d) => d.table))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const lines: string[] = []
  for (const table of allTables) {
    const per = byBackend.map((m) => m.get(table))
    const ref = per[0]
    const same = per.every((d) => d && ref && d.rows === ref.rows && d.checksum === ref.checksum)
    if (same) continue
    // Name the odd ones out against the majority value, which is usually the correct one.
    const key = (d: TableDigest | undefined) => (d ? `${d.rows}:${d.checksum}` : 'missing')
    const counts = new Map<string, number>()
    for (const d of per) counts.set(key(d), (counts.get(key(d)) ?? 0) + 1)
    const majority = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0]
    const odd = names.filter((_, i) => key(per[i]) !== majority)
    const detail = per.map((d, i) => `${names[i]}: ${d ? `rows=${d.rows} checksum=${d.checksum.slice(0, 12)}` : 'table missing'}`).join('; ')
    lines.push(`table ${table} differs on ${odd.join(', ')} (${detail})`)
  }
  const identical = lines.length === 0
  const report = identical ? `${backends.length} backends identical: ${allTables.length} tables (${allTables.map((t) => `${t}=${byBackend[0]?.get(t)?.rows ?? '?'}`).join(', ')})` : lines.join('\n')
  return { identical, report, digests }
}
