// A client on a bare TCP socket for hostile-input tests: raw startup-phase
// packets and typed messages are written as given (nothing a driver would add),
// and the server's messages are read back with bounded waits. Logs in as
// 'trusted' (auth trust), so no SCRAM in raw bytes.

import net from 'node:net'
import type { Stack } from './stack.ts'
import { cstr, int16, int32 as int32InRange, typed } from './bytes.ts'

/** Int32 of `n` wrapped to 32 bits (two's complement), so a computed value never throws. */
export const int32 = (n: number): Buffer => int32InRange(n | 0)
/** An untyped startup-phase packet: length, code, rest. */
export function untyped(code: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([int32(8 + rest.length), int32(code), rest])
}
export const PROTO = (major: number, minor: number) => (major << 16) | minor
export const SSL_REQUEST = 80877103
export const GSSENC_REQUEST = 80877104
export const CANCEL_REQUEST = 80877102

export function startupPacket(params: Record<string, string>, protocol = PROTO(3, 0)): Buffer {
  const kv = Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)])
  return untyped(protocol, Buffer.concat([...kv, Buffer.from([0])]))
}
export const query = (sql: string) => typed('Q', cstr(sql))
export const parse = (name: string, sql: string) => typed('P', Buffer.concat([cstr(name), cstr(sql), int16(0)]))
export const bind = (portal: string, stmt: string) => typed('B', Buffer.concat([cstr(portal), cstr(stmt), int16(0), int16(0), int16(0)]))
export const execute = (portal: string) => typed('E', Buffer.concat([cstr(portal), int32(0)]))
export const FLUSH = typed('H')
export const SYNC = typed('S')
export const TERMINATE = typed('X')

export interface Msg {
  type: string
  body: Buffer
  /** ErrorResponse / NoticeResponse fields by letter. */
  fields?: Record<string, string>
}

export function decodeFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let off = 0
  while (off < body.length && body[off] !== 0) {
    const code = String.fromCharCode(body[off])
    const end = body.indexOf(0, off + 1)
    if (end < 0) break
    out[code] = body.toString('utf8', off + 1, end)
    off = end + 1
  }
  return out
}

/** Text of the columns of a DataRow body. */
export function dataRow(body: Buffer): (string | null)[] {
  const n = body.readInt16BE(0)
  const out: (string | null)[] = []
  let off = 2
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(off)
    off += 4
    if (len < 0) out.push(null)
    else {
      out.push(body.toString('utf8', off, off + len))
      off += len
    }
  }
  return out
}

export function describe(m: Msg): string {
  if (m.fields) return `${m.type}(${m.fields.S ?? ''} ${m.fields.C ?? ''} ${m.fields.M ?? ''})`
  if (m.type === 'Z') return `Z(${m.body.toString('latin1')})`
  return m.type
}

export const openRaw = new Set<Raw>()

/** A client on a bare TCP socket: writes raw bytes, reads backend messages with bounded waits. */
export class Raw {
  private buf: Buffer = Buffer.alloc(0)
  private wake: (() => void) | null = null
  /** Every message received so far (for failure messages). */
  readonly seen: Msg[] = []
  ended = false
  socketError: Error | null = null

