// One PostgreSQL server: its postmaster process, spawned directly (no pg_ctl: we keep its pid
// and exit event, so stop/kill/restart and early-death detection need no polling of pid files),
// the signals the fault tests send it, and copies of its data directory.
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { asServerUser, chownToServerUser, pidAlive, run, type PgBinaries } from './binaries.ts'
import { installHooks, live } from './exit-hooks.ts'
import { writeServerConfig, type BackendAuth } from './server-conf.ts'

export interface RunningBackend {
  name: string
  host: '127.0.0.1'
  port: number
  user: string
  password: string
  database: 'postgres'
  dataDir: string
  stop(): Promise<void>
  kill(): Promise<void>
  /** SIGSTOP / SIGCONT to the server and all its sessions (a hung machine, for fault tests). */
  pause(): void
  resume(): void
  start(): Promise<void>
  /** kill -9 of the postmaster alone (its sessions notice and exit by themselves, as after a real crash). */
  crash(): Promise<void>
  /** Copies the data directory (stopped) to `dir`. */
  copyData(dir: string): Promise<void>
  /** Replaces the data directory (stopped) with a copy of `dir`, or with a fresh initdb's when `dir` is null. */
  replaceData(dir: string | null): Promise<void>
  client(database?: string): Promise<pg.Client>
}

const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 30_000
const BIND_RETRIES = 5
const LOG_FILE = 'server.log'

