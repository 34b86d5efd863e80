// The checker: the recorded history against what every backend holds at the
// end (read directly, after healing). Counts lost writes (acknowledged,
// absent), phantoms (present, never invoked), anomalies (a workload's
// invariant broken, an acknowledged answer contradicted by the data) and
// divergences (backends that differ); lists each with what shows it.

import type pg from 'pg'
import type { History } from './history.ts'
import { checkVanish } from './vanish.ts'
import { checkListAppend } from './elle.ts'
import { FINAL_SQL, parseLists } from './list-append.ts'
import { ACCOUNTS, OPENING, REGISTERS, REGISTER_TABLES, type RegisterHow } from './workloads.ts'

export interface Verdict {
  lost: string[]
  phantom: string[]
  anomalies: string[]
  divergences: string[]
  /** What each backend held (written to the findings folder). */
  rows: Record<string, unknown>
}

interface QueueRow {
  id: string
  body: string
  taken_by: number | null
}

/** Reads the workload tables on every backend and checks them against the history. */
export async function check(history: History, backends: { name: string; client: () => Promise<pg.Client> }[], verifyRows: string[]): Promise<Verdict> {
  const v: Verdict = { lost: [], phantom: [], anomalies: [], divergences: [...verifyRows], rows: {} }
  const states = await Promise.all(
    backends.map(async (b) => {
      const c = await b.client()
      try {
        const accounts = (await c.query<{ id: number; balance: number }>('SELECT id, balance FROM accounts ORDER BY id')).rows
        const queue = (await c.query<QueueRow>('SELECT id::text AS id, body, taken_by FROM queue ORDER BY id')).rows
        const reg = {} as Record<RegisterHow, { id: string; op: number }[]>
        for (const how of REGISTERS) reg[how] = (await c.query<{ id: string; op: number }>(`SELECT id::text AS id, op FROM ${REGISTER_TABLES[how]} ORDER BY id`)).rows
        const vanish = (await c.query<{ op: number; n: number }>('SELECT op, n FROM vanish ORDER BY op, n')).rows
        const lists = (await c.query<{ k: number; v: string }>(FINAL_SQL)).rows
        return { name: b.name, accounts, queue, reg, vanish, lists }
      } finally {
        await c.end()
      }
    }),
  )
  for (const s of states) v.rows[s.name] = s
  // Divergence: every backend the same rows (VERIFY compares everything; this names the workload's).
  const first = states[0]!
  for (const s of states.slice(1)) {
    if (JSON.stringify(s.accounts) !== JSON.stringify(first.accounts)) v.divergences.push(`accounts differ: ${first.name} ${JSON.stringify(first.accounts)} vs ${s.name} ${JSON.stringify(s.accounts)}`)
    if (JSON.stringify(s.queue) !== JSON.stringify(first.queue)) v.divergences.push(`queue differs between ${first.name} (${first.queue.length} rows) and ${s.name} (${s.queue.length} rows)`)
    if (JSON.stringify(s.lists) !== JSON.stringify(first.lists)) v.divergences.push(`lists differ between ${first.name} and ${s.name}`)
    if (JSON.stringify(s.vanish) !== JSON.stringify(first.vanish)) v.divergences.push(`vanish differs between ${first.name} (${first.vanish.length} rows) and ${s.name} (${s.vanish.length} rows)`)
    for (const how of REGISTERS)
      if (JSON.stringify(s.reg[how]) !== JSON.stringify(first.reg[how]))
        v.divergences.push(`${REGISTER_TABLES[how]} differs between ${first.name} (${first.reg[how].length} rows) and ${s.name} (${s.reg[how].length} rows)`)
  }
  for (const s of states) {
    // Bank: the total never changes, no balance below zero, every account there.
    const total = s.accounts.reduce((n, a) => n + a.balance, 0)
    if (total !== ACCOUNTS * OPENING) v.anomalies.push(`${s.name}: the accounts total ${total}, not ${ACCOUNTS * OPENING}`)
    if (s.accounts.length !== ACCOUNTS) v.anomalies.push(`${s.name}: ${s.accounts.length} accounts, not ${ACCOUNTS}`)
    for (const a of s.accounts) if (a.balance < 0) v.anomalies.push(`${s.name}: account ${a.id} at ${a.balance}`)
  }
  // Queue, on the first backend (the others are compared to it above).
  const byBody = new Map(first.queue.map((r) => [r.body, r]))
  const byId = new Map(first.queue.map((r) => [Number(r.id), r]))
  const invoked = new Set(history.ops.filter((o) => o.kind === 'enqueue').map((o) => o.args as string))
  for (const op of history.ops) {
    if (op.kind === 'enqueue' && op.outcome === 'ok') {
      const row = byBody.get(op.args as string)
      if (!row) v.lost.push(`enqueue op ${op.id} (id ${String(op.result)}) was acknowledged and is gone`)
      else if (Number(row.id) !== op.result) v.anomalies.push(`enqueue op ${op.id} was told id ${String(op.result)}, the row has ${row.id}`)
    }
    if (op.kind === 'enqueue' && op.outcome === 'failed' && byBody.has(op.args as string)) v.anomalies.push(`enqueue op ${op.id} failed (${op.error}) yet its row is there`)
    if (op.kind === 'dequeue' && op.outcome === 'ok')
      for (const id of op.result as number[]) {
        const row = byId.get(id)
        if (!row) v.lost.push(`message ${id}, taken by op ${op.id}, is gone`)
        else if (row.taken_by !== op.id) v.anomalies.push(`message ${id} was given to op ${op.id} but is recorded as taken by ${row.taken_by ?? 'nobody'}`)
      }
  }
  // Registers: an acknowledged draw is there with its id, a rolled-back one is not, no id twice (the primary key).
  for (const how of REGISTERS) {
    const regById = new Map(first.reg[how].map((r) => [Number(r.id), r]))
    const regOps = new Set(history.ops.filter((o) => o.kind === 'register' && (o.args as { how: RegisterHow }).how === how).map((o) => o.id))
    for (const op of history.ops) {
      if (op.kind !== 'register' || (op.args as { how: RegisterHow }).how !== how) continue
      const row = typeof op.result === 'number' ? regById.get(op.result) : undefined
      if (op.outcome === 'ok' && (!row || row.op !== op.id)) v.lost.push(`register op ${op.id} (${how}) committed id ${String(op.result)}, which is ${row ? `op ${row.op}'s` : 'gone'}`)
      if (op.outcome === 'failed' && row && row.op === op.id) v.anomalies.push(`register op ${op.id} (${how}) rolled back, yet id ${String(op.result)} is there`)
    }
    for (const row of first.reg[how]) if (!regOps.has(row.op)) v.phantom.push(`${REGISTER_TABLES[how]} row ${row.id} belongs to op ${row.op}, which never ran`)
  }
  const elle = checkListAppend(history.ops, parseLists(first.lists))
  v.lost.push(...elle.lost)
  v.phantom.push(...elle.phantom)
  v.anomalies.push(...elle.anomalies)
  const vanished = checkVanish(history.ops, first.vanish)
  v.lost.push(...vanished.lost)
  v.phantom.push(...vanished.phantom)
  v.anomalies.push(...vanished.anomalies)
  const dequeued = new Set(history.ops.filter((o) => o.kind === 'dequeue').map((o) => o.id))
  const failedDequeues = new Set(history.ops.filter((o) => o.kind === 'dequeue' && o.outcome === 'failed').map((o) => o.id))
  for (const row of first.queue) {
    if (!invoked.has(row.body)) v.phantom.push(`row ${row.id} (${row.body}) was never enqueued`)
    if (row.taken_by !== null && !dequeued.has(row.taken_by)) v.phantom.push(`row ${row.id} is taken by op ${row.taken_by}, which never ran`)
    if (row.taken_by !== null && failedDequeues.has(row.taken_by)) v.anomalies.push(`row ${row.id} is taken by op ${row.taken_by}, which failed`)
  }
  return v
}
