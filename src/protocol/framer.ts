// Splits a client's byte stream into whole protocol messages without decoding
// them. Whole messages inside one chunk are views on that chunk (no copy); a
// message split across chunks is assembled into one buffer allocated at its
// final size, so a 1 GiB Bind costs one copy, not one per chunk.

export interface Frame {
  /** Type byte (0 for untyped startup-phase messages). */
  type: number
  /** The whole message: type byte (if any), length and body. */
  bytes: Buffer
  /** Offset of the body inside `bytes`. */
  bodyOffset: number
}

export class FrameTooLarge extends Error {
  constructor(
    readonly length: number,
    readonly max: number,
  ) {
    super(`message of ${length} bytes exceeds the maximum of ${max}`)
  }
}

export class MalformedFrame extends Error {}

/**
 * A length PostgreSQL itself refuses (src/backend/libpq/pqcomm.c pq_getmessage, tcop/backend_startup.c
 * ProcessStartupPacket): it logs "invalid message length" and closes the connection without a word,
 * so pgraid does the same (docs/protocol.md).
 */
export class RefusedLength extends MalformedFrame {}

/** PostgreSQL's limits: a startup packet's body, small message types' bodies. */
export const MAX_STARTUP_PACKET = 10_000
export const SMALL_MESSAGE_LIMIT = 10_000
/** PostgreSQL's limit on an authentication message's body (PG_MAX_AUTH_TOKEN_LENGTH): beyond it, it closes. */
export const AUTH_MESSAGE_LIMIT = 65_535
/** A declared length of 1 GiB or more: PostgreSQL closes (its large-message limit is just below). */
const GIB = 0x40000000
/** Types whose body PostgreSQL limits to SMALL_MESSAGE_LIMIT: Close, Describe, Execute, Flush, Sync, Terminate, CopyDone, CopyFail. */
const SMALL_TYPES = new Set([0x43, 0x44, 0x45, 0x48, 0x53, 0x58, 0x63, 0x66])

export class Framer {
  /** Header bytes of a message not yet complete (fewer than a header). */
  private head: Buffer | null = null
  /** Message being assembled across chunks, and how much of it is filled. */
  private partial: Buffer | null = null
  private filled = 0
  /** Untyped framing (StartupMessage, SSLRequest, CancelRequest) until switched. */
  untyped: boolean
  /** During authentication every message is limited as PostgreSQL limits a password or SASL message. */
  authenticating = false

  constructor(
    private readonly maxMessageBytes: number,
    untyped = false,
  ) {
    this.untyped = untyped
  }

  /** While onFrame runs: bytes of the current chunk after the frame being handled. */
  private ahead = 0

  /** Bytes received but not yet part of a whole message (during onFrame: including those after it). */
  get pending(): number {
    return (this.head?.length ?? 0) + this.filled + this.ahead
  }

  /**
   * Feeds a chunk; calls `onFrame` for each whole message. `onFrame` may flip
   * `untyped` (startup → normal) and the remaining bytes are framed accordingly.
   */
  push(chunk: Buffer, onFrame: (f: Frame) => void): void {
    let off = 0
    if (this.partial) {
      const take = Math.min(this.partial.length - this.filled, chunk.length)
      chunk.copy(this.partial, this.filled, 0, take)
      this.filled += take
      off = take
      if (this.filled < this.partial.length) return
      const whole = this.partial
      this.partial = null
      this.filled = 0
      this.ahead = chunk.length - off
      onFrame({ type: this.untyped ? 0 : whole[0], bytes: whole, bodyOffset: this.untyped ? 4 : 5 })
      this.ahead = 0
    }
    let buf = chunk
    if (this.head) {
      buf = Buffer.concat([this.head, chunk.subarray(off)])
      this.head = null
      off = 0
    }
    for (;;) {
      const header = this.untyped ? 4 : 5
      const avail = buf.length - off
      if (avail < header) {
        if (avail > 0) this.head = Buffer.from(buf.subarray(off))
        return
      }
      const len = this.untyped ? buf.readInt32BE(off) : buf.readInt32BE(off + 1)
      if (this.untyped) {
        if (len < 8 || len - 4 > MAX_STARTUP_PACKET) throw new RefusedLength(`invalid length of startup packet (${len})`)
      } else {
        // Only a length beyond the small limit needs the type looked at.
        if (len < 4 || (len - 4 > SMALL_MESSAGE_LIMIT && (SMALL_TYPES.has(buf[off]!) || len >= GIB)))
          throw new RefusedLength(`invalid message length ${len} for message type '${String.fromCharCode(buf[off]!)}'`)
        if (this.authenticating && len - 4 > AUTH_MESSAGE_LIMIT) throw new RefusedLength(`invalid message length ${len} during authentication`)
      }
      if (len > this.maxMessageBytes) throw new FrameTooLarge(len, this.maxMessageBytes)
      const total = this.untyped ? len : len + 1
      if (avail < total) {
        this.partial = Buffer.allocUnsafe(total)
        buf.copy(this.partial, 0, off)
        this.filled = avail
        return
      }
      this.ahead = avail - total
      onFrame({ type: this.untyped ? 0 : buf[off], bytes: buf.subarray(off, off + total), bodyOffset: header })
      this.ahead = 0
      off += total
    }
  }
}
