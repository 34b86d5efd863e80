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
