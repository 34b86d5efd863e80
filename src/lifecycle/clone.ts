// `pgraid clone` (issue 6, item 3): a new, empty or inconsistent database
// becomes a full replica while clients keep writing. Per database pgraid
// logs: the target database is dropped and created afresh, a snapshot of a
// backend in service is taken at a known log position (a brief commit hold),
// the schema is rebuilt from that snapshot's catalog (schema-dump/: no
// pg_dump 18 is needed), every table is streamed with COPY (several at a
// time, each reader importing the same exported snapshot), indexes and
// constraints are built after the data, and finally the log records written
// since the snapshot are replayed and the backend is enabled, as in resync.
// Only ordinary connections: no file access to either server.

import { pipeline } from 'node:stream/promises'
import { Transform } from 'node:stream'
import { to as copyTo, from as copyFrom } from 'pg-copy-streams'
import type { BackendTarget } from '../backend/connection.ts'
import { controlClient } from '../backend/control-client.ts'
import type { ServerContext } from '../server-context.ts'
import { loggedDatabases, catchUpAndEnable, ResyncRefused } from './resync.ts'
import { alignedSnapshot, TEXT_SETTINGS } from './snapshots.ts'
import { schemaScript, type SchemaScript } from './schema-dump/dump.ts'

export class CloneRefused extends Error {}

export interface CloneOptions {
  from?: number
  dryRun?: boolean
  signal?: AbortSignal
  notice: (msg: string, progress?: { done: number; total: number; unit: string; step?: string }) => void
}

export interface CloneResult {
  databases: { name: string; lsn: number | null; tables: number; rows: number; skipped: string[] }[]
  replayed: number
  heldMs: number
  dryRun: boolean
}

/** The database a control connection uses to create and drop others. */
const MAINTENANCE_DB = 'template1'

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('interrupted')
}

export async function clone(ctx: ServerContext, index: number, opts: CloneOptions): Promise<CloneResult> {
  const targets = ctx.backends()
  const b = ctx.states.list[index]
  if (!b) throw new CloneRefused(`no backend ${index}`)
  if (b.state === 'removed') throw new CloneRefused(`${b.name} was removed from the configuration`)
  if (b.state === 'enabled') throw new CloneRefused(`${b.name} is in service: cloning replaces its data; disable it first (pgraid disable ${b.name})`)
  const sourceIdx = opts.from ?? ctx.states.enabled()[0]
  if (sourceIdx === undefined) throw new CloneRefused('no backend in service to clone from')
  if (sourceIdx === index) throw new CloneRefused(`cannot clone ${b.name} from itself`)
  if (!ctx.states.isEnabled(sourceIdx)) throw new CloneRefused(`${targets[sourceIdx]!.name} is not in service (${ctx.states.list[sourceIdx]!.state}): clone from a backend in service`)
  if (b.activity) throw new CloneRefused(`${b.name} is busy: ${b.activity}; wait for it or stop it first`)
  const source = targets[sourceIdx]!
  const target = targets[index]!
  const databases = await loggedDatabases(source)
  const result: CloneResult = { databases: [], replayed: 0, heldMs: 0, dryRun: !!opts.dryRun }
  if (opts.dryRun) {
    for (const db of databases) {
      const c = controlClient(source, db, 'clone (dry run)')
      await c.connect()
      try {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
        const script = await schemaScript(c)
        const rows = script.tables.reduce((n, t) => n + Math.max(0, t.estimatedRows), 0)
        result.databases.push({ name: db, lsn: null, tables: script.tables.length, rows, skipped: script.skipped })
        opts.notice(
          `dry run: would drop database "${db}" on ${target.name} and create it again from ${source.name}: ${script.preData.length + script.postData.length} schema statements, ${script.tables.length} tables (about ${rows} rows), then replay the log from the snapshot's position and enable ${target.name}`,
        )
        for (const s of script.skipped) opts.notice(`dry run: not copied: ${s}`)
      } finally {
        await c.end().catch(() => {})
      }
    }
    return result
  }
  b.activity = `cloning from ${source.name}`
  try {
    // While the copy is incomplete the target must not look like a backend that only lacks log records.
    ctx.markOut(index, 'new', `being cloned from ${source.name}; if interrupted, clone it again`, 'operator')
    const roles = await copyRoles(source, target)
    if (roles.length) opts.notice(`clone ${target.name}: roles created (server-wide, named by grants and policies): ${roles.join(', ')}`)
    for (const db of databases) {
      checkAbort(opts.signal)
      result.databases.push(await cloneDatabase(ctx, source, target, db, opts))
    }
    // A pgraid database the source no longer has was dropped through pgraid while the target was out.
    for (const db of await loggedDatabases(target)) {
      if (databases.includes(db) || db === (target.database ?? 'postgres')) continue
      opts.notice(`clone ${target.name}: dropping database "${db}" (${source.name} has no such pgraid database: dropped while ${target.name} was out)`)
      await dropDatabase(target, db)
    }
    ctx.markOut(index, 'disabled', `cloned from ${source.name}; catching up from the log`, 'operator')
    b.activity = 'catching up'
    try {
      const r = await catchUpAndEnable(ctx, index, sourceIdx, opts.notice, ctx.config.lifecycle.holdMs, opts.signal, `cloned from ${source.name}`)
      result.replayed = r.applied
      result.heldMs = r.heldMs
    } catch (e) {
      if (e instanceof ResyncRefused) throw new CloneRefused(`the copy is complete but catching up failed: ${e.message}; run pgraid resync ${b.name}`)
      throw e
    }
    return result
  } catch (e) {
    // An interrupted or failed clone leaves the backend out: say so where operators look (and in status).
    ctx.log.warn(
      { backend: b.name, state: b.state, error: (e as Error).message },
      `clone of ${b.name} stopped before it finished: it stays out of service (${b.state}); run pgraid clone ${b.name} again`,
    )
    throw e
  } finally {
    b.activity = null
  }
}