/** Running (a zombie left for a parent that does not reap it counts as gone). */
function alive(pid: number): boolean {
  if (!pidAlive(pid)) return false
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** A port free on loopback right now (the postmaster may still lose it to someone else before it binds). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

/** What startCluster fixes for one server (its port may still change: see startWithRetry). */
export interface BackendConfig {
  name: string
  dataDir: string
  auth: BackendAuth
  user: string
  password: string
  port: number
  fixedPort: boolean
  settings: Record<string, string>
  log: (line: string) => void
  bins: PgBinaries
  major: number
  tls: { cert: string; key: string } | null
  template: string
  extraListen: { address: string; net: string }[]
}

/** The RunningBackend startCluster hands out; prepareSocketDir, writeConfig, signalSync and cleanup are for the cluster and the exit hooks. */
export class Backend implements RunningBackend {
  readonly host = '127.0.0.1' as const
  readonly database = 'postgres' as const
  readonly name: string
  readonly dataDir: string
  readonly user: string
  readonly password: string
  port: number
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  private socketDir: string
  private ownSocketDir = false
  private passwordSet = false
  private starting: Promise<void> | undefined

  constructor(private readonly cfg: BackendConfig) {
    this.name = cfg.name
    this.dataDir = cfg.dataDir
    this.user = cfg.user
    this.password = cfg.password
    this.port = cfg.port
    this.socketDir = cfg.dataDir
  }

  /** Unix socket paths are limited to 107 bytes; long data dir paths get a short private socket dir. */
  async prepareSocketDir(): Promise<void> {
    if (path.join(this.dataDir, '.s.PGSQL.65535.lock').length <= 100) return
    this.socketDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgraid-sock-'))
    this.ownSocketDir = true
    await chownToServerUser(this.socketDir)
  }

  /** pg_hba.conf and pgraid.conf for the current port and socket dir. */
  writeConfig(): Promise<void> {
    return writeServerConfig(this.dataDir, { ...this.cfg, port: this.port, socketDir: this.socketDir })
  }

  get running(): boolean {
    return this.child !== undefined
  }

  start(): Promise<void> {
    // Concurrent start() calls share one attempt instead of racing two postmasters.
    this.starting ??= this.startWithRetry().finally(() => {
      this.starting = undefined
    })
    return this.starting
  }

  private async startWithRetry(): Promise<void> {
    if (this.child) return
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce()
        return
      } catch (e) {
        // A dynamically chosen port can be taken between probing it and the postmaster's bind.
        if (!(e instanceof BindError) || this.cfg.fixedPort || this.passwordSet || attempt >= BIND_RETRIES) throw e
        this.port = await freePort()
        this.cfg.log(`${this.name}: port taken, retrying on ${this.port}`)
        await this.writeConfig()
      }
    }
  }

  private async startOnce(): Promise<void> {
    const t0 = Date.now()
    const logPath = path.join(this.dataDir, LOG_FILE)
    const logFh = await fs.open(logPath, 'a')
    await chownToServerUser(logPath)
    const logStart = (await logFh.stat()).size
    let child: ChildProcess
    try {
      // detached: own process group, so a terminal ^C reaches only us and we shut servers down
      // in order; the exit hooks cover the rest.
      child = spawn(this.cfg.bins.postgres, ['-D', this.dataDir], {
        cwd: this.dataDir,
        detached: true,
        stdio: ['ignore', logFh.fd, logFh.fd],
        env: { ...process.env, LC_ALL: 'C' },
        ...asServerUser(),
      })
    } finally {
      await logFh.close()
    }
    // Unref: a forgotten cluster must not keep the process alive; the exit hook then stops it.
    child.unref()
    let exitInfo: string | undefined
    this.child = child
    live.add(this)
    installHooks()
    this.exited = new Promise<void>((resolve) => {
      const done = (why: string) => {
        exitInfo ??= why
        if (this.child === child) this.child = undefined
        live.delete(this)
        resolve()
      }
      child.once('exit', (code, signal) => done(`exited with ${code ?? signal}`))
      child.once('error', (e) => done(`failed to spawn: ${e.message}`))
    })

    const deadline = t0 + READY_TIMEOUT_MS
    let lastErr = ''
    for (;;) {
      if (exitInfo !== undefined) {
        const tail = await this.logTail(logStart)
        if (/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(tail)) {
          throw new BindError(`${this.name}: port ${this.port} in use\n${tail}`)
        }
        throw new Error(`${this.name}: postgres ${exitInfo} during startup (${this.dataDir})\n--- server log tail ---\n${tail}`)
      }
      if (Date.now() > deadline) {
        const tail = await this.logTail(logStart)
        await this.signalAndWait('SIGQUIT')
        throw new Error(`${this.name}: not ready after ${READY_TIMEOUT_MS} ms on port ${this.port} (last error: ${lastErr})\n--- server log tail ---\n${tail}`)
      }
      // Connecting before the postmaster says "ready" only earns FATAL lines in the server log;
      // the status line of postmaster.pid is what pg_ctl -w waits for, too.
      if (!(await this.pidFileReady(child.pid))) {
        await sleep(20)
        continue
      }
      const c = new pg.Client({ host: this.socketDir, port: this.port, user: this.user, database: 'postgres' })
      c.on('error', () => {})
      try {
        await c.connect()
        if (!this.passwordSet) {
          // Set on every startCluster (cheap): a reused cluster may have changed auth method or password.
          await c.query(`SET password_encryption = ${c.escapeLiteral(this.cfg.auth === 'md5' ? 'md5' : 'scram-sha-256')}`)
          await c.query(`ALTER ROLE ${c.escapeIdentifier(this.user)} PASSWORD ${c.escapeLiteral(this.password)}`)
          this.passwordSet = true
        }
        await c.end()
        break
      } catch (e) {
        lastErr = (e as Error).message
        await c.end().catch(() => {})
        await sleep(25)
      }
    }
    this.cfg.log(`${this.name}: ready on 127.0.0.1:${this.port} (${this.cfg.auth}) in ${Date.now() - t0} ms`)
  }

  private async pidFileReady(pid: number | undefined): Promise<boolean> {
    const lines = (await fs.readFile(path.join(this.dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')
    // Line 1 is the postmaster pid (guards against a stale file), line 8 its status.
    return Number(lines[0]) === pid && lines[7]?.trim() === 'ready'
  }

  private async logTail(from: number, lines = 30): Promise<string> {
    const text = await fs.readFile(path.join(this.dataDir, LOG_FILE), 'utf8').catch(() => '')
    return text.slice(from).trimEnd().split('\n').slice(-lines).join('\n')
  }

  /** Fast shutdown (what `pg_ctl stop -m fast` sends): rolls back sessions, checkpoints, exits. */
  stop(): Promise<void> {
    return this.signalAndWait('SIGINT')
  }

  /** Immediate shutdown (`pg_ctl stop -m immediate`): no checkpoint, crash recovery on next start. */
  kill(): Promise<void> {
    return this.signalAndWait('SIGQUIT')
  }

  private async signalAndWait(sig: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (!child) return
    // Re-ref while waiting: otherwise an otherwise idle process could exit mid-stop.
    child.ref()
    child.kill(sig)
    // The postmaster exits only after all its children have, so this leaves no orphans.
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
    await this.exited
    clearTimeout(timer)
  }

  async crash(): Promise<void> {
    const child = this.child
    if (!child?.pid) return
    const sessions = this.children(child.pid)
    child.ref()
    child.kill('SIGKILL')
    await this.exited
    // The orphans see the postmaster gone and exit; the next postmaster refuses to start while any
    // still holds the shared memory, so wait for them (bounded: then they are killed too).
    const until = Date.now() + STOP_TIMEOUT_MS
    while (sessions.some(alive) && Date.now() < until) await sleep(20)
    for (const p of sessions.filter(alive)) process.kill(p, 'SIGKILL')
    while (sessions.some(alive) && Date.now() < until + 5000) await sleep(20)
  }

  async copyData(dir: string): Promise<void> {
    if (this.child) throw new Error(`${this.name}: copyData needs a stopped server`)
    await fs.rm(dir, { recursive: true, force: true })
    await run('cp', ['-a', this.dataDir, dir])
  }

  async replaceData(dir: string | null): Promise<void> {
    if (this.child) throw new Error(`${this.name}: replaceData needs a stopped server`)
    await fs.rm(this.dataDir, { recursive: true, force: true })
    await run('cp', ['-a', dir ?? this.cfg.template, this.dataDir])
    await chownToServerUser(this.dataDir)
    await this.writeConfig()
    // A fresh initdb's role has no password yet.
    this.passwordSet = false
  }

  pause(): void {
    this.signalGroup('SIGSTOP')
  }

  resume(): void {
    this.signalGroup('SIGCONT')
  }

  /** The postmaster and every process it forked (each calls setsid, so a process group would miss them). */
  private signalGroup(sig: NodeJS.Signals): void {
    const pid = this.child?.pid
    if (!pid) return
    for (const p of [pid, ...this.children(pid)]) {
      try {
        process.kill(p, sig)
      } catch {
        // already gone
      }
    }
  }

  /** The processes `pid` forked, from Linux /proc. */
  private children(pid: number): number[] {
    const pids: number[] = []
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
        if (ppid === pid) pids.push(Number(entry))
      } catch {
        // exited meanwhile
      }
    }
    return pids
  }

  signalSync(sig: NodeJS.Signals): void {
    try {
      this.child?.kill(sig)
    } catch {
      // already gone
    }
  }

  async client(database = 'postgres'): Promise<pg.Client> {
    const c = new pg.Client({ host: this.host, port: this.port, user: this.user, password: this.password, database, ssl: this.cfg.tls ? { rejectUnauthorized: false } : false })
    // Fault tests kill servers under open clients; an unhandled 'error' event would crash the
    // test process, while pending queries still reject with the real error.
    c.on('error', (e) => this.cfg.log(`${this.name}: client error: ${e.message}`))
    await c.connect()
    return c
  }

  async cleanup(): Promise<void> {
    if (this.ownSocketDir) await fs.rm(this.socketDir, { recursive: true, force: true })
  }
}

/** The postmaster exited because its port was taken: start retries on another one. */
class BindError extends Error {}
