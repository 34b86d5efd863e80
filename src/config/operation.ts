// The operating sections of the config: timeouts, limits, logging, the recovery log, metrics, the
// writer election, health checks, resync/clone/verify and determinism. The top-level schema
// (schema.ts) puts them together.
import { z } from 'zod'
import { intIn, nonEmpty, timeoutMs } from './fields.ts'

/** pino's level names, most severe first; "silent" turns logging off. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

const MAX_MESSAGE_BYTES = 1_073_741_824 // PostgreSQL's own cap on a protocol message (1 GiB)

export const timeoutsSchema = z
  .strictObject({
    connectMs: timeoutMs(10_000, 'Give up connecting/authenticating to a backend after this long.'),
    authMs: timeoutMs(60_000, "Close a client connection that has not finished its TLS handshake, startup and login within this long (PostgreSQL's authentication_timeout)."),
    stallMs: timeoutMs(60_000, 'A backend that has not answered a pending request for this long is failed.'),
    clientIdleInTransactionMs: timeoutMs(0, 'Disconnect a client idle inside an open transaction for this long (it holds locks on every backend).'),
    clientIdleMs: timeoutMs(
      0,
      "Disconnect a client idle outside a transaction for this long, with FATAL 57P05 (PostgreSQL's idle_session_timeout, PgBouncer's client_idle_timeout). Admin console sessions are exempt.",
    ),
    shutdownMs: timeoutMs(
      10_000,
      'On SIGTERM or SIGINT pgraid stops accepting clients, closes each session as soon as it is between transactions (FATAL 57P01), and closes the rest after this long; a second signal exits at once.',
    ),
  })
  .prefault({})
  .describe("Timeouts in milliseconds, integers 0-2147483647 (Node's timer limit); 0 disables a timeout.")

export const limitsSchema = z
  .strictObject({
    maxMessageBytes: intIn(1024, MAX_MESSAGE_BYTES, `must be an integer 1024-${MAX_MESSAGE_BYTES}`)
      .default(MAX_MESSAGE_BYTES)
      .describe("Largest protocol message accepted from a client or backend, 1024-1073741824 (1 GiB, PostgreSQL's own cap); larger ones end the session."),
    maxClients: intIn(1, Number.MAX_SAFE_INTEGER, 'must be an integer >= 1').default(1000).describe('Most concurrent client connections (>= 1); further clients are refused with an error.'),
  })
  .prefault({})
  .describe('Resource limits.')

export const logSchema = z
  .strictObject({
    level: z
      .enum(LOG_LEVELS, `must be one of ${LOG_LEVELS.map((l) => `"${l}"`).join(', ')}`)
      .default('info')
      .describe('Least severe level written: `fatal`, `error`, `warn`, `info`, `debug`, `trace`, or `silent` (nothing). Logs are JSON lines on stderr; `pgraid start --log-level` overrides this.'),
    slowMs: z
      .int('must be a whole number of milliseconds')
      .min(0, 'must be 0 or more')
      .default(0)
      .describe('Log (level warn, message "slow batch") every batch whose answers took longer than this many ms, with its statements (first 500 characters each), backends and duration; 0 = off.'),
  })
  .prefault({})
  .describe('Logging.')

export const recoverySchema = z
  .strictObject({
    log: z
      .boolean('must be true or false')
      .default(true)
      .describe(
        'Keep the recovery log (docs/recovery.md): one `pgraid.log` row per committed write transaction, in that transaction. Turn it off only to measure its cost: without it in-doubt commits cannot be completed after a proxy crash and a backend that fell behind cannot be resynced.',
      ),
    retainRecords: z
      .int('must be a whole number of records')
      .min(0, 'must be 0 or more')
      .default(1_000_000)
      .describe(
        'Recovery-log records kept below the newest one. Older records are purged from every backend, but only while every configured backend is in service: a backend that is out may need them to catch up (purging anyway means it must be cloned).',
      ),
    purgeIntervalMs: z.int('must be a whole number of milliseconds').min(100, 'must be at least 100 ms').default(60_000).describe('How often old records are purged (at least 100 ms).'),
  })
  .prefault({})
  .describe('The recovery log kept in the backends (docs/recovery.md).')

export const metricsSchema = z
  .strictObject({
    host: z
      .string('must be an address')
      .min(1, 'must not be empty')
      .default('127.0.0.1')
      .describe('Address of the metrics endpoint (`GET /metrics`, `/health`, `/health/read`). A reload applies a change: the endpoint is reopened there.'),
    port: z
      .int('must be a port number or null')
      .min(0, 'must be 0-65535')
      .max(65535, 'must be 0-65535')
      .nullable()
      .default(null)
      .describe(
        'Port of the metrics endpoint; `null` serves none, 0 picks a free port (in the `pgraid listening` log line). A reload turns it on, moves it or turns it off; a port that cannot be listened on refuses the reload. `GET /metrics`: pgraid_info{version}, client sessions and those waiting on PAUSE, per backend its state, reads, writes, errors, connections and recovery-log lag (transactions and bytes), batch duration histogram per kind (read, write, commit), commits, commits in flight/held, login failures by reason, takeouts by cause, lock waits, deadlocks, divergences, client bytes, process metrics (docs/admin.md lists them). `GET /health`: 200 while this pgraid accepts writes (the writer, with at least writeQuorum backends in service), else 503; `GET /health/read`: 200 while a backend is in service; a JSON body says why.',
      ),
  })
  .prefault({})
  .describe('Prometheus metrics and health checks over HTTP (docs/admin.md, "Metrics and health").')

export const haSchema = z
  .strictObject({
    retryMs: z
      .int('must be a whole number of milliseconds')
      .min(50, 'must be at least 50 ms')
      .max(60_000, 'must be at most 60000 ms')
      .default(250)
      .describe('How often a pgraid that is not the writer tries to take the writer lock on the backends where it lacks it.'),
    heartbeatMs: z
      .int('must be a whole number of milliseconds')
      .min(50, 'must be at least 50 ms')
      .max(60_000, 'must be at most 60000 ms')
      .default(500)
      .describe('How often the writer checks each lock session it holds (a cheap query).'),
    heartbeatTimeoutMs: z
      .int('must be a whole number of milliseconds')
      .min(100, 'must be at least 100 ms')
      .max(60_000, 'must be at most 60000 ms')
      .default(2000)
      .describe('A lock session whose check (or connect) takes longer than this counts as lost; below a majority the writer stops accepting writes at once.'),
    sessionTimeoutMs: z
      .int('must be a whole number of milliseconds')
      .min(1000, 'must be at least 1000 ms')
      .max(600_000, 'must be at most 600000 ms')
      .default(6000)
      .describe(
        'How long a backend keeps the lock of a pgraid it no longer hears from (TCP keepalive and user timeout set on the lock session); raised to heartbeatMs + heartbeatTimeoutMs + 1000 if lower.',
      ),
  })
  .prefault({})
  .describe('Several pgraid instances on the same backends: the writer election (docs/ha.md).')

export const healthSchema = z
  .strictObject({
    intervalMs: z
      .int('must be a whole number of milliseconds')
      .min(0, 'must be 0 (off) or 100-60000 ms')
      .max(60_000, 'must be at most 60000 ms')
      .refine((v) => v === 0 || v >= 100, 'must be 0 (off) or at least 100 ms')
      .default(1000)
      .describe(
        'How often the health monitor checks each backend over its own control connection (reachable; system identifier, postmaster start time, timeline), with or without client sessions; 0 turns the periodic check off (a lost session connection is still checked). A backend that restarted is quarantined until its recovery log is compared with the others (docs/recovery.md).',
      ),
    failures: z
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .max(100, 'must be at most 100')
      .default(3)
      .describe('Consecutive failed checks (unreachable, check timed out) after which the monitor takes a backend out of service. A refused login (28P01, 28000, 53300, 3D000) takes it out at once.'),
    timeoutMs: z
      .int('must be a whole number of milliseconds')
      .min(100, 'must be at least 100 ms')
      .max(60_000, 'must be at most 60000 ms')
      .default(2000)
      .describe('Longest a health check (connect and query) may take before it counts as failed; also bounds the check a session makes when one of its backend connections ends.'),
  })
  .prefault({})
  .describe('The backend health monitor (docs/recovery.md, "Backend health").')

export const lifecycleSchema = z
  .strictObject({
    holdMs: z
      .int('must be a whole number of milliseconds')
      .min(10, 'must be at least 10 ms')
      .max(10_000, 'must be at most 10000 ms')
      .default(1000)
      .describe(
        'Longest time resync, clone and verify hold new COMMITs (10-10000 ms): to replay the last records before a backend is enabled, or to take snapshots of every backend at one log position. Open transactions are never waited for.',
      ),
    verifyChunkRows: z
      .int('must be a whole number of rows')
      .min(10, 'must be at least 10')
      .default(10_000)
      .describe('Rows per checksum chunk in `pgraid verify` (at least 10); only a chunk whose checksums differ is read row by row.'),
    cloneJobs: z
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .max(16, 'must be at most 16')
      .default(2)
      .describe("Tables `pgraid clone` copies in parallel (1-16), each a COPY stream from the source's exported snapshot into the target."),
  })
  .prefault({})
  .describe('Resync, clone and verify (docs/operations.md).')

export const determinismSchema = z
  .strictObject({
    allowFunctions: z
      .array(nonEmpty('must be a function name'), 'must be a list of function names, e.g. ["random"]')
      .default([])
      .describe(
        'Functions whose per-backend results you accept in writes, e.g. `["random"]`. By default a write calling random(), gen_random_uuid(), clock_timestamp(), txid_current(), pg_backend_pid(), ... is refused with SQLSTATE 0A000, because each backend would compute its own value and the copies would silently differ. Listing `clock_timestamp` makes it one pgraid value per statement (the same on every backend) instead of a refusal. See docs/determinism.md.',
      ),
    allowTriggers: z
      .array(nonEmpty('must be a trigger name'), 'must be a list of trigger names, e.g. ["set_updated_at"]')
      .default([])
      .describe(
        'Triggers whose function calls per-backend functions (now(), random(), clock_timestamp(), ...) or is written in a language pgraid cannot inspect, and whose writes you accept anyway, e.g. `["set_updated_at"]`; `"*"` accepts all. Such writes run under a database-wide pgraid lock; the values the trigger computes are each backend\'s own. By default a write to such a table is refused with 0A000 naming the table and the trigger.',
      ),
  })
  .prefault({})
  .describe('What pgraid does with non-deterministic functions in writes.')
