// One session's connection to one backend, and what the session knows about
// it: transaction status, whether it is skipping to Sync after an error.
// Routes the backend's messages to the batch in flight, or, between batches,
// handles what a backend may send unasked (notifications, notices, FATAL).

import type { BackendConnection } from '../backend/connection.ts'
import type { Exchange } from '../broadcast/exchange.ts'
import { B } from '../protocol/codes.ts'

export interface LinkHost {
  exchange: Exchange | null
  /** Between batches: a whole message the backend sent unasked. */
  unsolicited(link: BackendLink, type: number, body: Buffer | null, bytes: Buffer[]): void
  notification(link: BackendLink, body: Buffer): void
}

export class BackendLink {
  txStatus = 'I'
  skipping = false
  /** When the session got this connection (SHOW SERVERS connect_time). */
  readonly connectedAt = new Date()
  private idle: Buffer[] = []

  constructor(
    readonly index: number,
    readonly name: string,
    readonly conn: BackendConnection,
    host: LinkHost,
  ) {
    conn.attach({
      data: (type, slice) => {
        const ex = host.exchange
        if (ex) ex.data(index, type, slice)
        else if (type !== B.NotificationResponse) this.idle.push(slice)
      },
      end: (type, body) => {
        if (type === B.NotificationResponse) {
          if (body) host.notification(this, body)
          return
        }
        const ex = host.exchange
        if (ex) ex.end(index, type, body)
        else {
          const bytes = this.idle
          this.idle = []
          host.unsolicited(this, type, body, bytes)
        }
      },
    })
  }
}
