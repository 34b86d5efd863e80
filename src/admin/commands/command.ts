// What an admin console command is and what its handler gets: the shape of the
// command table's entries (table.ts). In a file of its own so the handler
// modules need neither the table nor the console session (no import cycle).

import type { ServerContext } from '../../server-context.ts'

export type Row = (string | number | boolean | null)[]

/** A command's answer: a RowDescription of text columns, its DataRows, then CommandComplete with `tag`. */
export interface Result {
  columns: string[]
  rows: Row[]
  tag: string
}

/** Sent in a NOTICE's DETAIL as JSON so `pgraid` can draw a progress bar. */
export interface Progress {
  done: number
  total: number
  unit: string
}

/** The admin session a command was typed in. */
export interface Session {
  readonly ctx: ServerContext
  /** The admin user, named in the reasons recorded for a backend's state. */
  readonly user: string
  /** Aborted when the client goes away: a resync, clone or PAUSE it started stops. */
  readonly signal: AbortSignal
  notice(text: string, progress?: Progress): void
}

/** One command as dispatch hands it to its handler. */
export interface Call extends Session {
  /** The words after the command's verb, as typed (a quoted backend name keeps its quotes). */
  readonly args: string[]
  /** The command as typed, without its `DRY RUN` suffix (VERIFY parses it itself). */
  readonly text: string
  /** `... DRY RUN` was given and the command accepts it. */
  readonly dry: boolean
}

/** A line of SHOW HELP. */
export interface HelpLine {
  /** As the user types it; for a command, its leading capitalised words are its verb ('SHOW BACKENDS', 'RESYNC'). */
  usage: string
  help: string
}

export interface Command extends HelpLine {
  /** `... DRY RUN` makes it say what it would do; any other command ignores the suffix (as it always has). */
  dryRun: boolean
  /** It writes to the backends (VERIFY: holds the writer's commits): refused on a standby, before its arguments are looked at. */
  writerOnly: boolean
  /** Its argument words fit; if not, the command is unknown. */
  accepts(args: string[]): boolean
  run(call: Call): Result | Promise<Result>
}