  private constructor(
    readonly label: string,
    readonly sock: net.Socket,
  ) {
    sock.on('data', (c: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, c]) : c
      this.wake?.()
    })
    sock.on('error', (e) => (this.socketError = e))
    sock.on('close', () => {
      this.ended = true
      openRaw.delete(this)
      this.wake?.()
    })
  }

  static open(stack: Stack, label: string, ms = 5000): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: stack.host, port: stack.port })
      const raw = new Raw(label, sock)
      openRaw.add(raw)
      const timer = setTimeout(() => {
        sock.destroy()
        reject(new Error(`${label}: TCP connect to pgraid did not complete within ${ms} ms`))
      }, ms)
      sock.once('connect', () => {
        clearTimeout(timer)
        resolve(raw)
      })
      sock.once('error', (e) => {
        clearTimeout(timer)
        reject(new Error(`${label}: TCP connect to pgraid failed: ${e.message}`))
      })
    })
  }

  write(b: Buffer | string): void {
    if (!this.sock.destroyed) this.sock.write(b)
  }

  destroy(): void {
    this.sock.destroy()
  }

  /** Unread bytes (e.g. to check that nothing was sent). */
  get pending(): number {
    return this.buf.length
  }

  private summary(): string {
    const msgs = this.seen.map(describe).join(', ') || 'no messages'
    return `${msgs}${this.buf.length ? ` + ${this.buf.length} unparsed bytes` : ''}${this.socketError ? ` (socket error: ${this.socketError.message})` : ''}`
  }

  private async waitFor<T>(take: () => T | undefined, what: string, ms: number): Promise<T> {
    const deadline = Date.now() + ms
    for (;;) {
      const v = take()
      if (v !== undefined) return v
      if (this.ended) throw new Error(`${this.label}: connection closed while waiting for ${what}; received: ${this.summary()}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`${this.label}: no ${what} within ${ms} ms; received: ${this.summary()}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = null
    }
  }

  /** One single byte (the answer to SSLRequest / GSSENCRequest). */
  byte(ms = 5000): Promise<number> {
    return this.waitFor(
      () => {
        if (!this.buf.length) return undefined
        const b = this.buf[0]
        this.buf = this.buf.subarray(1)
        return b
      },
      'single-byte answer',
      ms,
    )
  }

  private takeMessage(): Msg | undefined {
    if (this.buf.length < 5) return undefined
    const len = this.buf.readInt32BE(1)
    if (len < 4) throw new Error(`${this.label}: server sent a message with length ${len}`)
    if (this.buf.length < 1 + len) return undefined
    const type = String.fromCharCode(this.buf[0])
    const body = Buffer.from(this.buf.subarray(5, 1 + len))
    this.buf = this.buf.subarray(1 + len)
    const m: Msg = { type, body }
    if (type === 'E' || type === 'N') m.fields = decodeFields(body)
    this.seen.push(m)
    return m
  }

  /** Whole messages already received, without waiting. */
  available(): Msg[] {
    const out: Msg[] = []
    for (let m = this.takeMessage(); m; m = this.takeMessage()) out.push(m)
    return out
  }

  next(what = 'a message', ms = 5000): Promise<Msg> {
    return this.waitFor(() => this.takeMessage(), what, ms)
  }

  /** Messages up to and including the first of `type`. */
  async until(type: string, ms = 5000): Promise<Msg[]> {
    const out: Msg[] = []
    const deadline = Date.now() + ms
    for (;;) {
      const m = await this.next(`message '${type}'`, Math.max(1, deadline - Date.now()))
      out.push(m)
      if (m.type === type) return out
    }
  }

  /** Resolves once the server has closed the connection. */
  closed(ms = 5000): Promise<true> {
    return this.waitFor(() => (this.ended ? true : undefined), 'connection close by pgraid', ms).catch((e: Error) => {
      if (this.ended) return true as const
      throw e
    })
  }

  /** StartupMessage, then everything up to ReadyForQuery. */
  async login(params: Record<string, string> = {}, protocol = PROTO(3, 0)): Promise<Msg[]> {
    this.write(startupPacket({ user: 'trusted', database: 'postgres', application_name: this.label, ...params }, protocol))
    const msgs = await this.until('Z', 15_000)
    const err = msgs.find((m) => m.type === 'E')
    if (err) throw new Error(`${this.label}: login refused: ${describe(err)}`)
    return msgs
  }

  /** A simple query; returns everything up to ReadyForQuery. */
  async query(sql: string, ms = 10_000): Promise<Msg[]> {
    this.write(query(sql))
    return this.until('Z', ms)
  }

  static async login(stack: Stack, label: string, params: Record<string, string> = {}): Promise<Raw> {
    const r = await Raw.open(stack, label)
    await r.login(params)
    return r
  }
}
