// Test helpers around a running stack: connected clients, and the check that
// every backend holds the same data, which every writing test ends with.

import pg from 'pg'
import net from 'node:net'
import type { Test } from 'tap'
import { startStack, type Stack, type StackOptions } from '../../src/embedded/stack.ts'
import { compareBackends } from './compare.ts'

export { startStack, type Stack }

/**
 * PostgreSQL settings of test backends. Tests kill processes (pgraid, postgres), never the machine, so
 * the WAL a commit wrote survives without fsync; fsync costs ~4 ms per commit per backend on the test
 * machines, and full-page images only matter after an OS crash. No autovacuum: the tests are short,
 * and its workers on three backends take CPU the suite needs. A test that measures durability
 * passes its own settings (they override these).
 */
export const TEST_SETTINGS: Readonly<Record<string, string>> = { fsync: 'off', full_page_writes: 'off', autovacuum: 'off' }

/** Starts a stack (backends with TEST_SETTINGS under opts.settings) and registers its teardown with the tap test. */
export async function stackFor(t: Test, opts: StackOptions = {}): Promise<Stack> {
  const stack = await startStack({ ...opts, settings: { ...TEST_SETTINGS, ...opts.settings } })
  t.teardown(() => stack.stop())
  return stack
}

export async function client(stack: Stack, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: stack.host, port: stack.port, user: stack.user, password: stack.password, database: 'postgres', ...extra })
  await c.connect()
  return c
}

/**
 * Asserts that every user table is identical on every backend, once pgraid has no commit in flight:
 * a session whose client has gone (or was told its connection failed) may still be completing its
 * last commit on the backends that lacked it (a bounded wait; a commit that never lands fails here).
 */
export async function assertIdentical(t: Test, stack: Stack, database = 'postgres'): Promise<void> {
  const ctx = stack.proxy?.context
  if (ctx) await waitFor('commits in flight to land before comparing the backends', () => ctx.commitsInFlight() === 0, 30_000)
  const r = await compareBackends(stack.cluster.backends, database)
  t.ok(r.identical, r.identical ? `backends identical (${r.digests[0]?.length ?? 0} tables and sequences)` : `backends differ:\n${r.report}`)
}

/** Runs a query on every backend directly (bypassing pgraid). */
export async function onEachBackend<T extends pg.QueryResultRow = pg.QueryResultRow>(stack: Stack, sql: string, database = 'postgres'): Promise<T[][]> {
  return Promise.all(
    stack.cluster.backends.map(async (b) => {
      const c = await b.client(database)
      try {
        return (await c.query<T>(sql)).rows
      } finally {
        await c.end()
      }
    }),
  )
}

/** Sends a CancelRequest for `c`'s backend key, as libpq does, on a new connection. */
export function cancel(stack: Stack, c: pg.Client): Promise<void> {
  const k = c as unknown as { processID: number; secretKey: number }
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: stack.host, port: stack.port }, () => {
      const b = Buffer.alloc(16)
      b.writeInt32BE(16, 0)
      b.writeInt32BE(80877102, 4)
      b.writeInt32BE(k.processID, 8)
      b.writeInt32BE(k.secretKey, 12)
      s.end(b)
    })
    s.on('close', () => resolve())
    s.on('error', reject)
  })
}

/** Rejects if `p` has not settled within `ms`, naming what hung (tests never wait unbounded). */
export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what}: not done within ${ms} ms (hang)`)), ms).unref())])
}

/** Polls `check` until it holds; throws naming `what` after `ms` (a bounded wait on progress, not a timing assertion). */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const until = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** A free loopback port (bound, then released: for a child process told to listen on it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))))
    })
  })
}
