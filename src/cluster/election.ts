// Which pgraid orders the writes when several point at the same backends
// (issue 8, item 7): the one holding a session-level advisory lock on a
// majority of the configured backends. The backends' own lock manager is the
// arbiter; there is no consensus protocol of pgraid's own. One dedicated
// control connection per backend takes the lock (pg_try_advisory_lock),
// retried every `retryMs` where it is missing; a held one is checked every
// `heartbeatMs` and counts as lost as soon as its connection ends or its
// check fails or takes longer than `heartbeatTimeoutMs`. Dropping below the
// majority fences at once (role 'standby'); reaching it promotes ('writer').
// docs/ha.md says why this is safe and where its window is.

import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import pg from 'pg'
import type { Logger } from 'pino'
import type { BackendTarget } from '../backend/connection.ts'
import { tlsOptions } from '../tls/backend-tls.ts'

/** The writer lock: 'pgraid' 0x0001 as a bigint. Session-level, in each backend's configured database (else postgres). */
export const WRITER_LOCK_KEY = '8099568217554681857'
/** The same key as pg_locks shows a bigint advisory lock: classid = high 32 bits, objid = low 32 bits, objsubid = 1. */
const LOCK_CLASSID = 0x70677261
const LOCK_OBJID = 0x69640001

export type Role = 'writer' | 'standby'

export interface ElectionOptions {
  retryMs: number
  heartbeatMs: number
  heartbeatTimeoutMs: number
  sessionTimeoutMs: number
  /** Locks needed to be the writer. */
  needed: number
  /** How this instance names itself to the others (application_name of its lock sessions). */
  identity: string
}

interface Slot {
  index: number
  client: pg.Client | null
  held: boolean
  busy: boolean
  timer: NodeJS.Timeout | null
  /** Not before this time (a stalemate backoff). */
  notBefore: number
  /** The last try found the lock held by another instance (not merely the backend unreachable). */
  contested: boolean
  lastError: string | null
}

export class Election extends EventEmitter {
  role: Role = 'standby'
  /** Incremented each time this instance becomes the writer: work begun under an earlier term must not commit. */
  term = 0
  since = new Date()
  /** The instance another backend says holds the lock (application_name of the holder), when known. */
  writerHint: string | null = null
  private readonly slots: Slot[]
  private closed = false
  private stalemateSince = 0
  private readonly sessionTimeoutMs: number

  constructor(
    private readonly targets: BackendTarget[],
    private readonly opts: ElectionOptions,
    private readonly log: Logger,
  ) {
    super()
    this.slots = targets.map((_, index) => ({ index, client: null, held: false, busy: false, timer: null, notBefore: 0, lastError: null, contested: false }))
    // A backend must keep a silent writer's lock longer than that writer takes to notice it lost it.
    this.sessionTimeoutMs = Math.max(opts.sessionTimeoutMs, opts.heartbeatMs + opts.heartbeatTimeoutMs + 1000)
  }

  get needed(): number {
    return this.opts.needed
  }

  get identity(): string {
    return this.opts.identity
  }

  /** Once the listen port is known (port 0 in the configuration). */
  setIdentity(identity: string): void {
    this.opts.identity = identity
  }

  /** Names of the backends whose lock this instance holds. */
  heldBy(): string[] {
    return this.slots.filter((s) => s.held).map((s) => this.targets[s.index]!.name)
  }

  isWriter(): boolean {
    return this.role === 'writer'
  }

