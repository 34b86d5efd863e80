// Whether a backend holds pgraid's recovery log in a database: a backend
// that lacks it where the others have records was wiped or replaced, and only
// a clone can bring it back (the health monitor and RESYNC both ask).

import type pg from 'pg'
import { controlClient } from '../backend/control-client.ts'
import { ensureSchema } from './schema.ts'

type Target = Parameters<typeof controlClient>[0]

/** Runs `fn` on a control connection to `t`'s database `db`, closed afterwards. */
async function onDatabase<T>(t: Target, db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c: pg.Client = controlClient(t, db, 'health monitor')
  try {
    await c.connect()
    return await fn(c)
  } finally {
    await c.end().catch(() => {})
  }
}

export function logTop(t: Target, db: string): Promise<number> {
  return onDatabase(t, db, async (c) => Number((await c.query<{ m: string }>('SELECT coalesce(max(lsn), 0) AS m FROM pgraid.log')).rows[0]!.m))
}

/** Creates the recovery log schema in `db` (false: the database itself is missing there). */
export async function createLog(t: Target, db: string): Promise<boolean> {
  try {
    await onDatabase(t, db, (c) => ensureSchema(c))
    return true
  } catch (e) {
    if ((e as { code?: string }).code === '3D000') return false
    throw e
  }
}

export async function hasLog(t: Target, db: string): Promise<boolean> {
  try {
    return await onDatabase(t, db, async (c) => (await c.query<{ ok: boolean }>(`SELECT to_regclass('pgraid.log') IS NOT NULL AS ok`)).rows[0]!.ok)
  } catch (e) {
    // The database itself is gone there: as wiped as a missing log.
    if ((e as { code?: string }).code === '3D000') return false
    throw e
  }
}
