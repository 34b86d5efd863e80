// The `pgraid` command line: start the proxy, check a config file, hash a password. Maps outcomes to
// exit codes (0 ok, 1 runtime failure, 2 usage or config error) and keeps stdout for results only.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { ProgressPrinter } from './progress.ts';
import type { VerifyReport } from '../lifecycle/verify.ts';
import { ConfigError, LOG_LEVELS, loadConfig, type Config, type LogLevel } from '../config/schema.ts';
import { createLogger } from '../observe/logger.ts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

/** Runs the CLI and resolves with the process exit code; `start` resolves only after shutdown. */
export async function main(argv: readonly string[]): Promise<number> {
  let exitCode = EXIT_OK;
  const program = new Command('pgraid')
    .description('Replicating PostgreSQL wire proxy: every write goes to all backends in one order; reads are balanced.')
    .version(version, '-V, --version')
    // Must precede .command(): subcommands copy it, so commander throws instead of exiting and we pick the code.
    .exitOverride();

  program
    .command('start')
    .description('start the proxy; prints "pgraid listening on host:port" once ready, logs JSON lines to stderr')
    .requiredOption('-c, --config <file>', 'JSON config file')
    .addOption(new Option('--log-level <level>', 'override log.level from the config file').choices(LOG_LEVELS))
    .action(async (opts: { config: string; logLevel?: LogLevel }) => {
      exitCode = await start(opts.config, opts.logLevel);
    });

  program
    .command('check-config')
    .description('validate a config file: prints "ok", or every problem (exit 2)')
    .requiredOption('-c, --config <file>', 'JSON config file')
    .option('--connect', "also log in to every backend as pgraid would and report each one's result (exit 1 if any fails)")
    .action(async (opts: { config: string; connect?: boolean }) => {
      const config = await loadConfigOrReport(opts.config);
      if (config === undefined) return void (exitCode = EXIT_USAGE);
      process.stdout.write('ok\n');
      if (!opts.connect) return;
      const { checkConnections } = await import('./check-connect.ts');
      const results = await checkConnections(config);
      for (const r of results) process.stdout.write(`${r.backend} (${r.address}): ${r.ok ? 'ok' : 'FAILED'}: ${r.detail}\n`);
      if (results.some((r) => !r.ok)) exitCode = EXIT_FAILURE;
    });

  program
    .command('hash-password')
    .description('print a stored form of a password for the "users" section of the config')
    .argument('<password>', 'the password; "-" reads it from stdin (keeps it out of shell history and ps)')
    .addOption(
      new Option('-m, --method <method>', 'hash for this auth method')
        .choices(['scram-sha-256', 'md5'])
        .default('scram-sha-256'),
    )
    .option('-u, --user <user>', 'user name (required for md5, whose hash is salted with it)')
    .action(async (password: string, opts: { method: 'scram-sha-256' | 'md5'; user?: string }) => {
      exitCode = await hashPassword(password === '-' ? await readStdinLine() : password, opts.method, opts.user);
    });

  program
    .command('status')
    .description('ask a running pgraid (its admin console) for each backend\'s state, log position and lag; exit 0 all in service, 1 degraded, 2 could not ask')
    .requiredOption('-c, --config <file>', 'the JSON config file pgraid runs with (for its address)')
    .option('-u, --user <user>', 'an admin user (users[].admin in the config); default: the first admin user')
    .option('--json', 'print JSON instead of tables')
    .action(async (opts: { config: string; user?: string; json?: boolean }) => {
      exitCode = await status(opts.config, opts.user, opts.json ?? false);
    });

  program
    .command('resync')
    .description('bring a disabled backend up to date from one in service and put it back, online (exit 0 done, 1 refused or failed, 2 could not ask)')
    .argument('<backend>', 'the backend name from the config')
    .requiredOption('-c, --config <file>', 'the JSON config file pgraid runs with (for its address)')
    .option('-u, --user <user>', 'an admin user (users[].admin in the config); default: the first admin user')
    .option('--dry-run', 'say what it would do, change nothing')
    .action(async (backend: string, opts: { config: string; user?: string; dryRun?: boolean }) => {
      exitCode = await adminCommand(opts.config, opts.user, `RESYNC ${backend}${opts.dryRun ? ' DRY RUN' : ''}`);
    });

  program
    .command('clone')
    .description('make a new, empty or inconsistent backend a full copy of one in service, online: its databases are dropped and copied again, then it catches up from the log and is put back (exit 0 done, 1 refused or failed, 2 could not ask)')
    .argument('<backend>', 'the backend to overwrite (name from the config)')
    .option('--from <backend>', 'the backend in service to copy (default: the first in service)')
    .requiredOption('-c, --config <file>', 'the JSON config file pgraid runs with')
    .option('-u, --user <user>', 'an admin user')
    .option('--dry-run', 'say what it would do, change nothing')
    .action(async (backend: string, opts: { config: string; user?: string; from?: string; dryRun?: boolean }) => {
      exitCode = await adminCommand(opts.config, opts.user, `CLONE ${backend}${opts.from ? ` FROM ${opts.from}` : ''}${opts.dryRun ? ' DRY RUN' : ''}`);
    });

  program
    .command('verify')
    .description('compare every backend in service, read at one log position, table by table (exit 0 identical, 1 differences or refused, 2 could not ask)')
    .requiredOption('-c, --config <file>', 'the JSON config file pgraid runs with')
    .option('-u, --user <user>', 'an admin user')
    .option('-t, --tables <tables...>', 'only these tables (name or schema.name; comma or space separated)')
    .option('--json', 'print the whole report as JSON')
    .action(async (opts: { config: string; user?: string; tables?: string[]; json?: boolean }) => {
      const tables = (opts.tables ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
      exitCode = await adminCommand(opts.config, opts.user, `VERIFY JSON${tables.length ? ` TABLES ${tables.join(', ')}` : ''}`, (rows) => {
        const report = JSON.parse(String(rows[0]?.report)) as VerifyReport;
        process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : renderVerify(report));
        return report.identical ? EXIT_OK : EXIT_FAILURE;
      });
    });

  program
    .command('reload')
    .description('make a running pgraid re-read its config file and apply it without dropping sessions, as SIGHUP (exit 0 applied, 1 refused: the reasons are printed and the old config keeps running, 2 could not ask)')
    .requiredOption('-c, --config <file>', 'the JSON config file pgraid runs with (for its address)')
    .option('-u, --user <user>', 'an admin user')
    .option('--dry-run', 'say what would change, change nothing')
    .action(async (opts: { config: string; user?: string; dryRun?: boolean }) => {
      exitCode = await adminCommand(opts.config, opts.user, `RELOAD${opts.dryRun ? ' DRY RUN' : ''}`, (rows) => {
        for (const row of rows) process.stdout.write(`${String(Object.values(row)[0])}\n`);
        if (!rows.length) process.stdout.write('nothing changed\n');
        return EXIT_OK;
      });
    });

  program
    .command('enable')
    .description('put a backend back in service if it has every committed record (--force: anyway, with a warning)')
    .argument('<backend>', 'the backend name from the config')
    .requiredOption('-c, --config <file>', 'the JSON config file pgraid runs with')
    .option('-u, --user <user>', 'an admin user')
    .option('--force', 'enable even if it is behind or inconsistent')
    .option('--dry-run', 'say what it would do, change nothing')
    .action(async (backend: string, opts: { config: string; user?: string; force?: boolean; dryRun?: boolean }) => {
      exitCode = await adminCommand(opts.config, opts.user, `ENABLE ${backend}${opts.force ? ' FORCE' : ''}${opts.dryRun ? ' DRY RUN' : ''}`);
    });

  program
    .command('disable')
    .description('take a backend out of service (it stays out until resynced)')
    .argument('<backend>', 'the backend name from the config')
    .requiredOption('-c, --config <file>', 'the JSON config file pgraid runs with')
    .option('-u, --user <user>', 'an admin user')
    .option('--dry-run', 'say what it would do, change nothing')
    .action(async (backend: string, opts: { config: string; user?: string; dryRun?: boolean }) => {
      exitCode = await adminCommand(opts.config, opts.user, `DISABLE ${backend}${opts.dryRun ? ' DRY RUN' : ''}`);
    });

  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    // commander has already printed help, the version, or the usage error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    process.stderr.write(`pgraid: ${(err as Error)?.stack ?? String(err)}\n`);
    return EXIT_FAILURE;
  }
  return exitCode;
}