async function cloneDatabase(ctx: ServerContext, source: BackendTarget, target: BackendTarget, db: string, opts: CloneOptions): Promise<CloneResult['databases'][number]> {
  await recreateDatabase(source, target, db)
  opts.notice(`clone ${target.name}: database "${db}" created afresh; taking a snapshot of ${source.name}`)
  const snap = await alignedSnapshot(ctx, [source], db, 'clone', { exportSnapshot: true })
  const dst = controlClient(target, db, 'clone')
  const stop = () => void dst.end().catch(() => {})
  opts.signal?.addEventListener('abort', stop)
  try {
    await dst.connect()
    const script = await schemaScript(snap.clients[0]!)
    const lsn = snap.lsns[0] ?? null
    opts.notice(`clone ${target.name}: "${db}" at LSN ${lsn ?? '-'} (commits held ${snap.heldMs} ms): ${script.tables.length} tables; schema first`)
    // Exact row counts in the snapshot, for the progress bar's total (statistics may be missing).
    for (const t of script.tables) t.estimatedRows = Number((await snap.clients[0]!.query<{ n: string }>(`SELECT count(*) AS n FROM ${t.name}`)).rows[0]!.n)
    for (const sql of script.preData) await dst.query(sql)
    const rows = await copyTables(ctx, source, target, db, snap.exported[0]!, script, opts)
    checkAbort(opts.signal)
    for (const sql of script.sequences) await dst.query(sql)
    opts.notice(`clone ${target.name}: "${db}": ${rows} rows copied; building indexes and constraints`)
    for (const sql of script.postData) await dst.query(sql)
    for (const s of script.skipped) opts.notice(`clone ${target.name}: "${db}": not copied: ${s}`)
    return { name: db, lsn, tables: script.tables.length, rows, skipped: script.skipped }
  } catch (e) {
    checkAbort(opts.signal)
    throw e
  } finally {
    opts.signal?.removeEventListener('abort', stop)
    await dst.end().catch(() => {})
    await snap.close()
  }
}

/**
 * Roles are server-wide, not part of a database, but grants, policies and
 * default privileges name them: the ones the target lacks are created with
 * the source's attributes (and password hash, when the source lets us read
 * it) and memberships. Existing roles are left as they are.
 */
async function copyRoles(source: BackendTarget, target: BackendTarget): Promise<string[]> {
  const s = controlClient(source, MAINTENANCE_DB, 'clone')
  const t = controlClient(target, MAINTENANCE_DB, 'clone')
  await Promise.all([s.connect(), t.connect()])
  try {
    const cols = 'rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit'
    type Role = {
      rolname: string
      rolsuper: boolean
      rolinherit: boolean
      rolcreaterole: boolean
      rolcreatedb: boolean
      rolcanlogin: boolean
      rolreplication: boolean
      rolbypassrls: boolean
      rolconnlimit: number
      rolpassword?: string | null
    }
    const where = "WHERE rolname !~ '^pg_'"
    const rows = await s.query<Role>(`SELECT ${cols}, rolpassword FROM pg_authid ${where}`).then(
      (r) => r.rows,
      async () => (await s.query<Role>(`SELECT ${cols} FROM pg_roles ${where}`)).rows,
    )
    const have = new Set((await t.query<{ rolname: string }>('SELECT rolname FROM pg_roles')).rows.map((r) => r.rolname))
    const created: string[] = []
    for (const r of rows) {
      if (have.has(r.rolname)) continue
      const attrs = [
        r.rolsuper ? 'SUPERUSER' : '',
        r.rolinherit ? '' : 'NOINHERIT',
        r.rolcreaterole ? 'CREATEROLE' : '',
        r.rolcreatedb ? 'CREATEDB' : '',
        r.rolcanlogin ? 'LOGIN' : '',
        r.rolreplication ? 'REPLICATION' : '',
        r.rolbypassrls ? 'BYPASSRLS' : '',
        r.rolconnlimit >= 0 ? `CONNECTION LIMIT ${r.rolconnlimit}` : '',
      ]
      if (r.rolpassword) attrs.push(`PASSWORD '${r.rolpassword.replace(/'/g, "''")}'`)
      await t.query(`CREATE ROLE ${quoteIdent(r.rolname)} ${attrs.filter(Boolean).join(' ')}`)
      created.push(r.rolname)
    }
    if (created.length) {
      const members = await s.query<{ role: string; member: string }>(
        'SELECT r.rolname AS role, m.rolname AS member FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member WHERE m.rolname = ANY($1)',
        [created],
      )
      for (const m of members.rows) await t.query(`GRANT ${quoteIdent(m.role)} TO ${quoteIdent(m.member)}`).catch(() => {})
    }
    return created
  } finally {
    await Promise.all([s.end().catch(() => {}), t.end().catch(() => {})])
  }
}

