// A real Apache ActiveMQ 5.17 broker (Debian packages) whose JDBC store goes through pgraid,
// and the JMS client test/activemq/JmsCheck.java, for test/activemq/*.test.ts.
//
// The broker is a child `java` process started with Debian's launcher jar and our own config:
//
//   java -Xmx512m -Dactivemq.home=/usr/share/activemq -Dactivemq.base=DIR -Dactivemq.conf=DIR
//        -Dactivemq.data=DIR/data -Dactivemq.classpath=<commons-dbcp2, commons-pool2, pgjdbc jars>
//        -Dlog4j.configuration=file:DIR/log4j.properties
//        -cp /usr/share/activemq/bin/activemq.jar org.apache.activemq.console.Main start xbean:file:DIR/activemq.xml
//
// org.apache.activemq.console.Main builds the broker's class loader from activemq.home/lib and
// lib/optional (Spring, xbean, log4j 1.2 + slf4j-log4j12, jcl-over-slf4j, ...) plus the
// activemq.classpath entries. The JDBC jars must be there and not on -cp: commons-dbcp2 needs
// commons-logging, which only that class loader has (jcl-over-slf4j). Debian builds ActiveMQ
// against log4j 1.2 (no log4j2 is packaged), so the logging config is a log4j 1.2 properties
// file: console appender, and the process's stdout and stderr both go to DIR/broker.log.
// activemq.xml: one commons-dbcp2 BasicDataSource (pgjdbc, the pgraid URL), a
// jdbcPersistenceAdapter with the default database locker or the lease locker, one OpenWire
// connector on a free loopback port, useJmx=false, no web console, data directory in DIR.

import type { Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { freePort } from '../harness/stack.ts'
import { findTool, run as runProcess, type Run } from '../harness/proc.ts'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const SOURCE = path.join(here, 'JmsCheck.java')
const MAIN_CLASS = 'JmsCheck'

export const DEBIAN_PACKAGES = 'default-jdk-headless activemq libactivemq-java libcommons-dbcp2-java libpostgresql-jdbc-java'

const JAVA_LIB = '/usr/share/java'
const ACTIVEMQ_HOME = '/usr/share/activemq'
const lib = (name: string) => path.join(JAVA_LIB, name)

/** Jars the broker needs beyond what activemq.home/lib{,/optional} provides, and the launcher. */
const BROKER_FILES = {
  launcher: path.join(ACTIVEMQ_HOME, 'bin', 'activemq.jar'),
  broker: path.join(ACTIVEMQ_HOME, 'lib', 'activemq-broker.jar'),
  jdbcStore: path.join(ACTIVEMQ_HOME, 'lib', 'activemq-jdbc-store.jar'),
  xbeanSpring: path.join(ACTIVEMQ_HOME, 'lib', 'optional', 'xbean-spring.jar'),
  log4j: path.join(ACTIVEMQ_HOME, 'lib', 'optional', 'log4j-1.2.jar'),
  slf4jLog4j: path.join(ACTIVEMQ_HOME, 'lib', 'optional', 'slf4j-log4j12.jar'),
  dbcp2: lib('commons-dbcp2.jar'),
  pool2: lib('commons-pool2.jar'),
  pgjdbc: lib('postgresql.jar'),
}
const BROKER_EXTRA_CLASSPATH = [BROKER_FILES.dbcp2, BROKER_FILES.pool2, BROKER_FILES.pgjdbc]

/** The JMS client's classpath (besides the compiled class): all from libactivemq-java's dependencies. */
const CLIENT_JARS = [
  'activemq-client.jar',
  'geronimo-jms_1.1_spec.jar',
  'geronimo-j2ee-management-1.1-spec.jar',
  'hawtbuf.jar',
  'slf4j-api.jar',
  'slf4j-simple.jar',
].map(lib)

const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 30_000
const COMPILE_TIMEOUT_MS = 60_000

// ---------------------------------------------------------------------------------------------
// Tools and packages

async function readable(p: string, mode = constants.R_OK): Promise<boolean> {
  return access(p, mode).then(
    () => true,
    () => false,
  )
}

let tools: { java: string; javac: string } | null = null

/**
 * Checks for a JDK, ActiveMQ and the jars; if anything is missing, fails `t` with a message
 * naming the Debian packages (never a silent skip) and returns false.
 */
export async function needJava(t: Test): Promise<boolean> {
  const [java, javac] = await Promise.all([findTool('java'), findTool('javac')])
  const missing: string[] = []
  if (!java || !javac) missing.push('a JDK (java and javac not both found in $JAVA_HOME/bin or PATH)')
  const files = [...Object.values(BROKER_FILES), ...CLIENT_JARS]
  for (const f of files) if (!(await readable(f))) missing.push(f)
  if (missing.length > 0) {
    t.fail(
      `the ActiveMQ tests need a JDK, ActiveMQ, commons-dbcp2 and pgjdbc; missing:\n  ${missing.join('\n  ')}\n` +
        `Install them with: apt-get install -y ${DEBIAN_PACKAGES}`,
    )
    return false
  }
  tools = { java: java!, javac: javac! }
  return true
}

function needTools(): { java: string; javac: string } {
  if (!tools) throw new Error('call needJava(t) first (and stop if it returns false)')
  return tools
}

// ---------------------------------------------------------------------------------------------
// Child processes, cleaned up even when the test process exits without teardown

const live = new Set<ChildProcess>()
const tempDirs = new Set<string>()
let exitHook = false

function registerExitHook(): void {
  if (exitHook) return
  exitHook = true
  process.on('exit', () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL')
      } catch {
        // already gone
      }
    }
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true })
  })
}

