// Builds the backend messages pgraid itself sends to clients (authentication,
// status, errors, completions). Relayed backend messages are never rebuilt.

import { B } from './codes.ts'

/** A typed message with the given body. */
export function message(type: number, body: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length)
  out[0] = type
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}

const EMPTY = Buffer.alloc(0)

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8')
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeInt32BE(n)
  return b
}

export function authOk(): Buffer {
  return message(B.Authentication, int32(0))
}

export function authCleartext(): Buffer {
  return message(B.Authentication, int32(3))
}

export function authMd5(salt: Buffer): Buffer {
  return message(B.Authentication, Buffer.concat([int32(5), salt]))
}

export function authSasl(mechanisms: string[]): Buffer {
  return message(B.Authentication, Buffer.concat([int32(10), ...mechanisms.map(cstr), Buffer.from([0])]))
}

export function authSaslContinue(data: Buffer): Buffer {
  return message(B.Authentication, Buffer.concat([int32(11), data]))
}

export function authSaslFinal(data: Buffer): Buffer {
  return message(B.Authentication, Buffer.concat([int32(12), data]))
}

export function parameterStatus(name: string, value: string): Buffer {
  return message(B.ParameterStatus, Buffer.concat([cstr(name), cstr(value)]))
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return message(B.BackendKeyData, Buffer.concat([int32(pid), int32(secret)]))
}

export type TxStatus = 'I' | 'T' | 'E'

const READY: Record<TxStatus, Buffer> = {
  I: message(B.ReadyForQuery, Buffer.from('I')),
  T: message(B.ReadyForQuery, Buffer.from('T')),
  E: message(B.ReadyForQuery, Buffer.from('E')),
}

export function readyForQuery(status: TxStatus): Buffer {
  return READY[status]
}

export function commandComplete(tag: string): Buffer {
  return message(B.CommandComplete, cstr(tag))
}

export function emptyQueryResponse(): Buffer {
  return message(B.EmptyQueryResponse)
}

export function parseComplete(): Buffer {
  return message(B.ParseComplete)
}

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE'
  code: string
  message: string
  detail?: string
  hint?: string
  position?: number
}

/** ErrorResponse (or NoticeResponse) with the fields PostgreSQL clients read. */
export function errorResponse(f: ErrorFields, type: number = B.ErrorResponse): Buffer {
  const parts: Buffer[] = [Buffer.from('S'), cstr(f.severity), Buffer.from('V'), cstr(f.severity), Buffer.from('C'), cstr(f.code), Buffer.from('M'), cstr(f.message)]
  if (f.detail) parts.push(Buffer.from('D'), cstr(f.detail))
  if (f.hint) parts.push(Buffer.from('H'), cstr(f.hint))
  if (f.position) parts.push(Buffer.from('P'), cstr(String(f.position)))
  parts.push(Buffer.from([0]))
  return message(type, Buffer.concat(parts))
}
