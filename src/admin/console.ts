// The admin console: a client that logs in to the reserved database
// `pgraid` (as PgBouncer's `pgbouncer`) with a user marked `admin` gets no
// backend connections but a small command language over the simple query
// protocol, answered as ordinary rows so psql, node-postgres or any driver
// can read them. `pgraid status` (src/cli/status.ts) uses it.

import pg from 'pg'
import type net from 'node:net'
import { B } from '../protocol/codes.ts'
import { message, commandComplete, readyForQuery, parameterStatus, backendKeyData, errorResponse } from '../protocol/encode.ts'
import { behindReason, resync, ResyncRefused } from '../lifecycle/resync.ts'
import { NotReplayable, RowCountMismatch } from '../recovery/replay.ts'
import { verify, VerifyRefused, type VerifyReport } from '../lifecycle/verify.ts'
import { SnapshotRefused } from '../lifecycle/snapshots.ts'
import { clone, CloneRefused } from '../lifecycle/clone.ts'
import { logPositions } from './log-positions.ts'
import { controlClient } from '../backend/control-client.ts'
import { PgError, errors } from '../errors.ts'
import { ReloadRefused } from '../config/reload-plan.ts'
import type { AdminConsoleSession, ServerContext } from '../server-context.ts'
import type { Frame } from '../protocol/framer.ts'
import { F } from '../protocol/codes.ts'
import { queryText } from '../protocol/decode.ts'


/** RESUME for the PAUSE in force, per pgraid instance (whichever admin session paused). */
const resumes = new WeakMap<ServerContext, () => void>()

type Row = (string | number | boolean | null)[]
interface Result {
  columns: string[]
  rows: Row[]
  tag: string
}

const HELP: [string, string][] = [
  ['SHOW BACKENDS', 'each backend: state (enabled, disabled, inconsistent, new, removed while draining), cause, why, since when, reads in flight, what the health monitor last found'],
  ['SHOW LOG', 'per database and backend: highest LSN in its recovery log, records, lag behind the most advanced backend'],
  ['SHOW SESSIONS', 'client sessions: user, database, client address, transaction status, backends in use'],
  ['SHOW LOCKS', "pgraid's lock manager: each resource with its holders and waiters"],
  ['SHOW STATS', 'committed write transactions: total and per second (last 10 s and 60 s), in flight, held'],
  ['SHOW CLIENTS', 'client sessions with application_name and connect time'],
  ['SHOW HA', 'this instance: writer or standby, the backends whose writer lock it holds, how many it needs, the writer if known'],
  ['PAUSE', 'new transactions wait (open ones finish); answers when none is open'],
  ['RESUME', 'ends PAUSE'],
  ['SHUTDOWN', 'stop accepting clients, close sessions as their transactions end (as SIGTERM)'],
  ['RELOAD', 're-read the config file and apply it without dropping sessions (as SIGHUP): one row per change; refused with the reasons (F0000) if invalid or needing a restart'],
  ['SHOW CONFIG', 'the running configuration (passwords hidden)'],
  ['DISABLE <backend>', 'take a backend out of service (it stays out until resynced)'],
  ['RESYNC <backend>', 'replay what a disabled backend missed from one in service, then put it back (progress as NOTICEs)'],
  ['CLONE <backend> [FROM <backend>]', 'make a new, empty or inconsistent backend a full copy of one in service, online, then put it back'],
  ['... DRY RUN', 'after CLONE, RESYNC, ENABLE, DISABLE or RELOAD: say what it would do, change nothing'],
  ['ENABLE <backend> [FORCE]', 'put a backend back that has every record (else: resync or clone); FORCE skips the check'],
  ['VERIFY [JSON] [TABLES t1, t2 ...]', 'compare the backends in service at one log position: each difference as a row (JSON: one row with the whole report)'],
  ['SHOW HELP', 'this list'],
]

export class AdminConsole implements AdminConsoleSession {
  private skipping = false
  /** Aborted when the client goes away: a resync or clone it started stops (running it again resumes or restarts it). */
  private readonly aborter = new AbortController()

