// A minimal PostgreSQL protocol client on a raw socket, for tests that need
// exact control over the messages (pipelines, errors mid-pipeline, slow
// readers). Logs in as a trust user; decodes only what tests assert on.

import net from 'node:net'
import { cstr, int16, int32, typed } from './bytes.ts'

export interface RawMessage {
  type: string
  body: Buffer
}

export const fe = {
  query: (sql: string) => typed('Q', cstr(sql)),
  parse: (name: string, sql: string) => typed('P', Buffer.concat([cstr(name), cstr(sql), int16(0)])),
  bind: (portal: string, stmt: string, params: (string | null)[] = []) =>
    typed(
      'B',
      Buffer.concat([
        cstr(portal),
        cstr(stmt),
        int16(0),
        int16(params.length),
        ...params.map((p) => (p === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(p)), Buffer.from(p)]))),
        int16(0),
      ]),
    ),
  describe: (kind: 'S' | 'P', name: string) => typed('D', Buffer.concat([Buffer.from(kind), cstr(name)])),
  execute: (portal: string, maxRows = 0) => typed('E', Buffer.concat([cstr(portal), int32(maxRows)])),
  close: (kind: 'S' | 'P', name: string) => typed('C', Buffer.concat([Buffer.from(kind), cstr(name)])),
  sync: () => typed('S'),
  flush: () => typed('H'),
  terminate: () => typed('X'),
  raw: typed,
}

export function errorCode(m: RawMessage): string | undefined {
  let i = 0
  while (i < m.body.length && m.body[i] !== 0) {
    const code = String.fromCharCode(m.body[i])
    const end = m.body.indexOf(0, i + 1)
    const v = m.body.toString('utf8', i + 1, end)
    if (code === 'C') return v
    i = end + 1
  }
  return undefined
}

export class RawClient {
  private buf = Buffer.alloc(0)
  private queue: RawMessage[] = []
  private waiters: (() => void)[] = []
  closed = false

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c])
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1)
        if (this.buf.length < len + 1) break
        this.queue.push({ type: String.fromCharCode(this.buf[0]), body: this.buf.subarray(5, len + 1) })
        this.buf = this.buf.subarray(len + 1)
      }
      this.wake()
    })
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
    socket.on('error', () => {})
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  /** Connects and logs in (trust user); resolves after the first ReadyForQuery. */
  static async login(port: number, user = 'trusted', database = 'postgres'): Promise<RawClient> {
    const socket = net.connect({ host: '127.0.0.1', port })
    await new Promise<void>((res, rej) => {
      socket.once('connect', () => res())
      socket.once('error', rej)
    })
    const c = new RawClient(socket)
    const params = Buffer.concat([cstr('user'), cstr(user), cstr('database'), cstr(database), Buffer.from([0])])
    const startup = Buffer.concat([int32(8 + params.length), int32(196608), params])
    socket.write(startup)
    await c.until('Z', 10_000)
    return c
  }

  send(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs))
  }

  /** Messages up to and including the first of type `type`; bounded wait. */
  async until(type: string, ms = 10_000): Promise<RawMessage[]> {
    const { out, closed } = await this.collect(type, ms)
    if (closed) throw new Error(`connection closed before '${type}' (got ${out.map((m) => m.type).join('')})`)
    return out
  }

  /** Messages up to a ReadyForQuery or until the server closes the connection (then 'closed' is true); bounded wait. */
  async untilReadyOrClosed(ms = 10_000): Promise<RawMessage[]> {
    return (await this.collect('Z', ms)).out
  }

  /** Messages up to and including the first of type `type`, or all there were when the server closed. */
  private async collect(type: string, ms: number): Promise<{ out: RawMessage[]; closed: boolean }> {
    const deadline = Date.now() + ms
    const out: RawMessage[] = []
    for (;;) {
      while (this.queue.length) {
        const m = this.queue.shift()!
        out.push(m)
        if (m.type === type) return { out, closed: false }
      }
      if (this.closed) return { out, closed: true }
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no '${type}' within ${ms} ms (got ${out.map((m) => m.type).join('')})`)
      await new Promise<void>((res) => {
        const timer = setTimeout(res, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          res()
        })
      })
    }
  }

  end(): void {
    this.socket.end(fe.terminate())
  }
}
