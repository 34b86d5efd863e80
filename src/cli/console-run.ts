// Runs one console command for the CLI: logs in to the running pgraid's admin console (target.ts says
// where and as whom), prints NOTICEs as progress on stderr and rows on stdout, and turns the outcome
// into the exit code (0 done, 1 refused or failed, 2 could not ask). Loaded only by the commands that
// talk to the console, so `pgraid --help` does not load node-postgres.

import pg from 'pg'
import { ProgressPrinter } from './progress.ts'
import { CONSOLE_DATABASE, type ConsoleTarget } from './target.ts'

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

export type Rows = Record<string, unknown>[]

/** What a command does with the console once logged in; returns the exit code. */
export type ConsoleWork = (c: pg.Client, progress: ProgressPrinter) => Promise<number>

/** Logs in, runs `work`, logs out. A login that fails exits 2 with the address and where it came from. */
export async function withConsole(target: ConsoleTarget, appName: string, work: ConsoleWork): Promise<number> {
  const c = new pg.Client({
    host: target.host,
    port: target.port,
    user: target.user,
    database: CONSOLE_DATABASE,
    application_name: appName,
    connectionTimeoutMillis: 10_000,
    // A function, so node-postgres never falls back on its own (deprecated, warning-printing) pgpass lookup;
    // asked only when pgraid wants a password.
    password: () => {
      if (target.password === undefined) {
        throw new Error(
          `pgraid asks user "${target.user}" for a password and none was found: set PGRAID_PASSWORD, or add the line ` +
            `"${target.host}:${target.port}:${CONSOLE_DATABASE}:${target.user}:<password>" to ${process.env.PGPASSFILE || '~/.pgpass'} (mode 0600)`,
        )
      }
      return target.password
    },
  })
  c.on('error', () => {})
  const progress = new ProgressPrinter(process.stderr)
  c.on('notice', (n) => progress.notice(n.message ?? '', n.detail))
  try {
    await c.connect()
  } catch (e) {
    const err = e as Error & { code?: string }
    const hint =
      err.code === 'ECONNREFUSED'
        ? '\nhint: is pgraid running there? The address came from ' + target.addressFrom + '; give another with -h HOST -p PORT'
        : err.code === '42501'
          ? `\nhint: "${target.user}" is not an admin user: log in as a user with "admin": true (-U USER)`
          : ''
    process.stderr.write(`pgraid: could not ask pgraid at ${target.host}:${target.port} as ${target.user}: ${err.message}${hint}\n`)
    await c.end().catch(() => {})
    return EXIT_USAGE
  }
  try {
    return await work(c, progress)
  } catch (e) {
    progress.clear()
    const err = e as Error & { hint?: string; detail?: string }
    process.stderr.write(`pgraid: ${err.message}${err.detail ? `\n${err.detail}` : ''}${err.hint ? `\nhint: ${err.hint}` : ''}\n`)
    return EXIT_FAILURE
  } finally {
    await c.end().catch(() => {})
  }
}

/** Prints rows as `key=value ...` lines. */
export function printRows(rows: Rows): void {
  for (const row of rows)
    process.stdout.write(
      Object.entries(row)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') + '\n',
    )
}

/**
 * The exit code of a DRY RUN answer: 1 when it says the real command would be refused, as the real
 * command would exit (the console answers a dry run with a row, `would refuse: ...`, not an error).
 */
export function dryRunExit(rows: Rows): number {
  return rows.some((r) => typeof r.dry_run === 'string' && r.dry_run.startsWith('would refuse')) ? EXIT_FAILURE : EXIT_OK
}

/** RELOAD [DRY RUN]: one line per change; a dry run says "would apply:" so it is never mistaken for the real thing. */
export function renderReload(rows: Rows, dry: boolean): number {
  for (const row of rows) process.stdout.write(`${dry ? 'would apply: ' : ''}${String(Object.values(row)[0])}\n`)
  if (!rows.length) process.stdout.write(dry ? 'dry run: nothing would change\n' : 'nothing changed\n')
  return EXIT_OK
}
