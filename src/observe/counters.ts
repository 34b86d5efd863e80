// What the data path counts, as plain numbers and one histogram: shared by the
// server context (sessions bump them) and the metrics endpoint (reads them).
// Apart from admin/metrics.ts so the context does not import the endpoint.

import { FastHistogram } from './histogram.ts'

/** What one backend was sent and answered, since start (SHOW STATS, SHOW POOL_NODES, /metrics). */
export interface BackendCounts {
  /** Batches balanced to it alone (reads). */
  reads: number
  /** Batches sent to it with the others (writes, and everything inside a write transaction). */
  writes: number
  /** ErrorResponses it answered to clients' statements. */
  errors: number
  /** Session connections opened to it (login completed). */
  connections: number
}

/**
 * Why a client login was refused (pgraid_login_failures_total{reason}): password (wrong password or
 * proof), unknown-user, hba (no rule, a reject rule), cert (client certificate missing, invalid or
 * naming another user), tls (TLS required), not-admin (the console for a user without admin),
 * database (every backend refused it as PostgreSQL would: no such database, a bad option), too-many
 * (limits.maxClients, users[].maxConnections, the backends' limits), unavailable (no backend to log
 * in to, authQuery failed), protocol (a malformed or unsupported startup), timeout (timeouts.authMs).
 */
export const LOGIN_FAILURES = ['password', 'unknown-user', 'hba', 'cert', 'tls', 'not-admin', 'database', 'too-many', 'unavailable', 'protocol', 'timeout'] as const
export type LoginFailure = (typeof LOGIN_FAILURES)[number]

/** What the data path counts (plain numbers: cheaper than prom-client calls per message). */
export class Counters {
  bytesFromClients = 0
  bytesToClients = 0
  divergences = 0
  /** Per backend index: grown as backends are configured. */
  private readonly perBackend: BackendCounts[] = []
  /** Client logins refused, by reason (every reason present, from 0: a rate() needs the series before the first failure). */
  readonly loginFailures = new Map<LoginFailure, number>(LOGIN_FAILURES.map((r) => [r, 0]))
  /** Backends taken out of service, by cause (cluster/states.ts OutCause). */
  readonly takeouts = new Map<string, number>()
  readonly batch = new FastHistogram<'read' | 'write' | 'commit'>(
    'pgraid_batch_duration_seconds',
    'Time from sending a batch (statements up to a Sync or a simple Query) to the backends until their answers are in, by kind: read (one backend), write (every backend), commit (a write batch carrying a COMMIT)',
    'kind',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  )
  /** One series per kind, looked up once. */
  readonly batchBy = { read: this.batch.labels('read'), write: this.batch.labels('write'), commit: this.batch.labels('commit') }

  backend(index: number): BackendCounts {
    let c = this.perBackend[index]
    if (!c) this.perBackend[index] = c = { reads: 0, writes: 0, errors: 0, connections: 0 }
    return c
  }

  loginFailed(reason: LoginFailure): void {
    this.loginFailures.set(reason, this.loginFailures.get(reason)! + 1)
  }
}
