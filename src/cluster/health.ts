// The backend health monitor (issue 16; DESIGN invariant 9): a backend's
// health is judged by the backend itself, never by what one client session
// saw. One control connection per backend, checked every health.intervalMs
// with or without client sessions, learns the server's identity (system
// identifier, postmaster start time, timeline). Its connection ending is a
// tripwire: it reconnects at once, so a server that went down is out before
// any session can read from it after a restart. A session whose own backend
// connection ended asks probe() before anything changes: a server that
// answers with the same identity is healthy (the session alone was ended);
// one that does not answer, refuses pgraid's login or restarted is taken out.
// A backend out for one of those causes comes back by itself only through
// `reconcile` (its recovery log compared with the others' and the tail
// replayed under a commit hold).

import type pg from 'pg'
import type { Logger } from 'pino'
import type { BackendTarget } from '../backend/connection.ts'
import { controlClient } from '../backend/control-client.ts'
import { SELF_HEALING, type BackendStates, type OutCause } from './states.ts'

export interface HealthOptions {
  intervalMs: number
  failures: number
  timeoutMs: number
}

export interface Identity {
  /** pg_control_system().system_identifier (null: not readable by the backend role). */
  systemId: string | null
  /** pg_postmaster_start_time(). */
  startedAt: string
  /** The timeline of the last checkpoint (null: not readable). */
  timeline: number | null
}

export type ProbeResult = { healthy: true } | { healthy: false; detail: string }

/** SQLSTATEs of a login the server refused: pgraid's credentials or the server's limits, not a server down. */
const REFUSALS = new Set(['28P01', '28000', '53300', '3D000', '42501'])

export interface HealthDeps {
  targets: () => BackendTarget[]
  states: BackendStates
  options: () => HealthOptions
  log: Logger
  takeOut(index: number, reason: string, cause: OutCause): void
  /** Proves an out-of-service backend current and enables it, or marks why not (src/lifecycle/reconcile.ts). */
  reconcile(index: number, systemChanged: boolean): Promise<void>
  /** The recovery logs this pgraid writes: per database, the range of its own LSNs that are final. */
  logs(): { database: string; ownFinal(): { from: number; below: number } | null }[]
  /** Changes the state of a backend already out (a log found missing: `new`). */
  markOut(index: number, state: 'new', reason: string, cause: OutCause): void
}

interface Slot {
  client: pg.Client | null
  connecting: Promise<pg.Client> | null
  identity: Identity | null
  /** pg_control_* readable with the backend role (false after a permission error). */
  full: boolean
  failures: number
  lastError: string | null
  lastOk: Date | null
  checking: Promise<void> | null
  /** A check is wanted as soon as the one running ends (the connection ended meanwhile). */
  again: boolean
  probe: { at: number; result: Promise<ProbeResult> } | null
  reconciling: Promise<void> | null
  /** The system identifier changed since the backend was last seen: it must be cloned, whatever its log says. */
  systemChanged: boolean
  /** Bumped when the known identity is dropped: a look begun before it must not bring an older one back. */
  epoch: number
  /** Checks in a row whose session was ended after the server accepted it (looked at again at once). */
  endedByOthers: number
}

const FULL_QUERY = 'SELECT pg_postmaster_start_time()::text AS started, (SELECT system_identifier::text FROM pg_control_system()) AS sysid, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli'
const LIMITED_QUERY = 'SELECT pg_postmaster_start_time()::text AS started, NULL::text AS sysid, NULL::int AS tli'

export class HealthMonitor {
  private readonly slots: Slot[] = []
  private timer: NodeJS.Timeout | null = null
  private closed = false

  constructor(private readonly deps: HealthDeps) {}

  private slot(i: number): Slot {
    return (this.slots[i] ??= {
      client: null,
      connecting: null,
      identity: null,
      full: true,
      failures: 0,
      lastError: null,
      lastOk: null,
      checking: null,
      again: false,
      probe: null,
      reconciling: null,
      systemChanged: false,
      epoch: 0,
      endedByOthers: 0,
    })
  }

