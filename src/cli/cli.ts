// The `pgraid` command line: start the proxy, check a config file, hash a password, and the console
// commands that ask a running pgraid (status, resync, clone, verify, enable, disable, reload). Maps
// outcomes to exit codes (0 ok, 1 runtime failure or refusal, 2 usage or config error, or could not
// ask) and keeps stdout for results only.
//
// Start time: this module loads commander and nothing else at first; each command imports what it
// needs when it runs (the config schema and zod, pino, node-postgres, the server), so `pgraid --help`
// or a console command does not pay for the server's modules.
import { readFileSync } from 'node:fs'
import { Command, CommanderError, Option } from 'commander'
import type { VerifyReport } from '../lifecycle/verify.ts'
import type { Config, LogLevel } from '../config/schema.ts'
import type { ConsoleOptions, ConsoleTarget } from './target.ts'

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** config/operation.ts's LOG_LEVELS, repeated so the option's choices need no zod (test/cli/cli-env.unit.ts checks they agree). */
export const CLI_LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const satisfies readonly LogLevel[]

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

const ENVIRONMENT = `
Environment:
  PGRAID_CONFIG       the config file when -c is not given (otherwise ./pgraid.jsonc, then /etc/pgraid/pgraid.jsonc)
  PGRAID_PASSWORD     the admin user's password for the console commands (status, resync, clone, verify,
                      enable, disable, reload); otherwise the config's password if plain text, then the
                      password file
  PGPASSFILE          the password file (default ~/.pgpass, mode 0600): lines host:port:pgraid:user:password
  PGRAID_RUNTIME_DIR  where \`pgraid start\` records the address it listens on, and where the console
                      commands look for it (default /run/pgraid if writable, else <tmpdir>/pgraid-run-<uid>)
  PGRAID_DIST=1       in a repository checkout: run the compiled dist/ instead of the TypeScript sources

Exit codes: 0 ok; 1 failed, refused, degraded (status) or different (verify); 2 usage or config error,
or could not ask pgraid. A --dry-run exits as the real command would.
Docs: docs/operations.md (runbook), docs/admin.md (console, CLI), docs/configuration.md (keys).`

const CONSOLE_HELP = `
Which pgraid, as whom: -h/-p, else the address of the pgraid running with the config file (recorded
at its start, so an edited listen.port still reaches it), else listen.host/listen.port of the config
file; -U, else the config's first user with "admin": true. The config file is optional when -h/-p/-U
are given.`

const NEEDS_CONFIG_HELP = `
Needs the config file: -c FILE, else $PGRAID_CONFIG, else ./pgraid.jsonc, else /etc/pgraid/pgraid.jsonc.`

interface ConsoleOpts {
  config?: string
  host?: string
  port?: string
  user?: string
  /** -u, the old spelling of -U. */
  u?: string
}

/** The options every console command takes: where pgraid is and who logs in. */
function consoleCommand(program: Command, name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .helpOption('-?, --help', 'display help for command')
    .option('-c, --config <file>', 'the config file pgraid runs with (for its address and admin user); default $PGRAID_CONFIG, ./pgraid.jsonc, /etc/pgraid/pgraid.jsonc')
    .option('-h, --host <host>', "pgraid's address (default: as described below, else 127.0.0.1)")
    .option('-p, --port <port>', "pgraid's port (default: as described below, else 6432)")
    .option('-U, --user <user>', 'admin user to log in as (default: the first with "admin": true in the config)')
    .addOption(new Option('-u <user>', 'the old spelling of -U').hideHelp())
    .addHelpText('after', CONSOLE_HELP + '\n' + ENVIRONMENT)
}

