// The ActiveMQ figure (issue 7, BENCH_ACTIVEMQ): a real ActiveMQ 5.17 broker (the tests' harness,
// test/activemq/harness.ts) with its JDBC store on pgraid over three backends, against the same broker on
// one plain backend (a database of its own on pg1), side by side in interleaved rounds:
//  - send rate in steady state: 4 producer processes at once sending persistent 1 KiB messages with
//    synchronous sends; once every producer has confirmed its first messages and a warm-up has passed,
//    the messages confirmed in a window of `windowS` seconds (JVM start and warm-up are outside it);
//  - CPU per message in that window: pgraid's (this process: pgraid runs in it) and the PostgreSQL
//    servers' (every backend's postmaster and its children, from /proc);
//  - drain rate: one transacted consumer (commit every 10) taking the messages sent (msg/s).
// Lease locker on both. Medians of the rounds; the ratio is pgraid / direct.
import { performance } from 'node:perf_hooks'
import { startCluster, type BackendAuth, type Cluster } from '../src/embedded/cluster.ts'
import { startPgraid, type PgraidHandle } from '../src/server.ts'
import { parseConfig } from '../src/config/schema.ts'
import { createLogger } from '../src/observe/logger.ts'
import type { Test } from 'tap'
import { needJava, startBroker, consume, jmsCommand } from '../test/activemq/harness.ts'
import { readFileSync, readdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { clockTicks, procCpuSeconds } from './proxy.ts'
import { signalChild, spawnTracked } from './procs.ts'

// Four rounds by default: with two, one noisy round decided the median (0.53 and 0.47 gave 0.50).
export const ACTIVEMQ = {
  producers: 4,
  size: Number(process.env.BENCH_ACTIVEMQ_SIZE ?? 1024),
  rounds: Number(process.env.BENCH_ACTIVEMQ_ROUNDS ?? 4),
  warmupS: Number(process.env.BENCH_ACTIVEMQ_WARMUP_S ?? 5),
  windowS: Number(process.env.BENCH_ACTIVEMQ_WINDOW_S ?? 20),
  goal: 0.5,
} as const

export interface ActivemqSample {
  target: 'direct' | 'pgraid'
  round: number
  sendPerS: number
  drainPerS: number
  /** CPU per message sent in the window: pgraid's process (0 for direct) and the PostgreSQL servers' (all backends). */
  proxyUsPerMsg: number
  serversUsPerMsg: number
  javaUsPerMsg: number
}

export type ActivemqOutcome =
  { ok: true; samples: ActivemqSample[]; median: Record<'direct' | 'pgraid', { send: number; drain: number; proxyUs: number; serversUs: number; javaUs: number }> } | { ok: false; error: string }

export interface ActivemqContext {
  auth: BackendAuth[]
  user: string
  password: string
  log(msg: string): void
  clusterStarted(c: Cluster): void
  clusterStopped(c: Cluster): void
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN
}

export async function runActivemq(ctx: ActivemqContext): Promise<ActivemqOutcome> {
  let cluster: Cluster | undefined
  let proxy: PgraidHandle | undefined
  try {
    // The tests' check for a JDK, ActiveMQ and the jars; here a missing one ends the scenario with its message.
    await needJava({
      fail: (msg: string) => {
        throw new Error(msg)
      },
    } as unknown as Test)
    ctx.log('activemq: starting a separate 3-backend cluster')
    cluster = await startCluster({ count: 3, auth: ctx.auth })
    ctx.clusterStarted(cluster)
    const backends = cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password }))
    proxy = await startPgraid(
      parseConfig({ listen: { host: '127.0.0.1', port: 0 }, backends, users: [{ name: ctx.user, auth: 'scram-sha-256', password: ctx.password }], log: { level: 'error' } }, 'activemq bench'),
      createLogger('error'),
    )
    const pg1 = cluster.backends[0]!
    const admin = await pg1.client()
    await admin.query('CREATE DATABASE amqdirect')
    await admin.end()
    const targets = {
      direct: { jdbcUrl: `jdbc:postgresql://${pg1.host}:${pg1.port}/amqdirect`, user: pg1.user, password: pg1.password },
      pgraid: { jdbcUrl: `jdbc:postgresql://127.0.0.1:${proxy.port}/postgres`, user: ctx.user, password: ctx.password },
    }
    const samples: ActivemqSample[] = []
    for (let round = 1; round <= ACTIVEMQ.rounds; round++) {
      const order: ('direct' | 'pgraid')[] = round % 2 ? ['direct', 'pgraid'] : ['pgraid', 'direct']
      for (const target of order) {
        const tg = targets[target]
        const broker = await startBroker({ ...tg, locker: 'lease', name: `bench-${target}-${round}` })
        try {
          const queue = `bench.${target}.${round}`
          const sent = await sendWindow(broker.url, broker.pid, queue, cluster)
          const total = sent.confirmed
          const t0 = performance.now()
          const c = await consume(broker.url, queue, 'transacted', total, 10_000, 600_000)
          const drainS = (performance.now() - t0) / 1000
          if (c.got.length !== total) throw new Error(`the consumer got ${c.got.length} of ${total} from ${target}: ${c.failure ?? ''}`)
          const sendPerS = sent.inWindow / sent.seconds
          const drainPerS = total / drainS
          const proxyUsPerMsg = target === 'pgraid' ? (1e6 * sent.proxyCpuS) / sent.inWindow : 0
          const serversUsPerMsg = (1e6 * sent.serversCpuS) / sent.inWindow
          const javaUsPerMsg = (1e6 * sent.javaCpuS) / sent.inWindow
          samples.push({ target, round, sendPerS, drainPerS, proxyUsPerMsg, serversUsPerMsg, javaUsPerMsg })
          ctx.log(
            `activemq: round ${round} ${target}: send ${sendPerS.toFixed(0)} msg/s (${sent.inWindow} in ${sent.seconds.toFixed(1)} s), drain ${drainPerS.toFixed(0)} msg/s; CPU per message: pgraid ${proxyUsPerMsg.toFixed(0)} µs, servers ${serversUsPerMsg.toFixed(0)} µs, broker and producers ${javaUsPerMsg.toFixed(0)} µs`,
          )
        } finally {
          await broker.stop().catch(() => broker.kill())
        }
      }
    }
    const med = (target: 'direct' | 'pgraid') => {
      const of = samples.filter((s) => s.target === target)
      return {
        send: median(of.map((s) => s.sendPerS)),
        drain: median(of.map((s) => s.drainPerS)),
        proxyUs: median(of.map((s) => s.proxyUsPerMsg)),
        serversUs: median(of.map((s) => s.serversUsPerMsg)),
        javaUs: median(of.map((s) => s.javaUsPerMsg)),
      }
    }
    return { ok: true, samples, median: { direct: med('direct'), pgraid: med('pgraid') } }
  } catch (e) {
    return { ok: false, error: (e as Error).stack ?? String(e) }
  } finally {
    await proxy?.close().catch(() => {})
    if (cluster) {
      await cluster.stop().catch(() => {})
      ctx.clusterStopped(cluster)
    }
  }
}

