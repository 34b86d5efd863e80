// Functions whose result differs per backend and that pgraid cannot (yet)
// make deterministic. In a statement sent to every backend they would make
// the copies silently differ (invariant 5), so such writes are refused with
// 0A000 unless the configuration allows the function by name. The clock
// family is absent: time-rewrite.ts fixes it per transaction.

export const NON_DETERMINISTIC = new Set([
  'random',
  'random_normal',
  'setseed',
  'gen_random_uuid',
  'uuidv4',
  'uuidv7',
  'uuid_generate_v1',
  'uuid_generate_v1mc',
  'uuid_generate_v4',
  'clock_timestamp',
  'timeofday',
  'txid_current',
  'txid_current_if_assigned',
  'pg_current_xact_id',
  'pg_current_xact_id_if_assigned',
  'pg_backend_pid',
  'inet_server_addr',
  'inet_server_port',
  'inet_client_addr',
  'inet_client_port',
  'pg_current_wal_lsn',
  'pg_current_wal_insert_lsn',
  'pg_postmaster_start_time',
  'pg_conf_load_time',
  'lo_creat',
  'lo_import',
  'gen_random_bytes',
])

/** The first function of `functions` that makes a write non-deterministic, or null. */
export function nonDeterministicCall(functions: readonly string[], allowed: readonly string[]): string | null {
  for (const f of functions) {
    const dot = f.lastIndexOf('.')
    const name = dot >= 0 ? f.slice(dot + 1) : f
    if (NON_DETERMINISTIC.has(name) && !allowed.includes(name)) return name
  }
  return null
}
