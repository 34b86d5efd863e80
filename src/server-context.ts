// What every session shares: configuration, the lock manager, the read
// balancer and per-backend counters, catalogs per database, the cancel-key
// registry and the client limit.

import type { Logger } from 'pino'
import type { Config } from './control/config.ts'
import type { BackendTarget } from './backend/connection.ts'
import type { LockManager } from './scheduler/lock-manager.ts'
import type { Balancer, BalancedBackend } from './router/balancer.ts'
import type { Catalog } from './scheduler/catalog.ts'
import type { Session } from './frontend/session.ts'
import type { RecoveryLog } from './recovery/log.ts'

export interface ServerContext {
  config: Config
  log: Logger
  locks: LockManager
  balancer: Balancer
  stats: BalancedBackend[]
  nextSessionId(): number
  /** Enabled backends, in configuration order. */
  backends(): BackendTarget[]
  catalog(database: string): Catalog
  /** The recovery log of a database (schema ensured on first use). */
  recovery(database: string): RecoveryLog
  /** Counts the session against limits.maxClients; false when full. */
  admit(s: Session): boolean
  release(s: Session): void
  cancel(pid: number, secret: number): void
}
