// `pgraid verify` (issue 6, item 4): are the backends in service identical?
// All of them are read at the same log position (aligned snapshots, a brief
// commit hold), then compared without holding anything: table lists and
// column definitions, then every table in primary-key order in chunks with a
// checksum per chunk on each backend; only a differing chunk is read row by
// row to name the rows. Tables without a primary key are compared as
// multisets of rows; sequences by their current value.

import type pg from 'pg'
import type { ServerContext } from '../server-context.ts'
import { alignedSnapshot } from './snapshots.ts'

export interface Difference {
  database: string
  table: string
  backend: string
  problem: 'missing database' | 'missing table' | 'extra table' | 'columns differ' | 'missing row' | 'extra row' | 'changed row' | 'rows differ' | 'sequence differs' | 'log position differs'
  key: string | null
  detail: string
}

export interface TableVerdict {
  database: string
  table: string
  rows: number
  chunks: number
  identical: boolean
}

export interface VerifyReport {
  backends: string[]
  skipped: string[]
  databases: { name: string; lsn: number | null; heldMs: number }[]
  tables: TableVerdict[]
  differences: Difference[]
  identical: boolean
}

export interface VerifyOptions {
  /** Only these tables (schema-qualified or not). */
  tables?: string[]
  databases?: string[]
  progress?: (msg: string, done: number, total: number) => void
}

/** Differing rows named per table and backend before the rest are summed up. */
const MAX_NAMED = 20

interface TableInfo {
  name: string // regclass text: quoted, qualified where search_path needs it
  kind: 'table' | 'sequence'
  columns: string // "name type, ..." for comparison
  pk: { name: string; type: string }[] // quoted column names and format_type
}

const TABLES_SQL = `
SELECT c.oid::regclass::text AS name, c.relkind,
       coalesce((SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') AS columns,
       coalesce((SELECT json_agg(json_build_object('name', quote_ident(a.attname), 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY k.ord)
                 FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '[]') AS pk
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'S') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgraid') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1`

async function tablesOf(c: pg.Client): Promise<Map<string, TableInfo>> {
  const r = await c.query<{ name: string; relkind: string; columns: string; pk: { name: string; type: string }[] }>(TABLES_SQL)
  return new Map(r.rows.map((row) => [row.name, { name: row.name, kind: row.relkind === 'S' ? 'sequence' : 'table', columns: row.columns, pk: row.pk }]))
}

function wanted(name: string, only: string[] | undefined): boolean {
  if (!only?.length) return true
  const bare = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1) : name
  return only.some((o) => o === name || o === bare || o.replace(/"/g, '') === name.replace(/"/g, '') || o.replace(/"/g, '') === bare.replace(/"/g, ''))
}

/** The value most backends have (absent = undefined); ties go to the first backend's. */
function majority<T>(values: (T | undefined)[]): T | undefined {
  const counts = new Map<T | undefined, number>()
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
  let best = values[0]
  for (const [v, n] of counts) if (n > (counts.get(best) ?? 0)) best = v
  return best
}

export async function verify(ctx: ServerContext, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const targets = ctx.backends()
  const inService = ctx.states.enabled()
  const report: VerifyReport = {
    backends: inService.map((i) => targets[i]!.name),
    skipped: ctx.states.list.filter((b) => b.state !== 'enabled' && b.state !== 'removed').map((b) => `${b.name} (${b.state}: ${b.reason})`),
    databases: [],
    tables: [],
    differences: [],
    identical: true,
  }
  if (inService.length < 2)
    throw new VerifyRefused(`only ${inService.length} backend(s) in service: nothing to compare${report.skipped.length ? `; out of service: ${report.skipped.join(', ')}` : ''}`)
  const { loggedDatabases } = await import('./resync.ts')
  let databases = opts.databases
  if (!databases?.length) {
    // The pgraid databases of every backend in service: one some lack is a difference, not compared further.
    const each = await Promise.all(inService.map((i) => loggedDatabases(targets[i]!)))
    const all = [...new Set(each.flat())].sort()
    databases = all.filter((db) => each.every((l) => l.includes(db)))
    for (const db of all)
      each.forEach((l, k) => {
        if (!l.includes(db))
          report.differences.push({
            database: db,
            table: '',
            backend: targets[inService[k]!]!.name,
            problem: 'missing database',
            key: null,
            detail: `database "${db}" (with a pgraid log on other backends in service) is missing there or has no pgraid log`,
          })
      })
  }
  for (const db of databases) await verifyDatabase(ctx, inService, db, opts, report)
  report.identical = report.differences.length === 0
  return report
}

export class VerifyRefused extends Error {}