  /** First look at every backend (awaited, so start-up knows what answers), then the periodic checks. */
  async start(): Promise<void> {
    // A backend put back in service (resync, clone, ENABLE, the monitor itself) was proven current as
    // it is now: its identity is learnt again rather than judged against the one before it went out.
    this.deps.states.on('in', (b: { index: number }) => {
      // Unknown until the next look (a check or a session's probe) that starts from now takes what it finds.
      const s = this.slot(b.index)
      s.identity = null
      s.epoch++
      void this.check(b.index)
    })
    await Promise.all(this.deps.targets().map((_, i) => this.check(i)))
    this.arm()
  }

  private arm(): void {
    if (this.closed) return
    const ms = this.deps.options().intervalMs
    // 0: no periodic checks (the connection tripwire and session probes still work); the setting is
    // read again every second, as a reload may change it.
    this.timer = setTimeout(() => {
      this.timer = null
      if (!this.deps.options().intervalMs) return this.arm()
      void Promise.all(this.deps.targets().map((_, i) => this.check(i)))
        .then(() => this.checkLogs())
        .catch((e: Error) => this.deps.log.warn({ err: e.message }, 'recovery log check failed'))
        .finally(() => this.arm())
    }, ms || 1000)
    this.timer.unref()
  }

  /** What the monitor knows of backend `i`, for status and SHOW BACKENDS. */
  view(i: number): { identity: Identity | null; failures: number; lastError: string | null; lastOk: Date | null } {
    const s = this.slot(i)
    return { identity: s.identity, failures: s.failures, lastError: s.lastError, lastOk: s.lastOk }
  }

  /** Closes the log-check connections to these databases (a DROP or RENAME of them must not wait for them). */
  releaseDatabases(names: readonly string[]): void {
    for (const [key, c] of [...this.logClients]) {
      if (!names.includes(key.slice(key.indexOf('\0') + 1))) continue
      this.logClients.delete(key)
      void c.end().catch(() => {})
    }
    for (const key of [...this.suspects.keys()]) if (names.includes(key.slice(key.indexOf('\0') + 1))) this.suspects.delete(key)
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    for (const c of this.logClients.values()) void c.end().catch(() => {})
    this.logClients.clear()
    await Promise.all(
      this.slots.map(async (s) => {
        const c = s.client
        s.client = null
        await c?.end().catch(() => {})
      }),
    )
  }

  /**
   * A session's connection to backend `i` ended at `since` (performance.now()). Resolves once the
   * backend itself has been checked on a connection opened after that: healthy (same identity), or
   * not (and then it has been taken out of service). Concurrent callers share one check.
   */
  probe(i: number, since: number): Promise<ProbeResult> {
    const s = this.slot(i)
    if (s.probe && s.probe.at >= since) return s.probe.result
    const at = performance.now()
    const result = this.runProbe(i)
    s.probe = { at, result }
    return result
  }

