// Client faults as torture operations: a client that vanishes (socket
// destroyed, no Terminate) mid-transaction, right after sending COMMIT,
// mid-COPY, mid-pipeline (with and without its Sync), and a statement cut by
// statement_timeout; a complete pipeline is the control. Each operation has
// its own connection, on a small raw protocol client, so that exactly the
// messages described reach pgraid and nothing (no driver's Sync, ROLLBACK or
// Terminate) follows them. Rows are (op id, 1..k): the checker knows from the
// table alone which operation wrote what, even one whose answer was lost.

import net from 'node:net'
import { ScramClient } from '../../src/auth/scram.ts'
import { md5Response } from '../../src/auth/md5.ts'
import { fe } from '../../test/harness/raw-client.ts'
import type { Endpoint } from './drivers/driver.ts'
import type { History, Op, Outcome, Rng } from './history.ts'

export const VANISH_SETUP: string[] = ['DROP TABLE IF EXISTS vanish', 'CREATE TABLE vanish (op int NOT NULL, n int NOT NULL, PRIMARY KEY (op, n))']

export const VANISH_HOWS = ['mid-tx', 'after-commit', 'mid-copy', 'mid-pipeline', 'pipeline-sync-vanish', 'pipeline', 'statement-timeout'] as const
export type VanishHow = (typeof VANISH_HOWS)[number]
export interface VanishArgs {
  how: VanishHow
  rows: number
}

/** No step waits longer than this for pgraid: a hang becomes a recorded outcome, not a stuck client. */
const STEP_MS = 20_000

interface Msg {
  type: string
  body: Buffer
}

/** An error from pgraid's answer (code = SQLSTATE) or from the connection (no code). */
class WireError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message)
  }
}

function fields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i < body.length && body[i] !== 0;) {
    const end = body.indexOf(0, i + 1)
    out[String.fromCharCode(body[i]!)] = body.toString('utf8', i + 1, end)
    i = end + 1
  }
  return out
}

