// Errors pgraid reports to clients: each carries an SQLSTATE and severity and
// serialises itself as an ErrorResponse. One named constructor per situation;
// docs/errors.md lists them (a test keeps the list and the code in step).

import { errorResponse, type ErrorFields } from './protocol/encode.ts'

export class PgError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly severity: 'ERROR' | 'FATAL' = 'ERROR',
    readonly detail?: string,
    readonly hint?: string,
    /** 1-based character position in the client's query text. */
    readonly position?: number,
  ) {
    super(message)
  }
  toMessage(): Buffer {
    const f: ErrorFields = { severity: this.severity, code: this.code, message: this.message }
    if (this.detail) f.detail = this.detail
    if (this.hint) f.hint = this.hint
    if (this.position) f.position = this.position
    return errorResponse(f)
  }
}

export const errors = {
  protocolViolation: (what: string) => new PgError('08P01', `invalid frontend message: ${what}`, 'FATAL'),
  messageTooLarge: (len: number, max: number) =>
    new PgError('08P01', `message of ${len} bytes exceeds the maximum of ${max} bytes`, 'FATAL', undefined, 'raise limits.maxMessageBytes in the pgraid configuration'),
  unsupportedProtocol: (major: number, minor: number) => new PgError('0A000', `unsupported frontend protocol ${major}.${minor}: pgraid supports protocol 3.0`, 'FATAL'),
  noUser: () => new PgError('28000', 'no PostgreSQL user name specified in startup packet', 'FATAL'),
  authFailed: (user: string, method: string) => new PgError('28P01', `password authentication failed for user "${user}"`, 'FATAL', undefined, method === 'md5' ? undefined : undefined),
  noHbaRule: (host: string, user: string, database: string, tls: boolean) =>
    new PgError(
      '28000',
      `no pgraid hba rule for host "${host}", user "${user}", database "${database}", ${tls ? 'SSL encryption' : 'no encryption'}`,
      'FATAL',
      undefined,
      'add a matching rule to "hba" in the pgraid configuration',
    ),
  hbaReject: (host: string, user: string, database: string, tls: boolean) =>
    new PgError('28000', `pgraid hba rejects connection for host "${host}", user "${user}", database "${database}", ${tls ? 'SSL encryption' : 'no encryption'}`, 'FATAL'),
  tlsRequired: () => new PgError('28000', 'pgraid accepts only TLS connections (listen.tls.mode is "require")', 'FATAL', undefined, 'connect with sslmode=require (or verify-ca / verify-full)'),
  certRequired: () => new PgError('28000', 'connection requires a valid client certificate', 'FATAL'),
  certAuthFailed: (user: string) => new PgError('28000', `certificate authentication failed for user "${user}"`, 'FATAL'),
  clientCertInvalid: (reason: string) =>
    new PgError('28000', `the client certificate was not accepted: ${reason}`, 'FATAL', undefined, 'present a certificate signed by a CA in listen.tls.ca, or none'),
  unknownRole: (user: string) => new PgError('28000', `role "${user}" does not exist`, 'FATAL'),
  tooManyClients: (max: number) => new PgError('53300', `sorry, too many clients already (pgraid limits.maxClients = ${max})`, 'FATAL'),
  functionCallUnsupported: () => new PgError('0A000', 'the fastpath function call protocol is not supported by pgraid', 'ERROR', undefined, 'call the function with SELECT instead'),
  backendUnavailable: (name: string, reason: string) => new PgError('08006', `pgraid could not reach backend "${name}": ${reason}`, 'FATAL'),
  backendLost: (name: string, reason: string) => new PgError('08006', `pgraid lost its connection to backend "${name}": ${reason}`, 'FATAL'),
  readLost: (name: string, reason: string) =>
    new PgError(
      '08006',
      `pgraid lost backend "${name}" while it was answering this query (${reason})`,
      'ERROR',
      undefined,
      'the backend was taken out of service; the session continues on the others: retry the query',
    ),
  writeQuorum: (enabled: number, quorum: number, missing: string) =>
    new PgError(
      '57P03',
      `pgraid refuses writes: ${enabled} backend(s) in service, the write quorum is ${quorum}`,
      'ERROR',
      `out of service: ${missing}`,
      'reads still work; bring backends back with pgraid resync/clone, or lower writeQuorum',
    ),
  divergence: (what: string, detail: string) => new PgError('XX000', `pgraid: backends disagreed on ${what}`, 'ERROR', detail, 'the transaction was made to fail on every backend; run pgraid verify'),
  deadlock: (detail: string) => new PgError('40P01', 'deadlock detected', 'ERROR', detail, 'see pgraid SHOW LOCKS for the lock order'),
  lockNotAvailable: () =>
    new PgError(
      '55P03',
      'could not obtain lock on row: another transaction holds a conflicting pgraid lock',
      'ERROR',
      undefined,
      'pgraid locks whole tables for now; NOWAIT fails whenever the table is locked by another transaction',
    ),
  backendStalled: (names: string, ms: number) =>
    new PgError(
      '08006',
      `pgraid backend ${names} stalled: no answer ${ms} ms after the other backends answered`,
      'FATAL',
      undefined,
      'check that backend; timeouts.stallMs sets how long pgraid waits',
    ),
  idleSessionTimeout: (ms: number) => new PgError('57P05', `terminating connection due to idle-session timeout (pgraid timeouts.clientIdleMs = ${ms})`, 'FATAL'),
  tooManyForUser: (user: string, max: number) => new PgError('53300', `too many connections for role "${user}" (pgraid users[].maxConnections = ${max})`, 'FATAL'),
  idleInTransactionTimeout: (ms: number) => new PgError('25P03', `terminating connection due to idle-in-transaction timeout (pgraid timeouts.clientIdleInTransactionMs = ${ms})`, 'FATAL'),
  nonDeterministic: (fn: string, position?: number) =>
    new PgError(
      '0A000',
      `pgraid refuses ${fn}() in a write: each backend would compute its own value and the copies would differ`,
      'ERROR',
      undefined,
      `compute the value in the client and pass it as a parameter, or add "${fn}" to determinism.allowFunctions in the pgraid configuration to accept per-backend values`,
      position,
    ),
  systemColumn: (name: string, position?: number) =>
    new PgError(
      '0A000',
      `pgraid refuses the system column ${name} in a write: its values differ per backend (physical row positions, transaction ids and OIDs are each backend's own)`,
      'ERROR',
      undefined,
      'identify rows by a key column instead',
      position,
    ),
  volatileDefault: (message: string, hint: string, position?: number) => new PgError('0A000', message, 'ERROR', undefined, hint, position),
  volatileTrigger: (table: string, trigger: string, fn: string, reason: string) =>
    new PgError(
      '0A000',
      `pgraid refuses writes to table "${table}": its trigger "${trigger}" runs ${fn}(), and ${reason}, so each backend would compute its own values`,
      'ERROR',
      undefined,
      `make the trigger deterministic (pass values from the statement), or add "${trigger}" to determinism.allowTriggers in the pgraid configuration to accept it under a database-wide lock`,
    ),
  readOnly: (what: string, detail: string, hint: string) => new PgError('25006', `cannot execute ${what} in a read-only transaction`, 'ERROR', detail, hint),
  roleChanged: (role: string) =>
    new PgError(
      '57P01',
      `terminating connection: this pgraid instance became the ${role}`,
      'FATAL',
      undefined,
      role === 'writer' ? 'reconnect: this instance now accepts writes' : 'reconnect to the writer',
    ),
  canceled: () => new PgError('57014', 'canceling statement due to user request'),
  noSnapshotPoint: () =>
    new PgError(
      '40001',
      "could not serialize access: commits in flight did not land in time to take this transaction's snapshot at one point on every backend",
      'ERROR',
      undefined,
      'the transaction might succeed if retried',
    ),
  shuttingDown: () => new PgError('57P01', 'terminating connection due to administrator command (pgraid is shutting down)', 'FATAL'),
  notInPipeline: (what: string) => new PgError('08P01', `unexpected ${what} message outside COPY`, 'FATAL'),
  configNotReloaded: (source: string, problems: string) =>
    new PgError(
      'F0000',
      `configuration in ${source} not reloaded: ${problems.split('\n')[0]}${problems.includes('\n') ? ` (and ${problems.split('\n').length - 1} more problem(s), in DETAIL)` : ''}`,
      'ERROR',
      problems,
      'the running configuration is unchanged; fix the file and RELOAD again (changes to listen.host, listen.port and recovery.log need a restart)',
    ),
  // The admin console (src/admin/): its commands' refusals and failures, worded for an operator.
  adminSimpleQueryOnly: () =>
    new PgError(
      '0A000',
      'the pgraid admin console speaks the simple query protocol only',
      'ERROR',
      undefined,
      'psql and "SELECT"-free commands such as SHOW BACKENDS work; drivers: use a simple query',
    ),
  unknownAdminCommand: (command: string, commands: string) => new PgError('42601', `unknown admin command: ${command}`, 'ERROR', undefined, `commands: ${commands}`),
  noDryRun: (command: string, commands: string) => new PgError('42601', `${command} has no DRY RUN: nothing was done`, 'ERROR', undefined, `DRY RUN works after ${commands}`),
  verifyUsage: () => new PgError('42601', 'usage: VERIFY [JSON] [TABLES t1, t2 ...]'),
  unknownBackend: (name: string, removed: boolean, backends: string) =>
    new PgError('42704', `no backend named "${name}"${removed ? ' (it was removed from the configuration)' : ''}`, 'ERROR', undefined, `backends: ${backends}`),
  lastBackendInService: (name: string) => new PgError('55000', `"${name}" is the last backend in service; disabling it would stop all work`),
  enableRefused: (name: string, why: string) => new PgError('55000', `cannot enable ${name}: ${why}`, 'ERROR', undefined, 'ENABLE ... FORCE puts it back anyway (its data may then differ)'),
  resyncRefused: (name: string, reason: string) => new PgError('55000', `cannot resync ${name}: ${reason}`),
  resyncNotReplayable: (name: string, reason: string) =>
    new PgError('55000', `cannot resync ${name}: ${reason}: clone it`, 'ERROR', undefined, 'the records applied so far stay; the backend stays out of service'),
  resyncDataDiffers: (name: string, source: string, reason: string) =>
    new PgError('XX001', `resync of ${name} found its data different from ${source}: ${reason}`, 'ERROR', undefined, `${name} is now inconsistent: clone it`),
  resyncFailed: (name: string, reason: string) =>
    new PgError('XX000', `resync of ${name} failed: ${reason}`, 'ERROR', undefined, 'the backend stays out of service; fix the cause and run RESYNC again (it resumes where it stopped)'),
  cloneRefused: (name: string, reason: string) => new PgError('55000', `cannot clone ${name}: ${reason}`),
  cloneFailed: (name: string, reason: string) =>
    new PgError('XX000', `clone of ${name} failed: ${reason}`, 'ERROR', undefined, `${name} stays out of service (state new); fix the cause and run CLONE again (it starts over)`),
  verifyRefused: (reason: string) => new PgError('55000', `cannot verify: ${reason}`),
  verifyFailed: (reason: string) => new PgError('XX000', `verify failed: ${reason}`, 'ERROR', undefined, 'nothing was changed; run it again'),
  adminCommandFailed: (message: string) => new PgError('XX000', message),
  internal: (what: string) => new PgError('XX000', `pgraid internal error: ${what}`, 'FATAL'),
} as const

export type ErrorName = keyof typeof errors
