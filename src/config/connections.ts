// The connection sections of the config: where pgraid listens, the backends it writes to, the users
// who may log in, and the pass-through lookup of users not listed. The top-level schema (schema.ts)
// puts them together.
import { z } from 'zod'
import { intIn, nonEmpty } from './fields.ts'

export const AUTH_METHODS = ['scram-sha-256', 'md5', 'trust'] as const
export const LISTEN_TLS_MODES = ['disable', 'allow', 'require'] as const
export const BACKEND_TLS_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const
export type AuthMethod = (typeof AUTH_METHODS)[number]

export const listenSchema = z
  .strictObject({
    host: nonEmpty('must be a non-empty string: the address to listen on (IP address or hostname)')
      .default('127.0.0.1')
      .describe('Address clients connect to. Use `"0.0.0.0"` or `"::"` to accept remote clients.'),
    port: intIn(0, 65535, 'must be an integer 0-65535 (0 = any free port)').default(6432).describe('TCP port clients connect to, 0-65535; 0 picks any free port (the chosen one is printed at start).'),

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
        ca: nonEmpty('must be the path of a PEM file of CA certificates')
          .nullable()
          .default(null)
          .describe(
            'PEM file of CAs that client certificates are checked against; when set, clients are asked for a certificate (needed for hba method "cert" and clientcert=...). A client that presents a certificate these CAs do not vouch for is refused.',
          ),
        minVersion: z
          .enum(['TLSv1.2', 'TLSv1.3'], 'must be "TLSv1.2" or "TLSv1.3"')
          .default('TLSv1.2')
          .describe("Oldest TLS protocol version accepted from clients (PostgreSQL's ssl_min_protocol_version)."),
      })
      .prefault({})
      .describe("TLS for client connections (SSLRequest), as PostgreSQL's ssl settings. Files are read at start and on reload."),
  })
  .prefault({})
  .describe('Where pgraid accepts PostgreSQL client connections.')

export const backendSchema = z
  .strictObject({
    name: z
      .string('must be a string of letters, digits, "_", "." or "-"')
      .regex(/^[A-Za-z0-9_.-]+$/, 'must be non-empty and use only letters, digits, "_", "." or "-"')
      .describe('Unique name of the backend, used in logs and metrics: letters, digits, `_`, `.`, `-`.'),
    host: nonEmpty('must be a non-empty string: the PostgreSQL server address (IP address or hostname)').describe('PostgreSQL server address (IP address or hostname).'),
    port: intIn(1, 65535, 'must be an integer 1-65535').default(5432).describe('PostgreSQL server port, 1-65535.'),
    database: nonEmpty('must be a non-empty database name, or null for the database the client asked for')
      .nullable()
      .default(null)
      .describe('Database to use on this backend; `null` means the database named by the connecting client.'),
    user: nonEmpty('must be a non-empty string: the PostgreSQL role pgraid logs in as').describe('Role pgraid logs in to this backend as (client credentials are checked by pgraid, not forwarded).'),
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
        ca: nonEmpty('must be the path of a PEM file of CA certificates')
          .nullable()
          .default(null)
          .describe("PEM file of CAs the backend's certificate must chain to (required for verify-ca and verify-full)."),
        cert: nonEmpty('must be the path of a PEM certificate file')
          .nullable()
          .default(null)
          .describe("Client certificate pgraid presents to the backend (for the backend's cert authentication); optional."),
        key: nonEmpty('must be the path of a PEM private key file').nullable().default(null).describe('Private key of `cert`.'),
      })
      .prefault({})
      .describe('TLS from pgraid to this backend (data path and control connections alike).'),
  })
  .describe('One PostgreSQL server holding a full copy of the data.')

export const userSchema = z
  .strictObject({
    name: nonEmpty('must be a non-empty string: the user name clients log in with').describe('User name clients log in to pgraid with.'),
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
      .describe(
        'May log in to the admin console: the reserved database `pgraid` (`psql -d pgraid`), with `SHOW BACKENDS`, `SHOW LOG`, `SHOW SESSIONS`, `SHOW LOCKS`, `SHOW CONFIG`, `SHOW STATS`, `DISABLE`/`ENABLE`/`RESYNC`/`CLONE <backend>`, `VERIFY`; `pgraid status`, `resync`, `clone`, `verify`, `enable`, `disable` use it. docs/admin.md, docs/operations.md.',
      ),
    maxConnections: z
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .optional()
      .describe("Most concurrent sessions of this user; one more gets FATAL 53300 (as a role's CONNECTION LIMIT). Without it only `limits.maxClients` applies."),
  })
  .describe('A user clients may log in to pgraid as.')

export const authQuerySchema = z
  .strictObject({
    enabled: z
      .boolean('must be true or false')
      .default(false)
      .describe("Users not listed in `users` are looked up in the backends (as PgBouncer's auth_query): their stored SCRAM verifier or md5 hash checks the password. They are never admins."),
    query: nonEmpty('must be a SQL query with one parameter ($1 = the user name) returning the stored password')
      .default('SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())')
      .describe(
        "Query run on a backend in service with the backend's configured user ($1 = the user name); its first column is the stored password (SCRAM-SHA-256$... or md5...). Reading pg_authid needs a superuser; otherwise point it at a SECURITY DEFINER function.",
      ),
    database: nonEmpty('must be a database name').default('postgres').describe('Database the lookup connects to.'),
  })
  .prefault({})
  .describe("Pass-through authentication against the backends' own roles.")
