// Messages PostgreSQL cannot read and answers with ERROR 08P01, the session
// going on (pq_getmsgstring, pq_getmsgend, pq_getmsgbytes in
// src/backend/libpq/pqformat.c): pgraid finds them before any backend sees
// them and answers as PostgreSQL does, after running the readable messages
// sent before them in the same batch (docs/protocol.md).

import { F } from '../protocol/codes.ts'
import { bindHead, describeOrClose, executeMsg, parseMsg } from '../protocol/decode.ts'
import type { Frame } from '../protocol/framer.ts'
import { bindParams } from '../scheduler/key-values.ts'
import { PgError } from '../errors.ts'

/**
 * A Query whose text is not one NUL-terminated string, or a Sync/Flush with a body: the cheap check
 * every batch's terminator gets (one byte read for a Query).
 */
export function malformedTerminator(f: Frame): PgError | null {
  const bodyLength = f.bytes.length - f.bodyOffset
  if (f.type === F.Query) {
    // A NUL inside the text is left to the backends (each answers alike).
    if (bodyLength && f.bytes[f.bytes.length - 1] === 0) return null
    return new PgError('08P01', 'invalid string in message')
  }
  if ((f.type === F.Sync || f.type === F.Flush) && bodyLength) return new PgError('08P01', 'invalid message format')
  return null
}

/** What PostgreSQL answers to `f`, if it cannot read it. */
export function unreadable(f: Frame): PgError | null {
  const body = f.bytes.subarray(f.bodyOffset)
  try {
    switch (f.type) {
      case F.Parse:
        parseMsg(body)
        break
      case F.Bind:
        bindHead(body)
        bindParams(body)
        break
      case F.Execute:
        executeMsg(body)
        break
      case F.Describe:
      case F.Close: {
        const k = body[0]
        if (body.length && k !== 0x53 && k !== 0x50) return new PgError('08P01', `invalid ${f.type === F.Describe ? 'DESCRIBE' : 'CLOSE'} message subtype ${k}`)
        describeOrClose(body)
        break
      }
      default:
        return malformedTerminator(f)
    }
  } catch (e) {
    if (!(e instanceof RangeError)) throw e
    return new PgError('08P01', /string/.test(e.message) ? 'invalid string in message' : 'insufficient data left in message')
  }
  return null
}

/** The first message of the batch PostgreSQL cannot read, and its answer. */
export function firstUnreadable(frames: readonly Frame[]): { index: number; error: PgError } | null {
  for (const [index, f] of frames.entries()) {
    const error = unreadable(f)
    if (error) return { index, error }
  }
  return null
}
