// The pgraid config file: its schema (the single source of truth for keys, defaults and meanings),
// validation with every problem reported at once, and loading from a JSON file (comments allowed).
import { readFile } from 'node:fs/promises';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { isMd5Hash } from '../auth/md5.ts';
import { parseScramVerifier } from '../auth/scram.ts';
import { parseHbaRule } from '../auth/hba.ts';
import { ConfigError, describeIssues, formatPath } from './issues.ts';
import { objectKeysAt } from './keys.ts';

export { ConfigError } from './issues.ts';

/** pino's level names, most severe first; "silent" turns logging off. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const AUTH_METHODS = ['scram-sha-256', 'md5', 'trust'] as const;
export const LISTEN_TLS_MODES = ['disable', 'allow', 'require'] as const;
export const BACKEND_TLS_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

// Node's timers overflow above 2^31-1 ms and then fire after 1 ms, so a huge timeout would act like a tiny one.
const MAX_TIMER_MS = 2_147_483_647;
const MAX_MESSAGE_BYTES = 1_073_741_824; // PostgreSQL's own cap on a protocol message (1 GiB)

// Each leaf carries one sentence saying what belongs there; the formatter adds what was found instead.
function intIn(min: number, max: number, expectation: string) {
  return z.int(expectation).min(min, expectation).max(max, expectation);
}
function nonEmpty(expectation: string) {
  return z.string(expectation).min(1, expectation);
}
function timeoutMs(defaultMs: number, meaning: string) {
  return intIn(0, MAX_TIMER_MS, `must be an integer number of milliseconds 0-${MAX_TIMER_MS} (0 = disabled)`)
    .default(defaultMs)
    .describe(meaning);
}

const listenSchema = z
  .strictObject({
    host: nonEmpty('must be a non-empty string: the address to listen on (IP address or hostname)')
      .default('127.0.0.1')
      .describe('Address clients connect to. Use `"0.0.0.0"` or `"::"` to accept remote clients.'),
    port: intIn(0, 65535, 'must be an integer 0-65535 (0 = any free port)')
      .default(6432)
      .describe('TCP port clients connect to, 0-65535; 0 picks any free port (the chosen one is printed at start).'),

    tls: z
      .strictObject({
        mode: z
          .enum(LISTEN_TLS_MODES, `must be one of ${LISTEN_TLS_MODES.map((m) => `"${m}"`).join(', ')}`)
          .default('allow')
          .describe(
            '"disable": answer SSLRequest with N (no TLS); "allow": TLS for clients that ask (needs cert and key), plain for the others; ' +
              '"require": refuse clients that do not use TLS (FATAL 28000). Without cert/key, "allow" behaves as "disable".',
          ),
        cert: nonEmpty('must be the path of a PEM certificate (chain) file').nullable().default(null).describe('PEM file with the server certificate (and intermediates) shown to clients.'),
        key: nonEmpty('must be the path of a PEM private key file').nullable().default(null).describe('PEM file with the private key of `cert`.'),
        ca: nonEmpty('must be the path of a PEM file of CA certificates').nullable().default(null).describe(
          'PEM file of CAs that client certificates are checked against; when set, clients are asked for a certificate (needed for hba method "cert" and clientcert=...). A client that presents a certificate these CAs do not vouch for is refused.',
        ),
        minVersion: z
          .enum(['TLSv1.2', 'TLSv1.3'], 'must be "TLSv1.2" or "TLSv1.3"')
          .default('TLSv1.2')
          .describe('Oldest TLS protocol version accepted from clients (PostgreSQL\'s ssl_min_protocol_version).'),
      })
      .prefault({})
      .describe('TLS for client connections (SSLRequest), as PostgreSQL\'s ssl settings. Files are read at start and on reload.'),
  })
  .prefault({})
  .describe('Where pgraid accepts PostgreSQL client connections.');

const backendSchema = z
  .strictObject({
    name: z
      .string('must be a string of letters, digits, "_", "." or "-"')
      .regex(/^[A-Za-z0-9_.-]+$/, 'must be non-empty and use only letters, digits, "_", "." or "-"')
      .describe('Unique name of the backend, used in logs and metrics: letters, digits, `_`, `.`, `-`.'),
    host: nonEmpty('must be a non-empty string: the PostgreSQL server address (IP address or hostname)').describe(
      'PostgreSQL server address (IP address or hostname).',
    ),
    port: intIn(1, 65535, 'must be an integer 1-65535')
      .default(5432)
      .describe('PostgreSQL server port, 1-65535.'),
    database: nonEmpty('must be a non-empty database name, or null for the database the client asked for')
      .nullable()
      .default(null)
      .describe('Database to use on this backend; `null` means the database named by the connecting client.'),
    user: nonEmpty('must be a non-empty string: the PostgreSQL role pgraid logs in as').describe(
      'Role pgraid logs in to this backend as (client credentials are checked by pgraid, not forwarded).',
    ),
    password: nonEmpty('must be a non-empty string (omit the key for a backend that trusts pgraid)')
      .optional()
      .describe('Password for `user` on this backend; omit for backends that use trust authentication.'),
    weight: z
      .number('must be a number >= 0 (0 = never used for reads)')
      .min(0, 'must be a number >= 0 (0 = never used for reads)')
      .default(1)
      .describe('Share of reads sent to this backend relative to the others, a number >= 0; 0 = writes only, never reads.'),

    tls: z
      .strictObject({
        mode: z
          .enum(BACKEND_TLS_MODES, `must be one of ${BACKEND_TLS_MODES.map((m) => `"${m}"`).join(', ')}`)
          .default('disable')
          .describe(
            'As libpq\'s sslmode: "disable" (plain TCP), "require" (TLS, certificate not checked), "verify-ca" (TLS, certificate signed by `ca`), "verify-full" (also the certificate names `host`).',
          ),
        ca: nonEmpty('must be the path of a PEM file of CA certificates').nullable().default(null).describe('PEM file of CAs the backend\'s certificate must chain to (required for verify-ca and verify-full).'),
        cert: nonEmpty('must be the path of a PEM certificate file').nullable().default(null).describe('Client certificate pgraid presents to the backend (for the backend\'s cert authentication); optional.'),
        key: nonEmpty('must be the path of a PEM private key file').nullable().default(null).describe('Private key of `cert`.'),
      })
      .prefault({})
      .describe('TLS from pgraid to this backend (data path and control connections alike).'),
  })
  .describe('One PostgreSQL server holding a full copy of the data.');

const userSchema = z
  .strictObject({
    name: nonEmpty('must be a non-empty string: the user name clients log in with').describe(
      'User name clients log in to pgraid with.',
    ),
    auth: z
      .enum(AUTH_METHODS, `must be one of ${AUTH_METHODS.map((m) => `"${m}"`).join(', ')}`)
      .default('scram-sha-256')
      .describe('How the client proves its identity: `"scram-sha-256"`, `"md5"` or `"trust"` (no password).'),
    password: nonEmpty('must be a non-empty string: a plain password, a SCRAM-SHA-256$... verifier or an md5... hash')
      .optional()
      .describe(
        'Required unless `auth` is `"trust"`. A plain password, or the output of `pgraid hash-password`. `md5` auth needs ' +
          'a plain password or an `md5...` hash (`pgraid hash-password --method md5 --user <name> <password>`); ' +
          '`scram-sha-256` needs a plain password or a `SCRAM-SHA-256$...` verifier (`pgraid hash-password <password>`).',
      ),
    admin: z
      .boolean('must be true or false')
      .default(false)
      .describe('May log in to the admin console: the reserved database `pgraid` (`psql -d pgraid`), with `SHOW BACKENDS`, `SHOW LOG`, `SHOW SESSIONS`, `SHOW LOCKS`, `SHOW CONFIG`, `SHOW STATS`, `DISABLE`/`ENABLE`/`RESYNC`/`CLONE <backend>`, `VERIFY`; `pgraid status`, `resync`, `clone`, `verify`, `enable`, `disable` use it. docs/admin.md, docs/operations.md.'),
    maxConnections: z
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .optional()
      .describe("Most concurrent sessions of this user; one more gets FATAL 53300 (as a role's CONNECTION LIMIT). Without it only `limits.maxClients` applies."),
  })
  .describe('A user clients may log in to pgraid as.');

/** The config object before cross-field checks and computed defaults; walked by keys.ts and the docs test. */
export const configObjectSchema = z
  .strictObject(
    {
      listen: listenSchema,
      backends: z
        .array(backendSchema, 'must be a list of backend objects')
        .min(1, 'must list at least one backend, e.g. [{ "name": "pg1", "host": "127.0.0.1", "user": "postgres" }]')
        .describe('PostgreSQL servers that each receive every write; at least one. Names and host+port must be unique, and at least one backend needs a weight above 0.'),
      users: z
        .array(userSchema, 'must be a list of user objects')
        .min(1, 'must list at least one user, e.g. [{ "name": "app", "auth": "scram-sha-256", "password": "..." }]')
        .describe('Users allowed to connect to pgraid; at least one. Names must be unique.'),
      hba: z
        .array(z.string('must be a rule in pg_hba.conf syntax, e.g. "hostssl all all 0.0.0.0/0 scram-sha-256"'), 'must be a list of rules in pg_hba.conf syntax')
        .default([])
        .describe(
          'Client authentication rules in pg_hba.conf syntax ("TYPE DATABASE USER ADDRESS METHOD [clientcert=verify-ca|verify-full]"; types host, hostssl, hostnossl; methods trust, reject, md5, scram-sha-256, cert), first match wins, no match refuses. Empty (the default): every user of `users` may connect with its own `auth` method from anywhere.',
        ),
      authQuery: z
        .strictObject({
          enabled: z
            .boolean('must be true or false')
            .default(false)
            .describe('Users not listed in `users` are looked up in the backends (as PgBouncer\'s auth_query): their stored SCRAM verifier or md5 hash checks the password. They are never admins.'),
          query: nonEmpty('must be a SQL query with one parameter ($1 = the user name) returning the stored password')
            .default("SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())")
            .describe('Query run on a backend in service with the backend\'s configured user ($1 = the user name); its first column is the stored password (SCRAM-SHA-256$... or md5...). Reading pg_authid needs a superuser; otherwise point it at a SECURITY DEFINER function.'),
          database: nonEmpty('must be a database name').default('postgres').describe('Database the lookup connects to.'),
        })
        .prefault({})
        .describe('Pass-through authentication against the backends\' own roles.'),
      writeQuorum: z
        .int('must be an integer from 1 to the number of backends')
        .min(1, 'must be an integer from 1 to the number of backends')
        .optional()
        .meta({ defaultText: 'majority: floor(backends/2)+1' })
        .describe(
          'How many backends must be in service for a write to be accepted; an integer from 1 to the number of backends. Below it, writes (and COMMITs of transactions that wrote) are refused with 57P03 naming the backends out of service; reads continue.',
        ),
      timeouts: z
        .strictObject({
          connectMs: timeoutMs(10_000, 'Give up connecting/authenticating to a backend after this long.'),
          authMs: timeoutMs(60_000, "Close a client connection that has not finished its TLS handshake, startup and login within this long (PostgreSQL's authentication_timeout)."),
          stallMs: timeoutMs(60_000, 'A backend that has not answered a pending request for this long is failed.'),
          clientIdleInTransactionMs: timeoutMs(
            0,
            'Disconnect a client idle inside an open transaction for this long (it holds locks on every backend).',
          ),
          clientIdleMs: timeoutMs(0, "Disconnect a client idle outside a transaction for this long, with FATAL 57P05 (PostgreSQL's idle_session_timeout, PgBouncer's client_idle_timeout). Admin console sessions are exempt."),
          shutdownMs: timeoutMs(10_000, 'On SIGTERM or SIGINT pgraid stops accepting clients, closes each session as soon as it is between transactions (FATAL 57P01), and closes the rest after this long; a second signal exits at once.'),
        })
        .prefault({})
        .describe("Timeouts in milliseconds, integers 0-2147483647 (Node's timer limit); 0 disables a timeout."),
      limits: z
        .strictObject({
          maxMessageBytes: intIn(1024, MAX_MESSAGE_BYTES, `must be an integer 1024-${MAX_MESSAGE_BYTES}`)
            .default(MAX_MESSAGE_BYTES)
            .describe("Largest protocol message accepted from a client or backend, 1024-1073741824 (1 GiB, PostgreSQL's own cap); larger ones end the session."),
          maxClients: intIn(1, Number.MAX_SAFE_INTEGER, 'must be an integer >= 1')
            .default(1000)
            .describe('Most concurrent client connections (>= 1); further clients are refused with an error.'),
        })
        .prefault({})
        .describe('Resource limits.'),
      log: z
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
        .describe('Logging.'),
      recovery: z
        .strictObject({
          log: z
            .boolean('must be true or false')
            .default(true)
            .describe('Keep the recovery log (docs/recovery.md): one `pgraid.log` row per committed write transaction, in that transaction. Turn it off only to measure its cost: without it in-doubt commits cannot be completed after a proxy crash and a backend that fell behind cannot be resynced.'),
          retainRecords: z
            .int('must be a whole number of records')
            .min(0, 'must be 0 or more')
            .default(1_000_000)
            .describe('Recovery-log records kept below the newest one. Older records are purged from every backend, but only while every configured backend is in service: a backend that is out may need them to catch up (purging anyway means it must be cloned).'),
          purgeIntervalMs: z
            .int('must be a whole number of milliseconds')
            .min(100, 'must be at least 100 ms')
            .default(60_000)
            .describe('How often old records are purged (at least 100 ms).'),
        })
        .prefault({})
        .describe('The recovery log kept in the backends (docs/recovery.md).'),
      metrics: z
        .strictObject({
          host: z
            .string('must be an address')
            .min(1, 'must not be empty')
            .default('127.0.0.1')
            .describe('Address of the Prometheus metrics endpoint (`GET /metrics`).'),
          port: z
            .int('must be a port number or null')
            .min(0, 'must be 0-65535')
            .max(65535, 'must be 0-65535')
            .nullable()
            .default(null)
            .describe('Port of the metrics endpoint; `null` serves none, 0 picks a free port (printed at start). Metrics: sessions, backend states, batches in flight, batch duration histogram per kind (read, write, commit), commits, commits in flight/held, lock waits, deadlocks, divergences, client bytes, process metrics.'),
        })
        .prefault({})
        .describe('Prometheus metrics (docs/operations.md).'),
      ha: z
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
            .describe('How long a backend keeps the lock of a pgraid it no longer hears from (TCP keepalive and user timeout set on the lock session); raised to heartbeatMs + heartbeatTimeoutMs + 1000 if lower.'),
        })
        .prefault({})
        .describe('Several pgraid instances on the same backends: the writer election (docs/ha.md).'),
      health: z
        .strictObject({
          intervalMs: z
            .int('must be a whole number of milliseconds')
            .min(0, 'must be 0 (off) or 100-60000 ms')
            .max(60_000, 'must be at most 60000 ms')
            .refine((v) => v === 0 || v >= 100, 'must be 0 (off) or at least 100 ms')
            .default(1000)
            .describe('How often the health monitor checks each backend over its own control connection (reachable; system identifier, postmaster start time, timeline), with or without client sessions; 0 turns the periodic check off (a lost session connection is still checked). A backend that restarted is quarantined until its recovery log is compared with the others (docs/recovery.md).'),
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
        .describe('The backend health monitor (docs/recovery.md, "Backend health").'),
      lifecycle: z
        .strictObject({
          holdMs: z
            .int('must be a whole number of milliseconds')
            .min(10, 'must be at least 10 ms')
            .max(10_000, 'must be at most 10000 ms')
            .default(1000)
            .describe('Longest time resync, clone and verify hold new COMMITs (10-10000 ms): to replay the last records before a backend is enabled, or to take snapshots of every backend at one log position. Open transactions are never waited for.'),
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
        .describe('Resync, clone and verify (docs/operations.md).'),
      determinism: z
        .strictObject({
          allowFunctions: z
            .array(nonEmpty('must be a function name'), 'must be a list of function names, e.g. ["random"]')
            .default([])
            .describe('Functions whose per-backend results you accept in writes, e.g. `["random"]`. By default a write calling random(), gen_random_uuid(), clock_timestamp(), txid_current(), pg_backend_pid(), ... is refused with SQLSTATE 0A000, because each backend would compute its own value and the copies would silently differ. Listing `clock_timestamp` makes it one pgraid value per statement (the same on every backend) instead of a refusal. See docs/determinism.md.'),
          allowTriggers: z
            .array(nonEmpty('must be a trigger name'), 'must be a list of trigger names, e.g. ["set_updated_at"]')
            .default([])
            .describe('Triggers whose function calls per-backend functions (now(), random(), clock_timestamp(), ...) or is written in a language pgraid cannot inspect, and whose writes you accept anyway, e.g. `["set_updated_at"]`; `"*"` accepts all. Such writes run under a database-wide pgraid lock; the values the trigger computes are each backend\'s own. By default a write to such a table is refused with 0A000 naming the table and the trigger.'),
        })
        .prefault({})
        .describe('What pgraid does with non-deterministic functions in writes.'),
    },
    'must be a JSON object with at least "backends" and "users" (see fixtures/pgraid.example.json)',
  )
  .describe('The pgraid configuration file (JSON; comments allowed).');

/** How a configured user password is stored, which decides the auth methods it can serve. */
export type StoredPasswordKind = 'plain' | 'md5' | 'scram-sha-256';

const SCRAM_PREFIX = 'SCRAM-SHA-256$';

/**
 * Classifies a users[].password the way PostgreSQL classifies rolpassword, using the auth code's own
 * parsers so that config validation and login agree on what counts as a verifier or hash.
 */
export function storedPasswordKind(password: string): StoredPasswordKind {
  if (parseScramVerifier(password) !== null) return 'scram-sha-256';
  if (isMd5Hash(password)) return 'md5';
  return 'plain';
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const records = (v: unknown): Array<Record<string, unknown> | undefined> =>
  Array.isArray(v) ? v.map((x) => (isRecord(x) ? x : undefined)) : [];

// Cross-field rules, checked on the raw document rather than as a zod refinement: zod skips refinements
// once a field fails certain checks (e.g. a non-integer for z.int()), and the first run of check-config
// should list everything. Hence every access is defensive; wrong types are the field schemas' business.
function crossCheckProblems(raw: unknown): string[] {
  const problems: string[] = [];
  if (!isRecord(raw)) return problems;
  const problem = (path: PropertyKey[], message: string) => problems.push(`${formatPath(path)}: ${message}`);

  const seenName = new Map<string, number>();
  const seenAddr = new Map<string, number>();
  records(raw.backends).forEach((b, i) => {
    if (!b) return;
    if (typeof b.name === 'string') {
      const first = seenName.get(b.name);
      if (first !== undefined)
        problem(['backends', i, 'name'], `duplicate backend name "${b.name}" (also backends[${first}].name); give each backend its own name`);
      else seenName.set(b.name, i);
    }
    if (typeof b.host === 'string') {
      const addr = `${b.host.toLowerCase()}:${String(b.port ?? 5432)}`;
      const first = seenAddr.get(addr);
      if (first !== undefined)
        problem(['backends', i], `same host and port as backends[${first}] (${addr}); each backend must be a different server`);
      else seenAddr.set(addr, i);
    }
  });
  // Reads go only to backends with weight > 0; if there are none, every read would fail.
  const weights = records(raw.backends).map((b) => b?.weight ?? 1);
  if (weights.length > 0 && weights.every((w) => w === 0)) {
    problem(['backends'], 'every backend has weight 0, so no backend may serve reads; give at least one a weight > 0');
  }

  const seenUser = new Map<string, number>();
  records(raw.users).forEach((u, i) => {
    if (!u) return;
    if (typeof u.name === 'string') {
      const first = seenUser.get(u.name);
      if (first !== undefined)
        problem(['users', i, 'name'], `duplicate user name "${u.name}" (also users[${first}].name); list each user once`);
      else seenUser.set(u.name, i);
    }
    checkUserPassword(u, (message) => problem(['users', i, 'password'], message));
  });

  if (Array.isArray(raw.hba)) {
    raw.hba.forEach((line, i) => {
      if (typeof line !== 'string') return;
      try {
        parseHbaRule(line);
      } catch (e) {
        problem(['hba', i], `${(e as Error).message} (rule: ${JSON.stringify(line)})`);
      }
    });
  }
  const listenTls = isRecord(raw.listen) && isRecord(raw.listen.tls) ? raw.listen.tls : undefined;
  if (Array.isArray(raw.hba) && raw.hba.some((l) => typeof l === 'string' && /\s(cert)(\s|$)|clientcert=/.test(l)) && listenTls?.ca == null)
    problem(['hba'], 'rules with method cert or clientcert=... need listen.tls.ca (the CAs client certificates are checked against)');
  if (listenTls) {
    if ((listenTls.cert == null) !== (listenTls.key == null)) problem(['listen', 'tls'], 'cert and key go together: set both (or neither)');
    if (listenTls.mode === 'require' && listenTls.cert == null) problem(['listen', 'tls', 'mode'], '"require" needs a certificate: set listen.tls.cert and listen.tls.key');
  }
  records(raw.backends).forEach((b, i) => {
    const t = b && isRecord(b.tls) ? b.tls : undefined;
    if (!t) return;
    if ((t.mode === 'verify-ca' || t.mode === 'verify-full') && t.ca == null)
      problem(['backends', i, 'tls', 'ca'], `required for mode "${String(t.mode)}": the PEM file of CAs the backend certificate must chain to`);
    if ((t.cert == null) !== (t.key == null)) problem(['backends', i, 'tls'], 'cert and key go together: set both (or neither)');
  });

  const wq = raw.writeQuorum;
  const n = Array.isArray(raw.backends) ? raw.backends.length : 0;
  if (typeof wq === 'number' && Number.isInteger(wq) && wq >= 1 && n >= 1 && wq > n) {
    problem(
      ['writeQuorum'],
      `must be an integer 1-${n} (at most the number of backends; omit it for a majority, ${Math.floor(n / 2) + 1}), got ${wq}`,
    );
  }
  return problems;
}

function checkUserPassword(u: Record<string, unknown>, problem: (message: string) => void): void {
  const auth = u.auth === undefined ? 'scram-sha-256' : u.auth;
  if (auth !== 'md5' && auth !== 'scram-sha-256') return; // trust needs no password; a bad auth is reported by the enum
  const user = typeof u.name === 'string' ? u.name : '<user>';
  if (u.password === undefined) {
    problem(`required for auth "${auth}"; put the plain password or the output of \`pgraid hash-password\` (or set auth to "trust")`);
    return;
  }
  if (typeof u.password !== 'string') return; // wrong type is reported by the field schema
  if (u.password.startsWith(SCRAM_PREFIX) && parseScramVerifier(u.password) === null) {
    problem(
      'looks like a SCRAM-SHA-256 verifier but is malformed; expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> ' +
        'as printed by `pgraid hash-password`',
    );
    return;
  }
  const kind = storedPasswordKind(u.password);
  if (auth === 'md5' && kind === 'scram-sha-256') {
    problem(
      `auth "md5" cannot use a SCRAM-SHA-256 verifier (md5 needs the plain password or an md5 hash); put the plain ` +
        `password, or \`pgraid hash-password --method md5 --user ${user} <password>\`, or set auth to "scram-sha-256"`,
    );
  } else if (auth === 'scram-sha-256' && kind === 'md5') {
    problem(
      'auth "scram-sha-256" cannot use an md5 hash (SCRAM needs the plain password or a SCRAM-SHA-256$ verifier); put the ' +
        'plain password, or `pgraid hash-password <password>`, or set auth to "md5"',
    );
  }
}

// Structure plus computed defaults; the cross-field rules live in parseConfig, the only way in.
const configSchema = configObjectSchema.transform((c) => ({
  ...c,
  writeQuorum: c.writeQuorum ?? Math.floor(c.backends.length / 2) + 1,
}));

/** A validated configuration with every default filled in. */
export type Config = z.output<typeof configSchema>;
export type BackendConfig = Config['backends'][number];
export type UserConfig = Config['users'][number];

/** Validates an already-parsed config document; `source` (a file name) is named in errors. */
export function parseConfig(raw: unknown, source: string): Config {
  const result = configSchema.safeParse(raw, { reportInput: true });
  const problems = result.success
    ? []
    : describeIssues(result.error.issues, (path) => objectKeysAt(configObjectSchema, path));
  problems.push(...crossCheckProblems(raw));
  if (problems.length > 0 || !result.success) throw new ConfigError(source, problems);
  return result.data;
}

/** Reads and validates a config file (JSON, `//` and block comments allowed); unreadable files and syntax errors are ConfigErrors too. */
export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(path, [`(file): cannot read it (${code ?? (err as Error).message}); pass an existing JSON file with -c`]);
  }
  return parseConfig(parseConfigText(text, path), path);
}

/**
 * Parses config text as JSONC (JSON plus comments and trailing commas, as in tsconfig.json), so the
 * sample config can explain every key in place. Every syntax error is reported with line and column.
 */
export function parseConfigText(text: string, source: string): unknown {
  const errors: ParseError[] = [];
  const raw: unknown = parseJsonc(text, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length > 0) {
    throw new ConfigError(
      source,
      errors.map((e) => `(top level): not valid JSON: ${describeSyntaxError(printParseErrorCode(e.error))} at ${lineColumn(text, e.offset)}`),
    );
  }
  return raw;
}

// jsonc-parser names errors in PascalCase ("ValueExpected"); spell them as a sentence fragment.
function describeSyntaxError(code: string): string {
  return code.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `line ${line}, column ${column}`;
}
