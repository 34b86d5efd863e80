// The pgraid config file: its schema (the single source of truth for keys, defaults and meanings),
// validation with every problem reported at once, and loading from a JSON file (comments allowed).
// The sections live in connections.ts and operation.ts, the cross-field rules in cross-checks.ts,
// the JSONC parsing in jsonc.ts; this file puts them together and is what the rest of pgraid imports.
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { authQuerySchema, backendSchema, listenSchema, userSchema } from './connections.ts'
import { crossCheckProblems } from './cross-checks.ts'
import { ConfigError, describeIssues } from './issues.ts'
import { parseConfigText } from './jsonc.ts'
import { objectKeysAt } from './keys.ts'
import { determinismSchema, haSchema, healthSchema, lifecycleSchema, limitsSchema, logSchema, metricsSchema, recoverySchema, timeoutsSchema } from './operation.ts'

export { ConfigError } from './issues.ts'
export { AUTH_METHODS, BACKEND_TLS_MODES, LISTEN_TLS_MODES, type AuthMethod } from './connections.ts'
export { LOG_LEVELS, type LogLevel } from './operation.ts'
export { storedPasswordKind, type StoredPasswordKind } from './cross-checks.ts'
export { parseConfigText } from './jsonc.ts'

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
      authQuery: authQuerySchema,
      writeQuorum: z
        .int('must be an integer from 1 to the number of backends')
        .min(1, 'must be an integer from 1 to the number of backends')
        .optional()
        .meta({ defaultText: 'majority: floor(backends/2)+1' })
        .describe(
          'How many backends must be in service for a write to be accepted; an integer from 1 to the number of backends. Below it, writes (and COMMITs of transactions that wrote) are refused with 57P03 naming the backends out of service; reads continue.',
        ),
      timeouts: timeoutsSchema,
      limits: limitsSchema,
      log: logSchema,
      recovery: recoverySchema,
      metrics: metricsSchema,
      ha: haSchema,
      health: healthSchema,
      lifecycle: lifecycleSchema,
      determinism: determinismSchema,
    },
    'must be a JSON object with at least "backends" and "users" (see fixtures/pgraid.example.json)',
  )
  .describe('The pgraid configuration file (JSON; comments allowed).')

// Structure plus computed defaults; the cross-field rules live in parseConfig, the only way in.
const configSchema = configObjectSchema.transform((c) => ({
  ...c,
  writeQuorum: c.writeQuorum ?? Math.floor(c.backends.length / 2) + 1,
}))

/** A validated configuration with every default filled in. */
export type Config = z.output<typeof configSchema>
export type BackendConfig = Config['backends'][number]
export type UserConfig = Config['users'][number]

/** Validates an already-parsed config document; `source` (a file name) is named in errors. */
export function parseConfig(raw: unknown, source: string): Config {
  const result = configSchema.safeParse(raw, { reportInput: true })
  const problems = result.success ? [] : describeIssues(result.error.issues, (path) => objectKeysAt(configObjectSchema, path))
  problems.push(...crossCheckProblems(raw))
  if (problems.length > 0 || !result.success) throw new ConfigError(source, problems)
  return result.data
}

/** Reads and validates a config file (JSON, `//` and block comments allowed); unreadable files and syntax errors are ConfigErrors too. */
export async function loadConfig(path: string): Promise<Config> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ConfigError(path, [`(file): cannot read it (${code ?? (err as Error).message}); pass an existing JSON file with -c`])
  }
  return parseConfig(parseConfigText(text, path), path)
}
