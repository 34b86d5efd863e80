// Elle's list-append workload: transactions of 1-4 micro-ops over a few keys,
// each an append of a value unique in the run to a key's list, or a read of a
// key's whole list. A list keeps the order its appends committed in, so the
// final lists give the version order of every key and each read names the
// exact version it saw: elle.ts infers the dependencies between transactions
// from that and looks for cycles (the isolation each level promises, and
// stale reads through realtime order).
//
// Keys: LIST_KEYS active keys at a time (few keys: contention); a key
// retires after MAX_APPENDS_PER_KEY appends and a fresh key takes its slot,
// as Elle's generator does, so lists stay short: reads cost O(1), and a
// history of 50,000 transactions does not hold reads of thousands of values.

import { classify, type History, type Op, type Rng } from './history.ts'
import type { ClientSession } from './drivers/driver.ts'

export const LIST_KEYS = 8
export const MAX_APPENDS_PER_KEY = 32

export const LIST_SETUP = ['DROP TABLE IF EXISTS lists', 'CREATE TABLE lists (k int PRIMARY KEY, v text NOT NULL)']

// Explicit casts: drivers without bind parameters send the values as literals ('12'), and the
// extended protocol must not have to infer $2's type from its two uses.
export const APPEND_SQL = "INSERT INTO lists (k, v) VALUES ($1::int, $2::text) ON CONFLICT (k) DO UPDATE SET v = lists.v || ',' || $2::text"
export const READ_SQL = 'SELECT v FROM lists WHERE k = $1::int'
/** What the checker needs at the end, read on a backend directly: parseLists() of its rows. */
export const FINAL_SQL = 'SELECT k, v FROM lists ORDER BY k'

/** A micro-op: an append of value v to key k, or a read of key k (null until it answered). */
export type Mop = ['append', number, number] | ['r', number, number[] | null]

export interface ListTxnArgs {
  isolation: 'rc' | 'rr'
  mops: Mop[]
}

/** A list-append transaction as recorded: args as invoked; result (ok only) the mops with each read's list. */
export type ListOp = Omit<Op, 'kind' | 'args' | 'result'> & { kind: 'txn'; args: ListTxnArgs; result?: Mop[] }

/** A list's text ('1,2,3') as values; no row or NULL is the empty list. */
export function parseList(v: unknown): number[] {
  if (v === null || v === undefined || v === '') return []
  return String(v).split(',').map(Number)
}

/** FINAL_SQL's rows as the checker's final lists. */
export function parseLists(rows: { k: unknown; v: unknown }[]): Map<number, number[]> {
  return new Map(rows.map((r) => [Number(r.k), parseList(r.v)]))
}

/** The active keys of a run (one per History, so two runs in one process do not share them). */
const keysOf = new WeakMap<History, { slots: number[]; appends: number[]; next: number }>()

function pickKey(history: History, r: Rng, append: boolean): number {
  let keys = keysOf.get(history)
  if (!keys) {
    keys = { slots: Array.from({ length: LIST_KEYS }, (_, i) => i + 1), appends: new Array<number>(LIST_KEYS).fill(0), next: LIST_KEYS + 1 }
    keysOf.set(history, keys)
  }
  const i = r.int(0, LIST_KEYS - 1)
  const k = keys.slots[i]!
  if (append && ++keys.appends[i]! >= MAX_APPENDS_PER_KEY) {
    keys.slots[i] = keys.next++
    keys.appends[i] = 0
  }
  return k
}

/**
 * One list-append transaction on `s`, recorded in `history` as kind 'txn'. Failed before COMMIT:
 * 'failed' (rolled back); an error answering COMMIT, or a connection lost once COMMIT was sent:
 * classify()'s outcome. A lost connection is thrown again, so that the caller reconnects.
 */
export async function listAppendTxn(s: ClientSession, client: number, history: History, r: Rng): Promise<void> {
  const isolation = r.next() < 0.5 ? 'rc' : 'rr'
  const mops: Mop[] = []
  const args: ListTxnArgs = { isolation, mops }
  const op = history.begin(client, 'txn' as Op['kind'], args)
  ;(op as { driver?: string }).driver = s.driver
  // Values unique in the run without shared state: op ids are, and a txn has at most 4 mops.
  const n = r.int(1, 4)
  for (let i = 0; i < n; i++) {
    const append = r.next() < 0.5
    const k = pickKey(history, r, append)
    mops.push(append ? ['append', k, op.id * 10 + i] : ['r', k, null])
  }
  const result: Mop[] = []
  let committing = false
  try {
    await s.query(isolation === 'rr' ? 'BEGIN ISOLATION LEVEL REPEATABLE READ' : 'BEGIN ISOLATION LEVEL READ COMMITTED')
    for (const m of mops) {
      if (m[0] === 'append') {
        await s.query(APPEND_SQL, [m[1], String(m[2])])
        result.push(m)
      } else {
        const x = await s.query<{ v: unknown }>(READ_SQL, [m[1]])
        result.push(['r', m[1], parseList(x.rows[0]?.v)])
      }
    }
    committing = true
    await s.query('COMMIT')
    history.end(op, 'ok', result)
  } catch (e) {
    const why = classify(e)
    // Before COMMIT was sent nothing can have committed (40001 at REPEATABLE READ included).
    history.end(op, committing ? why.outcome : 'failed', undefined, why.error)
    await s.query('ROLLBACK').catch(() => {})
    if (why.outcome === 'indeterminate') throw e
  }
}
