// What every session shares: configuration, the lock manager, the read
// balancer and per-backend counters, catalogs per database, the cancel-key
// registry and the client limit.

import type net from 'node:net'
import type { Logger } from 'pino'
import type { Config } from './config/schema.ts'
import type { ReloadResult } from './config/reload-plan.ts'
import type { BackendTarget } from './backend/connection.ts'
import type { LockManager } from './scheduler/lock-manager.ts'
import type { Balancer, BalancedBackend } from './router/balancer.ts'
import type { Catalog } from './scheduler/catalog.ts'
import type { RecoveryLog } from './recovery/log.ts'
import type { BackendStates, OutCause } from './cluster/states.ts'
import type { HealthMonitor } from './cluster/health.ts'
import type { RateMeter } from './observe/rate.ts'
import type { Counters } from './observe/counters.ts'
import type { PgError } from './errors.ts'
import type { ServerTls } from './tls/server-tls.ts'
import type { HbaRule } from './auth/hba.ts'
import type { Election } from './cluster/election.ts'
import type { Frame } from './protocol/framer.ts'

/**
 * What the shared state, the admin console and the metrics see of a client session
 * (src/frontend/session.ts implements it): a view, so nothing here depends on the session itself.
 */
/** The database name that reaches pgraid's admin console instead of the backends. */
export const ADMIN_DATABASE = 'pgraid'

/** The admin console as a session drives it (admin/console.ts; the server wires it, so frontend/ does not import admin/). */
export interface AdminConsoleSession {
  start(): void
  /** One frame from the client; false when it ended the session (Terminate). */
  onFrame(f: Frame): Promise<boolean>
  abort(reason: string): void
}

export type OpenConsole = (socket: net.Socket, ctx: ServerContext, user: string, pid: number, secret: number) => AdminConsoleSession

/** One backend connection of a client session, as SHOW SERVERS lists it. */
export interface ServerView {
  index: number
  backend: string
  /** The backend's process id. */
  pid: number
  localAddress: string | null
  localPort: number | null
  connectedAt: Date
  /** TLS protocol to the backend, or null for plain TCP. */
  tls: string | null
}

export interface ClientSession {
  readonly id: number
  readonly pid: number
  readonly secret: number
  readonly user: string
  readonly database: string
  readonly readOnly: boolean
  readonly log: Logger
  readonly links: readonly { readonly index: number }[]
  readonly clientAddress: string
  readonly applicationName: string
  readonly connectedAt: Date
  readonly transactionStatus: string
  readonly waiting: string
  readonly backendNames: string[]
  readonly tlsProtocol: string
  /** Since when it waits for RESUME (admin PAUSE); null when it does not. */
  readonly pausedSince: Date | null
  /** Its backend connections (SHOW SERVERS). */
  servers(): ServerView[]
  /** Between transactions with nothing in flight: it can be closed without losing work. */
  idle(): boolean
  terminate(): void
  terminateWith(err: PgError): void
  close(reason: string): void
  cancelRequested(): void
}

export interface ServerContext {
  /** Opens the admin console on a session that logged in to ADMIN_DATABASE. */
  openConsole: OpenConsole
  /** The running configuration; a reload replaces it (read it anew, do not keep it). */
  config: Config
  /** TLS for clients (listen.tls), read at start. */
  tls: ServerTls
  /** Parsed `hba` rules (empty: users[].auth decides, from anywhere). */
  hba: HbaRule[]
  /** authQuery: a user's stored password from a backend (null: not found); null when authQuery is off. */
  lookupPassword: ((user: string) => Promise<string | null>) | null
  log: Logger
  locks: LockManager
  balancer: Balancer
  stats: BalancedBackend[]
  nextSessionId(): number
  /** Every configured backend, in configuration order (index = backend index). */
  backends(): BackendTarget[]
  /** Which backends are in service; sessions follow its 'out' events. */
  states: BackendStates
  /** Takes a backend out of service (all sessions stop using it; recorded in the remaining backends). */
  takeOut(index: number, state: 'disabled' | 'inconsistent' | 'new', reason: string, drain: boolean, cause: OutCause): void
  /** Changes the state of a backend already out of service (recorded like takeOut). */
  markOut(index: number, state: 'disabled' | 'inconsistent' | 'new', reason: string, cause: OutCause): void
  /** The backend health monitor: a session whose backend connection ended asks it before anything changes. */
  health: HealthMonitor
  /** The writer election: only the writer writes anything to the backends (docs/ha.md). */
  ha: Election
  /** Resolves once the first election round is done (sessions wait for it, so they start with the right role). */
  haReady: Promise<void>
  /** Backends that must be in service for a write to be accepted. */
  writeQuorum: number
  /** Puts a backend back in service (resync, clone, ENABLE FORCE). */
  enable(index: number, reason: string): void
  /**
   * A statement is about to create, drop, rename or copy these databases: pgraid closes its own
   * connections to them (they would block it) and stops checking them until the returned function
   * is called; `done` (the statement succeeded) drops what pgraid kept for them (recovery log,
   * catalog), so a database of that name later starts afresh.
   */
  holdDatabases(names: string[]): Promise<(done: boolean) => void>
  /** Resolves once every backend-state change so far is recorded in the backends in service. */
  statesRecorded(): Promise<void>
  /** Holds new COMMITs until the returned function is called (resync's last step). */
  holdCommits(): () => void
  /** Resolves when no hold is in place; `held()` says whether one is. */
  waitHold(): Promise<void>
  held(): boolean
  /** PAUSE: new transactions wait until the returned function (RESUME) is called. */
  pause(): () => void
  paused(): boolean
  waitPause(): Promise<void>
  /** SHUTDOWN from the admin console: closes gracefully, as SIGTERM. */
  shutdown(): void
  /** COMMITs sent and not yet finished (including their replay on late backends): the LSNs the recovery logs have handed out and not had settled. */
  commitsInFlight(): number
  /** Which commits are in flight (for the refusals of a hold that waited too long). */
  describeInFlight(): string
  /** Committed write transactions (counted as their COMMITs finish), for status. */
  commits: RateMeter
  /** Plain counters the data path bumps, and the batch-duration histogram (src/observe/counters.ts). */
  counters: Counters
  /** Client sessions, for the admin console. */
  sessions(): ClientSession[]
  /** Databases pgraid has a recovery log for (served since it started). */
  databases(): string[]
  catalog(database: string): Catalog
  /** The recovery log of a database (schema ensured on first use). */
  recovery(database: string): RecoveryLog
  /** Counts the session against limits.maxClients and the user's maxConnections; the FATAL error when full. */
  admit(s: ClientSession): PgError | null
  release(s: ClientSession): void
  cancel(pid: number, secret: number): void
  /**
   * SIGHUP / RELOAD: re-reads the config file pgraid was started with (or takes `config`), and applies
   * what changed while sessions run; throws ReloadRefused (every problem, naming the key) and changes
   * nothing when the file is invalid or asks for a change that needs a restart. `dryRun`: check only.
   */
  reload(opts?: { config?: Config; dryRun?: boolean }): Promise<ReloadResult>
}

/** The client sessions: every session but the admin console's (SHOW STATS, SHOW POOLS, metrics, PAUSE). */
export function clientSessions(ctx: Pick<ServerContext, 'sessions'>): ClientSession[] {
  return ctx.sessions().filter((s) => s.transactionStatus !== 'admin')
}
