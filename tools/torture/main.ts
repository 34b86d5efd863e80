// `npm run torture`: three backends and pgraid, client workloads and a
// nemesis for --duration seconds; then everything is healed, what is out is
// resynced (or cloned), VERIFY compares the backends, and the checker
// compares the history with what every backend holds. The last line:
//   torture: ops=N ok=N failed=N indeterminate=N lost=0 phantom=0 anomalies=0 divergences=0 seed=S
// Exit 0 only when lost, phantom, anomalies and divergences are all 0. On a
// failure the history, the fault schedule and the findings go to a folder it
// names. `--seed` replays the same schedule of operations and faults (the
// interleaving with the servers still varies). docs/torture.md.

import { Command } from 'commander'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { History, Rng } from './history.ts'
import { BASE_SETUP, runWorkloads } from './workloads.ts'
import { VANISH_SETUP, vanishOp } from './vanish.ts'
import { LIST_SETUP, listAppendTxn } from './list-append.ts'
import { pgExtended, pgSimple } from './drivers/node-pg.ts'
import { closeJdbc, connectJdbc, jdbcMissing } from './drivers/jdbc.ts'
import { connectPsql } from './drivers/psql.ts'
import type { Connect } from './drivers/driver.ts'
import { makeNetwork, type Network } from './network.ts'
import { KINDS, runNemesis, type NemesisKind } from './nemesis.ts'
import { check, type Verdict } from './checker.ts'
import { startTarget, type Target } from './target.ts'
import { bounded } from '../../test/harness/stack.ts'

const DRIVERS: Record<string, Connect> = { 'pg-extended': pgExtended, 'pg-simple': pgSimple, jdbc: connectJdbc, psql: connectPsql }

const program = new Command('torture')
  .option('--duration <s>', 'seconds of workload and faults', '60')
  .option('--seed <n>', 'random seed (default: from the clock)')
  .option('--clients <n>', 'client connections', '6')
  .option('--drivers <names>', `client libraries to mix, comma-separated (${Object.keys(DRIVERS).join(', ')})`)
  .option('--nemesis <kinds>', `fault kinds, comma-separated (${KINDS.join(', ')}; default: every kind that applies)`)
  .option('--pgraid-process', 'run pgraid as child processes (needed by crash, failover, netcut)')
  .option('--instances <n>', 'pgraid instances (one writer, standbys; needs --pgraid-process)', '1')
  .option('--no-network', 'no network namespace for pgraid (netcut then does not apply)')
  .option('--overlap', 'do not heal between faults (a second backend may fail while the first is out)')
  .option('--log-dir <dir>', "append each pgraid process's log to DIR/<name>.log as it runs")
  .option('--quiet', 'only the summary line')
  .parse()
const opts = program.opts<{
  duration: string
  seed?: string
  clients: string
  drivers?: string
  nemesis?: string
  pgraidProcess?: boolean
  instances: string
  network: boolean
  overlap?: boolean
  quiet?: boolean
  logDir?: string
}>()
const seed = opts.seed ? Number(opts.seed) : Date.now() % 1_000_000_007
const log = (msg: string) => {
  if (!opts.quiet) console.error(`[${new Date().toISOString().slice(11, 23)}] ${msg}`)
}
const instances = Number(opts.instances)
if (instances > 1 && !opts.pgraidProcess) throw new Error('--instances needs --pgraid-process')
// pgraid in a namespace of its own when it runs as a process, as root: the netcut fault needs it.
const network: Network | null = (() => {
  if (!opts.pgraidProcess || !opts.network) return null
  const n = makeNetwork(3)
  if (typeof n === 'string') {
    console.error(`torture: netcut skipped: ${n}`)
    return null
  }
  return n
})()
const applies = (k: NemesisKind): string | null =>
  (k === 'crash' || k === 'failover') && !opts.pgraidProcess
    ? 'needs --pgraid-process'
    : k === 'failover' && instances < 2
      ? 'needs --instances 2'
      : k === 'netcut' && !network
        ? 'needs --pgraid-process, root and iproute2'
        : null
const kinds = (opts.nemesis?.split(',') ?? KINDS.filter((k) => !applies(k))).filter(Boolean) as NemesisKind[]
for (const k of kinds) {
  if (!KINDS.includes(k)) throw new Error(`unknown nemesis kind "${k}" (${KINDS.join(', ')})`)
  const why = applies(k)
  if (why) throw new Error(`the ${k} fault ${why}`)
}
// Every driver by default; pgjdbc only where a JDK and the jar are installed (said so when not).
const noJdbc = opts.drivers ? null : await jdbcMissing()
if (noJdbc) console.error(`torture: the jdbc driver is skipped: ${noJdbc}`)
const drivers = (
  opts.drivers ??
  Object.keys(DRIVERS)
    .filter((d) => d !== 'jdbc' || !noJdbc)
    .join(',')
)
  .split(',')
  .map((name) => {
    const connect = DRIVERS[name]
    if (!connect) throw new Error(`unknown driver "${name}" (${Object.keys(DRIVERS).join(', ')})`)
    return { name, connect }
  })

