// What the steps of a schema dump share: the catalog rows read once (catalog.ts), the nodes of
// the dependency graph (order.ts), the targets of comments and grants (comments-acl.ts), and the
// statement lists that dump.ts puts together in the final order. One object, filled step by step.

import type pg from 'pg'

export type Kind = 'collation' | 'type' | 'sequence' | 'function' | 'table' | 'view'

/** One pre-data object: created in dependency order, views and what needs them after the keys (`post`). */
export interface Node {
  key: string
  kind: Kind
  oid: number
  label: string
  sql: string[]
  post: boolean
  deps: Set<string>
}

export interface Rel {
  oid: number
  kind: string
  persistence: string
  qname: string
  ispartition: boolean
  bound: string | null
  partkey: string | null
  parents: string[]
  options: string[] | null
  toast_options: string[] | null
  am: string | null
  oftype: string | null
  tablespace: string | null
  rls: boolean
  force_rls: boolean
  replident: string
  populated: boolean
  tuples: number
  reltype: number
  viewdef: string | null
}

export interface Col {
  rel: number
  attnum: number
  name: string
  type: string
  collate: string | null
  notnull: boolean
  identity: string
  generated: string
  islocal: boolean
  def: string | null
  storage: string | null
  stattarget: number | null
  compression: string | null
  options: string[] | null
  identity_seq: number | null
}

export interface Con {
  oid: number
  name: string
  type: string
  rel: number
  typ: number
  islocal: boolean
  validated: boolean
  parent: number
  def: string
}

export interface Seq {
  oid: number
  qname: string
  type: string
  start: string
  inc: string
  min: string
  max: string
  cache: string
  cycle: boolean
  persistence: string
  identity: boolean
  owned_by: string | null
  owner_rel: number | null
}

/** Where COMMENT ON and GRANT ... ON point for one object. */
export interface Target {
  comment: string
  grant?: string
  column?: { table: string; name: string }
}

export class Dump {
  version = 0
  readonly nodes = new Map<string, Node>()
  readonly targets = new Map<string, Target>()
  readonly rels = new Map<number, Rel>()
  readonly cols = new Map<number, Col[]>()
  readonly seqs = new Map<number, Seq>()
  cons: Con[] = []
  readonly consBy = new Map<string, Con[]>() // 'r<oid>' for a relation's, 't<oid>' for a domain's
  readonly head: string[] = ['SET check_function_bodies = off', `SELECT pg_catalog.set_config('search_path', '', false)`]
  readonly keys: string[] = []
  readonly matviewIndexes: string[] = []
  readonly refresh = new Map<string, string>() // by node key: issued in dependency order
  readonly late: string[] = []
  readonly fks: string[] = []
  readonly objects: string[] = [] // triggers, rules, policies, statistics
  readonly skipped: string[] = []

  constructor(
    private readonly c: pg.Client,
    readonly exclude: string[],
  ) {}

  /** Catalog rows; $1 is the excluded schemas unless `params` says otherwise. */
  async q<T extends pg.QueryResultRow>(sql: string, params: unknown[] = [this.exclude]): Promise<T[]> {
    return (await this.c.query<T>(sql, params)).rows
  }

  target(catalog: string, oid: number, t: Target, sub = 0): void {
    this.targets.set(sub ? `${catalog}:${oid}:${sub}` : `${catalog}:${oid}`, t)
  }

  node(kind: Kind, key: string, oid: number, label: string, sql: string[]): Node {
    const n: Node = { key, kind, oid, label, sql, post: kind === 'view', deps: new Set() }
    this.nodes.set(key, n)
    return n
  }

  constraintsOf(oid: number, field: 'rel' | 'typ'): Con[] {
    return this.consBy.get(`${field === 'rel' ? 'r' : 't'}${oid}`) ?? []
  }
}
