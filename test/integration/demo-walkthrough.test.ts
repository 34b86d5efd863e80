// The operator's walk-through on the demo (issue 21, docs/operations.md "Rehearse it on the demo"),
// driven with the commands `npm start` prints and nothing else: the demo runs as a child process (its
// own folder, a free port), its printed lines are parsed and run through a shell from the repository
// root as a newcomer would paste them: psql through pgraid, the admin console, pgbench (-i, then a
// bounded run), a backend killed under pgbench, `pgraid status` showing it out, started again,
// resynced with the line the demo printed, verified; another wiped, cloned with the printed line,
// verified; then the backends compared directly. Last, the demo is restarted without PGRAID_PORT and
// must come back on the same ports (kept in its config file).
//
// Two departures from the printed lines, both to keep the suite short: pgbench -i at scale 1 instead
// of 10, and the TPC-B run bounded by a transaction count (-t) instead of a duration (-T).

import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parse as parseJsonc } from 'jsonc-parser'
import pg from 'pg'
import { bounded, freePort, waitFor } from '../harness/stack.ts'
import { compareBackends } from '../harness/compare.ts'

const root = path.join(import.meta.dirname, '../..')

/** The environment the pasted commands get: npm's own variables dropped (as package.test.ts does), no password. */
function shellEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if ((!/^npm_/i.test(k) || /^npm_config_(cache|registry|userconfig)$/i.test(k)) && !/^(PGRAID_(PASSWORD|CONFIG|DEMO_DIR|PORT|RUNTIME_DIR)|PGPASSWORD|PGPASSFILE)$/.test(k)) env[k] = v
  }
  return env
}

interface Ran {
  code: number | null
  out: string
  err: string
}

/** Runs one pasted line through /bin/sh from the repository root, bounded. */
function sh(line: string, timeoutMs = 240_000): Promise<Ran> {
  return bounded(
    new Promise<Ran>((resolve) => {
      const child = spawn('/bin/sh', ['-c', line], { cwd: root, env: shellEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
      child.on('close', (code) => resolve({ code, out, err }))
    }),
    timeoutMs,
    `\`${line}\``,
  )
}

const show = (r: Ran) => `exit ${r.code}\n--- stdout ---\n${r.out.slice(-3000)}\n--- stderr ---\n${r.err.slice(-3000)}`

/** Asserts a command's exit code; its output is in the message only when it failed. */
function exits(t: Test, r: Ran, code: number, what: string): void {
  t.equal(r.code, code, r.code === code ? `${what}: exit ${code}` : `${what}:\n${show(r)}`)
}

interface Demo {
  child: ChildProcess
  out: () => string
  err: () => string
  exited: Promise<number | null>
}

/** Starts `npm start`'s program on `dir` and waits for its printed instructions. */
async function startDemo(dir: string, port: number | null): Promise<Demo> {
  const env = { ...shellEnv(), PGRAID_DEMO_DIR: dir, ...(port !== null ? { PGRAID_PORT: String(port) } : {}) }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo/main.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d
    if (err.length > 2_000_000) err = err.slice(-1_000_000)
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  let gone = false
  void exited.then(() => (gone = true))
  await waitFor(
    `the demo to print its instructions (stdout so far:\n${out}\nstderr tail:\n${err.slice(-2000)})`,
    () => {
      if (gone) throw new Error(`the demo exited before it was ready:\n${out}\n${err.slice(-3000)}`)
      return out.includes('Press Ctrl-C to stop.')
    },
    180_000,
  )
  return { child, out: () => out, err: () => err, exited }
}

async function stopDemo(demo: Demo): Promise<number | null> {
  if (demo.child.exitCode !== null || demo.child.signalCode !== null) return demo.child.exitCode
  demo.child.kill('SIGINT')
  return bounded(demo.exited, 120_000, 'the demo to stop after SIGINT')
}

/** The indented line of the demo's output that starts with `prefix` (trimmed). */
function printed(out: string, re: RegExp, what: string): string {
  const line = out
    .split('\n')
    .map((l) => l.trim())
    .find((l) => re.test(l))
  if (!line) throw new Error(`the demo printed no ${what} line (${re}):\n${out}`)
  return line
}

/** The first `pgraid <verb>` command line in a command's output. */
function suggested(text: string, verb: string): string {
  const m = new RegExp(`node bin/pgraid\\.js ${verb} \\S+ -c \\S+`).exec(text)
  if (!m) throw new Error(`no "node bin/pgraid.js ${verb}" line in:\n${text}`)
  return m[0]
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'pgraid-demo-walk-'))
await chmod(dir, 0o755) // as root the servers run as postgres, which must reach their data dirs
t.teardown(() => rm(dir, { recursive: true, force: true }))
const port = await freePort()

const demo = await startDemo(dir, port)
t.teardown(async () => {
  await stopDemo(demo).catch(() => demo.child.kill('SIGKILL'))
})
const out = demo.out()
t.comment(out)

const psqlLine = printed(out, /^psql "postgresql:\/\/app:/, 'psql')
const pgbenchLine = printed(out, /^pgbench -i /, 'pgbench')
const consoleLine = printed(out, /^psql "postgresql:\/\/[^"]+\/pgraid" /, 'admin console')
const statusLine = printed(out, /^node bin\/pgraid\.js status -c /, 'pgraid status')
const verifyLine = printed(out, /^node bin\/pgraid\.js verify -c /, 'pgraid verify')
const killLine = printed(out, /npm run demo -- kill pg2$/, 'demo kill')
const demoStatusLine = printed(out, /npm run demo -- status$/, 'demo status')
const [pgbenchInit, pgbenchRun] = pgbenchLine.split(' && ') as [string, string]
const adminUrl = /"(postgresql:\/\/[^"]+\/pgraid)"/.exec(consoleLine)![1]!