if (opts.logDir) mkdirSync(opts.logDir, { recursive: true })
const target = await startTarget({ process: !!opts.pgraidProcess, instances, network, logLevel: process.env.PGRAID_LOG_LEVEL ?? 'error', logDir: opts.logDir })
const scratch = mkdtempSync(path.join(os.tmpdir(), 'pgraid-torture-scratch-'))
// Interrupted (^C, SIGTERM): servers, pgraid processes, the network namespace and the copies go too.
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    console.error(`torture: ${sig}: stopping`)
    for (const b of target.backends) b.resume()
    void closeJdbc()
      .then(() => target.stop())
      .finally(() => {
        rmSync(scratch, { recursive: true, force: true })
        process.exit(130)
      })
  })
const history = new History()
let exitCode = 1
try {
  const setup = new pg.Client({ ...target.endpoints[0]!, ...target.client, database: 'postgres' })
  await setup.connect()
  for (const q of [...BASE_SETUP, ...VANISH_SETUP, ...LIST_SETUP]) await setup.query(q)
  await setup.end()

  const rng = new Rng(seed)
  const stopAt = Date.now() + Number(opts.duration) * 1000
  const until = () => Date.now() >= stopAt
  log(
    `torture: seed ${seed}, ${opts.duration} s, ${opts.clients} clients (${drivers.map((d) => d.name).join(', ')}), nemesis ${kinds.join(',')}${opts.pgraidProcess ? `, pgraid as ${instances} process(es)` : ''}${network ? ' in a network namespace' : ''}`,
  )
  const heal = (budgetMs: number) => healAll(target, budgetMs, log)
  const stuck: string[] = []
  const eps = target.endpoints.map((e) => ({ ...e, ...target.client }))
  const workers = runWorkloads(eps, history, new Rng(rng.int(1, 2 ** 31)), Number(opts.clients), until, {
    drivers,
    extra: [
      // Elle's list-append transactions at READ COMMITTED and REPEATABLE READ.
      { weight: 0.4, run: async (conn, k, h, r) => listAppendTxn(await conn.get(), k, h, r) },
      // Clients vanishing mid-transaction, mid-COPY, mid-pipeline, after COMMIT; statement_timeout (each on a connection of its own).
      { weight: 0.05, run: (conn, k, h, r) => vanishOp(conn.endpoint, k, h, r) },
    ],
  })
  const faults = await runNemesis(
    {
      backends: target.backends,
      clients: () => workers.clients.map((c) => c.current()),
      now: () => history.now(),
      log,
      heal: () => (opts.overlap ? Promise.resolve() : heal(60_000).catch((e: Error) => void stuck.push(`a heal between faults did not finish: ${e.message}`))),
      crashProxy: target.crash?.bind(target),
      network: target.network,
      scratch,
    },
    new Rng(rng.int(1, 2 ** 31)),
    kinds,
    until,
  )
  // Operations still unanswered a minute after the run are hangs: findings, then their connections end.
  const hung: string[] = []
  await bounded(workers.done, 60_000, 'the clients').catch(async () => {
    for (const op of history.ops) if (op.completedAt < 0) hung.push(`op ${op.id} (${op.kind} by client ${op.client}, invoked at ${op.invokedAt} ms) got no answer within a minute`)
    // What pgraid's sessions wait for, and who holds their locks, while they still hang.
    const sessions = await target.admin('SHOW SESSIONS').catch((e: Error) => e.message)
    const locks = await target.admin('SHOW LOCKS').catch((e: Error) => e.message)
    hung.push(`while they hung: sessions: ${JSON.stringify(sessions)}; locks: ${JSON.stringify(locks)}`)
    workers.abort()
  })
  await bounded(workers.done, 30_000, 'the clients after their connections were ended')
  log('heal: every backend up; resync what is out')
  // A heal that does not finish is a finding (pgraid stuck), written with the rest.
  const healFailed = await heal(120_000).then(
    () => null,
    (e: Error) => `the heal did not finish: ${e.message}`,
  )
  const verify = (await target.admin('VERIFY').catch((e: Error) => [{ verify: `failed: ${e.message}` }])).map((r) => JSON.stringify(r))
  // A backend that cannot be read (its tables gone: a wipe never cloned back) is a finding too.
  const v = await check(
    history,
    target.backends.map((b) => ({ name: b.name, client: () => b.client() })),
    verify,
  ).catch((e: Error): Verdict => ({ lost: [], phantom: [], anomalies: [], divergences: [`the backends could not be read for the check: ${e.message}`], rows: {} }))
  v.anomalies.push(...hung)
  if (healFailed) v.anomalies.push(healFailed)
  v.anomalies.push(...stuck)
  // A backend voted out as inconsistent is a divergence pgraid caught (and the heal's clone repaired):
  // with deterministic workloads it never happens, so it is a finding too.
  v.divergences.push(...target.inconsistent())
  const bad = v.lost.length + v.phantom.length + v.anomalies.length + v.divergences.length
  if (bad) {
    const dir = path.join(os.tmpdir(), `pgraid-torture-${seed}-${Date.now()}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(path.join(dir, 'history.json'), JSON.stringify(history.ops, null, 1))
    writeFileSync(path.join(dir, 'faults.json'), JSON.stringify(faults, null, 1))
    writeFileSync(path.join(dir, 'findings.json'), JSON.stringify({ ...v, rows: undefined }, null, 1))
    writeFileSync(path.join(dir, 'backends.json'), JSON.stringify(v.rows, null, 1))
    for (const [name, text] of Object.entries(target.logs())) writeFileSync(path.join(dir, `${name}.log`), text)
    for (const line of [...v.lost, ...v.phantom, ...v.anomalies, ...v.divergences].slice(0, 40)) console.error(`torture: ${line}`)
    console.error(`torture: history, faults and findings in ${dir}`)
  }
  const byKind = new Map<string, number>()
  for (const op of history.ops) byKind.set(`${op.kind}/${op.outcome}`, (byKind.get(`${op.kind}/${op.outcome}`) ?? 0) + 1)
  log(
    `operations: ${[...byKind]
      .sort()
      .map(([k, n]) => `${k}=${n}`)
      .join(' ')}`,
  )
  log(`faults: ${faults.map((f) => `${f.kind}${f.target === '-' ? '' : ` ${f.target}`}`).join(', ')}`)
  console.log(
    `torture: ops=${history.count()} ok=${history.count('ok')} failed=${history.count('failed')} indeterminate=${history.count('indeterminate')} lost=${v.lost.length} phantom=${v.phantom.length} anomalies=${v.anomalies.length} divergences=${v.divergences.length} seed=${seed}`,
  )
  exitCode = bad ? 1 : 0
} finally {
  for (const b of target.backends) b.resume()
  await closeJdbc()
  await target.stop()
  rmSync(scratch, { recursive: true, force: true })
}
process.exit(exitCode)

/** Every backend up and in service: what came back behind is resynced, what cannot be is cloned. */
async function healAll(target: Target, budgetMs: number, log: (msg: string) => void): Promise<void> {
  for (const [i, b] of target.backends.entries()) {
    b.resume()
    target.network?.heal(i)
  }
  for (const b of target.backends)
    await b
      .client()
      .then((c) => c.end())
      .catch(() => b.start())
  const deadline = Date.now() + budgetMs
  for (;;) {
    const out = (await target.admin('SHOW BACKENDS').catch(() => null))?.filter((b) => b.state !== 'enabled')
    if (out && !out.length) return
    if (Date.now() > deadline) {
      // What pgraid's sessions and locks were doing, for the findings.
      const sessions = await target.admin('SHOW SESSIONS').catch((e: Error) => e.message)
      const locks = await target.admin('SHOW LOCKS').catch((e: Error) => e.message)
      throw new Error(
        `still out after ${budgetMs} ms of healing: ${(out ?? []).map((b) => `${String(b.name)} (${String(b.state)}: ${String(b.reason)})`).join(', ') || 'pgraid does not answer'}; sessions: ${JSON.stringify(sessions)}; locks: ${JSON.stringify(locks)}`,
      )
    }
    for (const b of out ?? []) {
      if (b.activity) continue // the health monitor (or a resync) is bringing it back
      const how = b.state === 'inconsistent' || b.state === 'new' ? 'CLONE' : 'RESYNC'
      log(`heal: ${how} ${String(b.name)} (${String(b.state)}: ${String(b.reason)})`)
      const t0 = Date.now()
      await target
        .admin(`${how} ${String(b.name)}`)
        .then(() => log(`heal: ${how} ${String(b.name)} done in ${Date.now() - t0} ms`))
        .catch(async (e: Error) => {
          log(`heal: ${how} ${String(b.name)} refused: ${e.message}`)
          if (how === 'RESYNC' && /clone/i.test(e.message)) await target.admin(`CLONE ${String(b.name)}`).catch((e2: Error) => log(`heal: CLONE ${String(b.name)} failed: ${e2.message}`))
        })
    }
    await new Promise((r) => setTimeout(r, 300))
  }
}
