// The `pgraid` schema pgraid keeps in every database it writes to, on every
// backend: the recovery log (one row per committed write transaction, in
// the same transaction as the write) and each backend's record of the
// others' states. Versioned; migrations run in order under an advisory lock
// so several pgraid instances starting together do not race. docs/recovery.md
// describes the format.

import type pg from 'pg'

/** Each step brings the schema from version i to i + 1. */
const MIGRATIONS: string[][] = [
  [
    'CREATE SCHEMA IF NOT EXISTS pgraid',
    `CREATE TABLE IF NOT EXISTS pgraid.meta (key text PRIMARY KEY, value text NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS pgraid.log (
       lsn bigint PRIMARY KEY,
       at timestamptz NOT NULL,
       record jsonb NOT NULL)`,
    `COMMENT ON TABLE pgraid.log IS 'pgraid recovery log: one row per committed write transaction, inserted in that transaction (docs/recovery.md)'`,
    `CREATE TABLE IF NOT EXISTS pgraid.backend_state (
       backend text PRIMARY KEY,
       state text NOT NULL,
       reason text,
       lsn bigint,
       at timestamptz NOT NULL)`,
    `COMMENT ON TABLE pgraid.backend_state IS 'pgraid: what this backend knows about the states of the backends (docs/recovery.md)'`,
  ],
]

export const SCHEMA_VERSION = MIGRATIONS.length

/** Any constant: serialises schema changes by concurrent pgraid instances. */
const LOCK_KEY = 0x70677261 // 'pgra'

/** Creates or upgrades the schema on one backend; returns the version found before. */
export async function ensureSchema(client: pg.Client): Promise<number> {
  await client.query('BEGIN')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY])
    const exists = await client.query(`SELECT to_regclass('pgraid.meta') IS NOT NULL AS ok`)
    let version = 0
    if (exists.rows[0].ok) {
      const v = await client.query(`SELECT value FROM pgraid.meta WHERE key = 'schema_version'`)
      version = v.rows.length ? Number(v.rows[0].value) : 0
    }
    if (version > SCHEMA_VERSION) throw new Error(`the pgraid schema is at version ${version}, newer than this pgraid (${SCHEMA_VERSION}); upgrade pgraid`)
    for (let v = version; v < SCHEMA_VERSION; v++) for (const sql of MIGRATIONS[v]!) await client.query(sql)
    if (version < SCHEMA_VERSION)
      await client.query(`INSERT INTO pgraid.meta VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [String(SCHEMA_VERSION)])
    await client.query('COMMIT')
    return version
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {})
    throw e
  }
}
