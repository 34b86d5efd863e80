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
  // v2: crash-safe sequences (docs/recovery.md, "Sequences"). Each log row keeps this backend's
  // state of the sequences its transaction drew from (names in record->'sq'; '*': every sequence),
  // taken by its own INSERT after the transaction's statements; a replay checks it and corrects a
  // sequence that was off before the record (32 values pre-logged before a crash, draws of
  // transactions that rolled back while the backend was out).
  [
    'ALTER TABLE pgraid.log ADD COLUMN IF NOT EXISTS seqs jsonb',
    // Why a backend is out (src/cluster/states.ts OutCause): a pgraid started later lets the health
    // monitor bring back one that was out for its own fault, once proven current.
    'ALTER TABLE pgraid.backend_state ADD COLUMN IF NOT EXISTS cause text',
    // Never fails (a commit must not fail for it): names that no longer resolve, or that the role may not read, are left out.
    `CREATE OR REPLACE FUNCTION pgraid.seq_states(names text[]) RETURNS jsonb LANGUAGE sql STABLE AS $f$
       SELECT jsonb_object_agg(c.oid::regclass::text, pg_sequence_last_value(c.oid))
         FROM pg_class c
        WHERE CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') ELSE false END
          AND (c.oid = ANY (ARRAY(SELECT to_regclass(n) FROM unnest(names) n WHERE n <> '*')::oid[])
               OR ('*' = ANY (names) AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)))
     $f$`,
    `CREATE OR REPLACE FUNCTION pgraid.seqs_of(record jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $f$
       SELECT CASE WHEN record ? 'sq' THEN pgraid.seq_states(ARRAY(SELECT jsonb_array_elements_text(record->'sq'))) END
     $f$`,
    // Sets sequences to given states (null: not called yet): a resync's last step, and a session's late backends.
    `CREATE OR REPLACE FUNCTION pgraid.seq_set(states jsonb) RETURNS bigint LANGUAGE sql AS $f$
       SELECT count(CASE WHEN e.value = 'null'::jsonb THEN setval(r.c, s.seqstart, false) ELSE setval(r.c, (e.value #>> '{}')::bigint, true) END)
         FROM jsonb_each(coalesce(states, '{}')) e CROSS JOIN LATERAL (SELECT to_regclass(e.key) AS c) r JOIN pg_sequence s ON s.seqrelid = r.c
     $f$`,
    // Replay: the states the source recorded, compared after the replayed statements; the before-states
    // (set_config pgraid.seqb at the start) go into the error so the caller can correct and retry.
    `CREATE OR REPLACE FUNCTION pgraid.seq_check(expected jsonb) RETURNS void LANGUAGE plpgsql AS $f$
     DECLARE actual jsonb := coalesce(pgraid.seq_states(ARRAY(SELECT jsonb_object_keys(expected))), '{}');
     BEGIN
       IF actual <> expected THEN
         RAISE EXCEPTION 'pgraid: sequence states differ after replay' USING ERRCODE = 'PGRSQ',
           DETAIL = jsonb_build_object('before', current_setting('pgraid.seqb', true)::jsonb, 'after', actual)::text;
       END IF;
     END $f$`,
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
    if (version < SCHEMA_VERSION) await client.query(`INSERT INTO pgraid.meta VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [String(SCHEMA_VERSION)])
    await client.query('COMMIT')
    return version
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {})
    throw e
  }
}
