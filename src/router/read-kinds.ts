// Which statements may run on one backend, and which reads run on every
// backend yet answer differently there (their rows are not voted on).

import type { Analysis } from '../sql/analyze.ts'
import { NON_DETERMINISTIC } from '../sql/nondeterministic.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import { unqualified } from '../scheduler/locks-for.ts'

/** Does this statement have to run on every backend? */
export function needsAll(a: Analysis, cat: CatalogData, inTx: boolean): boolean {
  if (!a.ok) return inTx // a syntax error must abort the transaction everywhere
  for (const s of a.statements) {
    if (s.kind === 'empty') continue
    if (s.kind !== 'read' && s.kind !== 'copy-out') return true
    if (s.kind === 'copy-out' && s.writes.length) return true
    for (const f of s.functions) if (!cat.nonVolatile.has(unqualified(f)) && !READ_SAFE.has(unqualified(f))) return true
  }
  return false
}

/**
 * Volatile but without side effects: a read calling them may run on one
 * backend. currval()/lastval() answer the session's own last nextval(), which
 * is the same on every backend because nextval() calls are ordered.
 */
const READ_SAFE = new Set([
  ...[...NON_DETERMINISTIC].filter((f) => f !== 'setseed' && f !== 'lo_creat' && f !== 'lo_import'),
  'currval',
  'lastval',
  // The server's own, changing no data pgraid replicates: a plain SELECT of them is a read (one
  // backend, no lock): two sessions' pg_sleep no longer wait for each other.
  'pg_sleep',
  'pg_sleep_for',
  'pg_sleep_until',
  'txid_current',
  'txid_current_if_assigned',
  'pg_current_xact_id',
  'pg_current_xact_id_if_assigned',
])

/** Only reads (and transaction control), no sequence calls: rows another backend may order or limit differently. */
export function plainRead(a: Analysis, cat: CatalogData): boolean {
  return a.ok && a.statements.every((s) => (s.kind === 'read' || s.kind === 'transaction' || s.kind === 'empty') && !s.sequences && s.functions.every((f) => cat.nonVolatile.has(unqualified(f))))
}

/**
 * Volatile built-ins whose answer is the server's own and changes no data pgraid replicates: a
 * SELECT calling them runs everywhere (they act on each server) and its answers are not voted on.
 */
const PER_SERVER_FUNCTIONS = new Set([
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_backend_pid',
  'pg_sleep',
  'pg_sleep_for',
  'pg_sleep_until',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_stat_clear_snapshot',
  'pg_stat_reset',
  'pg_log_backend_memory_contexts',
  'txid_current',
  'txid_current_if_assigned',
  'pg_current_xact_id',
  'pg_current_xact_id_if_assigned',
  'pg_current_wal_lsn',
  'pg_current_wal_insert_lsn',
  'pg_switch_wal',
  'pg_create_restore_point',
  'inet_server_port',
  'inet_server_addr',
])

/** A read (no sequences) whose only volatile calls are PER_SERVER_FUNCTIONS, at least one of them. */
export function perServerRead(a: Analysis, cat: CatalogData): boolean {
  if (!a.ok) return false
  let any = false
  for (const s of a.statements) {
    if (s.kind !== 'read' || s.sequences) return false
    for (const f of s.functions) {
      const name = unqualified(f)
      if (PER_SERVER_FUNCTIONS.has(name)) any = true
      else if (!cat.nonVolatile.has(name)) return false
    }
  }
  return any
}

export function anyTxOrSession(a: Analysis): boolean {
  if (!a.ok) return false
  return a.statements.some((s) => s.kind === 'transaction' || s.kind === 'session' || s.kind === 'ddl' || s.kind === 'write' || s.kind === 'copy-in' || s.kind === 'not-replicable')
}
