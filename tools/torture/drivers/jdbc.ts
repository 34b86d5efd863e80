// pgjdbc sessions: one JVM per harness run (TortureJdbc.java, compiled at
// first use) serves every session over a line protocol on its stdin/stdout;
// see the header of TortureJdbc.java. The JVM exits when its stdin closes:
// closeJdbc(), or the Node process ending.

import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { access, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises'
import { constants } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { DriverError, type ClientSession, type Connect, type Endpoint, type Result } from './driver.ts'

const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'TortureJdbc.java')
const JAR = process.env.PGJDBC_JAR ?? '/usr/share/java/postgresql.jar'
// Small and quick to start; VM warnings to stderr, never into the protocol on stdout.
const JVM_FLAGS = ['-Xmx128m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Xshare:auto', '-XX:+DisplayVMOutputToStderr']
const INSTALL = 'install the Debian packages default-jdk-headless and libpostgresql-jdbc-java'

type Field = string | null

const escape = (v: Field) => (v === null ? '\\N' : v.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!))
const unescape = (f: string): Field => (f === '\\N' ? null : f.replace(/\\(.)/g, (_, c: string) => ({ t: '\t', n: '\n', r: '\r' })[c] ?? c))

async function findTool(name: string): Promise<string | null> {
  const dirs = [...(process.env.JAVA_HOME ? [path.join(process.env.JAVA_HOME, 'bin')] : []), ...(process.env.PATH ?? '').split(path.delimiter)]
  for (const d of dirs.filter(Boolean)) {
    const p = path.join(d, name)
    if (
      await access(p, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return p
  }
  return null
}

/** The JDK and pgjdbc this driver needs, or why they are missing (a message naming the Debian packages). */
export async function jdbcMissing(): Promise<string | null> {
  const missing: string[] = []
  if (!(await findTool('javac')) || !(await findTool('java'))) missing.push('a JDK (java and javac, in $JAVA_HOME/bin or PATH)')
  if (
    !(await access(JAR, constants.R_OK).then(
      () => true,
      () => false,
    ))
  )
    missing.push(`pgjdbc (${JAR}; or set PGJDBC_JAR)`)
  return missing.length ? `the jdbc torture driver needs ${missing.join(' and ')}: ${INSTALL}` : null
}

/** Compiles TortureJdbc.java once per source and jar: into a cache dir keyed by their hash, so runs share it. */
async function compile(): Promise<string> {
  const why = await jdbcMissing()
  if (why) throw new Error(why)
  const jar = await stat(JAR)
  const hash = createHash('sha256')
    .update(await readFile(SOURCE))
    .update(`${JAR} ${jar.size} ${jar.mtimeMs}`)
    .digest('hex')
    .slice(0, 16)
  const dir = path.join(os.tmpdir(), `pgraid-torture-jdbc-${hash}`)
  if (
    await access(path.join(dir, 'TortureJdbc.class')).then(
      () => true,
      () => false,
    )
  )
    return dir
  const tmp = await mkdtemp(`${dir}-build-`)
  const javac = (await findTool('javac'))!
  await new Promise<void>((resolve, reject) =>
    execFile(javac, ['--release', '17', '-encoding', 'UTF-8', '-cp', JAR, '-d', tmp, SOURCE], { timeout: 120_000 }, (e, _out, err) =>
      e ? reject(new Error(`javac ${SOURCE} failed: ${err || e.message}`)) : resolve(),
    ),
  ).catch(async (e: unknown) => {
    await rm(tmp, { recursive: true, force: true })
    throw e
  })
  // Atomic publish; another process may have won the race, then its copy is as good as ours.
  await rename(tmp, dir).catch(() => rm(tmp, { recursive: true, force: true }))
  return dir
}

interface Pending {
  resolve(f: Field[]): void
  reject(e: Error): void
}

/** The JVM and its requests in flight. */
class Jvm {
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private buf = ''
  private stderrTail = ''
  private dead: string | null = null
  readonly exited: Promise<void>

  constructor(private readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => this.onData(d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderrTail = (this.stderrTail + d).slice(-4000)))
    child.stdin!.on('error', () => {}) // EPIPE after the JVM died: reported by 'close'.
    const killOnExit = () => child.kill('SIGKILL')
    process.once('exit', killOnExit) // Node exiting without closeJdbc() (e.g. process.exit): no JVM left behind.
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        process.removeListener('exit', killOnExit)
        this.fail(`jdbc JVM exited (${signal ?? `code ${code}`})${this.stderrTail.trim() ? `: ${this.stderrTail.trim()}` : ''}`)
        resolve()
      })
      // A JVM that could not start emits no 'close'.
      child.once('error', (e) => (this.fail(`jdbc JVM: ${e.message}`), resolve()))
    })
    this.setRef(false)
  }

  get alive(): boolean {
    return this.dead === null
  }

  request(fields: Field[]): Promise<Field[]> {
    if (this.dead) return Promise.reject(new DriverError(this.dead)) // No code: the connection is lost.
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.setRef(true)
      this.child.stdin!.write([String(id), ...fields].map(escape).join('\t') + '\n')
    })
  }

  /** Closes stdin (the JVM then exits); SIGKILL if it has not within 5 s. */
  async close(): Promise<void> {
    this.child.stdin!.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await this.exited
    clearTimeout(timer)
  }

  /** Only requests in flight keep Node's event loop alive: an idle JVM must not stop the harness from exiting. */
  private setRef(on: boolean): void {
    for (const h of [this.child, this.child.stdin, this.child.stdout, this.child.stderr] as Array<{ ref?(): void; unref?(): void } | null>) {
      if (on) h?.ref?.()
      else h?.unref?.()
    }
  }

  private onData(d: string): void {
    this.buf += d
    let nl: number
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const [id, ...rest] = this.buf.slice(0, nl).split('\t').map(unescape)
      this.buf = this.buf.slice(nl + 1)
      const p = this.pending.get(Number(id))
      if (!p) continue
      this.pending.delete(Number(id))
      if (this.pending.size === 0) this.setRef(false)
      if (rest[0] === 'err') p.reject(new DriverError(rest[2] ?? 'jdbc error', rest[1] ?? undefined))
      else p.resolve(rest)
    }
  }

  private fail(why: string): void {
    this.dead ??= why
    for (const p of this.pending.values()) p.reject(new DriverError(why))
    this.pending.clear()
  }
}

