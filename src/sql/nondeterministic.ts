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

/** Clock functions: fixed per transaction in statements, but not inside a trigger body. */
const CLOCK_CALLS = ['now', 'transaction_timestamp', 'statement_timestamp']
const CLOCK_KEYWORDS = /\b(current_timestamp|current_date|current_time|localtime|localtimestamp)\b/i
/** C trigger functions shipped with PostgreSQL that compute the same thing everywhere. */
const DETERMINISTIC_C_TRIGGERS = new Set(['suppress_redundant_updates_trigger', 'tsvector_update_trigger', 'tsvector_update_trigger_column', 'check_primary_key', 'check_foreign_key'])

/**
 * Why a trigger function would compute different values on different
 * backends, or null. pgraid cannot rewrite a function body, so a clock or
 * random call inside it is a per-backend value. The scan is textual and
 * errs on the side of refusing (a name in a comment counts).
 */
export function triggerNonDeterminism(fn: string, language: string, source: string): string | null {
  if (language !== 'plpgsql' && language !== 'sql') return DETERMINISTIC_C_TRIGGERS.has(fn) ? null : `it is written in ${language}, which pgraid cannot inspect`
  const calls = source.toLowerCase().matchAll(/\b([a-z_][a-z0-9_]*)\s*\(/g)
  for (const m of calls) if (NON_DETERMINISTIC.has(m[1]) || CLOCK_CALLS.includes(m[1])) return `it calls ${m[1]}()`
  const kw = CLOCK_KEYWORDS.exec(source)
  if (kw) return `it uses ${kw[1].toUpperCase()}`
  return null
}
