// Decoders for the few messages routing and reconciliation must read. Pure:
// a message body in, a value out. Everything else is relayed undecoded.

import { B } from './codes.ts'

export class Reader {
  off: number
  constructor(
    readonly buf: Buffer,
    off = 0,
  ) {
    this.off = off
  }
  int32(): number {
    if (this.off + 4 > this.buf.length) throw new RangeError('message truncated')
    const v = this.buf.readInt32BE(this.off)
    this.off += 4
    return v
  }
  int16(): number {
    if (this.off + 2 > this.buf.length) throw new RangeError('message truncated')
    const v = this.buf.readInt16BE(this.off)
    this.off += 2
    return v
  }
  uint16(): number {
    if (this.off + 2 > this.buf.length) throw new RangeError('message truncated')
    const v = this.buf.readUInt16BE(this.off)
    this.off += 2
    return v
  }
  byte(): number {
    if (this.off + 1 > this.buf.length) throw new RangeError('message truncated')
    return this.buf[this.off++]
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.off)
    if (end < 0) throw new RangeError('string not terminated')
    const s = this.buf.toString('utf8', this.off, end)
    this.off = end + 1
    return s
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.off + n > this.buf.length) throw new RangeError('message truncated')
    const b = this.buf.subarray(this.off, this.off + n)
    this.off += n
    return b
  }
  get done(): boolean {
    return this.off >= this.buf.length
  }
}

/** Fields of an ErrorResponse or NoticeResponse body, keyed by field letter. */
export function errorFields(body: Buffer): Record<string, string> {
  const r = new Reader(body)
  const out: Record<string, string> = {}
  for (;;) {
    const code = r.byte()
    if (code === 0) break
    out[String.fromCharCode(code)] = r.cstring()
  }
  return out
}

export function cstringBody(body: Buffer): string {
  return new Reader(body).cstring()
}

export interface StartupPacket {
  protocol: number
  params: Record<string, string>
}

/** StartupMessage body after the length: protocol version then name/value pairs. */
export function startupPacket(msg: Buffer): StartupPacket {
  const r = new Reader(msg, 4)
  const protocol = r.int32()
  const params: Record<string, string> = {}
  for (;;) {
    const name = r.cstring()
    if (name === '') break
    params[name] = r.cstring()
  }
  return { protocol, params }
}

export interface ParseMsg {
  name: string
  query: string
  paramTypes: number[]
}

export function parseMsg(body: Buffer): ParseMsg {
  const r = new Reader(body)
  const name = r.cstring()
  const query = r.cstring()
  const n = r.uint16()
  const paramTypes: number[] = []
  for (let i = 0; i < n; i++) paramTypes.push(r.int32())
  return { name, query, paramTypes }
}

export interface BindHead {
  portal: string
  statement: string
}

/** Only the names: parameters and formats are relayed as bytes. */
export function bindHead(body: Buffer): BindHead {
  const r = new Reader(body)
  return { portal: r.cstring(), statement: r.cstring() }
}

/** A whole Bind message (values are views into the body: no copy). The one Bind parser: every reader uses it. */
export interface BindMsg extends BindHead {
  /** Parameter format codes as sent: none (all text), one for all, or one per parameter. */
  formats: number[]
  values: (Buffer | null)[]
  /** Where the parameter count starts, and where the result format codes start (for rewriting). */
  paramsAt: number
  resultsAt: number
}

export function parseBind(body: Buffer): BindMsg {
  const r = new Reader(body)
  const portal = r.cstring()
  const statement = r.cstring()
  // Counts are unsigned 16-bit, as PostgreSQL reads them (pq_getmsgint(msg, 2)).
  const nFmt = r.uint16()
  const formats: number[] = []
  for (let i = 0; i < nFmt; i++) formats.push(r.int16())
  const paramsAt = r.off
  const n = r.uint16()
  const values: (Buffer | null)[] = []
  for (let i = 0; i < n; i++) {
    const len = r.int32()
    values.push(len < 0 ? null : r.bytes(len))
  }
  return { portal, statement, formats, values, paramsAt, resultsAt: r.off }
}

/** The format code of parameter `i` (0-based): none given is text, one given covers all. */
export function paramFormat(formats: readonly number[], i: number): number {
  return formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[i] ?? 0)
}

export interface Target {
  kind: 'S' | 'P'
  name: string
}

export function describeOrClose(body: Buffer): Target {
  const r = new Reader(body)
  const k = r.byte()
  if (k !== 0x53 && k !== 0x50) throw new RangeError(`invalid target type ${k}`)
  return { kind: k === 0x53 ? 'S' : 'P', name: r.cstring() }
}

export interface ExecuteMsg {
  portal: string
  maxRows: number
}

export function executeMsg(body: Buffer): ExecuteMsg {
  const r = new Reader(body)
  return { portal: r.cstring(), maxRows: r.int32() }
}

/**
 * The fields of every DataRow in a stretch of backend messages, as text
 * (null for SQL NULL). Only for pgraid's own queries: relayed rows are never
 * decoded.
 */
export function textDataRows(raw: Buffer): (string | null)[][] {
  const rows: (string | null)[][] = []
  for (let off = 0; off + 5 <= raw.length; off += 1 + raw.readInt32BE(off + 1)) {
    if (raw[off] !== B.DataRow) continue
    const fields: (string | null)[] = []
    let p = off + 7
    for (let i = 0, n = raw.readInt16BE(off + 5); i < n; i++) {
      const len = raw.readInt32BE(p)
      p += 4
      fields.push(len < 0 ? null : raw.toString('utf8', p, p + len))
      if (len > 0) p += len
    }
    rows.push(fields)
  }
  return rows
}

export function queryText(body: Buffer): string {
  return new Reader(body).cstring()
}

export function parameterStatusBody(body: Buffer): [string, string] {
  const r = new Reader(body)
  return [r.cstring(), r.cstring()]
}
