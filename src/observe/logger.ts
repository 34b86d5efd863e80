// Structured logging: one pino logger per process writing JSON lines to stderr (stdout is kept for the
// CLI's own output), and per-session child loggers so every line of a session carries who it is.
import { pino, type DestinationStream, type Logger } from 'pino'
import type { LogLevel } from '../config/schema.ts'

export type { Logger } from 'pino'

/**
 * Creates the process logger. `destination` defaults to stderr, written synchronously: log volume at
 * the default level is low, and a synchronous write cannot lose the last lines when the process exits.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      name: 'pgraid',
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      // "level":"warn" rather than 40, so the stderr stream is readable and greppable without pino-pretty.
      formatters: { level: (label) => ({ level: label }) },
      // Config objects and connection parameters travel through log calls; passwords must never be written.
      redact: { paths: ['password', '*.password', '*[*].password', 'config.*[*].password'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 2, sync: true }),
  )
}

/** What identifies a client session in the logs. */
export interface SessionBindings {
  /** Process-unique session number, assigned at accept time. */
  session: number
  user: string
  database: string
  /** Client address as 'addr:port'. */
  client: string
}

/** A child logger whose every line carries the session's bindings. */
export function sessionLogger(parent: Logger, bindings: SessionBindings): Logger {
  return parent.child({
    session: bindings.session,
    user: bindings.user,
    database: bindings.database,
    client: bindings.client,
  })
}