  private async runProbe(i: number): Promise<ProbeResult> {
    const s = this.slot(i)
    const t = this.deps.targets()[i]!
    const timeoutMs = this.deps.options().timeoutMs
    const epoch = s.epoch
    let detail = ''
    // A probe whose own session is ended after the server accepted it (a client's pg_terminate_backend
    // reaches every session) proves the server up: it is tried again, and never counts against it.
    for (let attempt = 0; attempt < 3; attempt++) {
      const c = controlClient(t, t.database ?? 'postgres', 'health probe', timeoutMs)
      let connected = false
      try {
        const id = await withTimeout(
          c.connect().then(() => {
            connected = true
            return this.identify(c, s)
          }),
          timeoutMs,
          'health probe',
        )
        if (this.deps.states.list[i]?.state !== 'enabled') return { healthy: false, detail: this.deps.states.list[i]?.reason ?? 'out of service' }
        if (s.epoch !== epoch) return { healthy: true } // put back in service meanwhile: proven current then
        if (s.identity && changed(s.identity, id)) {
          this.restarted(i, s, id)
          return { healthy: false, detail: 'the server restarted' }
        }
        s.identity ??= id
        return { healthy: true }
      } catch (e) {
        const err = e as Error & { code?: string }
        if (connected && !/no answer within/.test(err.message)) {
          detail = err.message
          continue
        }
        const refused = !!err.code && REFUSALS.has(err.code)
        detail = refused ? `login refused: ${err.code} ${err.message}` : `unreachable: ${err.message}`
        s.lastError = detail
        this.deps.takeOut(i, detail, refused ? 'refused' : 'unreachable')
        return { healthy: false, detail }
      } finally {
        await c.end().catch(() => {})
      }
    }
    // Accepted every connection, and each was ended by someone else before it could answer: up.
    this.deps.log.info({ backend: t.name, detail }, 'health probe sessions ended by another client; the server accepts connections')
    return { healthy: true }
  }

  private async identify(c: pg.Client, s: Slot): Promise<Identity> {
    let r
    try {
      r = await c.query<{ started: string; sysid: string | null; tli: number | null }>(s.full ? FULL_QUERY : LIMITED_QUERY)
    } catch (e) {
      if ((e as { code?: string }).code !== '42501' || !s.full) throw e
      // pg_control_* are for superusers and pg_monitor: the start time alone still shows a restart.
      s.full = false
      r = await c.query<{ started: string; sysid: string | null; tli: number | null }>(LIMITED_QUERY)
    }
    const row = r.rows[0]!
    return { systemId: row.sysid, startedAt: row.started, timeline: row.tli === null ? null : Number(row.tli) }
  }

  /** (backend, database) found missing its log or behind at the last tick: acted on when seen again. */
  private readonly suspects = new Map<string, 'missing' | 'behind'>()
  /** Connections to each backend's logged databases (backend index, database) for checkLogs. */
  private readonly logClients = new Map<string, pg.Client>()

  /**
   * A database restored, dropped or replaced on one backend behind pgraid's back, with no server
   * restart: every record of this pgraid's own that is final is on every backend in service, so a
   * backend whose log reaches less far in that range than another's (or has no log) lost committed
   * transactions, and is taken out before it serves them.
   */
  private async checkLogs(): Promise<void> {
    for (const l of this.deps.logs()) {
      const range = l.ownFinal()
      const enabled = this.deps.states.enabled()
      if (!range || range.below <= range.from || enabled.length < 2) continue
      const tops = await Promise.all(enabled.map((i) => this.logTop(i, l.database, range.from, range.below).catch((e: Error & { code?: string }) => e)))
      const numbers = tops.filter((x): x is number => typeof x === 'number')
      if (!numbers.length) continue
      const max = Math.max(...numbers)
      const holder = this.deps.targets()[enabled[tops.indexOf(max)]!]!.name
      tops.forEach((top, k) => {
        const i = enabled[k]!
        const code = typeof top === 'number' ? null : top.code
        const kind = code === '42P01' || code === '3D000' ? 'missing' : typeof top === 'number' && top < max ? 'behind' : null
        // Seen twice in a row (a tick apart) before anything changes: a DROP DATABASE through pgraid
        // reaches the backends a moment apart, and so may a commit the other backends' answers raced.
        const key = `${i}\0${l.database}`
        if (!kind || this.suspects.get(key) !== kind) {
          if (kind) this.suspects.set(key, kind)
          else this.suspects.delete(key)
          return
        }
        this.suspects.delete(key)
        if (kind === 'missing') {
          if (this.deps.states.isEnabled(i)) {
            this.deps.takeOut(
              i,
              `database "${l.database}" has no pgraid recovery log any more (${top instanceof Error ? top.message : ''}) while ${holder} has one: dropped or replaced behind pgraid's back`,
              'new-system',
            )
            this.deps.markOut(i, 'new', `database "${l.database}" lost its pgraid recovery log while in service (dropped or replaced behind pgraid's back): clone it`, 'new-system')
          }
        } else
          this.deps.takeOut(
            i,
            `its recovery log in database "${l.database}" reaches LSN ${top || 'none'} of this pgraid's final ones while ${holder} has ${max}: restored or replaced behind pgraid's back; resync it (pgraid resync ${this.deps.targets()[i]!.name})`,
            'behind',
          )
      })
    }
  }

