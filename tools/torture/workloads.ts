// The torture workloads: each a loop of client operations over a real
// client connection to pgraid (node-postgres extended or simple, pgjdbc,
// psql: drivers/), recorded in the history.
// - bank: transfers between accounts in transactions (the total never
//   changes; no balance goes below zero);
// - queue: a message broker's shape: INSERT with bigserial, DEFAULT now()
//   and gen_random_uuid(), and consumers that claim messages with
//   FOR UPDATE SKIP LOCKED (each claim recorded in the row, so the checker
//   knows which operation took it, even one whose answer was lost);
// - registers: ids drawn from an identity column, a serial column, or
//   nextval() called on its own, in transactions of which a quarter roll
//   back (their draws are lost, the sequence is not);
// - extra operations from list-append.ts and vanish.ts.

import { classify, type History, type Op, type Rng } from './history.ts'
import type { ClientSession, Connect, Endpoint } from './drivers/driver.ts'

export const ACCOUNTS = 8
export const OPENING = 1000

export const BASE_SETUP = [
  'DROP TABLE IF EXISTS accounts, queue, reg, reg_serial, reg_nextval',
  'DROP SEQUENCE IF EXISTS reg_seq',
  'CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)',
  `INSERT INTO accounts SELECT g, ${OPENING} FROM generate_series(1, ${ACCOUNTS}) g`,
  'CREATE TABLE queue (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now(), u uuid NOT NULL DEFAULT gen_random_uuid(), taken_by int)',
  // Registers drawn from an identity column, in transactions of which a quarter roll back (their draws are lost).
  'CREATE TABLE reg (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, op int NOT NULL)',
  // ... from a serial column, and from nextval() called on its own before the INSERT.
  'CREATE TABLE reg_serial (id serial PRIMARY KEY, op int NOT NULL)',
  'CREATE SEQUENCE reg_seq',
  'CREATE TABLE reg_nextval (id bigint PRIMARY KEY, op int NOT NULL)',
]

/**
 * A client that reconnects after losing its connection (a killed backend may end its session),
 * always with its own driver. With several pgraid instances it moves on to the next one when the
 * one it is on refuses writes (a standby: 25006) or cannot be reached.
 */
export class Conn {
  private c: ClientSession | null = null
  private at = 0
  constructor(
    private readonly eps: Endpoint[],
    readonly connect: Connect,
  ) {}
  get endpoint(): Endpoint {
    return this.eps[this.at % this.eps.length]!
  }
  async get(): Promise<ClientSession> {
    if (this.c) return this.c
    try {
      this.c = await this.connect(this.endpoint)
    } catch (e) {
      this.at++
      throw e
    }
    return this.c
  }
  drop(): void {
    const c = this.c
    this.c = null
    c?.destroy()
  }
  /** On a standby: the next instance. */
  moveOn(): void {
    this.drop()
    this.at++
  }
  /** The current session and where it is, for CancelRequests. */
  current(): { session: ClientSession; host: string; port: number } | null {
    return this.c && { session: this.c, host: this.endpoint.host, port: this.endpoint.port }
  }
  async end(): Promise<void> {
    await this.c?.end()
    this.c = null
  }
}

export interface Workers {
  done: Promise<void>
  clients: Conn[]
  /** Ends every connection at once (operations still waiting then fail). */
  abort(): void
}

export interface WorkloadOptions {
  /** The drivers to mix: each client gets one, by the seeded schedule. */
  drivers: { name: string; connect: Connect }[]
  /** Extra operations (list-append transactions, vanishing clients), each with its weight against the base mix's 1. */
  extra?: { weight: number; run: (conn: Conn, client: number, history: History, r: Rng) => Promise<void> }[]
}

export function runWorkloads(eps: Endpoint[], history: History, rng: Rng, count: number, until: () => boolean, o: WorkloadOptions): Workers {
  const clients = Array.from({ length: count }, () => new Conn(eps, rng.pick(o.drivers).connect))
  const extra = o.extra ?? []
  const total = 1 + extra.reduce((n, e) => n + e.weight, 0)
  const done = Promise.all(
    clients.map(async (conn, k) => {
      // Each client its own random stream, derived from the run's: the same seed gives the same ops.
      const r = new (rng.constructor as new (seed: number) => Rng)(rng.int(1, 2 ** 31))
      while (!until()) {
        let x = r.next() * total
        const before = history.ops.length
        try {
          if (x < 1) {
            x = r.next()
            if (x < 0.35) await transfer(conn, k, history, r)
            else if (x < 0.6) await enqueue(conn, k, history)
            else if (x < 0.85) await dequeue(conn, k, history, r.int(1, 4))
            else await register(conn, k, history, r.pick(REGISTERS), r.next() < 0.25)
          } else {
            x -= 1
            const e = extra.find((e) => (x -= e.weight) < 0) ?? extra[extra.length - 1]!
            await e.run(conn, k, history, r)
          }
        } catch {
          // recorded by the operation; the connection is dropped and made again
          conn.drop()
          await new Promise((res) => setTimeout(res, 50))
        }
        // A standby's refusal: writes go to the writer.
        if (eps.length > 1 && history.ops.slice(before).some((op) => op.client === k && op.error?.startsWith('25006'))) conn.moveOn()
      }
      await conn.end()
    }),
  ).then(() => undefined)
  return { done, clients, abort: () => clients.forEach((c) => c.drop()) }
}

