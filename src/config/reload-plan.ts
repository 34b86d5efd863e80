// Reload (issue 8, item 5): SIGHUP and the admin console's RELOAD re-read the
// config file and apply what can change while sessions run. This module holds
// the rules: planReload compares the running configuration with a validated
// new one and either returns what to change or every reason it cannot be
// applied live (naming the key). Applying the plan is server.ts's business
// (it owns the shared state); nothing here has side effects.
//
// Rules (docs/configuration.md, "Reload"):
// - Applied live: users, hba, authQuery, listen.tls (its files are read again
//   at every reload), timeouts, limits, log, determinism, lifecycle,
//   recovery.retainRecords/purgeIntervalMs, writeQuorum, backends[].weight,
//   backends[].password, backends[].tls, added and removed backends, metrics
//   (the server opens, moves or closes the endpoint before applying). New
//   sessions, connections and transactions see the new values; existing
//   sessions keep running (a removed user's sessions are not closed, as with
//   PostgreSQL's pg_hba.conf).
// - Refused (restart needed): listen.host/port, recovery.log, a backend's
//   host/port/user/database under the same name, any key this module does not
//   know (a section added later applies at start only until it is listed here).
// - Backends are matched by name. An added one is appended (indexes are never
//   renumbered) in state `new`: not served until `pgraid clone` copies it. A
//   removed one is drained as DISABLE does and then no longer used or shown;
//   its index and name are not reused until pgraid restarts.
// - writeQuorum: an explicit value is kept; otherwise it is recomputed as a
//   majority of the backends now configured. A reload that would leave fewer
//   backends in service than the quorum (more short of it than before) is
//   refused, as is removing the last backend in service.

import type { BackendTarget } from '../backend/connection.ts'
import type { BackendStatus } from '../cluster/states.ts'
import type { BackendConfig, Config } from './schema.ts'

/** The configuration was not applied; `problems` say why, one line each, naming the key. */
export class ReloadRefused extends Error {
  override readonly name = 'ReloadRefused'
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(
      `configuration in ${source} not reloaded (${problems.length === 1 ? '1 problem' : `${problems.length} problems`}); the running configuration is unchanged:\n${problems.map((p) => `  ${p}`).join('\n')}`,
    )
  }
}

/** What a reload did (or, dry, would do). */
export interface ReloadResult {
  /** The file re-read (or "the given configuration"). */
  source: string
  changes: string[]
  dryRun: boolean
}

export interface ReloadPlan {
  next: Config
  /** What changes, one human line each (passwords never shown). Empty: the file says what runs already. */
  changes: string[]
  /** Backends to append (state `new`), in the new file's order. */
  added: BackendConfig[]
  /** Indexes of backends to drain and remove. */
  removed: number[]
  /** New read weights by backend index. */
  weights: Map<number, number>
  /** New backend passwords by index (used by connections opened from now on). */
  passwords: Map<number, string | undefined>
  writeQuorum: number
}

/** What reload needs to know about the running backends (index = position). */
export interface LiveBackends {
  targets: readonly BackendTarget[]
  states: readonly BackendStatus[]
  weights: readonly number[]
  writeQuorum: number
}

/** Top-level sections applied live; `recovery.log` is the exception inside `recovery`. */
const LIVE_SECTIONS = new Set(['backends', 'users', 'hba', 'authQuery', 'writeQuorum', 'timeouts', 'limits', 'log', 'recovery', 'lifecycle', 'determinism', 'metrics'])
/** Keys under a restart-only section that apply live anyway. */
const LIVE_PREFIXES = ['listen.tls.']
/** Keys inside live sections that still need a restart, with why. */
const RESTART_KEYS: Record<string, string> = {
  'recovery.log': 'sessions decide per transaction whether to log it; switching in the middle would leave records incomplete',
}
/** Why each section known to need a restart does. */
const RESTART_SECTIONS: Record<string, string> = {
  listen: 'the listening socket is opened at start (PgBouncer needs a restart for listen_addr/listen_port too)',
}