async function verifyDatabase(ctx: ServerContext, inService: number[], database: string, opts: VerifyOptions, report: VerifyReport): Promise<void> {
  const targets = inService.map((i) => ctx.backends()[i]!)
  const names = targets.map((t) => t.name)
  const snap = await alignedSnapshot(ctx, targets, database, 'verify')
  const diff = (d: Omit<Difference, 'database'>) => report.differences.push({ database, ...d })
  try {
    const lsn = majority(snap.lsns) ?? null
    report.databases.push({ name: database, lsn, heldMs: snap.heldMs })
    snap.lsns.forEach((l, i) => {
      if (l !== lsn) diff({ table: 'pgraid.log', backend: names[i]!, problem: 'log position differs', key: null, detail: `its snapshot is at LSN ${l} where the others are at ${lsn}` })
    })
    const catalogs = await Promise.all(snap.clients.map(tablesOf))
    const all = [...new Set(catalogs.flatMap((m) => [...m.keys()]))].filter((n) => wanted(n, opts.tables)).sort()
    if (opts.tables?.length) for (const t of opts.tables) if (!all.some((n) => wanted(n, [t]))) throw new VerifyRefused(`no table "${t}" in database "${database}" on any backend in service`)
    const comparable: TableInfo[] = []
    for (const name of all) {
      const present = catalogs.map((m) => m.get(name))
      const common = majority(present.map((p) => (p ? p.columns : undefined)))
      if (common === undefined) {
        present.forEach((p, i) => p && diff({ table: name, backend: names[i]!, problem: 'extra table', key: null, detail: `only some backends have ${p.kind} ${name}` }))
        continue
      }
      let ok = true
      present.forEach((p, i) => {
        if (!p) ((ok = false), diff({ table: name, backend: names[i]!, problem: 'missing table', key: null, detail: `${name} does not exist there` }))
        else if (p.columns !== common) ((ok = false), diff({ table: name, backend: names[i]!, problem: 'columns differ', key: null, detail: `(${p.columns}) where the others have (${common})` }))
      })
      if (ok) comparable.push(present.find((p) => p)!)
      else report.tables.push({ database, table: name, rows: 0, chunks: 0, identical: false })
    }
    const tables = comparable.filter((t) => t.kind === 'table')
    for (const [i, t] of tables.entries()) {
      opts.progress?.(`verify "${database}": ${t.name}`, i, tables.length)
      const before = report.differences.length
      const { rows, chunks } = t.pk.length ? await compareByKey(snap.clients, names, t, ctx.config.lifecycle.verifyChunkRows, diff) : await compareAsMultiset(snap.clients, names, t, diff)
      report.tables.push({ database, table: t.name, rows, chunks, identical: report.differences.length === before })
    }
    opts.progress?.(`verify "${database}": ${tables.length} tables compared`, tables.length, tables.length)
    await compareSequences(
      snap.clients,
      names,
      comparable.filter((t) => t.kind === 'sequence'),
      diff,
      report,
      database,
    )
  } finally {
    await snap.close()
  }
}

type Diff = (d: Omit<Difference, 'database'>) => void

/** The alias rows are read through: unlikely to be a column name, which would shadow the whole-row reference. */
const ROW = '"pgraid row"'

/** Row checksums: order-independent within a chunk (the key makes rows unique). */
const ROW_HASH = `hashtextextended(${ROW}::text, 0)`

async function compareByKey(clients: pg.Client[], names: string[], t: TableInfo, chunkRows: number, diff: Diff): Promise<{ rows: number; chunks: number }> {
  const keyList = t.pk.map((k) => `${ROW}.${k.name}`).join(', ')
  const keyRow = t.pk.length === 1 ? keyList : `(${keyList})`
  // Chunk boundaries from the first backend: every chunkRows-th key. Keys the others have beyond them fall in the last chunk.
  const bounds = (
    await clients[0]!.query<{ k: string[] }>(
      `SELECT k FROM (SELECT ARRAY[${t.pk.map((k) => `${ROW}.${k.name}::text`).join(', ')}] AS k, row_number() OVER (ORDER BY ${keyList}) AS rn FROM ${t.name} AS ${ROW}) s WHERE rn % ${chunkRows} = 0 ORDER BY rn`,
    )
  ).rows.map((r) => r.k)
  const literal = (offset: number) => (t.pk.length === 1 ? `$${offset + 1}::${t.pk[0]!.type}` : `(${t.pk.map((k, i) => `$${offset + i + 1}::${k.type}`).join(', ')})`)
  const ranges: { where: string; params: string[] }[] = []
  for (let i = 0; i <= bounds.length; i++) {
    const lo = bounds[i - 1]
    const hi = bounds[i]
    const conds: string[] = []
    const params: string[] = []
    if (lo) (conds.push(`${keyRow} > ${literal(params.length)}`), params.push(...lo))
    if (hi) (conds.push(`${keyRow} <= ${literal(params.length)}`), params.push(...hi))
    ranges.push({ where: conds.length ? conds.join(' AND ') : 'true', params })
  }
  let rows = 0
  let named = 0
  const sums = await Promise.all(
    clients.map(async (c) => {
      const out: string[] = []
      for (const r of ranges) {
        const row = (await c.query<{ n: string; h: string | null }>(`SELECT count(*) AS n, sum(${ROW_HASH}) AS h FROM ${t.name} AS ${ROW} WHERE ${r.where}`, r.params)).rows[0]!
        out.push(`${row.n}:${row.h}`)
      }
      return out
    }),
  )
  for (const [ci, r] of ranges.entries()) {
    rows += Number(sums[0]![ci]!.split(':')[0])
    if (sums.every((s) => s[ci] === sums[0]![ci])) continue
    // Narrow the chunk to its rows: key -> row hash on every backend.
    const maps = await Promise.all(
      clients.map(
        async (c) =>
          new Map(
            (
              await c.query<{ k: string; h: string }>(
                `SELECT ${t.pk.length === 1 ? `${ROW}.${t.pk[0]!.name}::text` : `ROW(${keyList})::text`} AS k, ${ROW_HASH}::text AS h FROM ${t.name} AS ${ROW} WHERE ${r.where}`,
                r.params,
              )
            ).rows.map((x) => [x.k, x.h]),
          ),
      ),
    )
    const keys = [...new Set(maps.flatMap((m) => [...m.keys()]))].sort()
    for (const key of keys) {
      const values = maps.map((m) => m.get(key))
      const right = majority(values)
      values.forEach((v, bi) => {
        if (v === right) return
        const problem = v === undefined ? 'missing row' : right === undefined ? 'extra row' : 'changed row'
        if (named++ < MAX_NAMED)
          diff({
            table: t.name,
            backend: names[bi]!,
            problem,
            key: `(${t.pk.map((k) => k.name).join(', ')}) = ${key.startsWith('(') ? key : `(${key})`}`,
            detail: problem === 'missing row' ? 'the others have this row' : problem === 'extra row' ? 'the others do not have this row' : 'its values differ from the others',
          })
      })
    }
  }
  if (named > MAX_NAMED) diff({ table: t.name, backend: '*', problem: 'rows differ', key: null, detail: `${named - MAX_NAMED} more differing row(s) not listed` })
  return { rows, chunks: ranges.length }
}