/** Drops the target's copy of `db` (and every session on it) and creates it empty, with the source's encoding and locale. */
async function recreateDatabase(source: BackendTarget, target: BackendTarget, db: string): Promise<void> {
  const s = controlClient(source, db, 'clone')
  const t = controlClient(target, MAINTENANCE_DB, 'clone')
  await Promise.all([s.connect(), t.connect()])
  try {
    const d = (
      await s.query<{ enc: string; collate: string; ctype: string }>(
        'SELECT pg_encoding_to_char(encoding) AS enc, datcollate AS collate, datctype AS ctype FROM pg_database WHERE datname = current_database()',
      )
    ).rows[0]!
    await t.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`)
    await t.query(`CREATE DATABASE ${quoteIdent(db)} TEMPLATE template0 ENCODING '${d.enc}' LC_COLLATE '${d.collate.replace(/'/g, "''")}' LC_CTYPE '${d.ctype.replace(/'/g, "''")}'`)
  } finally {
    await Promise.all([s.end().catch(() => {}), t.end().catch(() => {})])
  }
}

/** Streams every table with COPY, `lifecycle.cloneJobs` at a time, each reader in the exported snapshot. */
async function copyTables(ctx: ServerContext, source: BackendTarget, target: BackendTarget, db: string, snapshot: string, script: SchemaScript, opts: CloneOptions): Promise<number> {
  // Largest first, so one big table does not start last.
  const queue = [...script.tables].sort((a, b) => b.estimatedRows - a.estimatedRows)
  const total = Math.max(
    1,
    queue.reduce((n, t) => n + Math.max(0, t.estimatedRows), 0),
  )
  let done = 0
  let tablesDone = 0
  let lastNotice = 0
  /** Tables being copied now: rows so far and rows in the snapshot. */
  const current = new Map<string, { done: number; total: number }>()
  const report = (force = false) => {
    if (!force && Date.now() - lastNotice < 500) return
    lastNotice = Date.now()
    const tables = [...current].map(([name, c]) => `${name} ${c.total ? Math.floor((100 * Math.min(c.done, c.total)) / c.total) : 100}%`).join(', ')
    opts.notice(`clone ${target.name}: "${db}": ${tablesDone}/${script.tables.length} tables copied${tables ? `; copying ${tables}` : ''}`, {
      done: Math.min(done, total),
      total,
      unit: 'rows',
      step: `copy ${db}`,
    })
  }
  const worker = async () => {
    const s = controlClient(source, db, 'clone reader')
    const t = controlClient(target, db, 'clone writer')
    const stop = () => {
      void s.end().catch(() => {})
      void t.end().catch(() => {})
    }
    opts.signal?.addEventListener('abort', stop)
    try {
      await Promise.all([s.connect(), t.connect()])
      await s.query(TEXT_SETTINGS)
      await s.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      await s.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`)
      for (let table = queue.shift(); table; table = queue.shift()) {
        checkAbort(opts.signal)
        const cols = table.columns.join(', ')
        const mine = { done: 0, total: table.estimatedRows }
        current.set(table.name, mine)
        // Rows are counted by line ends: text-format COPY escapes newlines inside values.
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) (done++, mine.done++)
            report()
            cb(null, chunk)
          },
        })
        await pipeline(s.query(copyTo(`COPY ${table.name} (${cols}) TO STDOUT`)), counter, t.query(copyFrom(`COPY ${table.name} (${cols}) FROM STDIN`)))
        current.delete(table.name)
        tablesDone++
      }
    } finally {
      opts.signal?.removeEventListener('abort', stop)
      await Promise.all([s.end().catch(() => {}), t.end().catch(() => {})])
    }
  }
  await Promise.all(Array.from({ length: Math.min(ctx.config.lifecycle.cloneJobs, Math.max(1, queue.length)) }, worker))
  report(true)
  return done
}

async function dropDatabase(target: BackendTarget, db: string): Promise<void> {
  const c = controlClient(target, target.database ?? 'postgres', 'clone')
  await c.connect()
  try {
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`)
  } finally {
    await c.end().catch(() => {})
  }
}