  private async logTop(i: number, database: string, from: number, below: number): Promise<number> {
    const key = `${i}\0${database}`
    let c = this.logClients.get(key)
    if (!c) {
      const t = this.deps.targets()[i]!
      c = controlClient(t, database, 'health monitor', this.deps.options().timeoutMs)
      const mine = c
      const drop = () => this.logClients.get(key) === mine && this.logClients.delete(key)
      c.on('end', drop)
      c.on('error', drop)
      this.logClients.set(key, c)
      try {
        await withTimeout(c.connect(), this.deps.options().timeoutMs, 'log check connect')
      } catch (e) {
        drop()
        void c.end().catch(() => {})
        throw e
      }
    }
    try {
      const r = await withTimeout(c.query<{ m: string | null }>('SELECT max(lsn) AS m FROM pgraid.log WHERE lsn >= $1 AND lsn < $2', [from, below]), this.deps.options().timeoutMs, 'log check')
      return Number(r.rows[0]!.m ?? 0)
    } catch (e) {
      // A connection problem is the per-backend check's to judge (checkLogs ignores it): start afresh next time.
      if (this.logClients.get(key) === c) this.logClients.delete(key)
      void c.end().catch(() => {})
      throw e
    }
  }

  /** One check of backend `i` on the monitor's own connection (opened again if it ended). */
  check(i: number): Promise<void> {
    const s = this.slot(i)
    if (s.checking) {
      s.again = true
      return s.checking
    }
    s.checking = this.runCheck(i).finally(() => {
      s.checking = null
      if (s.again && !this.closed) {
        s.again = false
        void this.check(i)
      }
    })
    return s.checking
  }

  private async runCheck(i: number): Promise<void> {
    if (this.closed) return
    const s = this.slot(i)
    const b = this.deps.states.list[i]
    if (!b || b.state === 'removed') return
    const { timeoutMs, failures } = this.deps.options()
    // A backend out for a refused login is checked on a fresh login: an open connection proves nothing about credentials.
    if (b.state !== 'enabled' && b.cause === 'refused' && s.client) this.drop(s)
    let fresh = false
    let connecting = false
    const epoch = s.epoch
    try {
      if (!s.client) {
        fresh = true
        connecting = true
        s.client = await withTimeout(this.open(i, s), timeoutMs, 'health check connect')
        connecting = false
      }
      const id = await withTimeout(this.identify(s.client, s), timeoutMs, 'health check')
      s.failures = 0
      s.endedByOthers = 0
      s.lastOk = new Date()
      if (s.lastError) this.deps.log.info({ backend: b.name }, 'backend answers the health monitor again')
      s.lastError = null
      if (s.epoch !== epoch)
        s.again = true // put back in service meanwhile: look again
      else if (s.identity && changed(s.identity, id)) this.restarted(i, s, id)
      else s.identity ??= id
    } catch (e) {
      const err = e as Error & { code?: string }
      this.drop(s)
      // The session was ended after the server accepted it (a client's pg_terminate_backend reaches
      // pgraid's own sessions too): not the server's fault; look again at once on a new connection.
      if (!connecting && !/no answer within/.test(err.message) && !(err.code && REFUSALS.has(err.code)) && s.endedByOthers < 3) {
        s.endedByOthers++
        s.again = true
        return
      }
      s.failures++
      const refused = !!err.code && REFUSALS.has(err.code)
      const detail = refused ? `login refused: ${err.code} ${err.message}` : `unreachable: ${err.message}`
      if (s.lastError !== detail) this.deps.log.warn({ backend: b.name, failures: s.failures, err: detail }, 'backend health check failed')
      s.lastError = detail
      // A refusal is the server's own answer; so is a connection that ended and could not be made again
      // at once (the server is going or gone). A check that only timed out counts towards health.failures.
      const definite = refused || (connecting && isDown(err))
      if (b.state === 'enabled' && (definite || s.failures >= failures)) this.deps.takeOut(i, detail, refused ? 'refused' : 'unreachable')
      return
    }
    const now = this.deps.states.list[i]!
    if (now.state === 'enabled' || !now.cause || !SELF_HEALING.has(now.cause)) return
    // Taken out for a refused login while this check ran on a connection opened before: prove the login first.
    if (now.cause === 'refused' && !fresh) return void this.check(i)
    await this.reconcile(i)
  }

