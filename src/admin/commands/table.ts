// The admin console's commands, one entry each, in SHOW HELP's order. Dispatch,
// SHOW HELP and the unknown-command hint all read this table, so a command is
// added (or documented) in one place.

import { errors } from '../../errors.ts'
import type { Command, HelpLine, Result, Session } from './command.ts'
import * as show from './show.ts'
import * as control from './control.ts'
import * as lifecycle from './lifecycle.ts'
import * as pooler from './pooler.ts'

// What may follow a command's verb (else the command is unknown). SHOW ignores extra words, as it always has.
const anyWords = () => true
const noWords = (args: string[]) => args.length === 0
const backend = (args: string[]) => args.length === 1

const showCommand = (usage: string, help: string, run: Command['run']): Command => ({ usage, help, dryRun: false, writerOnly: false, accepts: anyWords, run })
const controlCommand = (usage: string, help: string, dryRun: boolean, run: Command['run']): Command => ({ usage, help, dryRun, writerOnly: false, accepts: noWords, run })

export const COMMANDS: readonly (Command | HelpLine)[] = [
  showCommand(
    'SHOW BACKENDS',
    'each backend: state (enabled, disabled, inconsistent, new, removed while draining), cause, why, since when, reads in flight, what the health monitor last found',
    show.backends,
  ),
  showCommand('SHOW LOG', 'per database and backend: highest LSN in its recovery log, records, lag behind the most advanced backend', show.log),
  showCommand('SHOW SESSIONS', 'client sessions: user, database, client address, transaction status, backends in use', show.sessions),
  showCommand('SHOW LOCKS', "pgraid's lock manager: each resource with its holders and waiters", show.locks),
  showCommand('SHOW STATS', 'committed write transactions: total and per second (last 10 s and 60 s), in flight, held; then per backend: reads, writes, errors, connections', show.stats),
  showCommand('SHOW CLIENTS', 'client sessions with application_name and connect time', show.clients),
  showCommand('SHOW POOLS', "per database and user, as PgBouncer's: clients active and waiting on PAUSE, backend connections active and idle, longest wait", pooler.pools),
  showCommand('SHOW SERVERS', "every backend connection of the client sessions, as PgBouncer's (plus the backend's name and the session)", pooler.servers),
  showCommand('SHOW DATABASES', "the databases served, as PgBouncer's: backends in service, connections, paused, recovery log", pooler.databases),
  showCommand('SHOW POOL_NODES', "each backend as pgpool-II's: status up/down/waiting, health, load-balance weight, reads balanced to it", pooler.poolNodes),
  showCommand('SHOW VERSION', 'the pgraid version', pooler.version),
  showCommand('SHOW HA', 'this instance: writer or standby, the backends whose writer lock it holds, how many it needs, the writer if known', show.ha),
  controlCommand('PAUSE', 'new transactions wait (open ones finish); answers when none is open', false, control.pause),
  controlCommand('RESUME', 'ends PAUSE', false, control.resume),
  controlCommand('SHUTDOWN', 'stop accepting clients, close sessions as their transactions end (as SIGTERM)', false, control.shutdown),
  controlCommand(
    'RELOAD',
    're-read the config file and apply it without dropping sessions (as SIGHUP): one row per change; refused with the reasons (F0000) if invalid or needing a restart',
    true,
    control.reload,
  ),
  showCommand('SHOW CONFIG', 'the running configuration (passwords hidden)', show.config),
  // These write to the backends (VERIFY holds the writer's commits): the writer's job.
  { usage: 'DISABLE <backend>', help: 'take a backend out of service (it stays out until resynced)', dryRun: true, writerOnly: true, accepts: backend, run: lifecycle.disable },
  {
    usage: 'RESYNC <backend>',
    help: 'replay what a disabled backend missed from one in service, then put it back (progress as NOTICEs)',
    dryRun: true,
    writerOnly: true,
    accepts: backend,
    run: lifecycle.resync,
  },
  {
    usage: 'CLONE <backend> [FROM <backend>]',
    help: 'make a new, empty or inconsistent backend a full copy of one in service, online, then put it back',
    dryRun: true,
    writerOnly: true,
    accepts: (a) => a.length === 1 || (a.length === 3 && a[1]!.toUpperCase() === 'FROM'),
    run: lifecycle.clone,
  },
  { usage: '... DRY RUN', help: 'after CLONE, RESYNC, ENABLE, DISABLE or RELOAD: say what it would do, change nothing' },
  {
    usage: 'ENABLE <backend> [FORCE]',
    help: 'put a backend back that has every record (else: resync or clone); FORCE skips the check',
    dryRun: true,
    writerOnly: true,
    accepts: (a) => a.length === 1 || (a.length === 2 && a[1]!.toUpperCase() === 'FORCE'),
    run: lifecycle.enable,
  },
  // VERIFY takes any words and parses them itself: a malformed one gets its usage, not "unknown command".
  {
    usage: 'VERIFY [JSON] [TABLES t1, t2 ...]',
    help: 'compare the backends in service at one log position: each difference as a row (JSON: one row with the whole report)',
    dryRun: false,
    writerOnly: true,
    accepts: anyWords,
    run: lifecycle.verify,
  },
  showCommand('SHOW HELP', 'this list', () => ({ columns: ['command', 'what'], rows: COMMANDS.map((c) => [c.usage, c.help]), tag: 'SHOW' })),
]