interface SendWindow {
  /** Messages the producers confirmed in the window, and the window's length. */
  inWindow: number
  seconds: number
  /** Every send confirmed until the producers were stopped (what the consumer then takes). */
  confirmed: number
  proxyCpuS: number
  serversCpuS: number
  /** The broker's JVM and the producers' JVMs. */
  javaCpuS: number
}

/**
 * Starts the producers (each with far more messages than the window needs), waits until each has
 * confirmed its first messages and the warm-up has passed, counts what is confirmed in the window
 * (progress lines every 50 messages), then stops them.
 */
async function sendWindow(url: string, brokerPid: number, queue: string, cluster: Cluster): Promise<SendWindow> {
  const counts = new Array<number>(ACTIVEMQ.producers).fill(0)
  const exited: (string | null)[] = new Array<string | null>(ACTIVEMQ.producers).fill(null)
  const children = await Promise.all(
    counts.map(async (_, k) => {
      const c = await jmsCommand(['produce', url, queue, String(100_000_000), String(1000 + k), String(k * 100_000_000), String(ACTIVEMQ.size)])
      const child = spawnTracked(c.cmd, c.args)
      let buf = ''
      let err = ''
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString('utf8')
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          const m = /^(?:# sent|SENT) (\d+)$/.exec(line) ?? /^FAILED sending \d+ after (\d+) confirmed/.exec(line)
          if (m) counts[k] = Number(m[1])
        }
      })
      child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2000)))
      child.once('exit', (code, sig) => (exited[k] = `exit ${code ?? sig}: ${err.trim().split('\n').pop() ?? ''}`))
      return child
    }),
  )
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  try {
    const startBy = Date.now() + 120_000
    while (counts.some((n) => n === 0)) {
      const gone = exited.find((e) => e !== null)
      if (gone) throw new Error(`a producer ended before the window: ${gone}`)
      if (Date.now() > startBy) throw new Error(`the producers did not all confirm a message within 120 s (confirmed: ${counts.join(', ')})`)
      await sleep(100)
    }
    await sleep(ACTIVEMQ.warmupS * 1000)
    const sum = () => counts.reduce((a, b) => a + b, 0)
    const servers = () => cluster.backends.reduce((a, b) => a + serverCpuSeconds(b.dataDir), 0)
    const java = () => [brokerPid, ...children.map((c) => c.pid!)].reduce((a, pid) => a + (procCpuSeconds(pid) ?? 0), 0)
    const c0 = sum()
    const t0 = performance.now()
    const p0 = process.cpuUsage()
    const s0 = servers()
    const j0 = java()
    await sleep(ACTIVEMQ.windowS * 1000)
    const c1 = sum()
    const t1 = performance.now()
    const p1 = process.cpuUsage(p0)
    const s1 = servers()
    const j1 = java()
    const gone = exited.find((e) => e !== null)
    if (gone) throw new Error(`a producer ended during the window: ${gone}`)
    return { inWindow: c1 - c0, seconds: (t1 - t0) / 1000, confirmed: c1, proxyCpuS: (p1.user + p1.system) / 1e6, serversCpuS: s1 - s0, javaCpuS: j1 - j0 }
  } finally {
    for (const c of children) signalChild(c, 'SIGKILL')
    await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('exit', r)))))
  }
}

