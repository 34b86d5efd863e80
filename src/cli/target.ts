// How the console commands (status, resync, clone, verify, enable, disable, reload) find and log in to
// a running pgraid's admin console, as pgpool's pcp_* tools and psql do:
//
//   address   -h/--host and -p/--port; else the record of the pgraid running with the config file
//             (runtime.ts: its current address, even after listen.* was edited in the file); else
//             listen.host/listen.port of the config file (0.0.0.0 and :: mean 127.0.0.1); else
//             127.0.0.1:6432.
//   config    -c/--config, else $PGRAID_CONFIG, else ./pgraid.jsonc, then /etc/pgraid/pgraid.jsonc
//             (the default paths are not looked at when -h or -p is given: then no file is needed).
//   user      -U/--user, else the first user with "admin": true in the config file.
//   password  $PGRAID_PASSWORD, else the user's password in the config file when it is plain text,
//             else the password file ($PGPASSFILE or ~/.pgpass, database `pgraid`).
//
// The file is read for those few keys only (its syntax, not the whole schema): the running pgraid
// has its configuration already, and `reload` must reach it with a file the reload will refuse.

import { existsSync, readFileSync } from 'node:fs'
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser'
import { passFilePath, passwordFromFile } from './pgpass.ts'
import { findRecord } from './runtime.ts'

export const DEFAULT_CONFIG_PATHS = ['pgraid.jsonc', '/etc/pgraid/pgraid.jsonc'] as const
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 6432
export const CONSOLE_DATABASE = 'pgraid'

/** A problem that makes the command exit 2 (could not ask), with the message to print. */
export class TargetError extends Error {
  override name = 'TargetError'
}

export interface ConsoleOptions {
  config?: string
  host?: string
  port?: string
  user?: string
}

export interface ConsoleTarget {
  host: string
  port: number
  user: string
  /** Undefined: none found (a trust login still works; otherwise the login fails saying how to give one). */
  password: string | undefined
  /** The config file used, if any. */
  configPath: string | null
  /** Where the address came from, for messages. */
  addressFrom: string
}

/** The config file a command uses: -c, else $PGRAID_CONFIG, else the first default path that exists (null if none). */
export function configPathFor(opt: string | undefined, searchDefaults = true, env: NodeJS.ProcessEnv = process.env): string | null {
  if (opt) return opt
  if (env.PGRAID_CONFIG) return env.PGRAID_CONFIG
  if (!searchDefaults) return null
  return DEFAULT_CONFIG_PATHS.find((p) => existsSync(p)) ?? null
}

/** The message for "no config file" (start, check-config). */
export function noConfigMessage(): string {
  return `no config file: give -c/--config FILE, or set PGRAID_CONFIG, or create ./${DEFAULT_CONFIG_PATHS[0]} or ${DEFAULT_CONFIG_PATHS[1]}`
}

interface FileUser {
  name: string
  password?: string
  admin?: boolean
}

interface ConsoleKeys {
  host?: string
  port?: number
  users: FileUser[]
}

/** listen.host, listen.port and users from a config file's text; syntax errors throw unless `tolerant`. */
export function consoleKeys(text: string, source: string, tolerant: boolean): ConsoleKeys {
  const errors: ParseError[] = []
  const raw = parseJsonc(text, errors, { allowTrailingComma: true, disallowComments: false }) as unknown
  if (errors.length && !tolerant) {
    const e = errors[0]!
    const line = text.slice(0, e.offset).split('\n').length
    throw new TargetError(
      `${source}: not valid JSON: ${printParseErrorCode(e.error)
        .replace(/([a-z])([A-Z])/g, '$1 $2')
        .toLowerCase()} at line ${line} (pgraid check-config -c ${source} lists every problem)`,
    )
  }
  const doc = (raw && typeof raw === 'object' ? raw : {}) as { listen?: { host?: unknown; port?: unknown }; users?: unknown }
  const listen = doc.listen && typeof doc.listen === 'object' ? doc.listen : {}
  const users = Array.isArray(doc.users) ? doc.users.filter((u): u is FileUser => !!u && typeof u === 'object' && typeof (u as FileUser).name === 'string') : []
  return {
    host: typeof listen.host === 'string' && listen.host ? listen.host : undefined,
    port: Number.isInteger(listen.port) ? (listen.port as number) : undefined,
    users,
  }
}

/** A configured password usable as is (not a SCRAM verifier or md5 hash). */
function plainPassword(p: unknown): string | undefined {
  return typeof p === 'string' && p !== '' && !/^(SCRAM-SHA-256\$|md5[0-9a-f]{32}$)/.test(p) ? p : undefined
}

function clientHost(h: string): string {
  return h === '0.0.0.0' || h === '::' || h === '' ? DEFAULT_HOST : h
}

/** Resolves address, user and password; TargetError when it cannot (exit 2). `tolerant`: a file with syntax errors still gives what it can (reload). */
export function resolveTarget(opts: ConsoleOptions, tolerant = false, env: NodeJS.ProcessEnv = process.env): ConsoleTarget {
  const direct = opts.host !== undefined || opts.port !== undefined
  const configPath = configPathFor(opts.config, !direct, env)
  let keys: ConsoleKeys = { users: [] }
  let record = null
  if (configPath) {
    let text: string
    try {
      text = readFileSync(configPath, 'utf8')
    } catch (e) {
      throw new TargetError(`cannot read the config file ${configPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
    keys = consoleKeys(text, configPath, tolerant)
    if (opts.host === undefined || opts.port === undefined) record = findRecord(configPath, env)
  } else if (!direct && opts.user === undefined) {
    throw new TargetError(`${noConfigMessage()}; or give pgraid's address and an admin user with -h HOST -p PORT -U USER`)
  }

  let port: number
  if (opts.port !== undefined) {
    port = Number(opts.port)
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TargetError(`-p/--port: must be an integer 1-65535, got "${opts.port}"`)
  } else port = record?.port ?? keys.port ?? DEFAULT_PORT
  const host = clientHost(opts.host ?? record?.host ?? keys.host ?? DEFAULT_HOST)
  const addressFrom =
    opts.host !== undefined && opts.port !== undefined
      ? '-h/-p'
      : record
        ? `the running pgraid's record (pid ${record.pid}, started with ${configPath})`
        : configPath
          ? `listen in ${configPath}`
          : 'the defaults'

  let user = opts.user
  if (user === undefined) {
    const admin = keys.users.find((u) => u.admin === true)
    if (!admin) {
      throw new TargetError(
        configPath
          ? `no admin user in ${configPath}: set "admin": true for one of the users, or name one with -U`
          : 'no admin user: name one with -U USER (a user with "admin": true in the config pgraid runs with)',
      )
    }
    user = admin.name
  }
  const fromFile = plainPassword(keys.users.find((u) => u.name === user)?.password)
  const password = env.PGRAID_PASSWORD || fromFile || passwordFromFile({ host, port, database: CONSOLE_DATABASE, user }, passFilePath(env))
  return { host, port, user, password, configPath, addressFrom }
}
