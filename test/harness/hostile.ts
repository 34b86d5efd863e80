// Shared by the hostile-client tests (bad-input.test.ts, vanishing-clients.test.ts): a stack with a
// `guard` table, and the checks run after each case (a new session works, guard is intact, no backend
// session of a vanished client is left).

import type { Test } from 'tap'
import { stackFor, client, assertIdentical, onEachBackend, type Stack } from './stack.ts'
import { openRaw, type Msg, type Raw } from './raw-session.ts'

export const MAX_MESSAGE_BYTES = 1024 * 1024

export const GUARD_ROWS = [
  { id: 1, v: 'one' },
  { id: 2, v: 'two' },
  { id: 3, v: 'three' },
  { id: 4, v: 'four' },
  { id: 5, v: 'five' },
]

export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

export async function waitUntil(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

export interface Hostile {
  stack: Stack
  /** Backend sessions (on every backend) whose application_name is `app`, and those whose query matches `like`. */
  backendSessions(app: string, like?: string): Promise<number[]>
  waitBackendSessionsGone(app: string, like?: string, ms?: number): Promise<void>
  /** After each case: a new session works and `guard` is intact. */
  healthy(t: Test, what: string): Promise<void>
  /** The last case: guard on every backend, backends identical. */
  end(t: Test): Promise<void>
}

/** A stack (limits.maxMessageBytes 1 MiB) with the guard table and the tables the cases write. */
export async function hostileStack(t: Test): Promise<Hostile> {
  const stack = await stackFor(t, { config: { limits: { maxMessageBytes: MAX_MESSAGE_BYTES } }, settings: { fsync: 'off' } })
  t.teardown(() => {
    for (const r of openRaw) r.destroy()
  })
  const c = await client(stack)
  await c.query('CREATE TABLE guard (id int PRIMARY KEY, v text NOT NULL)')
  for (const r of GUARD_ROWS) await c.query('INSERT INTO guard VALUES ($1, $2)', [r.id, r.v])
  await c.query('CREATE TABLE bad_load (id int PRIMARY KEY, v text NOT NULL)')
  await c.query('CREATE TABLE bad_chaos (id int, v text)')
  await c.end()

  const backendSessions = async (app: string, like?: string): Promise<number[]> => {
    const cond = like === undefined ? '' : ` OR query LIKE '${like.replace(/'/g, "''")}'`
    const rows = await onEachBackend<{ n: number }>(stack, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (application_name = '${app}'${cond})`)
    return rows.map((r) => r[0].n)
  }
  return {
    stack,
    backendSessions,
    async waitBackendSessionsGone(app, like, ms = 10_000) {
      let last: number[] = []
      await waitUntil(
        async () => (last = await backendSessions(app, like)).every((n) => n === 0),
        ms,
        `no backend session of "${app}"${like ? ` or running ${like}` : ''} is left (still: ${last.join('/')})`,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; sessions per backend: ${last.join('/')}`)
      })
    },
    async healthy(t, what) {
      const c = await within(client(stack), 10_000, `a new session after "${what}" could not log in`)
      c.on('error', () => {})
      try {
        const one = await within(c.query('SELECT 1 AS one'), 10_000, `SELECT 1 in a new session after "${what}"`)
        t.same(one.rows, [{ one: 1 }], `after ${what}: a new session answers SELECT 1`)
        const g = await within(c.query('SELECT id, v FROM guard ORDER BY id'), 10_000, `reading guard after "${what}"`)
        t.same(g.rows, GUARD_ROWS, `after ${what}: guard is intact through pgraid`)
      } finally {
        await within(c.end(), 5000, 'closing the check session').catch(() => {})
      }
    },
    async end(t) {
      const per = await onEachBackend<{ id: number; v: string }>(stack, 'SELECT id, v FROM guard ORDER BY id')
      for (const [i, rows] of per.entries()) t.same(rows, GUARD_ROWS, `backend ${i}: guard intact`)
      await assertIdentical(t, stack)
    },
  }
}

/** PostgreSQL closes without a word on a length it refuses (test/cases/framing.test.ts compares): so must pgraid. */
export async function expectSilentClose(t: Test, r: Raw, what: string): Promise<void> {
  t.ok(await r.closed().catch((e: Error) => (t.fail(e.message), false)), `${what}: connection closed`)
  t.notOk(
    r.seen.some((m) => m.type === 'E'),
    `${what}: without an ErrorResponse, as PostgreSQL`,
  )
}

export async function expectFatal(t: Test, r: Raw, code: string, what: string): Promise<Msg | undefined> {
  let err: Msg | undefined
  try {
    const msgs = await r.until('E')
    err = msgs[msgs.length - 1]
    t.equal(err.fields?.C, code, `${what}: SQLSTATE ${code} (${err.fields?.M})`)
    t.equal(err.fields?.S, 'FATAL', `${what}: severity FATAL`)
  } catch (e) {
    t.fail(`${what}: expected ErrorResponse ${code}: ${(e as Error).message}`)
  }
  t.ok(await r.closed().catch((e: Error) => (t.fail(e.message), false)), `${what}: pgraid closed the connection`)
  return err
}
