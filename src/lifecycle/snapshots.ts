// Snapshots of several backends that show exactly the same committed
// transactions (verify, clone): new COMMITs are held for a moment, the ones
// in flight finish, every backend opens a REPEATABLE READ transaction and
// takes its snapshot, the hold ends. Everything read afterwards through those
// transactions is as of one log position, while clients go on writing.

import type pg from 'pg'
import type { BackendTarget } from '../backend/connection.ts'
import { controlClient } from '../backend/control-client.ts'
import type { ServerContext } from '../server-context.ts'

export class SnapshotRefused extends Error {}

export interface AlignedSnapshot {
  clients: pg.Client[]
  /** Highest LSN each snapshot sees in pgraid.log (null: no log in this database). */
  lsns: (number | null)[]
  /** How long new COMMITs were held. */
  heldMs: number
  /** pg_export_snapshot() of each transaction, when asked for (clone's parallel readers import it). */
  exported: (string | null)[]
  close(): Promise<void>
}

/** Settings that make value text identical on every backend whatever its postgresql.conf says. */
export const TEXT_SETTINGS =
  "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET statement_timeout = 0; SET lock_timeout = 0"

export async function alignedSnapshot(
  ctx: ServerContext,
  targets: BackendTarget[],
  database: string,
  purpose: string,
  opts: { holdMs?: number; exportSnapshot?: boolean } = {},
): Promise<AlignedSnapshot> {
  const holdMs = opts.holdMs ?? ctx.config.lifecycle.holdMs
  const clients = targets.map((t) => controlClient(t, database, purpose))
  const close = async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})))
  }
  try {
    await Promise.all(clients.map((c) => c.connect()))
    await Promise.all(clients.map((c) => c.query(TEXT_SETTINGS)))
    const hasLog = await Promise.all(clients.map(async (c) => (await c.query<{ ok: boolean }>("SELECT to_regclass('pgraid.log') IS NOT NULL AS ok")).rows[0]!.ok))
    const heldAt = Date.now()
    const release = ctx.holdCommits()
    let lsns: (number | null)[]
    let exported: (string | null)[] = targets.map(() => null)
    try {
      while (ctx.commitsInFlight() > 0 && Date.now() - heldAt < holdMs) await new Promise((r) => setTimeout(r, 2))
      if (ctx.commitsInFlight() > 0) throw new SnapshotRefused(`commits still in flight after holding new ones for ${holdMs} ms (${ctx.describeInFlight()}); try again`)
      await Promise.all(clients.map((c) => c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')))
      // The first query takes the snapshot.
      lsns = await Promise.all(
        clients.map(async (c, i) => (hasLog[i] ? Number((await c.query<{ m: string }>('SELECT coalesce(max(lsn), 0) AS m FROM pgraid.log')).rows[0]!.m) : (await c.query('SELECT 1'), null))),
      )
      if (opts.exportSnapshot) exported = await Promise.all(clients.map(async (c) => (await c.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s))
    } finally {
      release()
    }
    return { clients, lsns, heldMs: Date.now() - heldAt, exported, close }
  } catch (e) {
    await close()
    throw e
  }
}
