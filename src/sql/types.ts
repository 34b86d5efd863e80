// Public result types of statement analysis (see docs/sql.md): what the router
// and the lock manager need to know about one SQL statement.

/** Routing class of a statement. When unsure the analyser answers 'write'. */
export type Kind = 'empty' | 'read' | 'write' | 'ddl' | 'transaction' | 'session' | 'copy-out' | 'copy-in' | 'not-replicable'

/** A relation name folded as PostgreSQL folds identifiers; schema null when unqualified. */
export interface TableName {
  schema: string | null
  name: string
}

export type Isolation = 'read uncommitted' | 'read committed' | 'repeatable read' | 'serializable'

export interface TxInfo {
  op: 'begin' | 'commit' | 'rollback' | 'savepoint' | 'release' | 'rollback_to' | 'prepare' | 'commit_prepared' | 'rollback_prepared' | 'set_transaction'
  isolation?: Isolation
  readOnly?: boolean
  deferrable?: boolean
  /** savepoint name (folded) or two-phase gid (verbatim) */
  name?: string
  /** COMMIT/ROLLBACK AND CHAIN */
  chain?: boolean
}

export interface SessionInfo {
  op:
    'set' | 'set_local' | 'reset' | 'reset_all' | 'discard_all' | 'discard_other' | 'prepare' | 'deallocate' | 'listen' | 'unlisten' | 'notify' | 'declare_cursor' | 'fetch' | 'close_cursor' | 'other'
  /** GUC name (lowercased), channel, prepared statement or cursor name; absent for ALL / '*' forms */
  name?: string
  /** SET value rendered as text (absent for DEFAULT / FROM CURRENT); NOTIFY payload */
  value?: string
  /** every (name, value) of a multi-setting SET SESSION CHARACTERISTICS */
  settings?: { name: string; value: string }[]
  withHold?: boolean
  /** DECLARE CURSOR: analysis of the cursor's query */
  cursorQuery?: StatementInfo
  /** PREPARE: analysis of the prepared statement */
  prepared?: StatementInfo
}

export interface CopyInfo {
  table?: TableName
  /** COPY (query) TO ... */
  query?: boolean
  direction: 'in' | 'out'
  /** STDIN/STDOUT (as opposed to a server file or PROGRAM) */
  stdio: boolean
  binary?: boolean
}

export interface StatementInfo {
  kind: Kind
  /** CommandComplete-style tag, e.g. 'SELECT', 'CREATE TABLE', 'BEGIN'; '' for empty */
  command: string
  /** source text of this statement (without the terminating ';') */
  text: string
  reads: TableName[]
  writes: TableName[]
  /** may write things that cannot be listed (DO, CALL, non-table DDL, CASCADE...) */
  unknownWrites: boolean
  /** every function called, folded, schema-qualified if written so */
  functions: string[]
  /** SQL-standard value functions used (lowercased keyword, e.g. 'current_timestamp'); also mapped into functions */
  sqlValueFunctions: string[]
  /** Sequences named by nextval()/setval()/currval() calls; '*' = an argument that is not a constant. */
  sequences?: string[]
  tx?: TxInfo
  session?: SessionInfo
  noTransactionBlock: boolean
  temp: boolean
  lockingClause: boolean
  /** a locking clause or LOCK TABLE uses NOWAIT / SKIP LOCKED: its outcome may differ per backend */
  lockWait?: 'nowait' | 'skip_locked'
  copy?: CopyInfo
  /**
   * CREATE / DROP / ALTER DATABASE: the databases it creates, drops, renames (old and new name) or
   * copies (TEMPLATE), whose per-database state pgraid must drop and whose connections it closes.
   */
  databases?: string[]
  /** DROP DATABASE ... WITH (FORCE) */
  force?: boolean
  /**
   * Per target table, the rows the statement can touch, when provable from the
   * text. Absent = unknown (the caller locks the whole table). A table of
   * `writes` without an entry here is also unknown. See docs/sql.md "Key access".
   */
  keys?: KeyAccess[]
}

/** One bound value of a key column: a bind parameter, or a literal. */
export type KeyValue = { kind: 'param'; index: number } | { kind: 'const'; text: string; type: 'int' | 'string' | 'float' | 'bool' | 'null' }

export interface KeyAccess {
  /** same folding as writes[] */
  table: TableName
  /** lock = SELECT ... FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE */
  op: 'insert' | 'update' | 'delete' | 'lock'
  /**
   * The statement touches only rows matching one of these (a disjunction); each
   * row maps column name (folded) -> value. A column missing from a row means
   * any value. For INSERT: one entry per VALUES row, columns = the explicit
   * column list; a column given DEFAULT or a non-constant expression is omitted
   * from that row's map.
   */
  rows: Record<string, KeyValue>[]
  /** UPDATE, and INSERT ... ON CONFLICT DO UPDATE: the columns assigned by SET (folded) */
  setColumns?: string[]
  /** INSERT ... ON CONFLICT */
  onConflict?: 'nothing' | 'update'
  /** INSERT ... ON CONFLICT (col, ...): the conflict target columns (folded), when a plain column list */
  conflict?: string[]
}

export type Analysis =
  | { ok: true; statements: StatementInfo[] }
  | {
      ok: false
      /** PostgreSQL's message, e.g. 'syntax error at or near "SELEC"' */
      error: string
      /** 1-based character position like ErrorResponse's 'P' field */
      position?: number
      /** conservative classification to use if the text is forwarded anyway */
      fallback: StatementInfo
    }