  /** Takes part; resolves once every backend was tried and, if not the writer yet, a few retries later (a restart after a crash waits for the dead instance's sessions to end). */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((s) => this.step(s)))
    const until = Date.now() + 3 * this.opts.retryMs
    while (!this.isWriter() && !this.closed && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
  }

  /** Releases every lock (ends the lock sessions): another instance may take over at once. */
  async close(): Promise<void> {
    this.closed = true
    for (const s of this.slots) if (s.timer) clearTimeout(s.timer)
    await Promise.all(this.slots.map((s) => this.drop(s, 'pgraid closing', true)))
    this.evaluate()
  }

  private schedule(s: Slot, ms: number): void {
    if (this.closed) return
    if (s.timer) clearTimeout(s.timer)
    s.timer = setTimeout(
      () => {
        s.timer = null
        void this.step(s)
      },
      Math.max(ms, s.notBefore - Date.now()),
    )
    s.timer.unref()
  }

  /** One attempt on one backend: take the lock if missing, check it if held. */
  private async step(s: Slot): Promise<void> {
    if (this.closed || s.busy) return
    if (Date.now() < s.notBefore) return this.schedule(s, s.notBefore - Date.now())
    s.busy = true
    try {
      if (!s.client) s.client = await this.bounded(this.connect(s), 'connect')
      if (s.held) {
        await this.bounded(s.client.query('SELECT 1'), 'heartbeat')
      } else {
        const r = await this.bounded(
          s.client.query<{ got: boolean; holder: string | null }>(
            `SELECT pg_try_advisory_lock($1::bigint) AS got,
                    (SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $2::oid AND l.objid = $3::oid AND l.objsubid = 1 AND l.pid <> pg_backend_pid() LIMIT 1) AS holder`,
            [WRITER_LOCK_KEY, LOCK_CLASSID, LOCK_OBJID],
          ),
          'lock',
        )
        const row = r.rows[0]!
        s.contested = !row.got
        if (row.got) {
          s.held = true
          this.log.info({ backend: this.targets[s.index]!.name }, 'writer lock taken')
        } else if (row.holder) this.writerHint = row.holder.replace(/^pgraid writer lock /, '')
      }
      s.lastError = null
    } catch (e) {
      s.lastError = (e as Error).message
      s.contested = false
      await this.drop(s, (e as Error).message)
    } finally {
      s.busy = false
    }
    this.evaluate()
    this.schedule(s, s.held ? this.opts.heartbeatMs : this.opts.retryMs)
  }

  private async connect(s: Slot): Promise<pg.Client> {
    const t = this.targets[s.index]!
    const secs = Math.max(1, Math.floor(this.sessionTimeoutMs / 3000))
    const c = new pg.Client({
      host: t.host,
      port: t.port,
      user: t.user,
      password: t.password ?? undefined,
      database: t.database ?? 'postgres',
      application_name: `pgraid writer lock ${this.opts.identity}`.slice(0, 63),
      connectionTimeoutMillis: this.opts.heartbeatTimeoutMs,
      keepAlive: true,
      ssl: t.tls ? tlsOptions(t.host, t.tls) : false,
      // The backend drops (and so unlocks) a session whose pgraid went silent within about sessionTimeoutMs.
      options: `-c tcp_user_timeout=${this.sessionTimeoutMs} -c tcp_keepalives_idle=${secs} -c tcp_keepalives_interval=${secs} -c tcp_keepalives_count=2 -c statement_timeout=0`,
    })
    c.on('error', (e) => void this.lost(s, c, e.message))
    c.on('end', () => void this.lost(s, c, 'connection ended'))
    try {
      await c.connect()
    } catch (e) {
      c.end().catch(() => {})
      throw e
    }
    return c
  }

  /** A connection ended by itself: its lock is gone, now. */
  private async lost(s: Slot, c: pg.Client, why: string): Promise<void> {
    if (s.client !== c) return
    await this.drop(s, why)
    this.evaluate()
    if (!s.busy) this.schedule(s, this.opts.retryMs)
  }

  private async drop(s: Slot, why: string, graceful = false): Promise<void> {
    const c = s.client
    const had = s.held
    s.client = null
    s.held = false
    if (had && !this.closed) this.log.warn({ backend: this.targets[s.index]!.name, reason: why }, 'writer lock lost')
    if (!c) return
    if (graceful) {
      // A Terminate frees the lock at once; a backend that does not answer (hung) gets its socket cut.
      const ended = await Promise.race([
        c.end().then(
          () => true,
          () => true,
        ),
        new Promise<boolean>((r) => setTimeout(() => r(false), 1000).unref()),
      ])
      if (!ended) (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
    } else {
      // Do not wait for a backend that may not answer: cut the socket.
      ;(c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
      c.end().catch(() => {})
    }
  }

  private bounded<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false
      // Timers run before I/O in Node's loop: after a stall of the process itself (not the backend) the
      // answer may be waiting unread. setImmediate runs after the I/O phase, so it is read first.
      const timer = setTimeout(() => setImmediate(() => settled || reject(new Error(`${what} took longer than ${this.opts.heartbeatTimeoutMs} ms`))), this.opts.heartbeatTimeoutMs)
      p.then(
        (v) => ((settled = true), clearTimeout(timer), resolve(v)),
        (e: unknown) => ((settled = true), clearTimeout(timer), reject(e as Error)),
      )
    })
  }

  /** Promotes or fences on the current count; breaks a stalemate where no instance can reach a majority. */
  private evaluate(): void {
    const held = this.slots.filter((s) => s.held).length
    // A majority is always enough. With writeQuorum set below a majority (needed < majority), fewer
    // locks do only while no backend this instance reaches has its lock held by another instance:
    // two instances starting together on a healthy cluster must not both write. Only a partition
    // (each side reaching different backends) can then make two writers: the price of that setting.
    const majority = Math.floor(this.slots.length / 2) + 1
    const writer = !this.closed && (held >= majority || (held >= this.opts.needed && !this.slots.some((s) => s.contested)))
    if (writer !== this.isWriter()) {
      this.role = writer ? 'writer' : 'standby'
      this.since = new Date()
      if (writer) {
        this.term++
        this.writerHint = this.opts.identity
      } else if (this.writerHint === this.opts.identity) {
        // Fenced: this instance is not the writer any more, whoever is (learnt at the next lock attempt).
        this.writerHint = null
      }
      // The first win at startup is routine; later changes are what an operator wants to see.
      const level = this.closed ? 'debug' : writer && this.term === 1 ? 'info' : 'warn'
      this.log[level]({ role: this.role, locks: this.heldBy(), needed: this.opts.needed, term: this.term }, writer ? 'pgraid is the writer' : 'pgraid is not the writer: writes refused')
      this.emit('role', this.role)
    }
    // Several instances each holding some locks and none a majority (three pgraids, or one
    // backend unreachable for one of them) would wait for each other forever: after a while
    // with a partial set, release it and back off for a random time so one of them collects.
    if (!writer && held > 0 && !this.closed) {
      const now = Date.now()
      this.stalemateSince ||= now
      if (now - this.stalemateSince > 8 * this.opts.retryMs) {
        this.stalemateSince = 0
        const backoff = Math.floor(Math.random() * 8 * this.opts.retryMs)
        this.log.info({ locks: this.heldBy(), backoffMs: backoff }, 'no majority reachable: releasing the writer locks held, trying again later')
        for (const s of this.slots)
          if (s.held) {
            s.notBefore = now + backoff
            void this.drop(s, 'stalemate')
          }
      }
    } else this.stalemateSince = 0
  }
}

/** How an instance names itself: host name and listen port (what a client would connect to). */
export function instanceIdentity(port: number): string {
  return `${hostname()}:${port}`
}