/** The operation's connection; one that cannot be made fails the operation (nothing was sent). */
async function connect(conn: Conn, op: Op, history: History): Promise<ClientSession> {
  try {
    const c = await conn.get()
    op.driver = c.driver
    return c
  } catch (e) {
    history.end(op, 'failed', undefined, `connect: ${(e as Error).message}`)
    throw e
  }
}

async function transfer(conn: Conn, k: number, history: History, r: Rng): Promise<void> {
  const from = r.int(1, ACCOUNTS)
  const to = ((from + r.int(0, ACCOUNTS - 2)) % ACCOUNTS) + 1
  const amount = r.int(1, 50)
  const op = history.begin(k, 'transfer', [from, to, amount])
  const c = await connect(conn, op, history)
  let committing = false
  try {
    await c.query('BEGIN')
    const taken = await c.query('UPDATE accounts SET balance = balance - $2 WHERE id = $1 AND balance >= $2', [from, amount])
    if (taken.rowCount !== 1) {
      await c.query('ROLLBACK')
      history.end(op, 'failed', undefined, 'insufficient funds')
      return
    }
    await c.query('UPDATE accounts SET balance = balance + $2 WHERE id = $1', [to, amount])
    committing = true
    await c.query('COMMIT')
    history.end(op, 'ok')
  } catch (e) {
    const why = classify(e)
    // Before COMMIT was sent nothing can have committed.
    history.end(op, committing ? why.outcome : 'failed', undefined, why.error)
    await c.query('ROLLBACK').catch(() => {})
    if (why.outcome === 'indeterminate') throw e
  }
}

async function enqueue(conn: Conn, k: number, history: History): Promise<void> {
  const op = history.begin(k, 'enqueue', null)
  const body = `op-${op.id}`
  op.args = body
  const c = await connect(conn, op, history)
  try {
    const r = await c.query<{ id: string }>('INSERT INTO queue (body) VALUES ($1) RETURNING id', [body])
    history.end(op, 'ok', Number(r.rows[0]!.id))
  } catch (e) {
    const why = classify(e)
    history.end(op, why.outcome, undefined, why.error)
    if (why.outcome === 'indeterminate') throw e
  }
}

async function dequeue(conn: Conn, k: number, history: History, n: number): Promise<void> {
  const op = history.begin(k, 'dequeue', n)
  const c = await connect(conn, op, history)
  try {
    const r = await c.query<{ id: string }>('UPDATE queue SET taken_by = $1 WHERE id IN (SELECT id FROM queue WHERE taken_by IS NULL ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id', [
      op.id,
      n,
    ])
    history.end(
      op,
      'ok',
      r.rows.map((x) => Number(x.id)).sort((a, b) => a - b),
    )
  } catch (e) {
    const why = classify(e)
    history.end(op, why.outcome, undefined, why.error)
    if (why.outcome === 'indeterminate') throw e
  }
}

/** How a register draws its id: an identity column, a serial column, or nextval() called first and inserted. */
export const REGISTERS = ['identity', 'serial', 'nextval'] as const
export type RegisterHow = (typeof REGISTERS)[number]
export const REGISTER_TABLES: Record<RegisterHow, string> = { identity: 'reg', serial: 'reg_serial', nextval: 'reg_nextval' }

/** A value drawn in a transaction that commits (ok, with its id) or rolls back (failed: its id must not appear). */
async function register(conn: Conn, k: number, history: History, how: RegisterHow, rollback: boolean): Promise<void> {
  const op = history.begin(k, 'register', { how, end: rollback ? 'rollback' : 'commit' })
  const c = await connect(conn, op, history)
  let committing = false
  try {
    await c.query('BEGIN')
    let id: number
    if (how === 'nextval') {
      id = Number((await c.query<{ id: string }>("SELECT nextval('reg_seq') AS id")).rows[0]!.id)
      await c.query('INSERT INTO reg_nextval (id, op) VALUES ($1, $2)', [id, op.id])
    } else id = Number((await c.query<{ id: string }>(`INSERT INTO ${REGISTER_TABLES[how]} (op) VALUES ($1) RETURNING id`, [op.id])).rows[0]!.id)
    if (rollback) {
      await c.query('ROLLBACK')
      history.end(op, 'failed', id, 'rolled back by the workload')
      return
    }
    committing = true
    await c.query('COMMIT')
    history.end(op, 'ok', id)
  } catch (e) {
    const why = classify(e)
    history.end(op, committing ? why.outcome : 'failed', undefined, why.error)
    await c.query('ROLLBACK').catch(() => {})
    if (why.outcome === 'indeterminate') throw e
  }
}
