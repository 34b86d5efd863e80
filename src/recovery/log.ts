// The recovery log of one database, as the proxy sees it: the schema is
// ensured on every backend before the first write, and log sequence numbers
// are handed out in the order COMMITs are sent. The next LSN is derived from
// the backends' own logs (the highest LSN any of them has), so a pgraid
// started fresh continues where the last one stopped: nothing is kept on the
// proxy's disk (invariant 7).

import pg from 'pg'
import type { Logger } from 'pino'
import type { BackendTarget } from '../backend/connection.ts'
import { ensureSchema } from './schema.ts'

export interface BackendLogState {
  backend: string
  /** Highest LSN in this backend's log (0 = empty). */
  maxLsn: number
  records: number
}

export class RecoveryLog {
  private next = 1
  private readying: Promise<void> | null = null
  /** What each backend's log held when pgraid first looked. */
  initial: BackendLogState[] = []

  constructor(
    private readonly targets: () => BackendTarget[],
    readonly database: string,
    private readonly log: Logger,
  ) {}

  /** Ensures the schema everywhere and learns the next LSN (once; retried after a failure). */
  ready(): Promise<void> {
    this.readying ??= this.prepare().catch((e) => {
      this.readying = null
      throw e
    })
    return this.readying
  }

  /** The LSN of the next COMMIT to be sent. Synchronous: send order is LSN order. */
  take(): number {
    return this.next++
  }

  private async prepare(): Promise<void> {
    const states = await Promise.all(this.targets().map((t) => this.inspect(t)))
    this.initial = states
    this.next = Math.max(this.next, ...states.map((s) => s.maxLsn + 1))
    this.log.debug({ database: this.database, next: this.next, backends: states }, 'recovery log ready')
  }

  private async inspect(t: BackendTarget): Promise<BackendLogState> {
    const client = new pg.Client({
      host: t.host,
      port: t.port,
      user: t.user,
      password: t.password ?? undefined,
      database: t.database ?? this.database,
      application_name: 'pgraid recovery log',
    })
    client.on('error', () => {})
    await client.connect()
    try {
      await ensureSchema(client)
      const r = await client.query<{ max: string; n: string }>('SELECT coalesce(max(lsn), 0) AS max, count(*) AS n FROM pgraid.log')
      return { backend: t.name, maxLsn: Number(r.rows[0]!.max), records: Number(r.rows[0]!.n) }
    } finally {
      await client.end().catch(() => {})
    }
  }
}