let jvm: Promise<Jvm> | null = null

function getJvm(): Promise<Jvm> {
  if (!jvm) {
    const started = compile().then(async (dir) => {
      const child = spawn((await findTool('java'))!, [...JVM_FLAGS, '-cp', `${dir}${path.delimiter}${JAR}`, 'TortureJdbc'], {
        stdio: ['pipe', 'pipe', 'pipe'],
      })
      const j = new Jvm(child)
      // A JVM that died is replaced at the next connect; its sessions stay failed.
      void j.exited.then(() => {
        if (jvm === started) jvm = null
      })
      return j
    })
    jvm = started
    started.catch(() => {
      if (jvm === started) jvm = null
    })
  }
  return jvm
}

/** Stops the JVM (if one runs), dropping its sessions' connections. The harness calls this at the end of a run. */
export async function closeJdbc(): Promise<void> {
  const j = jvm
  jvm = null
  if (j) await (await j.catch(() => null))?.close()
}

/** $1..$n → JDBC `?` placeholders, each with its own copy of the parameter (a $n may repeat or come out of order). */
function placeholders(sql: string, params: unknown[]): { sql: string; params: Field[] } {
  const out: Field[] = []
  const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
    const v = params[Number(n) - 1]
    out.push(v === null || v === undefined ? null : v instanceof Date ? v.toISOString() : Buffer.isBuffer(v) ? `\\x${v.toString('hex')}` : String(v))
    return '?'
  })
  return { sql: text, params: out }
}

let nextSession = 1

class JdbcSession implements ClientSession {
  readonly driver = 'jdbc' as const
  private gone = false

  constructor(
    private readonly jvm: Jvm,
    private readonly sid: string,
  ) {}

  async query<R = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Result<R>> {
    if (this.gone) throw new DriverError('jdbc session already closed', '08003')
    const q = placeholders(sql, params)
    const r = await this.jvm.request(['query', this.sid, q.sql, ...q.params])
    if (r[0] === 'count') {
      const n = Number(r[1])
      return { rows: [], rowCount: n < 0 ? null : n }
    }
    const ncols = Number(r[1])
    const nrows = Number(r[2])
    const labels = r.slice(3, 3 + ncols) as string[]
    const rows: R[] = []
    for (let i = 0, at = 3 + ncols; i < nrows; i++, at += ncols) {
      rows.push(Object.fromEntries(labels.map((l, c) => [l, r[at + c]])) as R)
    }
    return { rows, rowCount: nrows }
  }

  /** pgjdbc keeps the BackendKeyData secret to itself. */
  cancelKey(): null {
    return null
  }

  async end(): Promise<void> {
    if (this.gone) return
    this.gone = true
    await this.jvm.request(['end', this.sid]).catch(() => {})
  }

  destroy(): void {
    this.gone = true
    // Connection.abort in the JVM, not queued behind the session's statements: those fail with 08006.
    if (this.jvm.alive) this.jvm.request(['abort', this.sid]).catch(() => {})
  }
}

/**
 * A pgjdbc session (autocommit on; BEGIN/COMMIT/ROLLBACK are sent as statements). binaryTransfer=false:
 * once a statement is server-prepared (prepareThreshold, 5th run) pgjdbc asks for binary results, and
 * getString then gives "1.0E20" for a float8 and "[B@1f2e..." for a bytea; text results keep the values
 * the server prints, as the other drivers see them.
 */
export const connectJdbc: Connect = async (ep: Endpoint) => {
  const j = await getJvm()
  const sid = String(nextSession++)
  const opts = 'stringtype=unspecified&sslmode=disable&binaryTransfer=false&connectTimeout=10&ApplicationName=torture-jdbc'
  const url = `jdbc:postgresql://${ep.host}:${ep.port}/postgres?${opts}`
  await j.request(['open', sid, url, ep.user, ep.password])
  return new JdbcSession(j, sid)
}
