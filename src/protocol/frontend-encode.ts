// Frontend messages pgraid sends to backends as a client: login and cancel.
// (Statements are relayed as the client's own bytes.)

import { F, CANCEL_REQUEST, PROTOCOL_3_0 } from './codes.ts'
import { message } from './encode.ts'

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8')
}

export function startup(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.alloc(8)]
  for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v))
  parts.push(Buffer.from([0]))
  const out = Buffer.concat(parts)
  out.writeInt32BE(out.length, 0)
  out.writeInt32BE(PROTOCOL_3_0, 4)
  return out
}

export function password(text: string): Buffer {
  return message(F.Password, cstr(text))
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4)
  len.writeInt32BE(data.length)
  return message(F.Password, Buffer.concat([cstr(mechanism), len, data]))
}

export function saslResponse(data: Buffer): Buffer {
  return message(F.Password, data)
}

export function cancelRequest(pid: number, secret: number): Buffer {
  const b = Buffer.alloc(16)
  b.writeInt32BE(16, 0)
  b.writeInt32BE(CANCEL_REQUEST, 4)
  b.writeInt32BE(pid, 8)
  b.writeInt32BE(secret, 12)
  return b
}

export const TERMINATE = message(F.Terminate)

function int16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeInt16BE(n)
  return b
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

export function query(text: string): Buffer {
  return message(F.Query, cstr(text))
}

/** Parse of the unnamed statement with declared parameter types (0 = let the server infer). */
export function parse(text: string, types: readonly number[]): Buffer {
  return message(F.Parse, Buffer.concat([cstr(''), cstr(text), int16(types.length), ...types.map(int32)]))
}

/** Bind of the unnamed portal: per-parameter format codes, values (null = SQL NULL), text results. */
export function bind(formats: readonly number[], values: readonly (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [cstr(''), cstr(''), int16(formats.length), ...formats.map(int16), int16(values.length)]
  for (const v of values) parts.push(v === null ? int32(-1) : Buffer.concat([int32(v.length), v]))
  parts.push(int16(0))
  return message(F.Bind, Buffer.concat(parts))
}

export function execute(): Buffer {
  return message(F.Execute, Buffer.concat([cstr(''), int32(0)]))
}

export const SYNC = message(F.Sync)