/** Compares the running configuration with `next`; throws ReloadRefused with every problem found. */
export function planReload(cur: Config, next: Config, live: LiveBackends, source: string): ReloadPlan {
  const problems: string[] = []
  const changes: string[] = []

  // Everything but users and backends: leaf by leaf.
  const keys = new Set([...Object.keys(cur), ...Object.keys(next)])
  for (const key of keys) {
    if (key === 'users' || key === 'backends') continue
    const a = flatten((cur as Record<string, unknown>)[key], key)
    const b = flatten((next as Record<string, unknown>)[key], key)
    for (const leaf of new Set([...a.keys(), ...b.keys()])) {
      const from = a.get(leaf)
      const to = b.get(leaf)
      if (from === to) continue
      const change = `${leaf}: ${from ?? 'none'} -> ${to ?? 'none'}`
      const section = leaf.split(/[.[]/)[0]!
      const why = RESTART_KEYS[leaf] ?? (LIVE_PREFIXES.some((p) => leaf.startsWith(p)) ? null : (RESTART_SECTIONS[section] ?? (LIVE_SECTIONS.has(section) ? null : 'pgraid reads it only at start')))
      if (why) problems.push(`${change}: cannot change while pgraid runs (${why}); restart pgraid to apply it, or put the old value back to reload the rest`)
      else changes.push(change)
    }
  }

  // Users, by name.
  const curUsers = new Map(cur.users.map((u) => [u.name, u]))
  const nextUsers = new Map(next.users.map((u) => [u.name, u]))
  for (const [name, u] of nextUsers) {
    const old = curUsers.get(name)
    if (!old) {
      changes.push(`users: ${name} added${u.admin ? ' (admin)' : ''}`)
      continue
    }
    if (old.password !== u.password) changes.push(`users[${name}].password: changed`)
    for (const k of ['auth', 'admin', 'maxConnections'] as const) if (old[k] !== u[k]) changes.push(`users[${name}].${k}: ${String(old[k] ?? 'none')} -> ${String(u[k] ?? 'none')}`)
  }
  for (const name of curUsers.keys()) if (!nextUsers.has(name)) changes.push(`users: ${name} removed (new logins refused; sessions already open stay)`)

  // Backends, by name; indexes are the running ones.
  const live_ = live.states.filter((b) => b.state !== 'removed')
  const byName = new Map(live_.map((b) => [b.name, b.index]))
  const removedNames = new Set(live.states.filter((b) => b.state === 'removed').map((b) => b.name))
  const added: BackendConfig[] = []
  const weights = new Map<number, number>()
  const passwords = new Map<number, string | undefined>()
  next.backends.forEach((nb, k) => {
    const i = byName.get(nb.name)
    if (i === undefined) {
      if (removedNames.has(nb.name))
        problems.push(
          `backends[${k}] (${nb.name}): a backend of that name was removed by an earlier reload and pgraid never reuses a removed backend while it runs; give it another name, or restart pgraid`,
        )
      else {
        added.push(nb)
        changes.push(`backends: ${nb.name} added (${nb.host}:${nb.port}), state new: clone it (pgraid clone ${nb.name})`)
      }
      return
    }
    const t = live.targets[i]!
    for (const [key, was, now] of [
      ['host', t.host, nb.host],
      ['port', t.port, nb.port],
      ['user', t.user, nb.user],
      ['database', t.database ?? null, nb.database ?? null],
    ] as const) {
      if (was !== now)
        problems.push(
          `backends[${k}].${key} (${nb.name}): ${String(was)} -> ${String(now)}: a backend keeps its server while pgraid runs; ` +
            `to replace it, remove ${nb.name} (reload), then add the new server under another name (reload, pgraid clone), or restart pgraid`,
        )
    }
    if ((t.password ?? undefined) !== (nb.password ?? undefined)) {
      passwords.set(i, nb.password ?? undefined)
      changes.push(`backends[${nb.name}].password: changed (used by connections opened from now on)`)
    }
    const oldTls = cur.backends.find((b) => b.name === nb.name)?.tls
    if (JSON.stringify(oldTls) !== JSON.stringify(nb.tls)) changes.push(`backends[${nb.name}].tls: ${JSON.stringify(oldTls ?? null)} -> ${JSON.stringify(nb.tls)} (connections opened from now on)`)
    if (live.weights[i] !== nb.weight) {
      weights.set(i, nb.weight)
      changes.push(`backends[${nb.name}].weight: ${live.weights[i]} -> ${nb.weight}`)
    }
  })
  const nextNames = new Set(next.backends.map((b) => b.name))
  const removed = live_.filter((b) => !nextNames.has(b.name)).map((b) => b.index)
  for (const i of removed) {
    const b = live.states[i]!
    if (b.activity) problems.push(`backends: ${b.name} removed while busy (${b.activity}); wait for it to finish or stop it, then reload`)
    else changes.push(`backends: ${b.name} removed (${b.state}${b.state === 'enabled' ? ': sessions finish their work there, then leave it' : ''})`)
  }

  // Write quorum: never make writes less available than they are.
  const enabledBefore = live_.filter((b) => b.state === 'enabled').length
  const enabledAfter = live_.filter((b) => b.state === 'enabled' && !removed.includes(b.index)).length
  const quorum = next.writeQuorum
  if (enabledBefore > 0 && enabledAfter === 0)
    problems.push(
      `backends: the reload would remove every backend in service (${live_
        .filter((b) => b.state === 'enabled')
        .map((b) => b.name)
        .join(', ')}); keep at least one`,
    )
  else if (Math.max(0, quorum - enabledAfter) > Math.max(0, live.writeQuorum - enabledBefore))
    problems.push(
      `writeQuorum: the reload would leave ${enabledAfter} backend(s) in service (${next.backends.length} configured) with a write quorum of ${quorum}, so writes would be refused; ` +
        `add or remove fewer backends at a time (clone new ones first), or set writeQuorum explicitly`,
    )

  if (problems.length) throw new ReloadRefused(source, problems)
  return { next, changes, added, removed, weights, passwords, writeQuorum: quorum }
}

/** Leaves of a config section as `path -> JSON value`; arrays are one leaf; passwords are masked. */
function flatten(v: unknown, path: string, out = new Map<string, string>()): Map<string, string> {
  if (v === undefined) return out
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, `${path}.${k}`, out)
    return out
  }
  out.set(path, /password/i.test(path) ? '(hidden)' : JSON.stringify(v))
  return out
}