/** Commands by verb: their usage's leading capitalised words ('SHOW BACKENDS', 'RESYNC'). */
const byVerb = new Map<string, Command>()
for (const c of COMMANDS) {
  if (!('run' in c)) continue
  const words = c.usage.split(' ')
  const n = words.findIndex((w) => !/^[A-Z_]+$/.test(w))
  const verb = words.slice(0, n < 0 ? words.length : n).join(' ')
  if (byVerb.has(verb)) throw new Error(`admin command ${verb} is twice in the table`)
  // A verb cut short ('SHOW' of 'SHOW POOL_NODES' before '_' was allowed) would take every unknown SHOW.
  if (verb === 'SHOW') throw new Error(`admin command ${c.usage}: SHOW without a name`)
  byVerb.set(verb, c)
}

const DRY_RUN = /\s+DRY\s+RUN$/i

/** Runs one command (trimmed, non-empty) of an admin session. */
export async function runCommand(text: string, session: Session): Promise<Result> {
  // "... DRY RUN" comes off every command; only a command that accepts it sees it.
  const dry = DRY_RUN.test(text)
  if (dry) text = text.replace(DRY_RUN, '')
  const words = text.split(/\s+/)
  const upper = words.map((w) => w.toUpperCase())
  // Verbs are case-insensitive: the SHOW family is named by two words, the others by one.
  const two = upper.slice(0, 2).join(' ')
  const verb = byVerb.has(two) ? two : upper[0]!
  const command = byVerb.get(verb)
  if (command?.writerOnly && !session.ctx.ha.isWriter()) {
    const ha = session.ctx.ha
    throw errors.readOnly(verb, `pgraid ${ha.identity} is not the writer${ha.writerHint ? ` (the writer is pgraid ${ha.writerHint})` : ''}`, `run ${verb} on the writer's admin console`)
  }
  const args = words.slice(verb.split(' ').length)
  if (!command || !command.accepts(args)) throw errors.unknownAdminCommand(text, COMMANDS.map((c) => c.usage).join(', '))
  // A dry run of a command that has none must not run it (SHUTDOWN DRY RUN used to shut down).
  if (dry && !command.dryRun)
    throw errors.noDryRun(
      verb,
      COMMANDS.filter((c) => 'run' in c && c.dryRun)
        .map((c) => c.usage.split(' ')[0])
        .join(', '),
    )
  return await command.run({ ...session, args, text, dry: dry && command.dryRun })
}
