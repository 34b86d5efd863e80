// The torture workloads: each a loop of client operations over a real
// node-postgres connection to pgraid, recorded in the history.
// - bank: transfers between accounts in transactions (the total never
//   changes; no balance goes below zero);
// - queue: a message broker's shape: INSERT with bigserial, DEFAULT now()
//   and gen_random_uuid(), and consumers that claim messages with
//   FOR UPDATE SKIP LOCKED (each claim recorded in the row, so the checker
//   knows which operation took it, even one whose answer was lost).

import pg from 'pg'
import { classify, type History, type Op, type Rng } from './history.ts'

export const ACCOUNTS = 8
export const OPENING = 1000

export const SETUP = [
  'DROP TABLE IF EXISTS accounts, queue, reg',
  'CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)',
  `INSERT INTO accounts SELECT g, ${OPENING} FROM generate_series(1, ${ACCOUNTS}) g`,
  'CREATE TABLE queue (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now(), u uuid NOT NULL DEFAULT gen_random_uuid(), taken_by int)',
  // Registers drawn from an identity column, in transactions of which a quarter roll back (their draws are lost).
  'CREATE TABLE reg (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, op int NOT NULL)',
]

export interface Endpoint {
  host: string
  port: number
  user: string
  password: string
}

/** A client that reconnects after losing its connection (a killed backend may end its session). */
class Conn {
  private c: pg.Client | null = null
  constructor(private readonly ep: Endpoint) {}
  async get(): Promise<pg.Client> {
    if (this.c) return this.c
    const c = new pg.Client({ ...this.ep, database: 'postgres', statement_timeout: 0, connectionTimeoutMillis: 5000 })
    c.on('error', () => {
      if (this.c === c) this.c = null
    })
    await c.connect()
    this.c = c
    return c
  }
  drop(): void {
    const c = this.c
    this.c = null
    void c?.end().catch(() => {})
  }
  /** The node-postgres client, for CancelRequests. */
  current(): pg.Client | null {
    return this.c
  }
  async end(): Promise<void> {
    await this.c?.end().catch(() => {})
    this.c = null
  }
}

export interface Workers {
  done: Promise<void>
  clients: Conn[]
  /** Ends every connection at once (operations still waiting then fail). */
  abort(): void
}

export function runWorkloads(ep: Endpoint, history: History, rng: Rng, count: number, until: () => boolean): Workers {
  const clients = Array.from({ length: count }, () => new Conn(ep))
  const done = Promise.all(
    clients.map(async (conn, k) => {
      // Each client its own random stream, derived from the run's: the same seed gives the same ops.
      const r = new (rng.constructor as new (seed: number) => Rng)(rng.int(1, 2 ** 31))
      while (!until()) {
        const x = r.next()
        const kind = x < 0.35 ? 'transfer' : x < 0.6 ? 'enqueue' : x < 0.85 ? 'dequeue' : 'register'
        try {
          if (kind === 'transfer') await transfer(conn, k, history, r)
          else if (kind === 'enqueue') await enqueue(conn, k, history)
          else if (kind === 'dequeue') await dequeue(conn, k, history, r.int(1, 4))
          else await register(conn, k, history, r.next() < 0.25)
        } catch {
          // recorded by the operation; the connection is dropped and made again
          conn.drop()
          await new Promise((res) => setTimeout(res, 50))
        }
      }
      await conn.end()
    }),
  ).then(() => undefined)
  return { done, clients, abort: () => clients.forEach((c) => c.drop()) }
}

/** The operation's connection; one that cannot be made fails the operation (nothing was sent). */
async function connect(conn: Conn, op: Op, history: History): Promise<pg.Client> {
  try {
    return await conn.get()
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
    const r = await c.query<{ id: string }>(
      'UPDATE queue SET taken_by = $1 WHERE id IN (SELECT id FROM queue WHERE taken_by IS NULL ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id',
      [op.id, n],
    )
    history.end(op, 'ok', r.rows.map((x) => Number(x.id)).sort((a, b) => a - b))
  } catch (e) {
    const why = classify(e)
    history.end(op, why.outcome, undefined, why.error)
    if (why.outcome === 'indeterminate') throw e
  }
}

/** An identity value drawn in a transaction that commits (ok, with its id) or rolls back (failed: its id must not appear). */
async function register(conn: Conn, k: number, history: History, rollback: boolean): Promise<void> {
  const op = history.begin(k, 'register', rollback ? 'rollback' : 'commit')
  const c = await connect(conn, op, history)
  let committing = false
  try {
    await c.query('BEGIN')
    const r = await c.query<{ id: string }>('INSERT INTO reg (op) VALUES ($1) RETURNING id', [op.id])
    const id = Number(r.rows[0]!.id)
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
