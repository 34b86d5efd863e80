// Handlers for schema changes (kind 'ddl'). Relations a DDL statement names
// are listed as writes (the lock manager must order them against DML on those
// tables); objects that are not relations, or effects that reach unnamed
// relations (CASCADE, an index's table), set unknownWrites.
import type {
  AlterObjectSchemaStmt,
  AlterSubscriptionStmt,
  AlterTableStmt,
  CommentStmt,
  CreateStmt,
  DefineStmt,
  DropStmt,
  GrantStmt,
  Node,
  ObjectType,
  RangeVar,
  RenameStmt,
  ViewStmt,
} from '@pgsql/types'
import { tableFromNames, type Collector } from './collector.ts'
import type { Draft, StmtHandler } from './draft.ts'
import { hasOption } from './maintenance.ts'
import { alterTag, createTag, dropTag, FIXED_TAGS } from './tags.ts'
import { walkAny } from './walk.ts'

const RELATION_TYPES = new Set<ObjectType>(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_FOREIGN_TABLE', 'OBJECT_INDEX'])
// objects named "<table>.<name>" (or "name ON table"): the table is what gets locked
const TABLE_MEMBER_TYPES = new Set<ObjectType>(['OBJECT_COLUMN', 'OBJECT_TABCONSTRAINT', 'OBJECT_TRIGGER', 'OBJECT_RULE', 'OBJECT_POLICY'])

function ddl(command: string, noTransactionBlock = false): Draft {
  return noTransactionBlock ? { kind: 'ddl', command, noTransactionBlock } : { kind: 'ddl', command }
}

/** Walks a DDL statement counting every relation it names as written. */
function walkWrites(stmt: unknown, c: Collector): void {
  c.withMode('write', () => walkAny(stmt, c))
}

function names(n: Node | undefined): string[] | null {
  const items = (n as { List?: { items?: Node[] } } | undefined)?.List?.items
  if (!items) return null
  const out: string[] = []
  for (const i of items) {
    const s = (i as { String?: { sval?: string } }).String?.sval
    if (s === undefined) return null
    out.push(s)
  }
  return out
}

/** Records the relation behind a DROP/COMMENT/SECURITY LABEL object. */
function objectTarget(objtype: ObjectType | undefined, object: Node | undefined, c: Collector): void {
  const n = names(object)
  const t = n && objtype && RELATION_TYPES.has(objtype) ? tableFromNames(n) : n && objtype && TABLE_MEMBER_TYPES.has(objtype) ? tableFromNames(n.slice(0, -1)) : null
  if (t) c.addWrite(t)
  // non-relations, and indexes (whose table is unnamed), cannot be fully listed
  if (!t || objtype === 'OBJECT_INDEX') c.unknownWrites = true
}

function drop(s: DropStmt, c: Collector): Draft {
  for (const o of s.objects ?? []) objectTarget(s.removeType, o, c)
  if (s.behavior === 'DROP_CASCADE') c.unknownWrites = true
  return ddl(dropTag(s.removeType), s.concurrent ?? false)
}

function alterTable(s: AlterTableStmt, c: Collector): Draft {
  walkWrites(s, c)
  // ALTER INDEX: the table is unnamed; ALTER TYPE (composite): every table using the type
  if (s.objtype === 'OBJECT_INDEX' || s.objtype === 'OBJECT_TYPE') c.unknownWrites = true
  let detachConcurrently = false
  for (const cmd of s.cmds ?? []) {
    const at = (cmd as { AlterTableCmd?: { subtype?: string; def?: Node } }).AlterTableCmd
    const pc = (at?.def as { PartitionCmd?: { concurrent?: boolean } } | undefined)?.PartitionCmd
    if (at?.subtype === 'AT_DetachPartition' && pc?.concurrent) detachConcurrently = true
  }
  return ddl(alterTag(s.objtype), detachConcurrently)
}

function rename(s: RenameStmt, c: Collector): Draft {
  const type = s.renameType === 'OBJECT_COLUMN' ? s.relationType : s.renameType
  if (s.renameType === 'OBJECT_DATABASE') {
    c.unknownWrites = true
    const old = (s.object as { String?: { sval?: string } } | undefined)?.String?.sval ?? s.subname
    return { ...ddl(alterTag(type)), databases: [old ?? '', s.newname ?? ''].filter(Boolean) }
  }
  if (s.relation) {
    c.write(s.relation)
    // statements naming the new name must be ordered after the rename too
    if (s.renameType && RELATION_TYPES.has(s.renameType) && s.newname) {
      c.addWrite({ schema: s.relation.schemaname ?? null, name: s.newname })
    }
    if (s.renameType === 'OBJECT_INDEX' || s.renameType === 'OBJECT_ATTRIBUTE') c.unknownWrites = true
  } else {
    c.unknownWrites = true
  }
  return ddl(alterTag(type))
}

function setSchema(s: AlterObjectSchemaStmt, c: Collector): Draft {
  if (s.relation?.relname) {
    c.write(s.relation)
    if (s.newschema) c.addWrite({ schema: s.newschema, name: s.relation.relname })
  } else {
    c.unknownWrites = true
  }
  return ddl(alterTag(s.objectType))
}

function comment(command: string) {
  return (s: CommentStmt, c: Collector): Draft => {
    objectTarget(s.objtype, s.object, c)
    return ddl(command)
  }
}

function grant(s: GrantStmt, c: Collector): Draft {
  const onRelations = s.targtype === 'ACL_TARGET_OBJECT' && (s.objtype === 'OBJECT_TABLE' || s.objtype === 'OBJECT_SEQUENCE')
  if (onRelations) walkWrites(s.objects, c)
  else c.unknownWrites = true
  return ddl(s.is_grant ? 'GRANT' : 'REVOKE')
}

function createRelation<S>(command: string, rel: (s: S) => RangeVar | undefined) {
  return (s: S, c: Collector): Draft => {
    const r = rel(s)
    if (r) c.create(r)
    walkWrites(s, c)
    return ddl(command)
  }
}

function view(s: ViewStmt, c: Collector): Draft {
  if (s.view) c.create(s.view)
  c.withMode('read', () => walkAny(s.query, c))
  return ddl('CREATE VIEW')
}

/** DDL on objects that are not relations (types, functions, roles, schemas...). */
function opaque(command: string, noTransactionBlock = false) {
  return (s: unknown, c: Collector): Draft => {
    // still collect relations it happens to name (CREATE SCHEMA's tables, publications)
    walkWrites(s, c)
    c.unknownWrites = true
    return ddl(command, noTransactionBlock)
  }
}

function alterSubscription(s: AlterSubscriptionStmt, c: Collector): Draft {
  c.unknownWrites = true
  // REFRESH, and publication changes with the default refresh = true, refuse a transaction block
  const refreshes =
    s.kind === 'ALTER_SUBSCRIPTION_REFRESH' ||
    (['ALTER_SUBSCRIPTION_SET_PUBLICATION', 'ALTER_SUBSCRIPTION_ADD_PUBLICATION', 'ALTER_SUBSCRIPTION_DROP_PUBLICATION'].includes(s.kind ?? '') && !isFalse(s.options, 'refresh'))
  return ddl('ALTER SUBSCRIPTION', refreshes)
}

function isFalse(options: Node[] | undefined, name: string): boolean {
  const present = (options ?? []).some((o) => (o as { DefElem?: { defname?: string } }).DefElem?.defname === name)
  return present && !hasOption(options, name)
}

const OPAQUE = [
  'CreateDomainStmt',
  'AlterDomainStmt',
  'CompositeTypeStmt',
  'CreateEnumStmt',
  'CreateRangeStmt',
  'AlterEnumStmt',
  'AlterTypeStmt',
  'CreateExtensionStmt',
  'AlterExtensionStmt',
  'AlterExtensionContentsStmt',
  'CreateFdwStmt',
  'AlterFdwStmt',
  'CreateForeignServerStmt',
  'AlterForeignServerStmt',
  'CreateUserMappingStmt',
  'AlterUserMappingStmt',
  'DropUserMappingStmt',
  'ImportForeignSchemaStmt',
  'AlterDefaultPrivilegesStmt',
  'CreateTransformStmt',
  'CreateEventTrigStmt',
  'AlterEventTrigStmt',
  'CreatePLangStmt',
  'CreateRoleStmt',
  'AlterRoleStmt',
  'AlterRoleSetStmt',
  'DropRoleStmt',
  'DropOwnedStmt',
  'ReassignOwnedStmt',
  'CreateConversionStmt',
  'CreateCastStmt',
  'CreateOpClassStmt',
  'CreateOpFamilyStmt',
  'AlterOpFamilyStmt',
  'AlterOperatorStmt',
  'AlterTSDictionaryStmt',
  'AlterTSConfigurationStmt',
  'CreateAmStmt',
  'CreatePublicationStmt',
  'AlterPublicationStmt',
  'AlterCollationStmt',
  'AlterStatsStmt',
  'AlterDatabaseSetStmt',
  'AlterDatabaseRefreshCollStmt',
  'AlterTableSpaceOptionsStmt',
  'CreateSchemaStmt',
]

export const DDL_HANDLERS: Record<string, StmtHandler> = {
  ...Object.fromEntries(OPAQUE.map((t) => [t, opaque(FIXED_TAGS[t]!)])),
  CreateStmt: createRelation('CREATE TABLE', (s: CreateStmt) => s.relation),
  CreateForeignTableStmt: createRelation('CREATE FOREIGN TABLE', (s: { base?: CreateStmt }) => s.base?.relation),
  CreateSeqStmt: createRelation('CREATE SEQUENCE', (s: { sequence?: RangeVar }) => s.sequence),
  IndexStmt: (s: { concurrent?: boolean }, c) => (walkWrites(s, c), ddl('CREATE INDEX', s.concurrent ?? false)),
  ViewStmt: view,
  AlterSeqStmt: (s: unknown, c) => (walkWrites(s, c), ddl('ALTER SEQUENCE')),
  AlterTableStmt: alterTable,
  AlterTableMoveAllStmt: (s: { objtype?: ObjectType }, c) => opaque(alterTag(s.objtype))(s, c),
  RenameStmt: rename,
  AlterObjectSchemaStmt: setSchema,
  AlterOwnerStmt: (s: { objectType?: ObjectType }, c) => opaque(alterTag(s.objectType))(s, c),
  AlterObjectDependsStmt: (s: { objectType?: ObjectType }, c) => opaque(alterTag(s.objectType))(s, c),
  DropStmt: drop,
  CommentStmt: comment('COMMENT'),
  SecLabelStmt: comment('SECURITY LABEL'),
  GrantStmt: grant,
  GrantRoleStmt: (s: { is_grant?: boolean }, c) => opaque(s.is_grant ? 'GRANT ROLE' : 'REVOKE ROLE')(s, c),
  CreateTrigStmt: (s: unknown, c) => (walkWrites(s, c), ddl('CREATE TRIGGER')),
  RuleStmt: (s: unknown, c) => (walkWrites(s, c), ddl('CREATE RULE')),
  CreatePolicyStmt: (s: unknown, c) => (walkWrites(s, c), ddl('CREATE POLICY')),
  AlterPolicyStmt: (s: unknown, c) => (walkWrites(s, c), ddl('ALTER POLICY')),
  CreateStatsStmt: (s: unknown, c) => (walkWrites(s, c), ddl('CREATE STATISTICS')),
  DefineStmt: (s: DefineStmt, c) => opaque(createTag(s.kind))(s, c),
  CreateFunctionStmt: (s: { is_procedure?: boolean }, c) => {
    // the body is not executed now: its tables and calls are not this statement's
    c.unknownWrites = true
    return ddl(s.is_procedure ? 'CREATE PROCEDURE' : 'CREATE FUNCTION')
  },
  AlterFunctionStmt: (s: { objtype?: ObjectType }, c) => opaque(alterTag(s.objtype))(s, c),
  AlterSystemStmt: opaque('ALTER SYSTEM', true),
  CreatedbStmt: (s: { dbname?: string; options?: Node[] }, c) => ({
    ...opaque('CREATE DATABASE', true)(s, c),
    databases: [s.dbname ?? '', ...defStrings(s.options, 'template')].filter(Boolean),
  }),
  DropdbStmt: (s: { dbname?: string; options?: Node[] }, c) => ({
    ...opaque('DROP DATABASE', true)(s, c),
    databases: s.dbname ? [s.dbname] : [],
    force: hasDef(s.options, 'force'),
  }),
  AlterDatabaseStmt: (s: { dbname?: string; options?: Node[] }, c) => ({
    // ALTER DATABASE ... SET TABLESPACE moves files and refuses a transaction block
    ...opaque('ALTER DATABASE', hasDef(s.options, 'tablespace'))(s, c),
    ...(hasDef(s.options, 'tablespace') && s.dbname ? { databases: [s.dbname] } : {}),
  }),
  CreateTableSpaceStmt: opaque('CREATE TABLESPACE', true),
  DropTableSpaceStmt: opaque('DROP TABLESPACE', true),
  CreateSubscriptionStmt: (s: { options?: Node[] }, c) =>
    // creating the replication slot (the default) refuses a transaction block
    opaque('CREATE SUBSCRIPTION', !isFalse(s.options, 'create_slot') && !isFalse(s.options, 'connect'))(s, c),
  AlterSubscriptionStmt: alterSubscription,
  // dropping the remote slot (the usual case) refuses a transaction block; assume it does
  DropSubscriptionStmt: opaque('DROP SUBSCRIPTION', true),
}

/** The string values of option `name` (CREATE DATABASE ... TEMPLATE x). */
function defStrings(options: Node[] | undefined, name: string): string[] {
  const out: string[] = []
  for (const o of options ?? []) {
    const d = (o as { DefElem?: { defname?: string; arg?: { String?: { sval?: string } } } }).DefElem
    if (d?.defname === name && d.arg?.String?.sval) out.push(d.arg.String.sval)
  }
  return out
}

function hasDef(options: Node[] | undefined, name: string): boolean {
  return (options ?? []).some((o) => (o as { DefElem?: { defname?: string } }).DefElem?.defname === name)
}