/** One client connection on a raw socket: exact control over what is written and when the socket dies. */
class Wire {
  private buf: Buffer = Buffer.alloc(0)
  private readonly queue: Msg[] = []
  private wake: (() => void) | null = null
  closed = false

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, c]) : c
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1)
        if (this.buf.length < len + 1) break
        this.queue.push({ type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, len + 1) })
        this.buf = this.buf.subarray(len + 1)
      }
      this.wake?.()
    })
    socket.on('close', () => {
      this.closed = true
      this.wake?.()
    })
    socket.on('error', () => {})
  }

  /** Connects and logs in (scram-sha-256, md5 or password, as pgraid asks); resolves at the first ReadyForQuery. */
  static async open(ep: Endpoint): Promise<Wire> {
    const socket = net.connect({ host: ep.host, port: ep.port })
    await new Promise<void>((res, rej) => {
      socket.once('connect', res)
      socket.once('error', rej)
    })
    const w = new Wire(socket)
    try {
      const params = Buffer.from(`user\0${ep.user}\0database\0postgres\0\0`, 'utf8')
      const startup = Buffer.alloc(8 + params.length)
      startup.writeInt32BE(startup.length, 0)
      startup.writeInt32BE(196608, 4)
      params.copy(startup, 8)
      socket.write(startup)
      let scram: ScramClient | null = null
      for (;;) {
        const m = await w.next()
        if (m.type === 'Z') return w
        if (m.type !== 'R') continue
        const code = m.body.readInt32BE(0)
        if (code === 10) {
          scram = new ScramClient(ep.password)
          const first = scram.first()
          const len = Buffer.alloc(4)
          len.writeInt32BE(first.length)
          w.send(fe.raw('p', Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len, first])))
        } else if (code === 11) w.send(fe.raw('p', scram!.final(m.body.subarray(4))))
        else if (code === 12) scram!.verify(m.body.subarray(4))
        else if (code === 5) w.send(fe.raw('p', Buffer.from(md5Response(ep.user, ep.password, m.body.subarray(4, 8)) + '\0')))
        else if (code === 3) w.send(fe.raw('p', Buffer.from(ep.password + '\0')))
        else if (code !== 0) throw new WireError(`unsupported authentication request ${code}`)
      }
    } catch (e) {
      socket.destroy()
      throw e
    }
  }

  send(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs))
  }

  /** The next message; an ErrorResponse is thrown (with its SQLSTATE), as is a closed connection or STEP_MS of silence. */
  async next(): Promise<Msg> {
    const deadline = Date.now() + STEP_MS
    for (;;) {
      const m = this.queue.shift()
      if (m) {
        if (m.type === 'E') {
          const f = fields(m.body)
          throw new WireError(`${f.C}: ${f.M}`, f.C)
        }
        return m
      }
      if (this.closed) throw new WireError('connection closed by pgraid')
      const left = deadline - Date.now()
      if (left <= 0) throw new WireError(`no answer within ${STEP_MS} ms (hang)`)
      await new Promise<void>((res) => {
        const timer = setTimeout(res, left)
        this.wake = () => {
          clearTimeout(timer)
          this.wake = null
          res()
        }
      })
    }
  }

  /** Messages up to the `count`-th of type `type`. */
  async until(type: string, count = 1): Promise<void> {
    for (let seen = 0; seen < count;) if ((await this.next()).type === type) seen++
  }

  /** A simple-protocol statement, read to its ReadyForQuery (an error is thrown after the ReadyForQuery that follows it). */
  async query(sql: string): Promise<void> {
    this.send(fe.query(sql))
    await this.untilReady()
  }

  /** Reads to ReadyForQuery; throws the first ErrorResponse once its ReadyForQuery came (the connection is then idle). */
  async untilReady(): Promise<void> {
    let failed: unknown = null
    for (;;) {
      try {
        if ((await this.next()).type === 'Z') break
      } catch (e) {
        if (!(e instanceof WireError) || !e.code) throw e
        failed ??= e
      }
    }
    if (failed) throw failed
  }

  /** The client vanishes: the socket is destroyed, nothing more is sent (no Terminate). */
  vanish(): void {
    this.socket.destroy()
  }

  /** A polite end: Terminate, then close. */
  end(): void {
    this.socket.end(fe.terminate())
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const insertRows = (op: number, k: number) => `INSERT INTO vanish (op, n) SELECT ${op}, g FROM generate_series(1, ${k}) g`

/** Parse of one INSERT, then Bind + Execute of each row (the unnamed statement and portal, as drivers send). */
function pipeline(op: number, k: number): Buffer[] {
  const out = [fe.parse('', 'INSERT INTO vanish (op, n) VALUES ($1, $2)')]
  for (let n = 1; n <= k; n++) out.push(fe.bind('', '', [String(op), String(n)]), fe.execute(''))
  return out
}

/**
 * One client that may vanish: opens its own connection, does `how` (by default chosen by r) and
 * records the operation as kind 'vanish' with args { how, rows }.
 */
export async function vanishOp(ep: Endpoint, client: number, history: History, r: Rng, how: VanishHow = r.pick(VANISH_HOWS)): Promise<void> {
  const k = r.int(1, 8)
  const args: VanishArgs = { how, rows: k }
  const op = history.begin(client, 'vanish' as Op['kind'], args)
  // Until a request that could commit was sent, any failure leaves nothing committed.
  let mayCommit = false
  let w: Wire | null = null
  const finish = (outcome: Outcome, error?: string) => history.end(op, outcome, undefined, error)
  try {
    w = await Wire.open(ep)
    switch (how) {
      case 'mid-tx':
        await w.query('BEGIN')
        await w.query(insertRows(op.id, k))
        w.vanish()
        return finish('failed', 'vanished mid-transaction (rows inserted, no COMMIT sent)')
      case 'after-commit': {
        await w.query('BEGIN')
        await w.query(insertRows(op.id, k))
        mayCommit = true
        // Sometimes gone before COMMIT left this process's socket, sometimes while pgraid commits.
        const delay = r.int(0, 3)
        w.send(fe.query('COMMIT'))
        if (delay) await sleep(delay)
        w.vanish()
        return finish('indeterminate', `vanished ${delay} ms after sending COMMIT, without reading the answer`)
      }
      case 'mid-copy': {
        // Half the time in an explicit transaction: then pgraid holds a transaction open around the COPY too.
        const inTx = r.next() < 0.5
        if (inTx) await w.query('BEGIN')
        w.send(fe.query('COPY vanish (op, n) FROM STDIN'))
        await w.until('G')
        for (let n = 1; n <= k; n++) w.send(fe.raw('d', Buffer.from(`${op.id}\t${n}\n`)))
        // Give pgraid time to forward some of the data before the client is gone.
        await sleep(r.int(0, 10))
        w.vanish()
        return finish('failed', `vanished mid-COPY${inTx ? ' in a transaction' : ''} (CopyData sent, no CopyDone)`)
      }
      case 'mid-pipeline': {
        // No Sync: the implicit transaction is open; Flush makes pgraid answer what ran so far.
        w.send(...pipeline(op.id, k), fe.flush())
        const answered = r.int(1, k)
        await w.until('C', answered)
        w.vanish()
        return finish('failed', `vanished mid-pipeline (${answered} of ${k} INSERTs answered, no Sync sent)`)
      }
      case 'pipeline-sync-vanish':
        mayCommit = true
        // The whole pipeline, its Sync and the end of the stream in one write; destroyed at once.
        w.socket.end(Buffer.concat([...pipeline(op.id, k), fe.sync()]))
        w.vanish()
        return finish('indeterminate', 'vanished right after sending the pipeline with its Sync')
      case 'pipeline':
        mayCommit = true
        w.send(...pipeline(op.id, k), fe.sync())
        await w.untilReady()
        w.end()
        return finish('ok')
      case 'statement-timeout': {
        await w.query(`SET statement_timeout = '${r.int(1, 30)}ms'`)
        mayCommit = true
        try {
          await w.query(`${insertRows(op.id, k)}, pg_sleep(${(r.int(0, 30) / 1000).toFixed(3)})`)
        } catch (e) {
          const code = (e as WireError).code
          if (!code) throw e
          // The server's answer: the autocommit INSERT failed (57014 or otherwise), nothing committed.
          w.end()
          return finish('failed', e instanceof Error ? e.message : String(e))
        }
        w.end()
        return finish('ok')
      }
    }
  } catch (e) {
    w?.vanish()
    const err = e as WireError
    // A server error ends the (implicit) transaction without commit; a lost connection after a commit could start is indeterminate.
    const outcome: Outcome = mayCommit && !err.code ? 'indeterminate' : 'failed'
    finish(outcome, `${err.code ?? 'no code'} ${err.message}`)
  }
}

/** The vanish operations against the vanish table's rows (read directly from a backend). */
export function checkVanish(ops: Op[], rows: { op: number; n: number }[]): { lost: string[]; phantom: string[]; anomalies: string[] } {
  const lost: string[] = []
  const phantom: string[] = []
  const anomalies: string[] = []
  const byOp = new Map<number, Set<number>>()
  for (const row of rows) {
    const s = byOp.get(row.op) ?? new Set<number>()
    s.add(row.n)
    byOp.set(row.op, s)
  }
  const vanishOps = new Map(ops.filter((o) => (o.kind as string) === 'vanish').map((o) => [o.id, o]))
  for (const [id, ns] of byOp) {
    const op = vanishOps.get(id)
    if (!op) {
      phantom.push(`vanish: ${ns.size} row(s) of op ${id}, which never ran`)
      continue
    }
    const k = (op.args as VanishArgs).rows
    const extra = [...ns].filter((n) => n < 1 || n > k)
    if (extra.length) phantom.push(`vanish: op ${id} wrote ${k} rows, yet rows n=${extra.join(',')} are there`)
  }
  for (const op of vanishOps.values()) {
    const { how, rows: k } = op.args as VanishArgs
    const ns = byOp.get(op.id)
    let present = 0
    for (let n = 1; n <= k; n++) if (ns?.has(n)) present++
    const what = `vanish op ${op.id} (${how}, ${op.outcome}${op.error ? `: ${op.error}` : ''})`
    if (op.outcome === 'ok' && present < k) lost.push(`${what}: ${k - present} of its ${k} rows missing`)
    else if (op.outcome === 'failed' && present > 0) anomalies.push(`${what}: ${present} of its ${k} rows present, yet nothing can have committed`)
    else if (op.outcome === 'indeterminate' && present > 0 && present < k) anomalies.push(`${what}: ${present} of its ${k} rows present (half a transaction committed)`)
  }
  return { lost, phantom, anomalies }
}