/** Runs the CLI and resolves with the process exit code; `start` resolves only after shutdown. */
export async function main(argv: readonly string[]): Promise<number> {
  let exitCode = EXIT_OK
  const program = new Command('pgraid')
    .description('Replicating PostgreSQL wire proxy: every write goes to all backends in one order; reads are balanced.')
    .version(version, '-V, --version')
    // Must precede .command(): subcommands copy it, so commander throws instead of exiting and we pick the code.
    .exitOverride()
    .addHelpText('after', ENVIRONMENT)

  program
    .command('start')
    .description('start the proxy; prints "pgraid listening on host:port" once ready, logs JSON lines to stderr')
    .option('-c, --config <file>', 'the config file (default $PGRAID_CONFIG, ./pgraid.jsonc, /etc/pgraid/pgraid.jsonc)')
    .addOption(new Option('--log-level <level>', 'override log.level from the config file').choices(CLI_LOG_LEVELS))
    .addHelpText('after', NEEDS_CONFIG_HELP + '\n' + ENVIRONMENT)
    .action(async (opts: { config?: string; logLevel?: LogLevel }) => {
      exitCode = await start(opts.config, opts.logLevel)
    })

  program
    .command('check-config')
    .description('validate a config file: prints "ok", or every problem (exit 2)')
    .option('-c, --config <file>', 'the config file (default $PGRAID_CONFIG, ./pgraid.jsonc, /etc/pgraid/pgraid.jsonc)')
    .option('--connect', "also log in to every backend as pgraid would and report each one's result (exit 1 if any fails)")
    .addHelpText('after', NEEDS_CONFIG_HELP + '\n' + ENVIRONMENT)
    .action(async (opts: { config?: string; connect?: boolean }) => {
      const path = await configFileOrReport(opts.config)
      if (path === null) return void (exitCode = EXIT_USAGE)
      const config = await loadConfigOrReport(path)
      if (config === undefined) return void (exitCode = EXIT_USAGE)
      process.stdout.write('ok\n')
      if (!opts.connect) return
      const { checkConnections } = await import('./check-connect.ts')
      const results = await checkConnections(config)
      for (const r of results) process.stdout.write(`${r.backend} (${r.address}): ${r.ok ? 'ok' : 'FAILED'}: ${r.detail}\n`)
      if (results.some((r) => !r.ok)) exitCode = EXIT_FAILURE
    })

  program
    .command('hash-password')
    .description('print a stored form of a password for the "users" section of the config')
    .argument('<password>', 'the password; "-" reads it from stdin (keeps it out of shell history and ps)')
    .addOption(new Option('-m, --method <method>', 'hash for this auth method').choices(['scram-sha-256', 'md5']).default('scram-sha-256'))
    .option('-u, --user <user>', 'user name (required for md5, whose hash is salted with it)')
    .action(async (password: string, opts: { method: 'scram-sha-256' | 'md5'; user?: string }) => {
      exitCode = await hashPassword(password === '-' ? await readStdinLine() : password, opts.method, opts.user)
    })

  consoleCommand(program, 'status', "ask a running pgraid (its admin console) for each backend's state, log position and lag; exit 0 all in service, 1 degraded, 2 could not ask")
    .option('--json', 'print JSON instead of tables (numbers and booleans typed; schema in docs/admin.md)')
    .action(async (opts: ConsoleOpts & { json?: boolean }) => {
      exitCode = await status(opts, opts.json ?? false)
    })

  consoleCommand(program, 'resync', 'bring a disabled backend up to date from one in service and put it back, online (exit 0 done, 1 refused or failed, 2 could not ask)')
    .argument('<backend>', 'the backend name from the config')
    .option('--dry-run', 'say what it would do, change nothing (exit 1 if it would refuse)')
    .action(async (backend: string, opts: ConsoleOpts & { dryRun?: boolean }) => {
      exitCode = await runConsole(opts, `RESYNC ${backend}${opts.dryRun ? ' DRY RUN' : ''}`, opts.dryRun ? 'dry' : undefined)
    })

  consoleCommand(
    program,
    'clone',
    'make a new, empty or inconsistent backend a full copy of one in service, online: its databases are dropped and copied again, then it catches up from the log and is put back (exit 0 done, 1 refused or failed, 2 could not ask)',
  )
    .argument('<backend>', 'the backend to overwrite (name from the config)')
    .option('--from <backend>', 'the backend in service to copy (default: the first in service)')
    .option('--dry-run', 'say what it would do, change nothing (exit 1 if it would refuse)')
    .action(async (backend: string, opts: ConsoleOpts & { from?: string; dryRun?: boolean }) => {
      exitCode = await runConsole(opts, `CLONE ${backend}${opts.from ? ` FROM ${opts.from}` : ''}${opts.dryRun ? ' DRY RUN' : ''}`, opts.dryRun ? 'dry' : undefined)
    })

  consoleCommand(program, 'verify', 'compare every backend in service, read at one log position, table by table (exit 0 identical, 1 differences or refused, 2 could not ask)')
    .option('-t, --tables <tables...>', 'only these tables (name or schema.name; comma or space separated)')
    .option('--json', 'print the whole report as JSON')
    .action(async (opts: ConsoleOpts & { tables?: string[]; json?: boolean }) => {
      const tables = (opts.tables ?? [])
        .flatMap((t) => t.split(','))
        .map((t) => t.trim())
        .filter(Boolean)
      exitCode = await runConsole(opts, `VERIFY JSON${tables.length ? ` TABLES ${tables.join(', ')}` : ''}`, (rows) => {
        const report = JSON.parse(String(rows[0]?.report)) as VerifyReport
        process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : renderVerify(report))
        return report.identical ? EXIT_OK : EXIT_FAILURE
      })
    })

  consoleCommand(
    program,
    'reload',
    'make a running pgraid re-read its config file and apply it without dropping sessions, as SIGHUP (exit 0 applied, 1 refused: the reasons are printed and the old config keeps running, 2 could not ask)',
  )
    .option('--dry-run', 'say what would change ("would apply: ..."), change nothing (exit 1 if it would refuse)')
    .action(async (opts: ConsoleOpts & { dryRun?: boolean }) => {
      const dry = opts.dryRun ?? false
      // The edited file may be one the reload refuses (a syntax error, an unknown key): it is read here only
      // for pgraid's address and admin user, tolerantly; the running pgraid reports every problem (exit 1).
      exitCode = await runConsole(opts, `RELOAD${dry ? ' DRY RUN' : ''}`, async (rows) => (await import('./console-run.ts')).renderReload(rows, dry), true)
    })

  consoleCommand(program, 'enable', 'put a backend back in service if it has every committed record (--force: anyway, with a warning)')
    .argument('<backend>', 'the backend name from the config')
    .option('--force', 'enable even if it is behind or inconsistent')
    .option('--dry-run', 'say what it would do, change nothing (exit 1 if it would refuse)')
    .action(async (backend: string, opts: ConsoleOpts & { force?: boolean; dryRun?: boolean }) => {
      exitCode = await runConsole(opts, `ENABLE ${backend}${opts.force ? ' FORCE' : ''}${opts.dryRun ? ' DRY RUN' : ''}`, opts.dryRun ? 'dry' : undefined)
    })

  consoleCommand(program, 'disable', 'take a backend out of service (it stays out until resynced)')
    .argument('<backend>', 'the backend name from the config')
    .option('--dry-run', 'say what it would do, change nothing (exit 1 if it would refuse)')
    .action(async (backend: string, opts: ConsoleOpts & { dryRun?: boolean }) => {
      exitCode = await runConsole(opts, `DISABLE ${backend}${opts.dryRun ? ' DRY RUN' : ''}`, opts.dryRun ? 'dry' : undefined)
    })

  try {
    await program.parseAsync([...argv])
  } catch (err) {
    // commander has already printed help, the version, or the usage error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE
    process.stderr.write(`pgraid: ${(err as Error)?.stack ?? String(err)}\n`)
    return EXIT_FAILURE
  }
  return exitCode
}

