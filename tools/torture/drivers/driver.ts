// How a torture workload talks to pgraid: a client session of one of several
// real client libraries (node-postgres extended or simple protocol, pgjdbc
// through a small JVM, psql), behind one small interface so that a run mixes
// them. Errors keep the server's SQLSTATE in `code`; a lost connection is an
// error without a SQLSTATE (or with class 08), which makes a write
// indeterminate (history.ts classify()).

export interface Endpoint {
  host: string
  port: number
  user: string
  password: string
}

export interface Result<R> {
  rows: R[]
  rowCount: number | null
}

export interface ClientSession {
  /** Which driver this is (recorded with each operation). */
  readonly driver: DriverName
  /**
   * One statement. Parameters are $1..$n; drivers without bind parameters (simple protocol, psql)
   * send them as literals. Rows come back as objects of text (or JS) values keyed by column name.
   */
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Result<R>>
  /** The backend key data pgraid gave this session (for CancelRequests), if known. */
  cancelKey(): { pid: number; secret: number } | null
  /** Closes politely. */
  end(): Promise<void>
  /** Drops the connection at once, without Terminate (a client that vanishes). */
  destroy(): void
}

export type DriverName = 'pg-extended' | 'pg-simple' | 'jdbc' | 'psql'

export type Connect = (ep: Endpoint) => Promise<ClientSession>

/** An error as drivers throw it: the server's SQLSTATE when it answered. */
export class DriverError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message)
  }
}

/** A parameter as an SQL literal, for drivers that send text only. */
export function literal(v: unknown): string {
  if (v === null || v === undefined) return 'NULL'
  if (typeof v === 'number' || typeof v === 'bigint') return String(v)
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  return `'${String(v).replace(/'/g, "''")}'`
}

/** $1..$n replaced by literals (the torture's statements never hold `$` otherwise). */
export function inline(sql: string, params: unknown[] = []): string {
  return sql.replace(/\$(\d+)/g, (_, n: string) => literal(params[Number(n) - 1]))
}
