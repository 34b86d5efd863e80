// Graceful shutdown (issue 8, item 5): on SIGTERM pgraid stops accepting
// clients, an open transaction may still commit, each session is closed with
// FATAL 57P01 once it is between transactions, and the process exits 0.

import t from 'tap'
import pg from 'pg'
import { spawn } from 'node:child_process'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, bounded, onEachBackend, freePort } from '../harness/stack.ts'

t.test('SIGTERM: no new clients, open transactions finish, sessions closed with 57P01, exit 0', async (t) => {
  const stack = await stackFor(t)
  await stack.proxy.close()
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-shutdown-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await freePort()
  const file = join(dir, 'pgraid.json')
  await writeFile(
    file,
    JSON.stringify({
      listen: { host: '127.0.0.1', port },
      backends: stack.config.backends,
      users: [{ name: 'app', password: 'app-secret' }],
      log: { level: 'error' },
      timeouts: { shutdownMs: 30_000 },
    }),
  )
  const child = spawn(process.execPath, ['bin/pgraid.js', 'start', '-c', file], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => void child.kill('SIGKILL'))
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  await bounded(new Promise<void>((r) => child.stdout!.on('data', (b: Buffer) => /listening/.test(b.toString()) && r())), 30_000, 'pgraid to listen')
  const connect = async () => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'app', password: 'app-secret', database: 'postgres' })
    c.on('error', () => {})
    await c.connect()
    return c
  }
  const busy = await connect()
  const idle = await connect()
  await busy.query('CREATE TABLE sd (id int PRIMARY KEY)')
  await busy.query('BEGIN')
  await busy.query('INSERT INTO sd (id) VALUES (1)')
  const idleGone = new Promise<{ code?: string }>((r) => idle.once('error', (e) => r(e as { code?: string })))
  child.kill('SIGTERM')
  const e = await bounded(idleGone, 20_000, 'the idle session to be closed')
  t.equal(e.code, '57P01', 'the idle session got FATAL 57P01')
  const refused = await connect().then(
    () => null,
    (err: Error) => err,
  )
  t.ok(refused, 'new clients are refused while shutting down')
  await busy.query('INSERT INTO sd (id) VALUES (2)')
  await busy.query('COMMIT')
  t.pass('the open transaction finished')
  t.equal(await bounded(exited, 20_000, 'pgraid to exit'), 0, 'exit 0 once every session is closed')
  const rows = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM sd')
  t.same(
    rows.map((r) => r[0]!.n),
    [2, 2, 2],
    'the commit is on every backend',
  )
  await busy.end().catch(() => {})
  await idle.end().catch(() => {})
})