/** Human output of `pgraid verify`. */
export function renderVerify(r: VerifyReport): string {
  const lines: string[] = [];
  const rows = r.tables.reduce((n, t) => n + t.rows, 0);
  const at = r.databases.map((d) => `"${d.name}" at LSN ${d.lsn ?? '-'} (commits held ${d.heldMs} ms)`).join(', ');
  lines.push(`compared ${r.backends.join(', ')}: ${r.tables.length} tables and sequences, ${rows} rows; ${at || 'no database with a pgraid log'}`);
  if (r.skipped.length) lines.push(`not compared (out of service): ${r.skipped.join(', ')}`);
  for (const d of r.differences) lines.push(`  ${d.database}: ${d.table}: ${d.backend}: ${d.problem}${d.key ? ` ${d.key}` : ''}: ${d.detail}`);
  lines.push(r.identical ? 'identical' : `${r.differences.length} difference(s) in ${new Set(r.differences.map((d) => `${d.database}.${d.table}`)).size} table(s)`);
  return lines.join('\n') + '\n';
}

/** Entry point for bin/pgraid.js: runs main, then exits once stdout/stderr have drained. */
export async function runCli(argv: readonly string[]): Promise<void> {
  const code = await main(argv);
  // Exit explicitly: after `start` shuts down, a forgotten socket or timer must not keep a stopped proxy
  // alive; waiting for the writes keeps piped output from being cut off.
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

/** The validated config, or undefined after printing every problem to stderr. */
async function loadConfigOrReport(path: string) {
  try {
    return await loadConfig(path);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return undefined;
  }
}

async function start(configPath: string, levelOverride: LogLevel | undefined): Promise<number> {
  const config = await loadConfigOrReport(configPath);
  if (config === undefined) return EXIT_USAGE; // never start on a bad config
  const logger = createLogger(levelOverride ?? config.log.level);

  // Loaded lazily so check-config and hash-password do not pull in (or depend on) the whole server.
  const { startPgraid } = await import('../server.ts');
  let server: Awaited<ReturnType<typeof startPgraid>>;
  try {
    server = await startPgraid(config, logger, { configPath, logLevel: levelOverride });
  } catch (err) {
    logger.fatal({ err }, 'failed to start');
    process.stderr.write(`pgraid: failed to start: ${(err as Error)?.message ?? String(err)}\n`);
    return EXIT_FAILURE;
  }
  process.stdout.write(`pgraid listening on ${server.host}:${server.port}\n`);
  logger.info({ host: server.host, port: server.port, backends: config.backends.length }, 'listening');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // The operator gave up waiting for a graceful close: leave now, with the shell's code for the signal.
        logger.warn({ signal }, 'second signal, exiting without waiting for close');
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down');
      server.close(server.context.config.timeouts.shutdownMs).then(
        () => {
          logger.info('stopped');
          resolve(EXIT_OK);
        },
        (err: unknown) => {
          logger.error({ err }, 'error while shutting down');
          resolve(EXIT_FAILURE);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // SIGHUP: re-read the config file and apply it live, as PostgreSQL and PgBouncer do. The reload logs
    // its outcome itself (info with the changes, or error with every problem; the old config keeps running).
    process.on('SIGHUP', () => {
      if (stopping) return void logger.warn('SIGHUP while shutting down: not reloading');
      logger.info({ signal: 'SIGHUP', config: configPath }, 'reloading the configuration');
      server.reload().catch(() => {});
    });
    server.onShutdownRequest(() => onSignal('SIGTERM'));
  });
}

async function hashPassword(password: string, method: 'scram-sha-256' | 'md5', user: string | undefined): Promise<number> {
  if (password === '') {
    process.stderr.write('pgraid: the password is empty\n');
    return EXIT_USAGE;
  }
  if (method === 'md5') {
    if (user === undefined || user === '') {
      process.stderr.write('pgraid: --method md5 needs --user <name>: the md5 hash is salted with the user name\n');
      return EXIT_USAGE;
    }
    const { md5PasswordHash } = await import('../auth/md5.ts');
    process.stdout.write(`${md5PasswordHash(user, password)}\n`);
  } else {
    const { makeScramVerifier } = await import('../auth/scram.ts');
    process.stdout.write(`${makeScramVerifier(password)}\n`);
  }
  return EXIT_OK;
}

/** The first line of stdin, without its line ending. */
async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return (Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '');
}

