// pgraid killed with -9 while clients commit (issue 5, item 6): restarted
// each time, it completes commits that reached only some backends; at the
// end the backends are identical and every commit a client saw acknowledged
// is on every backend. pgraid runs as a separate process here (bin/pgraid.js)
// so it can really be killed.

import t from 'tap'
import pg from 'pg'
import net from 'node:net'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, assertIdentical, onEachBackend, bounded, freePort } from '../harness/stack.ts'

// Each kill lands at a random moment among four committing workers (simple, extended and explicit
// transactions), and each costs a restart of the child process; five cover the kinds, in-doubt.test.ts
// hits the exact kill points. PROXY_KILLS=50 for a longer hunt.
const KILLS = Number(process.env.PROXY_KILLS ?? 2)

t.test(`pgraid killed -9 ${KILLS} times under concurrent commits: nothing acknowledged is lost`, async (t) => {
  const stack = await stackFor(t)
  await stack.proxy.close() // the in-process one; a child process takes its place
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-kill-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await freePort()
  const cfgFile = join(dir, 'pgraid.json')
  await writeFile(
    cfgFile,
    JSON.stringify({
      listen: { host: '127.0.0.1', port },
      backends: stack.cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })),
      users: [{ name: 'app', auth: 'scram-sha-256', password: 'app-secret' }],
      log: { level: 'error' },
    }),
  )
  let child: ChildProcess | null = null
  const start = async () => {
    child = spawn(process.execPath, ['bin/pgraid.js', 'start', '-c', cfgFile], { stdio: ['ignore', 'ignore', 'inherit'] })
    for (let i = 0; i < 300; i++) {
      const ok = await new Promise<boolean>((r) => {
        const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)))
        s.on('error', () => r(false))
      })
      if (ok) return
      await new Promise((r) => setTimeout(r, 50))
    }
    throw new Error('pgraid child did not start listening within 15 s')
  }
  t.teardown(() => void child?.kill('SIGKILL'))
  await start()
  const connect = async () => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'app', password: 'app-secret', database: 'postgres' })
    c.on('error', () => {})
    await c.connect()
    return c
  }
  const setup = await connect()
  await setup.query('CREATE TABLE acked (id int PRIMARY KEY, worker int, note text)')
  await setup.end()

  const acked = new Set<number>()
  let stop = false
  let nextId = 1
  const worker = async (w: number) => {
    let c: pg.Client | null = null
    while (!stop) {
      try {
        c ??= await connect()
        const id = nextId++
        if (id % 3 === 0) {
          await c.query('BEGIN')
          await c.query('INSERT INTO acked VALUES ($1, $2, $3)', [id, w, 'explicit'])
          await c.query('COMMIT')
        } else await c.query(id % 2 ? 'INSERT INTO acked VALUES ($1, $2, $3)' : `INSERT INTO acked VALUES (${id}, ${w}, 'simple')`, id % 2 ? [id, w, 'extended'] : undefined)
        acked.add(id) // acknowledged: it must survive
      } catch {
        await c?.end().catch(() => {})
        c = null
        await new Promise((r) => setTimeout(r, 20))
      }
    }
    await c?.end().catch(() => {})
  }
  const workers = [0, 1, 2, 3].map(worker)
  for (let k = 0; k < KILLS; k++) {
    // Kill only while commits flow: wait (bounded) for a few acknowledged since the restart, then a random moment.
    const before = acked.size
    for (let i = 0; i < 600 && acked.size < before + 3; i++) await new Promise((r) => setTimeout(r, 25))
    t.ok(acked.size >= before + 3, `kill ${k + 1}: commits were flowing (${acked.size - before} since the restart)`)
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 200)))
    child!.kill('SIGKILL')
    await new Promise((r) => child!.once('exit', r))
    await start()
  }
  await new Promise((r) => setTimeout(r, 300))
  stop = true
  await bounded(Promise.all(workers), 30_000, 'workers stopping')
  t.ok(acked.size >= KILLS * 3, `${acked.size} commits acknowledged across ${KILLS} kills`)
  // A last look through pgraid, then wait for its delayed recheck of late commits.
  const last = await connect()
  await last.query('SELECT 1')
  await new Promise((r) => setTimeout(r, 3500))
  await last.end()
  await assertIdentical(t, stack)
  const per = await onEachBackend<{ id: number }>(stack, 'SELECT id FROM acked')
  for (const [i, rows] of per.entries()) {
    const have = new Set(rows.map((r) => r.id))
    const lost = [...acked].filter((id) => !have.has(id))
    t.same(lost, [], `${stack.cluster.backends[i]!.name}: no acknowledged commit missing`)
  }
  const logs = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM pgraid.log')
  t.ok(
    logs.every((l) => l[0]!.n === logs[0]![0]!.n),
    'the same number of log records everywhere',
  )
})
