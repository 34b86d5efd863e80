// What the ActiveMQ tests need from the machine (a JDK, Debian's ActiveMQ and the jars) and their
// child processes, killed (and their folders removed) even when the test process exits without
// teardown. Used by the JMS client (harness.ts) and the broker (broker.ts).

import type { Test } from 'tap'
import type { ChildProcess } from 'node:child_process'
import { constants, rmSync } from 'node:fs'
import { access } from 'node:fs/promises'
import { findTool, run as runProcess, type Run } from '../harness/proc.ts'
import path from 'node:path'

export const DEBIAN_PACKAGES = 'default-jdk-headless activemq libactivemq-java libcommons-dbcp2-java libpostgresql-jdbc-java'

export const JAVA_LIB = '/usr/share/java'
export const ACTIVEMQ_HOME = '/usr/share/activemq'
export const lib = (name: string) => path.join(JAVA_LIB, name)

/** Jars the broker needs beyond what activemq.home/lib{,/optional} provides, and the launcher. */
export const BROKER_FILES = {
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
export const BROKER_EXTRA_CLASSPATH = [BROKER_FILES.dbcp2, BROKER_FILES.pool2, BROKER_FILES.pgjdbc]

/** The JMS client's classpath (besides the compiled class): all from libactivemq-java's dependencies. */
export const CLIENT_JARS = ['activemq-client.jar', 'geronimo-jms_1.1_spec.jar', 'geronimo-j2ee-management-1.1-spec.jar', 'hawtbuf.jar', 'slf4j-api.jar', 'slf4j-simple.jar'].map(lib)

export const READY_TIMEOUT_MS = 60_000
export const STOP_TIMEOUT_MS = 30_000
export const COMPILE_TIMEOUT_MS = 60_000

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
    t.fail(`the ActiveMQ tests need a JDK, ActiveMQ, commons-dbcp2 and pgjdbc; missing:\n  ${missing.join('\n  ')}\n` + `Install them with: apt-get install -y ${DEBIAN_PACKAGES}`)
    return false
  }
  tools = { java: java!, javac: javac! }
  return true
}

export function needTools(): { java: string; javac: string } {
  if (!tools) throw new Error('call needJava(t) first (and stop if it returns false)')
  return tools
}

// ---------------------------------------------------------------------------------------------
// Child processes, cleaned up even when the test process exits without teardown

export const live = new Set<ChildProcess>()
export const tempDirs = new Set<string>()
let exitHook = false

export function registerExitHook(): void {
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
export function run(cmd: string, args: string[], timeoutMs: number): Promise<Run> {
  const r = runProcess(cmd, args, timeoutMs, { maxBuffer: 64 << 20, live })
  registerExitHook()
  return r
}
