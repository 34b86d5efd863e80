// COPY FROM STDIN at the proxy: once the CopyInResponse is relayed, the
// client's CopyData/CopyDone/CopyFail go to the COPY's backends, gathered and
// written once per received chunk (pgbench sends one CopyData per row). In
// the extended protocol the backends ignore the batch's own Sync during COPY,
// so the client's Sync after CopyDone is forwarded too and ends the COPY.
// A backend that does not drain pauses the client (until it drains or is
// gone: a lost backend does not hold the COPY).

import type net from 'node:net'
import { F } from '../protocol/codes.ts'
import type { Frame } from '../protocol/framer.ts'

/** Client messages that belong to a COPY in progress (Flush/Sync are ignored by the backend then). */
export const COPY_TYPES = new Set<number>([F.CopyData, F.CopyDone, F.CopyFail, F.Flush, F.Sync])

export class CopyIn {
  private awaitingSync = false
  private pending: Buffer[] = []
  /** False once CopyDone/CopyFail (and, extended, the Sync after it) went through. */
  active = true

  constructor(
    private readonly targets: net.Socket[],
    private readonly extended: boolean,
    private readonly client: net.Socket,
  ) {}

  /** Takes a client message; false if it is not part of the COPY (the caller queues it). */
  take(f: Frame): boolean {
    if (!this.active) return false
    if (this.awaitingSync) {
      if (f.type !== F.Sync) return false
      this.active = false
    } else if (f.type === F.CopyDone || f.type === F.CopyFail) {
      if (this.extended) this.awaitingSync = true
      else this.active = false
    } else if (f.type === F.Terminate) {
      return false // the session closes, and the COPY with it
    } else if (!COPY_TYPES.has(f.type)) {
      // Any other message (a Query, a Parse...) goes where PostgreSQL would read it: the COPY's
      // backends answer it as one server does (08P01 "unexpected message type during COPY"), and
      // the session ends with them if they hang up. Held in the inbox, it would wait forever.
      this.active = false
    }
    this.pending.push(f.bytes)
    if (!this.active) this.flush()
    return true
  }

  /** Writes what the last chunk brought, in one write per backend. */
  flush(): void {
    if (!this.pending.length) return
    const buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending)
    this.pending = []
    for (const sock of this.targets) {
      // A backend lost mid-COPY is out of service: the COPY goes on with the others.
      if (sock.destroyed || !sock.writable) continue
      if (!sock.write(buf) && !this.client.isPaused()) {
        this.client.pause()
        const resume = () => {
          sock.off('drain', resume)
          sock.off('close', resume)
          this.client.resume()
        }
        sock.on('drain', resume)
        sock.on('close', resume)
      }
    }
  }
}