export type { Run }

/** A command to its end, killed with the other children if the test process exits first. */
function run(cmd: string, args: string[], timeoutMs: number): Promise<Run> {
  const r = runProcess(cmd, args, timeoutMs, { maxBuffer: 64 << 20, live })
  registerExitHook()
  return r
}

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
  const { java } = needTools()
  const dir = await compileClient()
  // Short-lived client JVMs: C1 only and the serial GC start faster and burn less CPU on a 2-core machine.
  return run(java, ['-Xmx256m', '-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', '-Xshare:auto', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn', '-cp', [dir, ...CLIENT_JARS].join(path.delimiter), MAIN_CLASS, ...args], timeoutMs)
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
    duplicates: [...seen].filter(([, n]) => n > 1).map(([id]) => id).sort(asc),
    corrupt: [...corrupt].sort(asc),
    unexpected: [...seen.keys()].filter((id) => !sentSet.has(id)).sort(asc),
  }
}

/** A short list for assertion messages. */
export function ids(list: number[], max = 20): string {
  return list.length <= max ? `[${list.join(', ')}]` : `[${list.slice(0, max).join(', ')}, ... ${list.length - max} more]`
}

// ---------------------------------------------------------------------------------------------
// The broker

export type LockerKind = 'database' | 'lease'

export interface BrokerOptions {
  jdbcUrl: string
  user: string
  password: string
  /** 'database': the jdbcPersistenceAdapter default (SELECT ... FOR UPDATE held for the broker's life); 'lease': lease-database-locker. */
  locker: LockerKind
  /** Broker name (also the lease holder id); default `pgraid-amq`. */
  name?: string
  /** jdbcPersistenceAdapter lockKeepAlivePeriod in ms; default: ActiveMQ's for 'database', 5000 for 'lease'. */
  lockKeepAlivePeriod?: number
  /** The locker's lockAcquireSleepInterval in ms (how often a slave retries); default: ActiveMQ's. */
  lockAcquireSleepInterval?: number
  /** Registers kill + temp dir removal as teardown. */
  t?: Test
  /** false: return as soon as the process runs (a slave waiting for the lock); call broker.ready() later. */
  waitReady?: boolean
  readyTimeoutMs?: number
}

export interface LogEntry {
  level: string
  /** The first line (timestamp | level | message | logger | thread). */
  line: string
  /** The whole entry, with stack trace lines. */
  text: string
}

export interface Broker {
  /** OpenWire URL, tcp://127.0.0.1:port */
  url: string
  port: number
  name: string
  dir: string
  logFile: string
  pid: number
  /** Settles when the java process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>
  /** SIGTERM (ActiveMQ's shutdown hook stops the broker), waits; SIGKILL and throws after timeoutMs. */
  stop(timeoutMs?: number): Promise<void>
  /** The last `lines` lines of the broker's log. */
  logTail(lines?: number): string
  /** The log split into entries (a timestamped line plus its continuation lines). */
  entries(): LogEntry[]
  /** Waits until the broker serves OpenWire (see BrokerOptions.waitReady). */
  ready(ms?: number): Promise<void>
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}