/** Human output of `pgraid verify`. */
export function renderVerify(r: VerifyReport): string {
  const lines: string[] = []
  const rows = r.tables.reduce((n, t) => n + t.rows, 0)
  const at = r.databases.map((d) => `"${d.name}" at LSN ${d.lsn ?? '-'} (commits held ${d.heldMs} ms)`).join(', ')
  lines.push(`compared ${r.backends.join(', ')}: ${r.tables.length} tables and sequences, ${rows} rows; ${at || 'no database with a pgraid log'}`)
  if (r.skipped.length) lines.push(`not compared (out of service): ${r.skipped.join(', ')}`)
  for (const d of r.differences) lines.push(`  ${d.database}: ${d.table}: ${d.backend}: ${d.problem}${d.key ? ` ${d.key}` : ''}: ${d.detail}`)
  lines.push(r.identical ? 'identical' : `${r.differences.length} difference(s) in ${new Set(r.differences.map((d) => `${d.database}.${d.table}`)).size} table(s)`)
  return lines.join('\n') + '\n'
}

/** Entry point for bin/pgraid.js: runs main, then exits once stdout/stderr have drained. */
export async function runCli(argv: readonly string[]): Promise<void> {
  const code = await main(argv)
  // Exit explicitly: after `start` shuts down, a forgotten socket or timer must not keep a stopped proxy
  // alive; waiting for the writes keeps piped output from being cut off.
  let pending = 2
  const done = () => {
    if (--pending === 0) process.exit(code)
  }
  process.stdout.write('', done)
  process.stderr.write('', done)
}

