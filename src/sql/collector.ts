// Accumulates what one statement touches (tables read/written, functions,
// flags) while the AST is walked, and tracks the CTE names in scope so that
// references to WITH queries are not mistaken for tables.
import type { RangeVar } from '@pgsql/types'
import type { TableName } from './types.ts'

/** How a RangeVar met by the generic walk is counted. */
export type RelMode = 'read' | 'write'

export class Collector {
  readonly reads = new Map<string, TableName>()
  readonly writes = new Map<string, TableName>()
  readonly functions = new Set<string>()
  readonly sqlValueFunctions = new Set<string>()
  /** Sequences named by nextval()/setval()/currval() calls ('*' when an argument is not a constant). */
  readonly sequences = new Set<string>()
  unknownWrites = false
  lockingClause = false
  /** a data-modifying statement appeared below the top level (WITH ... INSERT) */
  dataModifying = false
  temp = false
  /** strongest non-blocking lock wait seen (outcome depends on each backend's lock state) */
  lockWait: 'nowait' | 'skip_locked' | undefined = undefined
  /** SELECT INTO target, which makes a SELECT a write */
  selectInto = false
  /** first pg_notify() call seen: its channel when it is a literal */
  notify: { channel?: string } | null = null
  mode: RelMode = 'read'
  /** CTE names visible at the current point, innermost last */
  private readonly scopes: Set<string>[] = []
  /** open captures of the tables read under a FROM item (for FOR UPDATE) */
  readonly captures: TableName[][] = []

  rangeVar(rv: RangeVar): void {
    if (this.mode === 'write') this.write(rv)
    else this.read(rv)
  }

  /** Records a read unless the name is a CTE reference; returns the table, if any. */
  read(rv: RangeVar): TableName | null {
    if (!rv.relname || this.isCte(rv)) return null
    const t = tableName(rv)
    this.reads.set(key(t), t)
    for (const cap of this.captures) cap.push(t)
    return t
  }

  write(rv: RangeVar): void {
    if (rv.relname) this.addWrite(tableName(rv))
  }

  /** A relation this statement creates: written, and it makes the statement 'temp' if temporary. */
  create(rv: RangeVar): void {
    this.write(rv)
    if (isTempRel(rv)) this.temp = true
  }

  addRead(t: TableName): void {
    this.reads.set(key(t), t)
  }

  noteLockWait(w: 'nowait' | 'skip_locked'): void {
    if (w === 'skip_locked' || !this.lockWait) this.lockWait = w
  }

  addWrite(t: TableName): void {
    this.writes.set(key(t), t)
  }

  addFunction(name: string): void {
    this.functions.add(name)
  }

  isCte(rv: RangeVar): boolean {
    if (rv.schemaname || rv.catalogname || !rv.relname) return false
    for (let i = this.scopes.length - 1; i >= 0; i--) if (this.scopes[i]!.has(rv.relname)) return true
    return false
  }

  /** Opens a CTE scope; the caller adds names as they become visible and must pop it. */
  pushScope(): Set<string> {
    const s = new Set<string>()
    this.scopes.push(s)
    return s
  }

  popScope(): void {
    this.scopes.pop()
  }

  /** Runs fn with the generic RangeVar mode set, restoring it afterwards. */
  withMode<T>(mode: RelMode, fn: () => T): T {
    const prev = this.mode
    this.mode = mode
    try {
      return fn()
    } finally {
      this.mode = prev
    }
  }
}

export function tableName(rv: RangeVar): TableName {
  // catalog (database) qualification can only name the current database: ignore it
  return { schema: rv.schemaname ?? null, name: rv.relname ?? '' }
}

/** TableName from a qualified-name list of String nodes (DROP/COMMENT objects). */
export function tableFromNames(names: string[]): TableName | null {
  if (names.length === 0) return null
  const name = names[names.length - 1]!
  const schema = names.length >= 2 ? names[names.length - 2]! : null
  return { schema, name }
}

export function isTempRel(rv: RangeVar): boolean {
  // CREATE TABLE pg_temp.x is temporary too, whatever the persistence keyword says
  return rv.relpersistence === 't' || rv.schemaname === 'pg_temp' || (rv.schemaname?.startsWith('pg_temp_') ?? false)
}

function key(t: TableName): string {
  return t.schema === null ? t.name : `${t.schema}\u0000${t.name}`
}
