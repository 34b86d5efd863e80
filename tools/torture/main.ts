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
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { History, Rng } from './history.ts'
import { runWorkloads, SETUP } from './workloads.ts'
import { KINDS, runNemesis, type NemesisKind } from './nemesis.ts'
import { check } from './checker.ts'
import { startTarget, type Target } from './target.ts'
import { bounded } from '../../test/harness/stack.ts'

const program = new Command('torture')
  .option('--duration <s>', 'seconds of workload and faults', '60')
  .option('--seed <n>', 'random seed (default: from the clock)')
  .option('--clients <n>', 'client connections', '6')
  .option('--nemesis <kinds>', `fault kinds, comma-separated (${KINDS.join(', ')}; crash needs --pgraid-process)`)
  .option('--pgraid-process', 'run pgraid as a child process (the crash fault kills it with -9 and starts it again)')
  .option('--overlap', 'do not heal between faults (a second backend may fail while the first is out)')
  .option('--quiet', 'only the summary line')
  .parse()
const opts = program.opts<{ duration: string; seed?: string; clients: string; nemesis?: string; pgraidProcess?: boolean; overlap?: boolean; quiet?: boolean }>()
const seed = opts.seed ? Number(opts.seed) : Date.now() % 1_000_000_007
const kinds = (opts.nemesis ?? KINDS.filter((k) => k !== 'crash' || opts.pgraidProcess).join(',')).split(',').filter(Boolean) as NemesisKind[]
for (const k of kinds) if (!KINDS.includes(k)) throw new Error(`unknown nemesis kind "${k}" (${KINDS.join(', ')})`)
if (kinds.includes('crash') && !opts.pgraidProcess) throw new Error('the crash fault needs --pgraid-process')
const log = (msg: string) => {
  if (!opts.quiet) console.error(`[${new Date().toISOString().slice(11, 23)}] ${msg}`)
}

const target = await startTarget(!!opts.pgraidProcess, process.env.PGRAID_LOG_LEVEL ?? 'error')
const history = new History()
let exitCode = 1
try {
  const setup = new pg.Client({ host: target.host, port: target.port, ...target.client, database: 'postgres' })
  await setup.connect()
  for (const q of SETUP) await setup.query(q)
  await setup.end()

  const rng = new Rng(seed)
  const stopAt = Date.now() + Number(opts.duration) * 1000
  const until = () => Date.now() >= stopAt
  log(`torture: seed ${seed}, ${opts.duration} s, ${opts.clients} clients, nemesis ${kinds.join(',')}${opts.pgraidProcess ? ', pgraid as a process' : ''}`)
  const heal = (budgetMs: number) => healAll(target, budgetMs, log)
  const workers = runWorkloads({ host: target.host, port: target.port, ...target.client }, history, new Rng(rng.int(1, 2 ** 31)), Number(opts.clients), until)
  const faults = await runNemesis(
    {
      backends: target.backends,
      clients: () => workers.clients.map((c) => c.current()),
      host: target.host,
      port: target.port,
      now: () => history.now(),
      log,
      heal: () => (opts.overlap ? Promise.resolve() : heal(60_000)),
      crashProxy: target.crash?.bind(target),
    },
    new Rng(rng.int(1, 2 ** 31)),
    kinds,
    until,
  )
  // Operations still unanswered a minute after the run are hangs: findings, then their connections end.
  const hung: string[] = []
  await bounded(workers.done, 60_000, 'the clients').catch(() => {
    for (const op of history.ops) if (op.completedAt < 0) hung.push(`op ${op.id} (${op.kind} by client ${op.client}, invoked at ${op.invokedAt} ms) got no answer within a minute`)
    workers.abort()
  })
  await bounded(workers.done, 30_000, 'the clients after their connections were ended')
  log('heal: every backend up; resync what is out')
  await heal(120_000)
  const verify = (await target.admin('VERIFY')).map((r) => JSON.stringify(r))
  const v = await check(history, target.backends.map((b) => ({ name: b.name, client: () => b.client() })), verify)
  v.anomalies.push(...hung)
  // A backend voted out as inconsistent is a divergence pgraid caught (and the heal's clone repaired):
  // with deterministic workloads it never happens, so it is a finding too.
  v.divergences.push(...target.inconsistent())
  const bad = v.lost.length + v.phantom.length + v.anomalies.length + v.divergences.length
  if (bad) {
    const dir = path.join(os.tmpdir(), `pgraid-torture-${seed}-${Date.now()}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(path.join(dir, 'history.json'), JSON.stringify(history.ops, null, 1))
    writeFileSync(path.join(dir, 'faults.json'), JSON.stringify(faults, null, 1))
    writeFileSync(path.join(dir, 'findings.json'), JSON.stringify(v, null, 1))
    for (const line of [...v.lost, ...v.phantom, ...v.anomalies, ...v.divergences].slice(0, 40)) console.error(`torture: ${line}`)
    console.error(`torture: history, faults and findings in ${dir}`)
  }
  log(`faults: ${faults.map((f) => `${f.kind}${f.target === '-' ? '' : ` ${f.target}`}`).join(', ')}`)
  console.log(
    `torture: ops=${history.count()} ok=${history.count('ok')} failed=${history.count('failed')} indeterminate=${history.count('indeterminate')} lost=${v.lost.length} phantom=${v.phantom.length} anomalies=${v.anomalies.length} divergences=${v.divergences.length} seed=${seed}`,
  )
  exitCode = bad ? 1 : 0
} finally {
  for (const b of target.backends) b.resume()
  await target.stop()
}
process.exit(exitCode)

/** Every backend up and in service: what came back behind is resynced, what cannot be is cloned. */
async function healAll(target: Target, budgetMs: number, log: (msg: string) => void): Promise<void> {
  for (const b of target.backends) b.resume()
  for (const b of target.backends) await b.client().then((c) => c.end()).catch(() => b.start())
  const deadline = Date.now() + budgetMs
  for (;;) {
    const out = (await target.admin('SHOW BACKENDS').catch(() => null))?.filter((b) => b.state !== 'enabled')
    if (out && !out.length) return
    if (Date.now() > deadline) throw new Error(`still out after ${budgetMs} ms of healing: ${(out ?? []).map((b) => `${String(b.name)} (${String(b.state)}: ${String(b.reason)})`).join(', ') || 'pgraid does not answer'}`)
    for (const b of out ?? []) {
      if (b.activity) continue // the health monitor (or a resync) is bringing it back
      const how = b.state === 'inconsistent' || b.state === 'new' ? 'CLONE' : 'RESYNC'
      log(`heal: ${how} ${String(b.name)} (${String(b.state)}: ${String(b.reason)})`)
      await target.admin(`${how} ${String(b.name)}`).catch(async (e: Error) => {
        log(`heal: ${how} ${String(b.name)} refused: ${e.message}`)
        if (how === 'RESYNC' && /clone/i.test(e.message)) await target.admin(`CLONE ${String(b.name)}`).catch((e2: Error) => log(`heal: CLONE ${String(b.name)} failed: ${e2.message}`))
      })
    }
    await new Promise((r) => setTimeout(r, 300))
  }
}