  private async open(i: number, s: Slot): Promise<pg.Client> {
    const t = this.deps.targets()[i]!
    const c = controlClient(t, t.database ?? 'postgres', 'health monitor', this.deps.options().timeoutMs)
    const ended = () => {
      if (s.client !== c) return
      s.client = null
      // The tripwire: look again at once (terminated by a client: a quiet reconnect; the server going: out).
      if (!this.closed) void this.check(i)
    }
    c.on('end', ended)
    c.on('error', ended)
    try {
      await c.connect()
    } catch (e) {
      await c.end().catch(() => {})
      throw e
    }
    return c
  }

  private drop(s: Slot): void {
    const c = s.client
    s.client = null
    void c?.end().catch(() => {})
  }

  private restarted(i: number, s: Slot, id: Identity): void {
    const before = s.identity!
    const system = before.systemId !== null && id.systemId !== null && before.systemId !== id.systemId
    s.systemChanged ||= system
    s.identity = id
    const what = system
      ? `a different PostgreSQL system (identifier ${before.systemId} -> ${id.systemId}): wiped or replaced`
      : `restarted at ${id.startedAt} (was up since ${before.startedAt}${before.timeline !== id.timeline ? `; timeline ${before.timeline} -> ${id.timeline}` : ''})`
    this.deps.log.warn({ backend: this.deps.targets()[i]!.name, before, after: id }, 'backend restarted: quarantined until its recovery log is compared with the others')
    this.deps.takeOut(i, `${what}; quarantined until its recovery log is compared with the others`, 'restarted')
  }

  /** One reconciliation at a time per backend. */
  private reconcile(i: number): Promise<void> {
    const s = this.slot(i)
    s.reconciling ??= this.deps
      .reconcile(i, s.systemChanged)
      .then(() => {
        if (this.deps.states.list[i]?.state === 'enabled' || this.deps.states.list[i]?.cause === 'new-system') s.systemChanged = false
      })
      .catch((e: Error) => this.deps.log.warn({ backend: this.deps.targets()[i]!.name, err: e.message }, 'could not bring the backend back yet; retried at the next check'))
      .finally(() => (s.reconciling = null))
    return s.reconciling
  }
}

function changed(a: Identity, b: Identity): boolean {
  return a.startedAt !== b.startedAt || (a.systemId !== null && b.systemId !== null && a.systemId !== b.systemId) || (a.timeline !== null && b.timeline !== null && a.timeline !== b.timeline)
}

/** A connect that the server refused outright, or a server shutting down / starting / in recovery. */
function isDown(e: Error & { code?: string }): boolean {
  return e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET' || e.code === 'EHOSTUNREACH' || e.code === '57P03' || e.code === '57P01' || e.code === '57P02' || /terminat|closed|ended/i.test(e.message)
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
      timer.unref()
    }),
  ]).finally(() => clearTimeout(timer))
}