/** The config file start and check-config use, or null after saying there is none. */
async function configFileOrReport(opt: string | undefined): Promise<string | null> {
  const { configPathFor, noConfigMessage } = await import('./target.ts')
  const path = configPathFor(opt)
  if (path === null) process.stderr.write(`pgraid: ${noConfigMessage()}\n`)
  return path
}

/** The validated config, or undefined after printing every problem to stderr. */
async function loadConfigOrReport(path: string): Promise<Config | undefined> {
  const { ConfigError, loadConfig } = await import('../config/schema.ts')
  try {
    return await loadConfig(path)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`${err.message}\n`)
    return undefined
  }
}

async function start(configOpt: string | undefined, levelOverride: LogLevel | undefined): Promise<number> {
  const configPath = await configFileOrReport(configOpt)
  if (configPath === null) return EXIT_USAGE
  const config = await loadConfigOrReport(configPath)
  if (config === undefined) return EXIT_USAGE // never start on a bad config
  const { createLogger } = await import('../observe/logger.ts')
  const logger = createLogger(levelOverride ?? config.log.level)

  const { startPgraid } = await import('../server.ts')
  let server: Awaited<ReturnType<typeof startPgraid>>
  try {
    server = await startPgraid(config, logger, { configPath, logLevel: levelOverride })
  } catch (err) {
    logger.fatal({ err }, 'failed to start')
    process.stderr.write(`pgraid: failed to start: ${(err as Error)?.message ?? String(err)}\n`)
    return EXIT_FAILURE
  }
  // Where the console commands find this pgraid, whatever listen.* in the file says later (runtime.ts).
  const { writeRecord } = await import('./runtime.ts')
  const removeRecord = writeRecord(configPath, server.host, server.port)
  process.once('exit', removeRecord)
  process.stdout.write(`pgraid listening on ${server.host}:${server.port}\n`)
  logger.info({ host: server.host, port: server.port, backends: config.backends.length }, 'listening')

  return new Promise<number>((resolve) => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // The operator gave up waiting for a graceful close: leave now, with the shell's code for the signal.
        logger.warn({ signal }, 'second signal, exiting without waiting for close')
        process.exit(signal === 'SIGINT' ? 130 : 143)
      }
      stopping = true
      logger.info({ signal }, 'shutting down')
      removeRecord()
      server.close(server.context.config.timeouts.shutdownMs).then(
        () => {
          logger.info('stopped')
          resolve(EXIT_OK)
        },
        (err: unknown) => {
          logger.error({ err }, 'error while shutting down')
          resolve(EXIT_FAILURE)
        },
      )
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    // SIGHUP: re-read the config file and apply it live, as PostgreSQL and PgBouncer do. The reload logs
    // its outcome itself (info with the changes, or error with every problem; the old config keeps running).
    process.on('SIGHUP', () => {
      if (stopping) return void logger.warn('SIGHUP while shutting down: not reloading')
      logger.info({ signal: 'SIGHUP', config: configPath }, 'reloading the configuration')
      server.reload().catch(() => {})
    })
    server.onShutdownRequest(() => onSignal('SIGTERM'))
  })
}