function activemqXml(o: BrokerOptions & { name: string; port: number; dataDir: string }): string {
  const locker =
    o.locker === 'lease'
      ? `\n        <locker><lease-database-locker${o.lockAcquireSleepInterval ? ` lockAcquireSleepInterval="${o.lockAcquireSleepInterval}"` : ''}/></locker>\n      `
      : o.lockAcquireSleepInterval
        ? `\n        <locker><database-locker lockAcquireSleepInterval="${o.lockAcquireSleepInterval}"/></locker>\n      `
        : ''
  const keepAlive = o.lockKeepAlivePeriod ?? (o.locker === 'lease' ? 5000 : undefined)
  const adapterAttrs = `dataSource="#pgraid-ds"${keepAlive !== undefined ? ` lockKeepAlivePeriod="${keepAlive}"` : ''}`
  const adapter = locker ? `<jdbcPersistenceAdapter ${adapterAttrs}>${locker}</jdbcPersistenceAdapter>` : `<jdbcPersistenceAdapter ${adapterAttrs}/>`
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by test/activemq/harness.ts -->
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
                           http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">

  <bean id="pgraid-ds" class="org.apache.commons.dbcp2.BasicDataSource" destroy-method="close">
    <property name="driverClassName" value="org.postgresql.Driver"/>
    <property name="url" value="${xml(o.jdbcUrl)}"/>
    <property name="username" value="${xml(o.user)}"/>
    <property name="password" value="${xml(o.password)}"/>
  </bean>

  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="${xml(o.name)}" useJmx="false" persistent="true"
          dataDirectory="${xml(o.dataDir)}" schedulerSupport="false">
    <persistenceAdapter>
      ${adapter}
    </persistenceAdapter>
    <systemUsage>
      <systemUsage>
        <memoryUsage><memoryUsage percentOfJvmHeap="70"/></memoryUsage>
        <storeUsage><storeUsage limit="2 gb"/></storeUsage>
        <tempUsage><tempUsage limit="1 gb"/></tempUsage>
      </systemUsage>
    </systemUsage>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:${o.port}"/>
    </transportConnectors>
  </broker>
</beans>
`
}

const LOG4J = `# Generated by test/activemq/harness.ts (Debian's ActiveMQ logs through slf4j-log4j12 to log4j 1.2).
log4j.rootLogger=INFO, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%d{ISO8601} | %-5p | %m | %c | %t%n
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
`

const ENTRY_START = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \| (\w+)\s*\| /
const STARTED = /Apache ActiveMQ \S+ \([^,]*, [^)]*\) started/

function parseEntries(log: string): LogEntry[] {
  const out: LogEntry[] = []
  for (const line of log.split('\n')) {
    const m = line.match(ENTRY_START)
    if (m) out.push({ level: m[1], line, text: line })
    else if (out.length > 0 && line !== '') out[out.length - 1].text += `\n${line}`
  }
  return out
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines - 1).join('\n')
}

/**
 * Starts a broker on `opts.jdbcUrl`; resolves once it logged that the OpenWire connector listens
 * on its port and that the broker started. Readiness is read from the log only: a TCP probe that
 * connects and closes makes the broker log a WARN ("Could not accept connection ... channel has
 * already failed"), which the tests count as a problem.
 */
export { freePort }

export async function startBroker(opts: BrokerOptions): Promise<Broker> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts)
    } catch (e) {
      // Another process took the port between freePort() and the broker's bind.
      if (attempt < 3 && e instanceof BindError) continue
      throw e
    }
  }
}

class BindError extends Error {}

async function startOnce(opts: BrokerOptions): Promise<Broker> {
  const { java } = needTools()
  registerExitHook()
  const name = opts.name ?? 'pgraid-amq'
  const dir = await mkdtemp(path.join(os.tmpdir(), `pgraid-amq-${name}-`))
  tempDirs.add(dir)
  const removeDir = async () => {
    tempDirs.delete(dir)
    await rm(dir, { recursive: true, force: true })
  }
  const port = await freePort()
  const dataDir = path.join(dir, 'data')
  const xmlFile = path.join(dir, 'activemq.xml')
  const logFile = path.join(dir, 'broker.log')
  await writeFile(xmlFile, activemqXml({ ...opts, name, port, dataDir }))
  await writeFile(path.join(dir, 'log4j.properties'), LOG4J)

  const args = [
    '-Xms64m',
    '-Xmx512m',
    // The broker lives seconds here: C1 only, serial GC (less CPU next to three PostgreSQL servers on 2 cores).
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-Djava.awt.headless=true',
    `-Dactivemq.home=${ACTIVEMQ_HOME}`,
    `-Dactivemq.base=${dir}`,
    `-Dactivemq.conf=${dir}`,
    `-Dactivemq.data=${dataDir}`,
    `-Dactivemq.classpath=${BROKER_EXTRA_CLASSPATH.join(path.delimiter)}`,
    `-Dlog4j.configuration=file:${path.join(dir, 'log4j.properties')}`,
    `-Djava.io.tmpdir=${dir}`,
    '-cp',
    BROKER_FILES.launcher,
    'org.apache.activemq.console.Main',
    'start',
    `xbean:file:${xmlFile}`,
  ]
  const fd = openSync(logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn(java, args, { cwd: dir, stdio: ['ignore', fd, fd] })
  } finally {
    closeSync(fd)
  }
  live.add(child)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child)
      resolve({ code, signal })
    })
    child.once('error', () => {
      live.delete(child)
      resolve({ code: null, signal: null })
    })
  })
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null
  void exited.then((e) => (exit = e))

  const readLog = () => {
    try {
      return readFileSync(logFile, 'utf8')
    } catch {
      return ''
    }
  }
  const logTail = (lines = 80) => tail(readLog(), lines)
  const kill = async () => {
    if (exit === null) child.kill('SIGKILL')
    await exited
  }

  const broker: Broker = {
    url: `tcp://127.0.0.1:${port}`,
    port,
    name,
    dir,
    logFile,
    pid: child.pid ?? -1,
    exited,
    kill,
    async stop(timeoutMs = STOP_TIMEOUT_MS) {
      if (exit !== null) return
      child.kill('SIGTERM')
      let timer: NodeJS.Timeout | undefined
      const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))])
      clearTimeout(timer)
      if (!done) {
        await kill()
        throw new Error(`broker ${name} did not stop within ${timeoutMs} ms of SIGTERM (killed); log tail:\n${logTail(40)}`)
      }
    },
    logTail,
    entries: () => parseEntries(readLog()),
    ready: async () => {},
  }
  opts.t?.teardown(async () => {
    await kill()
    await removeDir()
  })

  /** Resolves once the broker serves OpenWire (a slave only after it got the lock); kills it and throws after ms. */
  const ready = async (readyMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS): Promise<void> => {
    const until = Date.now() + readyMs
    for (;;) {
      const log = readLog()
      if (exit !== null) {
        const e: { code: number | null; signal: NodeJS.Signals | null } = exit
        if (!opts.t) await removeDir()
        const msg = `broker ${name} exited before it was ready (exit ${e.code}${e.signal ? `, signal ${e.signal}` : ''}); log tail:\n${tail(log, 60)}`
        throw /Address already in use|BindException/.test(log) ? new BindError(msg) : new Error(msg)
      }
      if (STARTED.test(log) && new RegExp(`Listening for connections at: tcp://[^:\\s]+:${port}\\b`).test(log)) return
      if (/Address already in use|BindException/.test(log)) {
        await kill()
        if (!opts.t) await removeDir()
        throw new BindError(`broker ${name}: port ${port} taken; log tail:\n${tail(log, 30)}`)
      }
      if (Date.now() > until) {
        await kill()
        const msg = `broker ${name} not ready within ${readyMs} ms (no "Listening for connections at: tcp://...:${port}" and "Apache ActiveMQ ... started" lines); killed; log tail:\n${tail(readLog(), 60)}`
        if (!opts.t) await removeDir()
        throw new Error(msg)
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  broker.ready = ready
  if (opts.waitReady !== false) await ready()
  return broker
}

// ---------------------------------------------------------------------------------------------
// What the broker log says about the database

/** SQLSTATEs ActiveMQ's table creation is expected to hit (tables, columns, indexes that exist; the lock row; its pkey quirk). */
export const EXPECTED_CREATE_SQLSTATES = new Set([
  '42P07', // relation already exists
  '42701', // column already exists
  '42704', // constraint "activemq_acks_pkey" does not exist (ActiveMQ names it pk_activemq_acks)
  '42P16', // multiple primary keys (ADD PRIMARY KEY after the failed DROP)
  '23505', // INSERT INTO ACTIVEMQ_LOCK(ID) VALUES (1) on an existing schema
])

const BENIGN_WARN = [/Memory Usage for the Broker/, /Store limit is/, /Temporary Store limit is/]

/**
 * WARN/ERROR entries that are not known to be harmless: every ERROR; every WARN except the
 * table-creation warnings with an expected SQLSTATE (and their "Failure details" companion)
 * and the JVM/disk size notices.
 */
export function unexpectedProblems(entries: LogEntry[]): LogEntry[] {
  const out: LogEntry[] = []
  let lastCreateOk = false
  for (const e of entries) {
    if (e.level !== 'WARN' && e.level !== 'ERROR') continue
    if (e.level === 'WARN') {
      if (/Could not create JDBC tables/.test(e.line)) {
        const state = e.text.match(/SQLState: (\w{5})/)?.[1]
        lastCreateOk = state !== undefined && EXPECTED_CREATE_SQLSTATES.has(state)
        if (lastCreateOk) continue
      } else if (/\| Failure details: /.test(e.line) && lastCreateOk) {
        lastCreateOk = false
        continue
      } else if (BENIGN_WARN.some((r) => r.test(e.line))) continue
    }
    out.push(e)
  }
  return out
}
