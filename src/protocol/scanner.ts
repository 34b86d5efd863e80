// Finds message boundaries in a backend's byte stream while the bytes flow
// through untouched. Bodies are assembled only for the message types the
// caller asks for (CommandComplete, ErrorResponse, ReadyForQuery, ...); a
// DataRow or CopyData is never copied or decoded here.

export interface ScanSink {
  /** Raw bytes of the current message of `type` (all or part of it), in order. */
  data(type: number, slice: Buffer): void
  /** The current message is complete; `body` only when `wantBody(type)`. */
  end(type: number, body: Buffer | null): void
}

export class Scanner {
  private type = 0
  /** Bytes of the current message still expected (header included until known). */
  private remaining = 0
  private header: Buffer | null = null
  private body: Buffer | null = null
  private bodyFilled = 0

  constructor(private readonly wantBody: (type: number) => boolean) {}

  push(chunk: Buffer, sink: ScanSink): void {
    let off = 0
    const n = chunk.length
    while (off < n) {
      if (this.remaining === 0) {
        // At a message start, or inside a header split across chunks.
        const have = this.header ? this.header.length : 0
        const need = 5 - have
        if (n - off < need) {
          this.header = this.header ? Buffer.concat([this.header, chunk.subarray(off)]) : Buffer.from(chunk.subarray(off))
          return
        }
        let hdr: Buffer
        if (this.header) {
          hdr = Buffer.concat([this.header, chunk.subarray(off, off + need)])
          sink.data(hdr[0], hdr)
          this.header = null
        } else {
          hdr = chunk.subarray(off, off + 5)
        }
        const type = hdr[0]
        const len = hdr.readInt32BE(1)
        if (len < 4) throw new Error(`backend sent a message with invalid length ${len}`)
        this.type = type
        const bodyLen = len - 4
        if (this.wantBody(type)) {
          this.body = Buffer.allocUnsafe(bodyLen)
          this.bodyFilled = 0
        } else this.body = null
        // The header bytes taken from this chunk are emitted with the body below.
        const headerStart = have === 0 ? off : -1
        off += need
        const take = Math.min(bodyLen, n - off)
        if (headerStart >= 0) sink.data(type, chunk.subarray(headerStart, off + take))
        else if (take > 0) sink.data(type, chunk.subarray(off, off + take))
        if (this.body) {
          chunk.copy(this.body, 0, off, off + take)
          this.bodyFilled = take
        }
        off += take
        this.remaining = bodyLen - take
        if (this.remaining === 0) this.finish(sink)
        else if (this.remaining > 0) continue
      } else {
        const take = Math.min(this.remaining, n - off)
        sink.data(this.type, chunk.subarray(off, off + take))
        if (this.body) {
          chunk.copy(this.body, this.bodyFilled, off, off + take)
          this.bodyFilled += take
        }
        off += take
        this.remaining -= take
        if (this.remaining === 0) this.finish(sink)
      }
    }
  }

  private finish(sink: ScanSink): void {
    const body = this.body
    this.body = null
    sink.end(this.type, body)
  }
}