async function hashPassword(password: string, method: 'scram-sha-256' | 'md5', user: string | undefined): Promise<number> {
  if (password === '') {
    process.stderr.write('pgraid: the password is empty\n')
    return EXIT_USAGE
  }
  if (method === 'md5') {
    if (user === undefined || user === '') {
      process.stderr.write('pgraid: --method md5 needs --user <name>: the md5 hash is salted with the user name\n')
      return EXIT_USAGE
    }
    const { md5PasswordHash } = await import('../auth/md5.ts')
    process.stdout.write(`${md5PasswordHash(user, password)}\n`)
  } else {
    const { makeScramVerifier } = await import('../auth/scram.ts')
    process.stdout.write(`${makeScramVerifier(password)}\n`)
  }
  return EXIT_OK
}

/** The first line of stdin, without its line ending. */
async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? ''
}

/** Where the console is and who logs in, or null after saying why not (exit 2). */
async function targetOrReport(opts: ConsoleOpts, tolerant = false): Promise<ConsoleTarget | null> {
  const { resolveTarget, TargetError } = await import('./target.ts')
  const o: ConsoleOptions = { config: opts.config, host: opts.host, port: opts.port, user: opts.user ?? opts.u }
  try {
    return resolveTarget(o, tolerant)
  } catch (e) {
    if (!(e instanceof TargetError)) throw e
    process.stderr.write(`pgraid: ${e.message}\n`)
    return null
  }
}

type Rows = Record<string, unknown>[]

/**
 * One console command. `render`: what to print and the exit code ('dry': key=value rows, exit 1 if the dry
 * run says the command would be refused; default: key=value rows, exit 0).
 */
async function runConsole(opts: ConsoleOpts, command: string, render?: 'dry' | ((rows: Rows) => number | Promise<number>), tolerant = false): Promise<number> {
  const target = await targetOrReport(opts, tolerant)
  if (!target) return EXIT_USAGE
  const run = await import('./console-run.ts')
  return run.withConsole(target, 'pgraid cli', async (c, progress) => {
    const r = await c.query(command)
    progress.clear()
    if (typeof render === 'function') return render(r.rows)
    run.printRows(r.rows)
    return render === 'dry' ? run.dryRunExit(r.rows) : EXIT_OK
  })
}

/** `pgraid status`: exit 0 all in service, 1 degraded, 2 could not ask. */
async function status(opts: ConsoleOpts, json: boolean): Promise<number> {
  const target = await targetOrReport(opts)
  if (!target) return EXIT_USAGE
  const [{ withConsole }, { fetchStatus, renderStatus, statusExit }] = await Promise.all([import('./console-run.ts'), import('./status.ts')])
  return withConsole(target, 'pgraid status', async (c) => {
    let report
    try {
      report = await fetchStatus(c)
    } catch (e) {
      process.stderr.write(`pgraid status: could not ask pgraid at ${target.host}:${target.port}: ${(e as Error).message}\n`)
      return EXIT_USAGE
    }
    process.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : renderStatus(report))
    return statusExit(report)
  })
}