/** CPU seconds of a PostgreSQL server: its postmaster, its live children, and the children that exited. */
function serverCpuSeconds(dataDir: string): number {
  const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  const fields = (p: number | string) => {
    const st = readFileSync(`/proc/${p}/stat`, 'utf8')
    return st.slice(st.lastIndexOf(')') + 2).split(' ')
  }
  const own = fields(pid)
  // utime, stime, cutime, cstime are fields 14-17 (indexes 11-14 after the command name).
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === pid) continue
    try {
      const f = fields(e)
      if (Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12])
    } catch {
      // gone meanwhile
    }
  }
  return ticks / clockTicks()
}

export function renderActivemq(a: ActivemqOutcome | undefined): { targets: string[]; section: string[] } {
  if (!a) return { targets: [], section: [] }
  if (!a.ok) return { targets: [`- ActiveMQ on pgraid: the scenario did not complete (${a.error.split('\n')[0]}) - **not met**`], section: ['', '## ActiveMQ (issue 7)', '', '```', a.error, '```'] }
  const r = (k: 'send' | 'drain') => a.median.pgraid[k] / a.median.direct[k]
  const met = r('send') >= ACTIVEMQ.goal && r('drain') >= ACTIVEMQ.goal
  const f = (x: number) => x.toFixed(0)
  const all = (t: 'direct' | 'pgraid') => a.median[t].proxyUs + a.median[t].serversUs + a.median[t].javaUs
  const cpus = os.cpus().length
  return {
    targets: [
      `- ActiveMQ persistent send and drain through pgraid >= ${ACTIVEMQ.goal} x the same broker on one plain backend: send ${r('send').toFixed(2)}x, drain ${r('drain').toFixed(2)}x - ${met ? '**met**' : '**not met**'}`,
    ],
    section: [
      '',
      '## ActiveMQ (issue 7)',
      '',
      `ActiveMQ 5.17 (Debian), JDBC store through commons-dbcp2 and pgjdbc, lease locker; ${ACTIVEMQ.producers} producer processes sending persistent ${ACTIVEMQ.size} B messages with synchronous sends, timed in steady state: once every producer has confirmed its first messages and ${ACTIVEMQ.warmupS} s more have passed, the messages confirmed in the next ${ACTIVEMQ.windowS} s (JVM start and warm-up outside the window); then one transacted consumer draining them; ${ACTIVEMQ.rounds} interleaved rounds, medians (bench/activemq.ts). CPU per message in the send window: pgraid's (the benchmark process, which runs pgraid and reads the producers' progress) and the PostgreSQL servers' (every backend's postmaster and its children, /proc; direct: pg1 serves, the other two idle).`,
      '',
      '| target | send msg/s | drain msg/s | pgraid CPU µs / msg | servers CPU µs / msg | broker + producers CPU µs / msg | all CPU µs / msg |',
      '|---|---|---|---|---|---|---|',
      `| one plain backend | ${f(a.median.direct.send)} | ${f(a.median.direct.drain)} | - | ${f(a.median.direct.serversUs)} | ${f(a.median.direct.javaUs)} | ${f(all('direct'))} |`,
      `| pgraid over 3 backends | ${f(a.median.pgraid.send)} | ${f(a.median.pgraid.drain)} | ${f(a.median.pgraid.proxyUs)} | ${f(a.median.pgraid.serversUs)} | ${f(a.median.pgraid.javaUs)} | ${f(all('pgraid'))} |`,
      `| pgraid / direct | **${r('send').toFixed(2)}x** | **${r('drain').toFixed(2)}x** | | ${(a.median.pgraid.serversUs / a.median.direct.serversUs).toFixed(2)}x | | ${(all('pgraid') / all('direct')).toFixed(2)}x |`,
      '',
      `Every process here shares this machine's ${cpus} cores, so the send rate is capped by the CPU all of them spend per message: at most ${f((cpus * 1e6) / all('direct'))} msg/s direct and ${f((cpus * 1e6) / all('pgraid'))} through pgraid (${(all('direct') / all('pgraid')).toFixed(2)}x). Without any CPU of pgraid's, the three backends' work alone would cap it at ${(all('direct') / (all('pgraid') - a.median.pgraid.proxyUs)).toFixed(2)}x of direct: the ${ACTIVEMQ.goal}x goal is for hosts where the backends have machines of their own.`,
      '',
      `Per round (send/drain msg/s): ${a.samples.map((s) => `${s.round} ${s.target} ${f(s.sendPerS)}/${f(s.drainPerS)}`).join('; ')}.`,
      '',
    ],
  }
}

// `npx tsx bench/activemq.ts`: this scenario alone, its report lines printed.
if (import.meta.url === `file://${process.argv[1]}`) {
  const outcome = await runActivemq({
    auth: ['scram-sha-256', 'md5', 'trust'],
    user: 'app',
    password: 'app-secret',
    log: (m) => process.stderr.write(`${m}\n`),
    clusterStarted() {},
    clusterStopped() {},
  })
  const r = renderActivemq(outcome)
  process.stdout.write([...r.targets, ...r.section].join('\n') + '\n')
  process.exit(outcome.ok ? 0 : 1)
}