/** No primary key: rows compared as multisets (how many times each distinct row occurs). */
async function compareAsMultiset(clients: pg.Client[], names: string[], t: TableInfo, diff: Diff): Promise<{ rows: number; chunks: number }> {
  const sums = await Promise.all(clients.map(async (c) => (await c.query<{ n: string; h: string | null }>(`SELECT count(*) AS n, sum(${ROW_HASH}) AS h FROM ${t.name} AS ${ROW}`)).rows[0]!))
  const rows = Number(sums[0]!.n)
  if (sums.every((s) => s.n === sums[0]!.n && s.h === sums[0]!.h)) return { rows, chunks: 1 }
  const maps = await Promise.all(
    clients.map(async (c) => new Map((await c.query<{ r: string; n: string }>(`SELECT ${ROW}::text AS r, count(*) AS n FROM ${t.name} AS ${ROW} GROUP BY 1`)).rows.map((x) => [x.r, Number(x.n)]))),
  )
  let named = 0
  for (const row of [...new Set(maps.flatMap((m) => [...m.keys()]))].sort()) {
    const counts = maps.map((m) => m.get(row) ?? 0)
    const right = majority(counts)!
    counts.forEach((n, bi) => {
      if (n === right) return
      if (named++ < MAX_NAMED)
        diff({
          table: t.name,
          backend: names[bi]!,
          problem: n < right ? 'missing row' : 'extra row',
          key: row.length > 200 ? `${row.slice(0, 200)}...` : row,
          detail: `${n} time(s) there, ${right} on the others (no primary key: compared as a multiset)`,
        })
    })
  }
  if (named > MAX_NAMED) diff({ table: t.name, backend: '*', problem: 'rows differ', key: null, detail: `${named - MAX_NAMED} more differing row(s) not listed` })
  return { rows, chunks: 1 }
}

/**
 * Sequences are not transactional: a nextval in a transaction still open
 * may have reached some backends and not yet the others. A difference is
 * reported only if it lasts across a few readings.
 */
async function compareSequences(clients: pg.Client[], names: string[], seqs: TableInfo[], diff: Diff, report: VerifyReport, database: string): Promise<void> {
  if (!seqs.length) return
  const read = () =>
    Promise.all(
      clients.map(
        async (c) =>
          new Map(
            (
              await c.query<{ s: string; v: string }>(`SELECT s, v FROM unnest($1::text[]) AS s, LATERAL (SELECT pg_sequence_last_value(s::regclass)::text AS v) x`, [seqs.map((s) => s.name)])
            ).rows.map((r) => [r.s, r.v]),
          ),
      ),
    )
  let values = await read()
  for (let attempt = 0; attempt < 5 && seqs.some((s) => values.some((m) => m.get(s.name) !== values[0]!.get(s.name))); attempt++) {
    await new Promise((r) => setTimeout(r, 200))
    values = await read()
  }
  for (const s of seqs) {
    const per = values.map((m) => m.get(s.name))
    const right = majority(per)
    let same = true
    per.forEach((v, i) => {
      if (v !== right)
        ((same = false), diff({ table: s.name, backend: names[i]!, problem: 'sequence differs', key: null, detail: `last value ${v ?? 'never used'} where the others have ${right ?? 'never used'}` }))
    })
    report.tables.push({ database, table: s.name, rows: 0, chunks: 0, identical: same })
  }
}
