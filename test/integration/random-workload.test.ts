// A seeded random mix of concurrent writers and readers through pgraid:
// transfers between accounts (both key orders, so deadlocks happen), queue
// inserts drawing from a serial with volatile column defaults, deletes of the
// oldest queue rows with FOR UPDATE SKIP LOCKED, explicit nextval() on a
// standalone sequence, and reads. Afterwards: money is conserved, the backends
// are identical, every queue row a client saw is where it should be on every
// backend, every ticket number is unique and the sequence agrees everywhere.
//
// RANDOM_WORKLOAD_SEED reproduces the op sequence of each client (the
// interleaving is up to the scheduler); RANDOM_WORKLOAD_SECONDS sets the
// duration (20 s by default). Nothing here asserts on timing.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend, bounded } from '../harness/stack.ts'

const CLIENTS = 8
const ACCOUNTS = 50
const INITIAL = 1000
const SECONDS = Number(process.env.RANDOM_WORKLOAD_SECONDS ?? 20)
const MAX_OPS_PER_CLIENT = 5000
const SEED = process.env.RANDOM_WORKLOAD_SEED !== undefined ? Number(process.env.RANDOM_WORKLOAD_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0
const RETRYABLE = new Set(['40P01', '40001'])

// mulberry32: small, fast, good enough to pick operations.
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Failure {
  client: number
  op: number
  statement: string
  params?: unknown[]
  code?: string
  message: string
  detail?: string
}

interface Seen {
  token: string
  created: string
}

const stats = { committed: 0, retried: 0, retryCodes: {} as Record<string, number>, inserts: 0, deletes: 0, nextvals: 0, reads: 0 }
const failures: Failure[] = []
const inserted = new Map<number, Seen>() // queue id -> what RETURNING showed
const insertedTwice: number[] = []
const deleted = new Set<number>()
const deletedTwice: number[] = []
const tickets: string[] = []
const badSums: string[] = []

t.comment(`random workload: seed ${SEED} (RANDOM_WORKLOAD_SEED=${SEED} reproduces), ${CLIENTS} clients, ${SECONDS} s, at most ${MAX_OPS_PER_CLIENT} ops per client`)

const stack = await stackFor(t, { settings: { fsync: 'off' } })
const setup = await client(stack)
setup.on('error', () => {}) // a lost session also fails the pending query, which names it
await setup.query('CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)')
await setup.query(`INSERT INTO accounts SELECT g, ${INITIAL} FROM generate_series(1, ${ACCOUNTS}) g`)
const QUEUE_DDL = 'CREATE TABLE queue (id serial PRIMARY KEY, token uuid NOT NULL DEFAULT gen_random_uuid(), created timestamptz NOT NULL DEFAULT now(), body text)'
// The DDL only stores the default expressions; nothing is computed. Should pgraid refuse it,
// that is a failure of its own, and the table is created on each backend directly so that the
// workload still runs (the CREATE SEQUENCE through pgraid below reloads pgraid's catalog).
const queueDdlError = await setup.query(QUEUE_DDL).then(
  () => null,
  (e: Error & { code?: string }) => e,
)
if (queueDdlError) await onEachBackend(stack, QUEUE_DDL)
await setup.query('CREATE SEQUENCE tickets')
await setup.end()
t.equal(queueDdlError && `${queueDdlError.code}: ${queueDdlError.message}`, null, `pgraid accepts ${QUEUE_DDL}`)

// timestamptz as the server's text, so it can be compared with what the backends store.
const rawTimestamps = {
  getTypeParser: (oid: number, format?: string) => (oid === 1184 ? (v: string) => v : (pg.types.getTypeParser as (o: number, f?: string) => (v: string) => unknown)(oid, format)),
} as unknown as pg.CustomTypesConfig

class Stop extends Error {}

async function worker(w: number, deadline: number): Promise<void> {
  const rand = rng((SEED + Math.imul(w + 1, 0x9e3779b9)) >>> 0)
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
  const c = await client(stack, { types: rawTimestamps })
  c.on('error', (e: Error & { code?: string }) => failures.push({ client: w, op: -1, statement: '(connection)', code: e.code, message: e.message }))
  let op = 0
  let inTx = false

  // Runs one statement; an unexpected error is recorded with the statement and ends this client.
  const run = async (text: string, values?: unknown[], name?: string): Promise<pg.QueryResult> => {
    try {
      return await c.query({ text, values, name })
    } catch (e) {
      const err = e as Error & { code?: string; detail?: string }
      if (err.code && RETRYABLE.has(err.code) && inTx) throw err
      failures.push({ client: w, op, statement: text, params: values, code: err.code, message: err.message, detail: err.detail })
      if (inTx) await c.query('ROLLBACK').catch(() => {})
      throw new Stop()
    }
  }
  const expect = (cond: boolean, statement: string, message: string) => {
    if (cond) return
    failures.push({ client: w, op, statement, message })
    throw new Stop()
  }

  const transfer = async () => {
    const a = int(1, ACCOUNTS)
    let b = int(1, ACCOUNTS - 1)
    if (b >= a) b++
    const amt = int(1, 100)
    const form = int(0, 3)
    inTx = true
    try {
      if (form === 3) {
        // One simple-protocol batch holding the whole transaction.
        const sql = `BEGIN; UPDATE accounts SET balance = balance - ${amt} WHERE id = ${a}; UPDATE accounts SET balance = balance + ${amt} WHERE id = ${b}; COMMIT`
        const res = (await run(sql)) as unknown as pg.QueryResult[]
        expect(
          Array.isArray(res) && res.length === 4 && res[1]!.rowCount === 1 && res[2]!.rowCount === 1 && res[3]!.command === 'COMMIT',
          sql,
          `unexpected results: ${JSON.stringify(Array.isArray(res) ? res.map((r) => [r.command, r.rowCount]) : res)}`,
        )
      } else {
        await run('BEGIN')
        const debit = 'UPDATE accounts SET balance = balance - $1 WHERE id = $2'
        const credit = 'UPDATE accounts SET balance = balance + $1 WHERE id = $2'
        const r1 = form === 0 ? await run(`UPDATE accounts SET balance = balance - ${amt} WHERE id = ${a}`) : await run(debit, [amt, a], form === 2 ? 'xfer_debit' : undefined)
        const r2 = form === 0 ? await run(`UPDATE accounts SET balance = balance + ${amt} WHERE id = ${b}`) : await run(credit, [amt, b], form === 2 ? 'xfer_credit' : undefined)
        expect(r1.rowCount === 1 && r2.rowCount === 1, 'transfer UPDATEs', `row counts ${r1.rowCount}, ${r2.rowCount} (expected 1, 1)`)
        const r3 = await run('COMMIT')
        expect(r3.command === 'COMMIT', 'COMMIT', `command tag ${r3.command}`)
      }
      stats.committed++
    } catch (e) {
      if (e instanceof Stop) throw e
      const code = (e as { code?: string }).code!
      stats.retried++
      stats.retryCodes[code] = (stats.retryCodes[code] ?? 0) + 1
      inTx = false
      await run('ROLLBACK')
    } finally {
      inTx = false
    }
  }

  const insert = async () => {
    const n = rand() < 0.7 ? 1 : int(2, 4)
    const bodies = Array.from({ length: n }, (_, i) => `c${w}-op${op}-${i}`)
    const form = int(0, 2)
    let res: pg.QueryResult
    if (form === 0) {
      // Extended protocol, one parameter per row.
      const text = `INSERT INTO queue (body) VALUES ${bodies.map((_, i) => `($${i + 1})`).join(', ')} RETURNING id, token, created`
      res = await run(text, bodies)
    } else if (form === 1) {
      // Explicit DEFAULT for the generated columns.
      const text = `INSERT INTO queue (id, token, created, body) VALUES ${bodies.map((_, i) => `(DEFAULT, DEFAULT, DEFAULT, $${i + 1})`).join(', ')} RETURNING id, token, created`
      res = await run(text, bodies)
    } else {
      // Simple protocol, literal values.
      const text = `INSERT INTO queue (body) VALUES ${bodies.map((b) => `('${b}')`).join(', ')} RETURNING id, token, created`
      res = await run(text)
    }
    expect(res.rowCount === n && res.rows.length === n, 'INSERT INTO queue', `returned ${res.rows.length} rows, expected ${n}`)
    for (const row of res.rows as { id: number; token: string; created: string }[]) {
      if (inserted.has(row.id)) insertedTwice.push(row.id)
      inserted.set(row.id, { token: row.token, created: row.created })
    }
    stats.inserts += n
  }

  const del = async () => {
    const n = int(1, 3)
    const text = 'DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id'
    const res = rand() < 0.5 ? await run(text, [n]) : await run(text.replace('$1', String(n)))
    for (const row of res.rows as { id: number }[]) {
      if (deleted.has(row.id)) deletedTwice.push(row.id)
      deleted.add(row.id)
    }
    stats.deletes += res.rows.length
  }

  const nextval = async () => {
    const res = rand() < 0.5 ? await run("SELECT nextval('tickets') AS v") : await run('SELECT nextval($1) AS v', ['tickets'])
    expect(res.rows.length === 1, "SELECT nextval('tickets')", `returned ${res.rows.length} rows`)
    tickets.push(String(res.rows[0].v))
    stats.nextvals++
  }

  const read = async () => {
    const res = rand() < 0.5 ? await run('SELECT sum(balance)::text AS s FROM accounts') : await run('SELECT sum(balance)::text AS s FROM accounts WHERE id > $1', [0])
    const s = res.rows[0].s as string
    if (s !== String(ACCOUNTS * INITIAL)) badSums.push(`client ${w} op ${op}: ${s}`)
    stats.reads++
  }

  try {
    for (; op < MAX_OPS_PER_CLIENT && Date.now() < deadline; op++) {
      const p = rand()
      if (p < 0.4) await transfer()
      else if (p < 0.65) await insert()
      else if (p < 0.75) await del()
      else if (p < 0.88) await nextval()
      else await read()
    }
  } catch (e) {
    if (!(e instanceof Stop)) failures.push({ client: w, op, statement: '(client code)', message: String((e as Error)?.stack ?? e) })
  } finally {
    await c.end().catch(() => {})
  }
}

t.test('random concurrent workload', async (t) => {
  const deadline = Date.now() + SECONDS * 1000
  await bounded(Promise.all(Array.from({ length: CLIENTS }, (_, w) => worker(w, deadline))), SECONDS * 1000 + 20_000, `random workload (seed ${SEED}): ${CLIENTS} clients running for ${SECONDS} s`)
  t.comment(`stats: ${JSON.stringify(stats)}`)

  t.same(
    failures,
    [],
    `no unexpected errors (seed ${SEED})${failures.length ? ':\n' + failures.map((f) => `client ${f.client} op ${f.op}: ${f.statement} ${f.params ? JSON.stringify(f.params) : ''} -> ${f.code ?? ''} ${f.message}${f.detail ? ` (${f.detail})` : ''}`).join('\n') : ''}`,
  )
  t.ok(stats.committed > 0, `transfers committed: ${stats.committed} (retried after ${JSON.stringify(stats.retryCodes)})`)
  t.same(badSums, [], 'every read saw the total balance')

  const c = await client(stack)
  c.on('error', () => {})
  t.teardown(() => c.end())
  const total = (await c.query('SELECT sum(balance)::text AS s FROM accounts')).rows[0].s
  t.equal(total, String(ACCOUNTS * INITIAL), 'the sum of balances through pgraid is unchanged')
  const sums = await onEachBackend<{ s: string }>(stack, 'SELECT sum(balance)::text AS s FROM accounts')
  t.same(
    sums.map((r) => r[0]!.s),
    sums.map(() => String(ACCOUNTS * INITIAL)),
    'the sum of balances on every backend is unchanged',
  )

  await assertIdentical(t, stack)

  // Queue: what the clients saw against what each backend holds.
  t.same(insertedTwice, [], 'no queue id was returned by two inserts')
  t.same(deletedTwice, [], 'no queue id was returned by two deletes')
  t.same(
    [...deleted].filter((id) => !inserted.has(id)),
    [],
    'every deleted id was one a client inserted',
  )
  const live = [...inserted.keys()].filter((id) => !deleted.has(id)).sort((a, b) => a - b)
  const perBackend = await onEachBackend<{ id: number; token: string; created: string }>(stack, 'SELECT id, token::text AS token, created::text AS created FROM queue ORDER BY id')
  perBackend.forEach((rows, i) => {
    const name = stack.cluster.backends[i]!.name ?? `backend[${i}]`
    const byId = new Map(rows.map((r) => [r.id, r]))
    const missing = live.filter((id) => !byId.has(id))
    t.same(missing.slice(0, 20), [], `${name}: every id inserted and not deleted is present (${live.length} ids; ${missing.length} missing)`)
    const resurrected = [...deleted].filter((id) => byId.has(id))
    t.same(resurrected.slice(0, 20), [], `${name}: no deleted id is present (${deleted.size} deleted; ${resurrected.length} present)`)
    const unknown = rows.filter((r) => !inserted.has(r.id)).map((r) => r.id)
    t.same(unknown.slice(0, 20), [], `${name}: no row that no client saw inserted (${unknown.length})`)
    const differs = live.filter((id) => byId.has(id) && (byId.get(id)!.token !== inserted.get(id)!.token || byId.get(id)!.created !== inserted.get(id)!.created))
    t.same(
      differs.slice(0, 5).map((id) => ({ id, seen: inserted.get(id), stored: { token: byId.get(id)!.token, created: byId.get(id)!.created } })),
      [],
      `${name}: token and created as RETURNING showed them (${differs.length} of ${live.length} rows differ)`,
    )
  })

  // Tickets.
  t.equal(new Set(tickets).size, tickets.length, `every nextval('tickets') value is distinct (${tickets.length} values)`)
  const last = await onEachBackend<{ v: string; called: boolean }>(stack, 'SELECT last_value::text AS v, is_called AS called FROM tickets')
  t.equal(new Set(last.map((r) => `${r[0]!.v}/${r[0]!.called}`)).size, 1, `tickets has the same last_value on every backend (${last.map((r) => r[0]!.v).join(', ')})`)
  const maxSeen = tickets.reduce((m, v) => (BigInt(v) > m ? BigInt(v) : m), 0n)
  t.equal(String(last[0]![0]!.v), String(maxSeen > 0n ? maxSeen : 1n), 'last_value is the largest value a client saw')

  // Every session is gone: pgraid holds no lock any more.
  const held = () => stack.proxy.context.locks.snapshot().filter((l) => l.holders.length || l.waiters.length)
  for (let i = 0; i < 100 && held().length; i++) await new Promise((r) => setTimeout(r, 50))
  t.same(
    held().map((l) => l.resource),
    [],
    'no pgraid lock is held or waited for after all clients ended',
  )
})