/** The admin user and password `pgraid status/resync/...` log in with. */
function adminLogin(config: Config, userOpt: string | undefined, configPath: string): { user: string; password: string | undefined } | null {
  const admin = userOpt ? config.users.find((u) => u.name === userOpt) : config.users.find((u) => u.admin);
  if (!admin) {
    process.stderr.write(`pgraid: ${userOpt ? `no user "${userOpt}" in ${configPath}` : `no admin user in ${configPath}: set "admin": true for one of the users`}\n`);
    return null;
  }
  const plain = admin.password && !/^(SCRAM-SHA-256\$|md5[0-9a-f]{32}$)/.test(admin.password) ? admin.password : undefined;
  return { user: admin.name, password: process.env.PGRAID_PASSWORD ?? plain };
}

/** Runs one admin-console command, printing its NOTICEs (progress) to stderr and its rows to stdout. */
async function adminCommand(configPath: string, userOpt: string | undefined, command: string, render?: (rows: Record<string, unknown>[]) => number): Promise<number> {
  const config = await loadConfigOrReport(configPath);
  if (config === undefined) return EXIT_USAGE;
  const login = adminLogin(config, userOpt, configPath);
  if (!login) return EXIT_USAGE;
  const { default: pg } = await import('pg');
  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host;
  const c = new pg.Client({ host, port: config.listen.port, user: login.user, password: login.password, database: 'pgraid', application_name: 'pgraid cli' });
  c.on('error', () => {});
  const progress = new ProgressPrinter(process.stderr);
  c.on('notice', (n) => progress.notice(n.message ?? '', n.detail));
  try {
    await c.connect();
  } catch (e) {
    process.stderr.write(`pgraid: could not ask pgraid at ${host}:${config.listen.port}: ${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
  try {
    const r = await c.query(command);
    progress.clear();
    if (render) return render(r.rows);
    for (const row of r.rows) process.stdout.write(Object.entries(row).map(([k, v]) => `${k}=${v}`).join(' ') + '\n');
    return EXIT_OK;
  } catch (e) {
    progress.clear();
    const err = e as Error & { hint?: string; detail?: string };
    process.stderr.write(`pgraid: ${err.message}${err.detail ? `\n${err.detail}` : ''}${err.hint ? `\nhint: ${err.hint}` : ''}\n`);
    return EXIT_FAILURE;
  } finally {
    await c.end().catch(() => {});
  }
}

/** `pgraid status`: the password comes from PGRAID_PASSWORD (or the config, for a plain-text admin password). */
async function status(configPath: string, userOpt: string | undefined, json: boolean): Promise<number> {
  const config = await loadConfigOrReport(configPath);
  if (config === undefined) return EXIT_USAGE;
  const admin = userOpt ? config.users.find((u) => u.name === userOpt) : config.users.find((u) => u.admin);
  if (!admin) {
    process.stderr.write(`pgraid status: ${userOpt ? `no user "${userOpt}" in ${configPath}` : `no admin user in ${configPath}: set "admin": true for one of the users`}\n`);
    return EXIT_USAGE;
  }
  const plain = admin.password && !/^(SCRAM-SHA-256\$|md5[0-9a-f]{32}$)/.test(admin.password) ? admin.password : undefined;
  const password = process.env.PGRAID_PASSWORD ?? plain;
  try {
    const { fetchStatus, renderStatus } = await import('./status.ts');
    const report = await fetchStatus(config, admin.name, password);
    process.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : renderStatus(report));
    return report.backends.every((b) => b.state === 'enabled' || b.state === 'removed') ? EXIT_OK : EXIT_FAILURE;
  } catch (e) {
    process.stderr.write(`pgraid status: could not ask pgraid at ${config.listen.host}:${config.listen.port}: ${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
}
