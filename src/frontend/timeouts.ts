// The client's statement_timeout and lock_timeout, as the session set them
// (startup options, SET, SET LOCAL), in milliseconds. A statement waiting
// for one of pgraid's own locks has not reached any backend yet, so no
// backend's timer runs: pgraid applies the same limits to that wait and
// answers as PostgreSQL would (57014 statement timeout, 55P03 lock timeout).

/** PostgreSQL's time units for these settings (the bare number is milliseconds). */
const UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 }

/** A setting's value text ("'1ms'", "5s", "1000", "DEFAULT") in milliseconds; 0 for none, null when unreadable. */
export function durationMs(value: string): number | null {
  const v = value
    .trim()
    .replace(/^'(.*)'$/s, '$1')
    .trim()
    .toLowerCase()
  if (v === 'default' || v === '') return 0
  const m = /^(-?\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(v)
  if (!m) return null
  const unit = m[2] ? UNITS[m[2]] : 1
  if (unit === undefined) return null
  return Math.max(0, Number(m[1]) * unit)
}

/** The value of `name` in a recorded `SET name = value` statement (session.ts logSettings). */
export function settingFromSet(setText: string | undefined): number {
  if (!setText) return 0
  const eq = setText.indexOf('=')
  const to = eq >= 0 ? setText.slice(eq + 1) : setText.replace(/^SET\s+\S+\s+TO\s+/i, '')
  return durationMs(to) ?? 0
}

/**
 * Which limit ends a wait of pgraid's own first, and when: the shorter of the two that are set
 * (PostgreSQL reports a lock timeout when both would fire at once).
 */
export function waitLimit(statementMs: number, lockMs: number): { ms: number; code: '57014' | '55P03'; message: string } | null {
  if (!statementMs && !lockMs) return null
  if (lockMs && (!statementMs || lockMs <= statementMs)) return { ms: lockMs, code: '55P03', message: 'canceling statement due to lock timeout' }
  return { ms: statementMs, code: '57014', message: 'canceling statement due to statement timeout' }
}
