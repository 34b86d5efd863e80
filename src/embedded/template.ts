// The initdb template: initdb runs once per (postgres build, superuser, OS user) into a cached
// dir under os.tmpdir(), and every server's data dir is a `cp -a` of it (~70 ms instead of
// ~800 ms of initdb). Parallel test processes share it through a lock file.
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import fs, { type FileHandle } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { chownToServerUser, pidAlive, run, runAs, type PgBinaries } from './binaries.ts'
import { INCLUDE_LINE } from './server-conf.ts'

/** The template's path, building it first if no complete one exists yet. */
export async function templateDir(bins: PgBinaries, user: string): Promise<string> {
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
    const age = await fs.stat(lock).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    )
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
    await run(bins.initdb, ['-D', tmp, '-U', user, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'], { serverUser: true, cwd: os.tmpdir() })
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
