// psql sessions: one long-running `psql` per session, fed statements on
// stdin. After each statement an \echo marker line carries psql's SQLSTATE,
// ROW_COUNT and LAST_ERROR_MESSAGE variables (psql >= 12); rows come as CSV
// (unambiguous quoting) with NULL printed as a token no real value holds.
//
// Limits (the torture's statements respect them, as they do inline()'s): a
// statement must be lexically complete (an unclosed quote would swallow the
// marker and hang the session), and must not hold psql's `:name` variable
// syntax or `\` commands outside literals.

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { DriverError, inline, type ClientSession, type Connect, type Endpoint, type Result } from './driver.ts'

/** Printed for SQL NULL: control characters (unquoted in psql's CSV), so no plausible text value equals it. */
const NULL = '\x01N\x01'

/** What psql prints on stderr when the connection broke, including before a (silent) reconnect. */
const LOST = /server closed the connection unexpectedly|connection to server was lost|Attempting reset|no connection to the server|could not (receive|send) data (from|to) server|SSL SYSCALL error/

interface Marker {
  out: string
  sqlstate: string
  rowCount: string
  message: string
}

interface Waiter {
  resolve(m: Marker): void
  reject(e: Error): void
}

/** psql's CSV: `,` between fields, `\n` after each record, `"` quoting with `""` for a quote. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = []
  let rec: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted) {
      if (c !== '"') field += c
      else if (text[i + 1] === '"') ((field += '"'), i++)
      else quoted = false
    } else if (c === '"') quoted = true
    else if (c === ',') (rec.push(field), (field = ''))
    else if (c === '\n') (rec.push(field), records.push(rec), (rec = []), (field = ''))
    else field += c
  }
  return records
}

class PsqlSession implements ClientSession {
  readonly driver = 'psql' as const
  /** Random per session: a marker line cannot be confused with a row. */
  private readonly nonce = randomBytes(8).toString('hex')
  private readonly markerRe: RegExp
  private readonly waiters: Waiter[] = []
  private buf = ''
  private stderrTail = ''
  private dead: string | null = null
  private readonly exited: Promise<void>

  constructor(private readonly child: ChildProcess) {
    this.markerRe = new RegExp(`(?:^|\\n)${this.nonce} (\\S*) (\\S*) ([\\s\\S]*?) ${this.nonce}\\.\\n`)
    child.stdout!.setEncoding('utf8').on('data', (d: string) => this.onStdout(d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-2000)
      // Non-interactive psql exits here; were it ever to reconnect, the session must still die.
      if (LOST.test(this.stderrTail)) this.fail(`psql: connection lost: ${this.stderrTail.trim()}`)
    })
    child.stdin!.on('error', () => {}) // EPIPE once psql died: reported through 'close'.
    child.once('error', (e) => this.fail(`psql: ${e.message} (psql comes with the Debian package postgresql-client)`))
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => {
        this.fail(`psql exited (${signal ?? `code ${code}`})${this.stderrTail.trim() ? `: ${this.stderrTail.trim()}` : ''}`)
        resolve()
      }),
    )
  }

  /** Output settings, then the first marker: it arrives once psql has connected. */
  async start(): Promise<void> {
    await this.send(`\\pset format csv\n\\pset null '\\x01N\\x01'\n\\pset pager off\n`)
  }

  async query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Result<R>> {
    // A trailing `;` would leave an empty statement whose result overwrote SQLSTATE and ROW_COUNT.
    const text = inline(sql, params).replace(/[\s;]+$/, '')
    if (!text) return { rows: [], rowCount: null }
    // SQLSTATE unset first: if psql never ran the statement, the marker shows `:SQLSTATE` literally.
    const m = await this.send(`\\unset SQLSTATE\n${text}\n;\n`)
    if (m.sqlstate === ':SQLSTATE') {
      throw new DriverError('psql did not send the statement (lexically incomplete, e.g. an unclosed parenthesis)', '42601')
    }
    if (m.sqlstate === '' || m.sqlstate.startsWith('08')) {
      const why = `psql: connection lost (SQLSTATE ${m.sqlstate || 'none'}): ${m.message}`
      this.fail(why)
      throw new DriverError(why)
    }
    if (m.sqlstate !== '00000') throw new DriverError(m.message, m.sqlstate)
    const rowCount = Number(m.rowCount)
    if (!m.out) return { rows: [], rowCount }
    const [header, ...records] = parseCsv(m.out)
    const rows = records.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] === NULL ? null : r[i]])) as R)
    return { rows, rowCount }
  }

  /** The key pgraid gave psql is not visible to us (pg_backend_pid() would be a backend's, not pgraid's). */
  cancelKey(): null {
    return null
  }

  async end(): Promise<void> {
    if (this.dead) return
    this.child.stdin!.end('\\q\n')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await this.exited
    clearTimeout(timer)
  }

  destroy(): void {
    this.fail('psql session destroyed')
  }

  /** Writes `input` then the marker; `\r` afterwards clears what an incomplete statement left in psql's buffer. */
  private send(input: string): Promise<Marker> {
    if (this.dead) return Promise.reject(new DriverError(this.dead))
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject })
      this.child.stdin!.write(`${input}\\echo ${this.nonce} :SQLSTATE :ROW_COUNT :LAST_ERROR_MESSAGE ${this.nonce}.\n\\r\n`)
    })
  }

  private onStdout(d: string): void {
    this.buf += d
    let m: RegExpExecArray | null
    while ((m = this.markerRe.exec(this.buf))) {
      const out = this.buf.slice(0, m.index + (this.buf[m.index] === '\n' ? 1 : 0))
      this.buf = this.buf.slice(m.index + m[0].length)
      this.waiters.shift()?.resolve({ out, sqlstate: m[1], rowCount: m[2], message: m[3] })
    }
  }

  /** The session is over: psql killed, every statement in flight fails as a lost connection (no SQLSTATE). */
  private fail(why: string): void {
    if (this.dead) return
    this.dead = why
    this.child.kill('SIGKILL')
    for (const w of this.waiters.splice(0)) w.reject(new DriverError(why))
  }
}

/** A psql session (`psql -X -q -v ON_ERROR_STOP=0`, autocommit; parameters inlined as literals). */
export const connectPsql: Connect = async (ep: Endpoint) => {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=0', '-h', ep.host, '-p', String(ep.port), '-U', ep.user, '-d', 'postgres']
  const env = { ...process.env, PGPASSWORD: ep.password, PGCONNECT_TIMEOUT: '10', PGCLIENTENCODING: 'UTF8', PGAPPNAME: 'torture-psql', PGSSLMODE: 'disable' }
  const s = new PsqlSession(spawn('psql', args, { env, stdio: ['pipe', 'pipe', 'pipe'] }))
  await s.start()
  return s
}
