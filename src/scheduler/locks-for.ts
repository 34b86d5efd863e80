// The proxy locks a statement needs (resource names and modes for
// lock-manager.ts): per key where the analysis proves which rows it touches,
// else per table, plus what sequences, volatile functions, triggers and
// foreign keys make it meet.

import type { StatementInfo } from '../sql/analyze.ts'
import type { KeyValue, TableName } from '../sql/types.ts'
import type { CatalogData, UniqueIndex } from './catalog.ts'
import { canonical, type BindParams } from './key-values.ts'
import type { LockRequest } from './lock-manager.ts'

/** A function or relation name without its schema: the catalog's sets are keyed so. */
export function unqualified(name: string): string {
  const dot = name.lastIndexOf('.')
  return dot >= 0 ? name.slice(dot + 1) : name
}

/** Depend only on the session's own earlier calls: never ordered across sessions. */
const SESSION_LOCAL = new Set(['currval', 'lastval'])
const SEQUENCE_FNS = new Set(['nextval', 'setval'])

/**
 * nextval('s')/setval('s'): X on that sequence, meeting the inserts whose
 * defaults draw from it; a sequence named at run time (nextval($1)) takes X
 * on fn:nextval, which meets every sequence user through their IX.
 */
function sequenceLocks(s: StatementInfo, out: LockRequest[]): void {
  if (!s.functions.some((f) => SEQUENCE_FNS.has(unqualified(f)))) return
  const seqs = s.sequences ?? ['*']
  if (seqs.includes('*')) {
    out.push({ resource: 'fn:nextval', mode: 'X' })
    return
  }
  out.push({ resource: 'fn:nextval', mode: 'IX' })
  for (const q of seqs) out.push({ resource: `seq:${q}`, mode: 'X' })
}

/**
 * Key locks for a write to `table` when the analysis proves which rows it
 * touches: IX on the table plus X on each key. null = lock the whole table.
 * Updates, deletes and row locks are keyed by the primary key only, so two
 * statements reaching one row through different unique indexes still meet on
 * one resource; inserts lock every unique key they create. A delete from a
 * table with other unique indexes, or an update assigning a unique column,
 * frees or moves keys pgraid cannot name: table lock.
 */
export function keyLocks(info: StatementInfo, table: TableName, cat: CatalogData, params: BindParams | null): LockRequest[] | null {
  const access = info.keys?.find((k) => k.table.name === table.name && (k.table.schema ?? null) === (table.schema ?? null))
  if (!access || !access.rows.length || cat.complexUnique.has(table.name) || cat.family.has(table.name)) return null
  const uniques = cat.uniques.get(table.name) ?? []
  const uniqueCols = new Set(uniques.flatMap((u) => u.columns))
  if (access.setColumns?.some((c) => uniqueCols.has(c))) return null
  const out: LockRequest[] = [{ resource: `rel:${table.name}`, mode: 'IX' }]
  const keyOf = (u: UniqueIndex, row: Record<string, KeyValue>): string | null => {
    const vals: string[] = []
    for (let i = 0; i < u.columns.length; i++) {
      const v = row[u.columns[i]]
      const c = v ? canonical(v, u.types[i], params) : null
      if (c === null) return null
      vals.push(c)
    }
    return `key:${table.name}:${u.columns.join(',')}=${vals.join('\u0001')}`
  }
  if (access.op === 'insert') {
    for (const row of access.rows) {
      for (const u of uniques) {
        const k = keyOf(u, row)
        if (!k) return null
        out.push({ resource: k, mode: 'X' })
      }
    }
    return out
  }
  const pk = uniques.find((u) => u.primary)
  if (!pk) return null
  if (access.op === 'delete' && uniques.length > 1) return null
  for (const row of access.rows) {
    const k = keyOf(pk, row)
    if (!k) return null
    out.push({ resource: k, mode: 'X' })
  }
  return out
}

/** Proxy locks for one executed statement: per key where provable, else per table. */
export function locksFor(s: StatementInfo, cat: CatalogData, out: LockRequest[], params: BindParams | null = null): void {
  if (s.kind === 'read' || s.kind === 'copy-out' || s.kind === 'empty') {
    let volatile = false
    for (const f of s.functions) {
      const n = unqualified(f)
      if (!cat.nonVolatile.has(n) && !SESSION_LOCAL.has(n)) {
        if (!SEQUENCE_FNS.has(n)) out.push({ resource: `fn:${n}`, mode: 'X' })
        volatile = true
      }
    }
    if (volatile) sequenceLocks(s, out)
    if (volatile) {
      out.push({ resource: 'db', mode: 'S' })
      for (const r of s.reads) out.push({ resource: `rel:${r.name}`, mode: 'S' })
    }
    return
  }
  if (s.kind === 'transaction' || (s.kind === 'session' && !s.session?.cursorQuery)) return
  const info = s.session?.cursorQuery ?? s
  out.push({ resource: 'db', mode: 'S' })
  const keyed = new Set<string>()
  for (const w of info.writes) {
    const keys = keyLocks(info, w, cat, params)
    if (keys) {
      out.push(...keys)
      keyed.add(w.name)
    } else out.push({ resource: `rel:${w.name}`, mode: 'X' })
    // Partitions and inheritance: a row written through one member lives in another.
    for (const m of cat.family.get(w.name) ?? []) out.push({ resource: `rel:${m}`, mode: 'X' })
    if (cat.indirect.has(w.name)) out.push({ resource: 'db', mode: 'X' })
    for (const c of cat.children.get(w.name) ?? []) out.push({ resource: `rel:${c}`, mode: 'X' })
    for (const p of cat.parents.get(w.name) ?? []) out.push({ resource: `rel:${p}`, mode: 'S' })
    if (cat.triggers.has(w.name)) out.push({ resource: 'db', mode: 'X' })
    if (cat.sequenceDefaults.has(w.name)) {
      // Each sequence orders its own users; an explicit nextval() call (X on fn:nextval,
      // sequence unknown) still meets every one of them through the IX.
      const seqs = cat.sequencesOf.get(w.name)
      if (seqs?.size) {
        out.push({ resource: 'fn:nextval', mode: 'IX' })
        for (const q of seqs) out.push({ resource: `seq:${q}`, mode: 'X' })
      } else out.push({ resource: 'fn:nextval', mode: 'X' })
    }
  }
  // A keyed statement reads its own target only through the keys it locks.
  for (const r of info.reads) {
    if (!keyed.has(r.name)) out.push({ resource: `rel:${r.name}`, mode: 'S' })
    for (const m of cat.family.get(r.name) ?? []) out.push({ resource: `rel:${m}`, mode: 'S' })
  }
  for (const f of info.functions) {
    const n = unqualified(f)
    if (!cat.nonVolatile.has(n) && !SESSION_LOCAL.has(n) && !SEQUENCE_FNS.has(n)) out.push({ resource: `fn:${n}`, mode: 'X' })
  }
  sequenceLocks(info, out)
  // ALTER SEQUENCE ... RESTART meets the inserts that draw from it.
  if (info.kind === 'ddl') for (const w of info.writes) out.push({ resource: `seq:${w.name}`, mode: 'X' })
  if (info.unknownWrites) out.push({ resource: info.kind === 'ddl' ? 'ddl' : 'db', mode: 'X' })
  if (info.kind === 'ddl') out.push({ resource: 'ddl', mode: 'X' })
}