  abort(reason: string): void {
    this.aborter.abort(new Error(`the admin client went away (${reason})`))
  }

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: ServerContext,
    private readonly user: string,
    private readonly pid: number,
    private readonly secret: number,
  ) {}

  start(): void {
    for (const [k, v] of [
      ['server_version', '18.0 (pgraid admin console)'],
      ['server_encoding', 'UTF8'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['integer_datetimes', 'on'],
      ['standard_conforming_strings', 'on'],
    ])
      this.socket.write(parameterStatus(k!, v!))
    this.socket.write(backendKeyData(this.pid, this.secret))
    this.socket.write(readyForQuery('I'))
  }

  /** One client message; false when the client said goodbye. */
  async onFrame(f: Frame): Promise<boolean> {
    switch (f.type) {
      case F.Terminate:
        return false
      case F.Query: {
        const text = queryText(f.bytes.subarray(f.bodyOffset))
        try {
          for (const cmd of text.split(';').map((c) => c.trim()).filter(Boolean)) this.send(await this.run(cmd))
          if (!text.trim()) this.socket.write(message(B.EmptyQueryResponse))
        } catch (e) {
          const err = e instanceof PgError ? e : new PgError('XX000', (e as Error).message)
          this.socket.write(err.toMessage())
        }
        this.socket.write(readyForQuery('I'))
        return true
      }
      case F.Sync:
        this.skipping = false
        this.socket.write(readyForQuery('I'))
        return true
      default:
        // Extended protocol: one error, then skip to Sync as PostgreSQL does.
        if (!this.skipping) {
          this.skipping = true
          this.socket.write(new PgError('0A000', 'the pgraid admin console speaks the simple query protocol only', 'ERROR', undefined, 'psql and "SELECT"-free commands such as SHOW BACKENDS work; drivers: use a simple query').toMessage())
        }
        return true
    }
  }

  /** A NOTICE; `progress` goes in its DETAIL as JSON so `pgraid` can draw a progress bar (psql shows it as text). */
  private notice(text: string, progress?: { done: number; total: number; unit: string }): void {
    this.socket.write(errorResponse({ severity: 'NOTICE', code: '00000', message: text, detail: progress ? JSON.stringify({ progress }) : undefined }, B.NoticeResponse))
  }

  private send(r: Result): void {
    const parts: Buffer[] = [Buffer.alloc(2)]
    parts[0]!.writeInt16BE(r.columns.length)
    for (const c of r.columns) {
      const meta = Buffer.alloc(18)
      meta.writeInt32BE(0, 0) // table oid
      meta.writeInt16BE(0, 4) // column number
      meta.writeInt32BE(25, 6) // text
      meta.writeInt16BE(-1, 10)
      meta.writeInt32BE(-1, 12)
      meta.writeInt16BE(0, 16)
      parts.push(Buffer.from(c + '\0', 'utf8'), meta)
    }
    const out: Buffer[] = [message(B.RowDescription, Buffer.concat(parts))]
    for (const row of r.rows) {
      const fields: Buffer[] = [Buffer.alloc(2)]
      fields[0]!.writeInt16BE(row.length)
      for (const v of row) {
        const len = Buffer.alloc(4)
        if (v === null) {
          len.writeInt32BE(-1)
          fields.push(len)
        } else {
          const b = Buffer.from(String(v), 'utf8')
          len.writeInt32BE(b.length)
          fields.push(len, b)
        }
      }
      out.push(message(B.DataRow, Buffer.concat(fields)))
    }
    out.push(commandComplete(r.tag))
    this.socket.write(Buffer.concat(out))
  }

  private async run(cmd: string): Promise<Result> {
    // "... DRY RUN" on a command that changes something: say what it would do instead.
    const dry = /\s+DRY\s+RUN$/i.test(cmd)
    if (dry) cmd = cmd.replace(/\s+DRY\s+RUN$/i, '')
    const words = cmd.split(/\s+/)
    const verb = words.map((w) => w.toUpperCase()).slice(0, 2).join(' ')
    const targets = this.ctx.backends()
    switch (verb) {
      case 'SHOW BACKENDS':
        return {
          columns: ['name', 'host', 'port', 'state', 'cause', 'activity', 'reason', 'since', 'weight', 'reads_in_flight', 'health', 'last_check_ok'],
          // A backend removed by a reload is shown until no session uses it any more.
          rows: this.ctx.states.list
            .filter((b) => b.state !== 'removed' || this.ctx.sessions().some((s) => s.links.some((l) => l.index === b.index)))
            .map((b) => {
              const h = this.ctx.health.view(b.index)
              return [b.name, targets[b.index]!.host, targets[b.index]!.port, b.state, b.cause, b.activity, b.reason, b.since.toISOString(), this.ctx.stats[b.index]!.weight, this.ctx.stats[b.index]!.outstanding, h.lastError ?? (h.lastOk ? 'ok' : 'not checked yet'), h.lastOk?.toISOString() ?? null]
            }),
          tag: 'SHOW',
        }
      case 'SHOW SESSIONS':
        return {
          columns: ['id', 'user', 'database', 'client', 'transaction', 'backends', 'waiting'],
          rows: this.ctx.sessions().map((s) => [s.id, s.user, s.database, s.clientAddress, s.transactionStatus, s.backendNames.join(','), s.waiting]),
          tag: 'SHOW',
        }
      case 'SHOW CLIENTS':
        return {
          columns: ['id', 'user', 'database', 'client', 'application_name', 'connected_at', 'transaction', 'backends', 'tls'],
          rows: this.ctx.sessions().map((s) => [s.id, s.user, s.database, s.clientAddress, s.applicationName, s.connectedAt.toISOString(), s.transactionStatus, s.backendNames.join(','), s.tlsProtocol]),
          tag: 'SHOW',
        }
      case 'SHOW LOCKS':
        return {
          columns: ['resource', 'holders', 'waiters'],
          rows: this.ctx.locks.snapshot().filter((l) => l.holders.length || l.waiters.length).map((l) => [l.resource, l.holders.join(' '), l.waiters.join(' ')]),
          tag: 'SHOW',
        }
      case 'SHOW CONFIG':
        return { columns: ['key', 'value'], rows: flatten(this.ctx.config as unknown as Record<string, unknown>), tag: 'SHOW' }
      case 'SHOW LOG':
        return { columns: ['database', 'backend', 'state', 'max_lsn', 'records', 'lag_transactions', 'lag_bytes', 'error'], rows: await this.logRows(), tag: 'SHOW' }
      case 'SHOW STATS':
        return {
          columns: ['sessions', 'commits_total', 'commits_per_s_10s', 'commits_per_s_60s', 'commits_in_flight', 'commits_held'],
          rows: [[this.ctx.sessions().length, this.ctx.commits.total, round(this.ctx.commits.perSecond(10)), round(this.ctx.commits.perSecond(60)), this.ctx.commitsInFlight(), this.ctx.held()]],
          tag: 'SHOW',
        }
      case 'SHOW HA': {
        const ha = this.ctx.ha
        return {
          columns: ['role', 'instance', 'locks_held', 'locks_needed', 'writer', 'since', 'term'],
          rows: [[ha.role, ha.identity, ha.heldBy().join(','), ha.needed, ha.isWriter() ? ha.identity : ha.writerHint, ha.since.toISOString(), ha.term]],
          tag: 'SHOW',
        }
      }
      case 'SHOW HELP':
        return { columns: ['command', 'what'], rows: HELP, tag: 'SHOW' }
    }
    const op = words[0]!.toUpperCase()
    const configured = () => targets.filter((_, i) => this.ctx.states.list[i]!.state !== 'removed').map((t) => t.name)
    // They write to the backends (or, VERIFY, hold the writer's commits): the writer's job.
    if (['CLONE', 'RESYNC', 'ENABLE', 'DISABLE', 'VERIFY'].includes(op) && !this.ctx.ha.isWriter())
      throw errors.readOnly(op, `pgraid ${this.ctx.ha.identity} is not the writer${this.ctx.ha.writerHint ? ` (the writer is pgraid ${this.ctx.ha.writerHint})` : ''}`, `run ${op} on the writer's admin console`)
    const backendArg = () => {
      const name = (words[1] ?? '').replace(/^"|"$/g, '')
      const idx = targets.findIndex((t, i) => t.name === name && this.ctx.states.list[i]!.state !== 'removed')
      if (idx < 0) throw new PgError('42704', `no backend named "${name}"${targets.some((t) => t.name === name) ? ' (it was removed from the configuration)' : ''}`, 'ERROR', undefined, `backends: ${configured().join(', ')}`)
      return { name, idx }
    }
    if (op === 'CLONE' && (words.length === 2 || (words.length === 4 && words[2]!.toUpperCase() === 'FROM'))) {
      const { name, idx } = backendArg()
      const from = words.length === 4 ? targets.findIndex((t) => t.name === words[3]!.replace(/^"|"$/g, '')) : undefined
      if (from === -1) throw new PgError('42704', `no backend named "${words[3]}"`, 'ERROR', undefined, `backends: ${configured().join(', ')}`)
      try {
        const r = await clone(this.ctx, idx, { from, dryRun: dry, signal: this.aborter.signal, notice: (m, p) => this.notice(m, p) })
        if (!dry) await this.ctx.statesRecorded()
        return {
          columns: ['name', 'state', 'database', 'lsn', 'tables', 'rows', 'records_replayed', 'commits_held_ms'],
          rows: r.databases.map((d) => [name, dry ? this.ctx.states.list[idx]!.state : 'enabled', d.name, d.lsn, d.tables, d.rows, r.replayed, r.heldMs]),
          tag: 'CLONE',
        }
      } catch (e) {
        if (e instanceof CloneRefused || e instanceof ResyncRefused) throw new PgError('55000', `cannot clone ${name}: ${e.message}`)
        throw new PgError('XX000', `clone of ${name} failed: ${(e as Error).message}`, 'ERROR', undefined, `${name} stays out of service (state new); fix the cause and run CLONE again (it starts over)`)
      }
    }
    if (op === 'RESYNC' && words.length === 2 && dry) {
      const { name, idx } = backendArg()
      const b = this.ctx.states.list[idx]!
      if (b.state === 'enabled') return this.dryRun(name, `${name} is in service: nothing to do`)
      if (b.state !== 'disabled') return this.dryRun(name, `would refuse: ${name} is ${b.state}: clone it`)
      const why = await behindReason(this.ctx, idx).catch((e: Error) => `would refuse: ${e.message}`)
      return this.dryRun(name, why ? `${why.startsWith('would') ? why : `${why.replace(/: resync it$/, '')}: would replay them from ${targets[this.ctx.states.enabled()[0]!]!.name}, hold new commits up to ${this.ctx.config.lifecycle.holdMs} ms and enable it`}` : `has every record: would enable it`)
    }
    if (op === 'RESYNC' && words.length === 2) {
      const { name, idx } = backendArg()
      try {
        const r = await resync(this.ctx, idx, (m, p) => this.notice(m, p), undefined, this.aborter.signal)
        // Answered once every backend in service records the new state: an operator reads one view.
        await this.ctx.statesRecorded()
        return { columns: ['name', 'state', 'records_applied', 'commits_held_ms', 'replay_ms'], rows: [[name, 'enabled', r.applied, r.heldMs, Math.round(r.replayMs)]], tag: 'RESYNC' }
      } catch (e) {
        if (e instanceof ResyncRefused) throw new PgError('55000', `cannot resync ${name}: ${e.message}`)
        if (e instanceof NotReplayable) throw new PgError('55000', `cannot resync ${name}: ${e.message}: clone it`, 'ERROR', undefined, 'the records applied so far stay; the backend stays out of service')
        if (e instanceof RowCountMismatch) throw new PgError('XX001', `resync of ${name} found its data different from ${targets[this.ctx.states.enabled()[0] ?? 0]?.name ?? 'the backends in service'}: ${e.message}`, 'ERROR', undefined, `${name} is now inconsistent: clone it`)
        throw new PgError('XX000', `resync of ${name} failed: ${(e as Error).message}`, 'ERROR', undefined, 'the backend stays out of service; fix the cause and run RESYNC again (it resumes where it stopped)')
      }
    }
    if (op === 'VERIFY') return await this.verify(cmd)
    if (op === 'PAUSE' && words.length === 1) return await this.pause()
    if (op === 'RESUME' && words.length === 1) {
      const resume = resumes.get(this.ctx)
      resume?.()
      resumes.delete(this.ctx)
      const was = !!resume
      return { columns: ['paused'], rows: [[false]], tag: was ? 'RESUME' : 'RESUME (was not paused)' }
    }
    if (op === 'RELOAD' && words.length === 1) return await this.reload(dry)
    if (op === 'SHUTDOWN' && words.length === 1) {
      this.notice(`pgraid shuts down: no new clients; sessions are closed as their transactions end (at most ${this.ctx.config.timeouts.shutdownMs} ms)`)
      setImmediate(() => this.ctx.shutdown())
      return { columns: ['shutting_down'], rows: [[true]], tag: 'SHUTDOWN' }
    }
    if (op === 'ENABLE' && (words.length === 2 || (words.length === 3 && words[2]!.toUpperCase() === 'FORCE'))) {
      const { name, idx } = backendArg()
      if (this.ctx.states.isEnabled(idx)) return { columns: ['name', 'state'], rows: [[name, 'enabled']], tag: 'ENABLE' }
      const force = words.length === 3
      const state = this.ctx.states.list[idx]!.state
      const why = state === 'inconsistent' || state === 'new' ? `it is ${state}: clone it` : await behindReason(this.ctx, idx)
      if (dry) return this.dryRun(name, why ? (force ? `would enable it by force although ${why}` : `would refuse: ${why}`) : 'would enable it')
      if (why && !force) throw new PgError('55000', `cannot enable ${name}: ${why}`, 'ERROR', undefined, 'ENABLE ... FORCE puts it back anyway (its data may then differ)')
      if (why) this.notice(`WARNING: ${name} enabled by force although ${why}; run pgraid verify`)
      this.ctx.enable(idx, force ? `enabled by force by admin ${this.user}` : `enabled by admin ${this.user}`)
      await this.ctx.statesRecorded()
      return { columns: ['name', 'state'], rows: [[name, 'enabled']], tag: 'ENABLE' }
    }
    if (op === 'DISABLE' && words.length === 2) {
      const { name, idx } = backendArg()
      if (this.ctx.states.list[idx]!.state !== 'enabled') return { columns: ['name', 'state'], rows: [[name, this.ctx.states.list[idx]!.state]], tag: 'DISABLE' }
      if (this.ctx.states.enabled().length === 1) throw new PgError('55000', `"${name}" is the last backend in service; disabling it would stop all work`)
      if (dry) return this.dryRun(name, `would take it out of service (${this.ctx.states.enabled().length - 1} left; writes need ${this.ctx.writeQuorum})`)
      this.ctx.takeOut(idx, 'disabled', `disabled by admin ${this.user}`, true, 'operator')
      await this.ctx.statesRecorded()
      return { columns: ['name', 'state'], rows: [[name, 'disabled']], tag: 'DISABLE' }
    }
    throw new PgError('42601', `unknown admin command: ${cmd}`, 'ERROR', undefined, `commands: ${HELP.map(([c]) => c).join(', ')}`)
  }

  /** PAUSE: new transactions wait; answers once every open transaction has ended (NOTICEs while waiting). */
  private async pause(): Promise<Result> {
    if (!resumes.has(this.ctx)) resumes.set(this.ctx, this.ctx.pause())
    const busy = () => this.ctx.sessions().filter((s) => s.transactionStatus !== 'idle' && s.transactionStatus !== 'admin')
    let last = 0
    while (busy().length && !this.aborter.signal.aborted) {
      if (Date.now() - last >= 1000) {
        last = Date.now()
        this.notice(`paused: new transactions wait; waiting for ${busy().length} open transaction(s) to end (sessions ${busy().map((s) => s.id).join(', ')})`)
      }
      await new Promise((r) => setTimeout(r, 20))
    }
    return { columns: ['paused', 'open_transactions'], rows: [[true, busy().length]], tag: 'PAUSE' }
  }

  /** RELOAD: as SIGHUP; one row per change, or F0000 with every problem (the running configuration stays). */
  private async reload(dry: boolean): Promise<Result> {
    let r
    try {
      r = await this.ctx.reload({ dryRun: dry })
    } catch (e) {
      if (!(e instanceof ReloadRefused)) throw e
      throw errors.configNotReloaded(e.source, e.problems.join('\n'))
    }
    if (!r.changes.length) this.notice(`${r.source}: nothing changed`)
    return { columns: [dry ? 'would_change' : 'changed'], rows: r.changes.map((c) => [c]), tag: dry ? 'RELOAD DRY RUN' : 'RELOAD' }
  }

  private dryRun(name: string, what: string): Result {
    return { columns: ['name', 'dry_run'], rows: [[name, what]], tag: 'DRY RUN' }
  }

  private async verify(cmd: string): Promise<Result> {
    const m = /^VERIFY(\s+JSON)?(?:\s+TABLES\s+(.+))?$/is.exec(cmd.trim())
    if (!m) throw new PgError('42601', `usage: VERIFY [JSON] [TABLES t1, t2 ...]`)
    const tables = m[2]?.split(/[\s,]+/).filter(Boolean)
    let report: VerifyReport
    try {
      report = await verify(this.ctx, { tables, progress: (msg, done, total) => this.notice(msg, { done, total, unit: 'tables' }) })
    } catch (e) {
      if (e instanceof VerifyRefused || e instanceof SnapshotRefused) throw new PgError('55000', `cannot verify: ${e.message}`)
      throw new PgError('XX000', `verify failed: ${(e as Error).message}`, 'ERROR', undefined, 'nothing was changed; run it again')
    }
    if (m[1]) return { columns: ['report'], rows: [[JSON.stringify(report)]], tag: 'VERIFY' }
    const compared = report.tables.filter((t) => t.rows || t.chunks).length
    this.notice(`verify: ${report.identical ? 'identical' : `${report.differences.length} difference(s)`}: ${report.backends.join(', ')} compared at ${report.databases.map((d) => `"${d.name}" LSN ${d.lsn ?? '-'}`).join(', ')}; ${compared} tables, ${report.tables.reduce((n, t) => n + t.rows, 0)} rows${report.skipped.length ? `; not compared (out of service): ${report.skipped.join(', ')}` : ''}`)
    return { columns: ['database', 'table', 'backend', 'problem', 'key', 'detail'], rows: report.differences.map((d) => [d.database, d.table, d.backend, d.problem, d.key, d.detail]), tag: 'VERIFY' }
  }

  /** Per backend: records (and their size) the most advanced backend `top` has above that backend's highest LSN. */
  /** Each backend's log position per database pgraid has served, read from the backends now. */
  private async logRows(): Promise<Row[]> {
    return (await logPositions(this.ctx)).map((p) => [p.database, p.backend, p.state, p.maxLsn, p.records, p.lagTransactions, p.lagBytes, p.error])
  }
}

type Target = ReturnType<ServerContext['backends']>[number]

function clientFor(t: Target, database: string): pg.Client {
  return controlClient(t, database, 'admin', 5000)
}

function round(n: number): number {
  return Math.round(n * 10) / 10
}

function flatten(o: Record<string, unknown>, prefix = ''): Row[] {
  const out: Row[] = []
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k
    if (k === 'password') out.push([key, '(hidden)'])
    else if (Array.isArray(v)) v.forEach((x, i) => (x && typeof x === 'object' ? out.push(...flatten(x as Record<string, unknown>, `${key}[${i}]`)) : out.push([`${key}[${i}]`, String(x)])))
    else if (v && typeof v === 'object') out.push(...flatten(v as Record<string, unknown>, key))
    else out.push([key, v === undefined ? null : String(v)])
  }
  return out
}