/** Asks the admin console directly (for bounded waits only; every step itself runs a printed line). */
async function consoleRows(sql: string): Promise<Record<string, string>[]> {
  const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 })
  c.on('error', () => {})
  await c.connect()
  try {
    return (await c.query(sql)).rows
  } finally {
    await c.end().catch(() => {})
  }
}
const stateOf = async (name: string) => (await consoleRows('SHOW BACKENDS')).find((b) => b.name === name)?.state

t.test('the printed lines', async (t) => {
  t.match(out, `pgraid is running on 127.0.0.1:${port}`)
  t.match(consoleLine, /-c "SHOW BACKENDS"$/, 'the console line runs SHOW BACKENDS')
  t.match(out, /Admin console \(user admin, password \S+;/, 'the admin user is printed with its password')
  const cfg = await readFile(path.join(dir, 'pgraid.jsonc'), 'utf8')
  t.match(cfg, /"admin": true/, 'the config file in the demo folder names an admin user')
  t.ok(statusLine.includes(path.join(dir, 'pgraid.jsonc')), "pgraid status is pointed at the demo's config file")
})

t.test('psql, the admin console, pgbench -i', async (t) => {
  const created = await sh(`${psqlLine} -v ON_ERROR_STOP=1 -c "CREATE TABLE walk (id int PRIMARY KEY, v text)" -c "INSERT INTO walk SELECT g, md5(g::text) FROM generate_series(1, 500) g"`)
  exits(t, created, 0, `psql through pgraid`)
  const console = await sh(consoleLine)
  exits(t, console, 0, `the admin console line`)
  t.match(console.out, /pg1 .*enabled[\s\S]*pg2 .*enabled[\s\S]*pg3 .*enabled/, 'SHOW BACKENDS: all three enabled')
  const init = await sh(pgbenchInit.replace(' -s 10 ', ' -s 1 '))
  exits(t, init, 0, `pgbench -i`)
  const st = await sh(statusLine)
  exits(t, st, 0, `pgraid status, all in service`)
  t.match(st.out, 'All backends in service.')
  const ds = await sh(demoStatusLine)
  exits(t, ds, 0, `the demo's status`)
  t.match(ds.out, /pg2 +127\.0\.0\.1:\d+ +running \(pid \d+\)/)
})

t.test('kill pg2 under pgbench; status shows it out; start, resync, verify', async (t) => {
  const commitsBefore = Number((await consoleRows('SHOW STATS'))[0]!.commits_total)
  const bench = sh(pgbenchRun.replace(/ -T \d+ /, ' -t 150 '))
  let benchDone = false
  void bench.then(() => (benchDone = true))
  await waitFor('pgbench to commit through pgraid', async () => benchDone || Number((await consoleRows('SHOW STATS'))[0]!.commits_total) > commitsBefore + 50, 120_000)
  t.comment(benchDone ? 'pgbench had already ended when pg2 was killed' : 'pgbench running while pg2 is killed')
  const killed = await sh(killLine)
  exits(t, killed, 0, `${killLine}`)
  t.match(killed.out, /pg2: postmaster \d+ killed with SIGKILL/)
  const ran = await bench
  exits(t, ran, 0, `pgbench goes on without pg2`)
  t.match(ran.out, /number of transactions actually processed: 1200\/1200/, 'every pgbench transaction processed')

  await waitFor('pgraid to take pg2 out', async () => (await stateOf('pg2')) !== 'enabled', 60_000)
  const st = await sh(statusLine)
  exits(t, st, 1, `pgraid status exits 1, degraded`)
  t.match(st.out, /^pg2 +disabled/m, 'status shows pg2 disabled')
  t.match(st.out, /DEGRADED: pg2 is disabled/)

  const started = await sh(killLine.replace(/kill pg2$/, 'start pg2'))
  exits(t, started, 0, `start pg2`)
  t.match(started.out, /pg2 started on 127\.0\.0\.1:\d+/)
  const resyncLine = suggested(started.out, 'resync')
  const dryResync = await sh(resyncLine.replace(/ resync (\S+) /, ' resync $1 --dry-run '))
  exits(t, dryResync, 0, 'resync --dry-run of a backend that is behind')
  t.match(dryResync.out, /would replay/)
  const resynced = await sh(resyncLine)
  exits(t, resynced, 0, `${resyncLine}`)
  await waitFor('pg2 back in service', async () => (await stateOf('pg2')) === 'enabled', 60_000)
  const st2 = await sh(statusLine)
  exits(t, st2, 0, `status after the resync`)
  const verified = await sh(verifyLine)
  exits(t, verified, 0, `verify after the resync`)
  t.match(verified.out, /compared pg1, pg2, pg3[\s\S]*\nidentical\n/)
})

t.test('wipe pg3; status shows it out; clone, verify', async (t) => {
  const wiped = await sh(killLine.replace(/kill pg2$/, 'wipe pg3'))
  exits(t, wiped, 0, `wipe pg3`)
  t.match(wiped.out, /pg3 wiped: stopped, .* deleted, a fresh empty cluster started/)
  await waitFor('pgraid to take the wiped pg3 out', async () => (await stateOf('pg3')) !== 'enabled', 60_000)
  const st = await sh(statusLine)
  exits(t, st, 1, `status with pg3 wiped`)
  t.match(st.out, /^pg3 +(new|disabled|inconsistent) /m, 'status shows pg3 out of service')
  const cloneLine = suggested(wiped.out, 'clone')
  const refused = await sh(cloneLine.replace(/ clone (\S+) /, ' resync $1 --dry-run '))
  exits(t, refused, 1, 'resync --dry-run of the wiped pg3: would refuse, exit 1 as the resync would')
  t.match(refused.out, /would refuse: pg3 is \w+/)
  const dry = await sh(cloneLine.replace(' clone ', ' clone --dry-run '))
  exits(t, dry, 0, `clone --dry-run`)
  const cloned = await sh(cloneLine)
  exits(t, cloned, 0, `${cloneLine}`)
  t.match(cloned.out, /name=pg3 state=enabled database=postgres/)
  const verified = await sh(verifyLine)
  exits(t, verified, 0, `verify after the clone`)
  t.match(verified.out, /compared pg1, pg2, pg3[\s\S]*\nidentical\n/)
  const st2 = await sh(statusLine)
  exits(t, st2, 0, `status after the clone`)
})

t.test('the backends, compared directly, are identical', async (t) => {
  const cfg = parseJsonc(await readFile(path.join(dir, 'pgraid.jsonc'), 'utf8')) as { backends: { name: string; host: string; port: number; user: string; password: string }[] }
  await waitFor('no commit in flight', async () => Number((await consoleRows('SHOW STATS'))[0]!.commits_in_flight) === 0, 30_000)
  const backends = cfg.backends.map((b) => ({
    name: b.name,
    async client(database = 'postgres') {
      const c = new pg.Client({ host: b.host, port: b.port, user: b.user, password: b.password, database })
      c.on('error', () => {})
      await c.connect()
      return c
    },
  }))
  const r = await compareBackends(backends, 'postgres')
  t.ok(r.identical, r.identical ? `identical (${r.digests[0]?.length ?? 0} tables and sequences)` : r.report)
  t.ok(
    r.digests[0]!.some((d) => d.table === 'public.pgbench_accounts' && d.rows === 100_000),
    'pgbench_accounts has its 100000 rows',
  )
})

t.test('a restart keeps the ports (no PGRAID_PORT the second time)', async (t) => {
  const first = out
    .split('\n')
    .filter((l) => /^ {2}pg\d +127\.0\.0\.1:\d+/.test(l))
    .map((l) => l.trim().split(/\s+/).slice(0, 2).join(' '))
  t.equal(first.length, 3)
  t.equal(await stopDemo(demo), 0, 'the demo stops on SIGINT with exit 0')
  t.match(demo.out(), /stopped\.\n$/)
  const again = await startDemo(dir, null)
  try {
    const second = again
      .out()
      .split('\n')
      .filter((l) => /^ {2}pg\d +127\.0\.0\.1:\d+/.test(l))
      .map((l) => l.trim().split(/\s+/).slice(0, 2).join(' '))
    t.same(second, first, 'the backends on the same ports')
    t.match(again.out(), `pgraid is running on 127.0.0.1:${port}`, 'pgraid on the same port')
    const st = await sh(statusLine)
    exits(t, st, 0, `the printed status line works after the restart`)
  } finally {
    t.equal(await stopDemo(again), 0, 'the second demo stops too')
  }
})
