// The JMS client test/activemq/JmsCheck.java for test/activemq/*.test.ts (produce, consume, and the
// accounting of every id sent), and the broker of broker.ts: the one import of those tests.

import { mkdtempSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CLIENT_JARS, COMPILE_TIMEOUT_MS, needTools, registerExitHook, run, tempDirs, type Run } from './java.ts'

export { DEBIAN_PACKAGES, needJava, type Run } from './java.ts'
export * from './broker.ts'

const here = path.dirname(fileURLToPath(import.meta.url))
const SOURCE = path.join(here, 'JmsCheck.java')
const MAIN_CLASS = 'JmsCheck'

// ---------------------------------------------------------------------------------------------
// The JMS client

let compiled: Promise<string> | null = null

/** Compiles JmsCheck.java once per test process; resolves to the class directory. */
function compileClient(): Promise<string> {
  compiled ??= (async () => {
    const { javac } = needTools()
    registerExitHook()
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pgraid-jms-'))
    tempDirs.add(dir)
    const r = await run(javac, ['--release', '17', '-Xlint:all', '-Werror', '-encoding', 'UTF-8', '-cp', CLIENT_JARS.join(path.delimiter), '-d', dir, SOURCE], COMPILE_TIMEOUT_MS)
    if (r.code !== 0) throw new Error(`javac ${path.relative(process.cwd(), SOURCE)} failed (exit ${r.code}${r.timedOut ? ', timed out' : ''}):\n${r.stderr}${r.stdout}`)
    return dir
  })()
  return compiled
}

/** Runs the JMS client (compiled on first use) with `args`; killed after `timeoutMs`. */
export async function jms(args: string[], timeoutMs = 60_000): Promise<Run> {
  const c = await jmsCommand(args)
  return run(c.cmd, c.args, timeoutMs)
}

/** The command line of the JMS client with `args` (compiled on first use), for callers that read its output as it comes. */
export async function jmsCommand(args: string[]): Promise<{ cmd: string; args: string[] }> {
  const { java } = needTools()
  const dir = await compileClient()
  // Short-lived client JVMs: C1 only and the serial GC start faster and burn less CPU on a 2-core machine.
  return {
    cmd: java,
    args: [
      '-Xmx256m',
      '-XX:TieredStopAtLevel=1',
      '-XX:+UseSerialGC',
      '-Xshare:auto',
      '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
      '-cp',
      [dir, ...CLIENT_JARS].join(path.delimiter),
      MAIN_CLASS,
      ...args,
    ],
  }
}

export interface Produced {
  run: Run
  /** Sends the broker confirmed (a synchronous send returned). */
  confirmed: number
  /** `SENT <n>` was printed: every send returned. */
  complete: boolean
  failure: string | null
}

/** `produce`: `count` persistent messages with ids firstId.. (see JmsCheck.java). */
export async function produce(url: string, queue: string, count: number, seed: number, opts: { firstId?: number; timeoutMs?: number; size?: number } = {}): Promise<Produced> {
  const r = await jms(['produce', url, queue, String(count), String(seed), String(opts.firstId ?? 0), String(opts.size ?? 0)], opts.timeoutMs ?? 60_000)
  let confirmed = 0
  let complete = false
  let failure: string | null = null
  for (const line of r.stdout.split('\n')) {
    let m: RegExpMatchArray | null
    if ((m = line.match(/^SENT (\d+)$/))) {
      confirmed = Number(m[1])
      complete = true
    } else if ((m = line.match(/^# sent (\d+)$/))) confirmed = Number(m[1])
    else if ((m = line.match(/^FAILED sending \d+ after (\d+) confirmed: (.*)$/))) {
      confirmed = Number(m[1])
      failure = m[2]
    }
  }
  return { run: r, confirmed, complete, failure }
}

export interface Got {
  id: number
  ok: boolean
  redelivered: boolean
}

export interface Consumed {
  run: Run
  /** Messages whose commit/acknowledge returned, in order. */
  got: Got[]
  /** The `RECEIVED ...` line, when the client got that far. */
  summary: { received: number; ok: number; corrupt: number; end: 'max' | 'idle' } | null
  failure: string | null
  /**
   * Received but never confirmed because the run failed before its commit/acknowledge answered (the
   * broker died): the commit may or may not have happened, as JMS allows. Such a message is either
   * redelivered later or gone because its commit went through.
   */
  inDoubt: number[]
}

/** `consume`: until `max` messages or `idleMs` without one (see JmsCheck.java). */
export async function consume(url: string, queue: string, mode: 'transacted' | 'client-ack', max: number, idleMs: number, timeoutMs = 60_000): Promise<Consumed> {
  const r = await jms(['consume', url, queue, mode, String(max), String(idleMs)], timeoutMs)
  const got: Got[] = []
  let summary: Consumed['summary'] = null
  let failure: string | null = null
  const received: number[] = []
  for (const line of r.stdout.split('\n')) {
    let m: RegExpMatchArray | null
    if ((m = line.match(/^# recv (-?\d+)$/))) received.push(Number(m[1]))
    else if ((m = line.match(/^GOT (-?\d+) (OK|CORRUPT)( redelivered)?$/))) got.push({ id: Number(m[1]), ok: m[2] === 'OK', redelivered: !!m[3] })
    else if ((m = line.match(/^RECEIVED (\d+) OK (\d+) CORRUPT (\d+) END (max|idle)$/))) {
      summary = { received: Number(m[1]), ok: Number(m[2]), corrupt: Number(m[3]), end: m[4] as 'max' | 'idle' }
    } else if ((m = line.match(/^FAILED (.*)$/))) failure = m[1]
  }
  const confirmed = new Set(got.map((g) => g.id))
  const inDoubt = failure !== null || r.code !== 0 ? [...new Set(received.filter((id) => !confirmed.has(id)))] : []
  return { run: r, got, summary, failure, inDoubt }
}

export interface Accounting {
  /** Sent ids never consumed. */
  lost: number[]
  /** Ids consumed more than once (each listed once). */
  duplicates: number[]
  /** Ids whose body did not match its sha256 property (or had no id/body). */
  corrupt: number[]
  /** Consumed ids that were never sent. */
  unexpected: number[]
}

/** Accounts for every sent id in what the consumers got. */
export function account(sent: Iterable<number>, got: Got[]): Accounting {
  const sentSet = new Set(sent)
  const seen = new Map<number, number>()
  const corrupt = new Set<number>()
  for (const g of got) {
    seen.set(g.id, (seen.get(g.id) ?? 0) + 1)
    if (!g.ok) corrupt.add(g.id)
  }
  const asc = (a: number, b: number) => a - b
  return {
    lost: [...sentSet].filter((id) => !seen.has(id)).sort(asc),
    duplicates: [...seen]
      .filter(([, n]) => n > 1)
      .map(([id]) => id)
      .sort(asc),
    corrupt: [...corrupt].sort(asc),
    unexpected: [...seen.keys()].filter((id) => !sentSet.has(id)).sort(asc),
  }
}

/** A short list for assertion messages. */
export function ids(list: number[], max = 20): string {
  return list.length <= max ? `[${list.join(', ')}]` : `[${list.slice(0, max).join(', ')}, ... ${list.length - max} more]`
}
