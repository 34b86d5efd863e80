// The console commands' habits (issue 21, item 2) against a running `pgraid start` process: the config
// file from PGRAID_CONFIG or ./pgraid.jsonc; -h/-p/-U without any config file, with PGRAID_PASSWORD or
// a ~/.pgpass-style file (PGPASSFILE); --help naming the environment; dry runs exiting as the real
// command would (resync/enable of an inconsistent backend: 1); `reload --dry-run` saying "would
// apply"; reload of a file with an unknown key exiting 1 (refused), not 2; and reload after listen.port
// was edited reaching the running pgraid (which refuses: it needs a restart) through the address it
// recorded at start.

import t from 'tap'
import { spawn } from 'node:child_process'
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { stackFor, freePort, waitFor, assertIdentical } from '../harness/stack.ts'
import { OPS, startPgraidProcess } from '../harness/pgraid-process.ts'

const root = join(import.meta.dirname, '../..')
const bin = join(root, 'bin/pgraid.js')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** bin/pgraid.js with only the given PGRAID_* / PGPASS* variables (none inherited), in `cwd`. */
function pgraid(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(PGRAID_(PASSWORD|CONFIG)|PGPASSWORD|PGPASSFILE)$/.test(k)) env[k] = v
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: o.cwd ?? root, env: { ...env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

const said = (r: Run) => `exit ${r.code}\n${r.stdout}${r.stderr}`

const stack = await stackFor(t)
await stack.proxy.close() // a `pgraid start` process takes its place: it records its address as the CLI's users' pgraid does
const dir = await mkdtemp(join(tmpdir(), 'pgraid-cli-console-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
// Where `pgraid start` records its address and the CLI looks (inherited by the pgraid process started below).
process.env.PGRAID_RUNTIME_DIR = join(dir, 'run')
const port = await freePort()
const proc = await startPgraidProcess({ dir, name: 'pgraid', port, backends: stack.cluster.backends, logLevel: 'warn' })
t.teardown(() => proc.kill())
const file = join(dir, 'pgraid.json') // what startPgraidProcess wrote and pgraid runs with
const original = await readFile(file, 'utf8')
const empty = join(dir, 'empty') // a cwd without ./pgraid.jsonc
await mkdir(empty)

t.test('--help names the environment variables and the console options', async (t) => {
  const top = await pgraid(['--help'])
  t.equal(top.code, 0)
  for (const v of ['PGRAID_CONFIG', 'PGRAID_PASSWORD', 'PGPASSFILE', 'PGRAID_RUNTIME_DIR']) t.match(top.stdout, v)
  const status = await pgraid(['status', '--help'])
  t.equal(status.code, 0)
  t.match(status.stdout, /-h, --host <host>[\s\S]*-p, --port <port>[\s\S]*-U, --user <user>/)
  t.match(status.stdout, 'PGRAID_PASSWORD')
  const start = await pgraid(['start', '--help'])
  t.match(start.stdout, 'Needs the config file', 'start says it needs the config file')
})

t.test('the config file from PGRAID_CONFIG, from ./pgraid.jsonc, or none with -h/-p/-U', async (t) => {
  const viaEnv = await pgraid(['status'], { cwd: empty, env: { PGRAID_CONFIG: file } })
  t.equal(viaEnv.code, 0, `PGRAID_CONFIG: ${said(viaEnv)}`)
  t.match(viaEnv.stdout, 'All backends in service.')

  const withDefault = join(dir, 'cwd-default')
  await mkdir(withDefault)
  await copyFile(file, join(withDefault, 'pgraid.jsonc'))
  const viaDefault = await pgraid(['status', '--json'], { cwd: withDefault })
  t.equal(viaDefault.code, 0, `./pgraid.jsonc: ${said(viaDefault)}`)
  const report = JSON.parse(viaDefault.stdout) as { backends: { port: unknown; weight: unknown }[]; stats: { commits_held: unknown }; sessions: unknown }
  t.equal(typeof report.backends[0]!.port, 'number', 'status --json: ports are numbers')
  t.equal(typeof report.stats.commits_held, 'boolean', 'commits_held is a boolean')
  t.equal(report.sessions, 0, 'the status command itself is not counted as a client session')

  const none = await pgraid(['status'], { cwd: empty })
  t.equal(none.code, 2, 'no config file and no -h/-p: could not ask')
  t.match(none.stderr, 'no config file: give -c/--config FILE, or set PGRAID_CONFIG')

  const direct = ['status', '-h', '127.0.0.1', '-p', String(port), '-U', OPS.name]
  const withEnv = await pgraid(direct, { cwd: empty, env: { PGRAID_PASSWORD: OPS.password } })
  t.equal(withEnv.code, 0, `-h/-p/-U with PGRAID_PASSWORD, no config file: ${said(withEnv)}`)

  const pgpass = join(dir, 'pgpass')
  await writeFile(pgpass, `# pgraid's console\n127.0.0.1:${port}:pgraid:${OPS.name}:${OPS.password}\n`, { mode: 0o600 })
  await chmod(pgpass, 0o600)
  const withFile = await pgraid(direct, { cwd: empty, env: { PGPASSFILE: pgpass } })
  t.equal(withFile.code, 0, `-h/-p/-U with a password file: ${said(withFile)}`)
  t.equal(withFile.stderr, '', 'nothing on stderr (no deprecation warning from a pgpass lookup)')

  const noPassword = await pgraid(direct, { cwd: empty, env: { PGPASSFILE: join(dir, 'missing') } })
  t.equal(noPassword.code, 2, 'no password anywhere: could not ask')
  t.match(noPassword.stderr, /none was found: set PGRAID_PASSWORD, or add the line "127\.0\.0\.1:\d+:pgraid:ops:<password>"/)

  const notAdmin = await pgraid(['status', '-h', '127.0.0.1', '-p', String(port), '-U', 'app'], { cwd: empty, env: { PGRAID_PASSWORD: 'app-secret' } })
  t.equal(notAdmin.code, 2, 'a user that is not an admin: could not ask')
  t.match(notAdmin.stderr, 'not an admin user')

  const verify = await pgraid(['verify', '-p', String(port), '-U', OPS.name], { cwd: empty, env: { PGRAID_PASSWORD: OPS.password } })
  t.equal(verify.code, 0, `verify with -p/-U only (host 127.0.0.1): ${said(verify)}`)
})

t.test('dry runs exit as the real command would', async (t) => {
  const app = new pg.Client({ host: '127.0.0.1', port, user: 'app', password: 'app-secret', database: 'postgres' })
  await app.connect()
  await app.query('CREATE TABLE dry (id int PRIMARY KEY, v text)')
  await app.query("INSERT INTO dry VALUES (1, 'a')")
  // A row only pg2 has: the next UPDATE's row count differs there and pg2 is taken out as inconsistent.
  const direct = await stack.cluster.backends[1]!.client()
  await direct.query("INSERT INTO dry VALUES (2, 'only on pg2')")
  await direct.end()
  await app.query("UPDATE dry SET v = 'b'")
  await app.end()
  const admin = { env: { PGRAID_CONFIG: file } }
  await waitFor('pg2 to be taken out as inconsistent', async () => (await pgraid(['status', '--json'], admin)).stdout.includes('"state": "inconsistent"'), 60_000)

  const dryResync = await pgraid(['resync', 'pg2', '--dry-run'], admin)
  t.equal(dryResync.code, 1, `resync --dry-run of an inconsistent backend exits 1: ${said(dryResync)}`)
  t.match(dryResync.stdout, 'would refuse')
  const resync = await pgraid(['resync', 'pg2'], admin)
  t.equal(resync.code, 1, 'as the real resync does')
  const dryEnable = await pgraid(['enable', 'pg2', '--dry-run'], admin)
  t.equal(dryEnable.code, 1, `enable --dry-run: ${said(dryEnable)}`)
  const dryClone = await pgraid(['clone', 'pg2', '--dry-run'], admin)
  t.equal(dryClone.code, 0, `clone --dry-run, which the real clone would do: ${said(dryClone)}`)
  const dryDisable = await pgraid(['disable', 'pg1', '--dry-run'], admin)
  t.equal(dryDisable.code, 0, `disable --dry-run: ${said(dryDisable)}`)
  const clone = await pgraid(['clone', 'pg2'], admin)
  t.equal(clone.code, 0, `clone: ${said(clone)}`)
  // Compare pgraid's backends as the stack's helper does (its pgraid is closed: no commit in flight there).
  await assertIdentical(t, { ...stack, proxy: undefined } as unknown as typeof stack)
})

t.test('reload: --dry-run says "would apply", an unknown key exits 1, an edited listen.port reaches the running pgraid', async (t) => {
  const admin = { env: { PGRAID_CONFIG: file } }
  const config = JSON.parse(original) as { log: { level: string }; listen: { port: number } }
  t.teardown(() => writeFile(file, original))

  await writeFile(file, JSON.stringify({ ...config, log: { level: 'error' } }))
  const dry = await pgraid(['reload', '--dry-run'], admin)
  t.equal(dry.code, 0, said(dry))
  t.equal(dry.stdout, 'would apply: log.level: "warn" -> "error"\n', 'the dry run says what it would apply')
  const real = await pgraid(['reload'], admin)
  t.equal(real.code, 0, said(real))
  t.equal(real.stdout, 'log.level: "warn" -> "error"\n', 'the reload says what it applied')
  const again = await pgraid(['reload', '--dry-run'], admin)
  t.equal(again.stdout, 'dry run: nothing would change\n')

  await writeFile(file, JSON.stringify({ ...config, log: { level: 'error' }, listne: {} }))
  for (const args of [['reload'], ['reload', '--dry-run']]) {
    const unknown = await pgraid(args, admin)
    t.equal(unknown.code, 1, `${args.join(' ')} with an unknown key: refused (1), not a usage error: ${said(unknown)}`)
    t.match(unknown.stderr, 'listne: unknown key')
  }

  await writeFile(file, JSON.stringify({ ...config, log: { level: 'error' }, listen: { ...config.listen, port: config.listen.port + 1 } }))
  const moved = await pgraid(['reload'], admin)
  t.equal(moved.code, 1, `reload of an edited listen.port: refused by the running pgraid: ${said(moved)}`)
  t.match(moved.stderr, /listen\.port: \d+ -> \d+: cannot change while pgraid runs/)
  t.notMatch(moved.stderr, 'ECONNREFUSED')
  const status = await pgraid(['status'], admin)
  t.equal(status.code, 0, `status still finds the running pgraid on its recorded address: ${said(status)}`)
})
