// Resync (issue 6, item 2): a disabled backend replays what it missed from a
// backend in service while clients keep writing, new COMMITs are held for a
// moment, the tail is replayed and the backend is back. A transaction open
// across the resync commits on the rejoined backend too; idle sessions attach
// it; a pinned session (temp table) feeds it its commits. Refused for an
// inconsistent backend (clone it); ENABLE refuses a backend that is behind.

import t from 'tap'
import pg from 'pg'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, client, assertIdentical, bounded, onEachBackend, waitFor } from '../harness/stack.ts'
import { exec } from '../harness/proc.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
]

t.test('resync while clients write, with a transaction open across it', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  const notices: string[] = []
  admin.on('notice', (n) => notices.push(n.message ?? ''))
  const a = await client(stack)
  const b = await client(stack)
  const pinned = await client(stack)
  t.teardown(() => Promise.all([admin.end(), a.end(), b.end(), pinned.end()]))
  await a.query('CREATE TABLE rs (id int PRIMARY KEY, note text)')
  await a.query("INSERT INTO rs VALUES (1, 'before')")
  await pinned.query('CREATE TEMP TABLE scratch (x int)')
  await admin.query('DISABLE pg2')
  for (let i = 2; i < 30; i++) await a.query(i % 2 ? 'INSERT INTO rs VALUES ($1, $2)' : `INSERT INTO rs VALUES (${i}, 'simple')`, i % 2 ? [i, 'prepared'] : undefined)
  await a.query('BEGIN')
  await a.query("UPDATE rs SET note = 'updated while out' WHERE id = 1")
  await a.query('COMMIT')
  const behind = await admin.query('ENABLE pg2').then(
    () => null,
    (e: { code?: string; message: string }) => e,
  )
  t.equal(behind?.code, '55000', 'ENABLE refuses a backend that is behind')
  t.match(behind?.message ?? '', /resync/)
  // Open across the resync: began without pg2.
  await b.query('BEGIN')
  // (A column list: the insert then locks its key only, not the table the writers below insert into.)
  await b.query("INSERT INTO rs (id, note) VALUES (1000, 'open across the resync')")
  // Writers keep going during the resync.
  let stop = false
  const acked: number[] = []
  let next = 2000
  const writers = [0, 1].map(async () => {
    const w = await client(stack)
    while (!stop) {
      const id = next++
      await w.query('INSERT INTO rs (id, note) VALUES ($1, $2)', [id, 'during'])
      acked.push(id)
      await new Promise((r) => setTimeout(r, 2)) // busy clients, not a flood: resync must catch up with them
    }
    await w.end()
  })
  const r = await bounded(admin.query('RESYNC pg2'), 60_000, 'RESYNC pg2')
  stop = true
  await bounded(Promise.all(writers), 20_000, 'writers')
  t.equal(r.rows[0].state, 'enabled')
  t.ok(Number(r.rows[0].records_applied) >= 29, `${r.rows[0].records_applied} records replayed`)
  t.ok(
    notices.some((n) => /records/.test(n)),
    'progress notices',
  )
  t.equal(stack.proxy.context.states.list[1]!.state, 'enabled')
  await b.query('COMMIT') // reaches pg2 by replay, under its locks
  await a.query("INSERT INTO rs VALUES (3000, 'after, from an idle session that attaches pg2')")
  await pinned.query("INSERT INTO rs VALUES (3001, 'after, from a pinned session')")
  await assertIdentical(t, stack)
  const per = await onEachBackend<{ id: number }>(stack, 'SELECT id FROM rs')
  const have = new Set(per[1]!.map((x) => x.id))
  t.same(
    acked.filter((id) => !have.has(id)),
    [],
    'every write acknowledged during the resync is on pg2',
  )
  t.ok(have.has(1000) && have.has(3000) && have.has(3001))
})

t.test('an inconsistent backend cannot be resynced; the CLI says so and resyncs a restarted one', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE rs2 (id int PRIMARY KEY, v int)')
  await c.query('INSERT INTO rs2 VALUES (1, 1), (2, 2)')
  const d = await stack.cluster.backends[0]!.client()
  await d.query('UPDATE rs2 SET v = 99 WHERE id = 2')
  await d.end()
  await c.query('UPDATE rs2 SET v = v + 1 RETURNING v') // pg1 is outvoted
  t.equal(stack.proxy.context.states.list[0]!.state, 'inconsistent')
  await stack.cluster.backends[2]!.kill()
  await c.query('INSERT INTO rs2 VALUES (3, 3)').catch(() => {})
  await c.query('INSERT INTO rs2 VALUES (4, 4)').catch(() => {})
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-resync-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'pgraid.json')
  await writeFile(file, JSON.stringify({ listen: { host: '127.0.0.1', port: stack.port }, backends: stack.config.backends, users: [{ name: 'ops', password: 'ops-secret', admin: true }] }))
  const run = (args: string[]) => exec(process.execPath, ['bin/pgraid.js', ...args, '-c', file], { timeoutMs: 60_000 })
  const refused = await run(['resync', 'pg1'])
  t.equal(refused.code, 1)
  t.match(refused.err, /inconsistent.*clone/)
  await stack.cluster.backends[2]!.start()
  // pg3 is out and pg1 inconsistent: only pg2 takes writes now (quorum 2 refuses them), so pg3 lacks nothing yet
  // beyond what it had; resync it and the quorum is back.
  const ok = await run(['resync', 'pg3'])
  t.equal(ok.code, 0, ok.err)
  t.match(ok.out, /name=pg3 state=enabled/)
  t.match(ok.err, /resync pg3/)
  await c.query('INSERT INTO rs2 VALUES (5, 5)')
  const rows = await Promise.all(
    [1, 2].map(async (i) => {
      const x = await stack.cluster.backends[i]!.client()
      const r = (await x.query('SELECT * FROM rs2 ORDER BY id')).rows
      await x.end()
      return JSON.stringify(r)
    }),
  )
  t.equal(rows[0], rows[1], 'pg2 and pg3 identical')
})

t.test('a COPY while the backend was out: resync refuses (clone it) instead of missing the data', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  const c = await client(stack)
  t.teardown(() => Promise.all([admin.end(), c.end()]))
  await c.query('CREATE TABLE cp (id int PRIMARY KEY)')
  await admin.query('DISABLE pg3')
  const { from } = await import('pg-copy-streams')
  const stream = c.query(from('COPY cp FROM STDIN'))
  await new Promise<void>((resolve, reject) => {
    stream.on('finish', resolve)
    stream.on('error', reject)
    for (let i = 0; i < 50; i++) stream.write(`${i}\n`)
    stream.end()
  })
  const e = await admin.query('RESYNC pg3').then(
    () => null,
    (err: { code?: string; message: string }) => err,
  )
  t.equal(e?.code, '55000')
  t.match(e?.message ?? '', /COPY.*clone it/)
  t.equal(stack.proxy.context.states.list[2]!.state, 'disabled', 'it stays out')
})

t.test('a client that goes away while its COMMIT is in flight: the commit still reaches a backend that came back', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  const setup = await client(stack)
  t.teardown(() => Promise.all([admin.end(), setup.end()]))
  await setup.query('CREATE TABLE gone (id int PRIMARY KEY)')
  await admin.query('DISABLE pg3')
  const c = await client(stack)
  c.on('error', () => {})
  await c.query('BEGIN')
  await c.query('INSERT INTO gone (id) VALUES (1)')
  await admin.query('RESYNC pg3') // pg3 is back; this transaction began without it
  // pg2 frozen: the COMMIT completes on pg1 and hangs on pg2, then the client vanishes.
  stack.cluster.backends[1]!.pause()
  let resumed = false
  t.teardown(() => void (resumed || stack.cluster.backends[1]!.resume()))
  void c.query('COMMIT').catch(() => {})
  const pg1 = await stack.cluster.backends[0]!.client()
  t.teardown(() => pg1.end())
  await waitFor('the commit on pg1', async () => (await pg1.query('SELECT 1 FROM gone WHERE id = 1')).rows.length === 1)
  ;(c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
  await new Promise((r) => setTimeout(r, 100))
  stack.cluster.backends[1]!.resume()
  resumed = true
  const pg3 = await stack.cluster.backends[2]!.client()
  t.teardown(() => pg3.end())
  await waitFor('the commit replayed on pg3', async () => (await pg3.query('SELECT 1 FROM gone WHERE id = 1')).rows.length === 1, 30_000)
  t.pass('pg3 has the commit of the client that went away')
  await assertIdentical(t, stack)
})

t.test('replay order and row counts (one stack: a COMMIT in flight, a lost lazy Parse, a replay changing other rows)', async (t) => {
  // writeQuorum 1: pg1 alone still takes writes once pg2 and pg3 are out (last part); holdMs 300: a resync
  // with a COMMIT in flight gives up quickly (first part).
  const stack = await stackFor(t, { config: { users: USERS, writeQuorum: 1, lifecycle: { holdMs: 300 } } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())

  await t.test('a record above a COMMIT still in flight is not replayed before it (ActiveMQ: a DELETE replayed before the INSERT it follows)', async (t) => {
    const a = await client(stack)
    const b = await client(stack)
    const pg1 = await stack.cluster.backends[0]!.client()
    const pg2 = await stack.cluster.backends[1]!.client()
    const pg3 = await stack.cluster.backends[2]!.client()
    t.teardown(() => Promise.all([a, b, pg1, pg2, pg3].map((c) => c.end())))
    await a.query('CREATE TABLE slow (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)')
    await a.query('CREATE TABLE later (id int PRIMARY KEY)')
    await admin.query('DISABLE pg2')
    // A's COMMIT waits on pg1 (its deferred unique check meets a direct, uncommitted insert of the same key)
    // and completes on pg3: its LSN is in flight and not in pg1's log, the resync's source.
    await pg1.query('BEGIN')
    await pg1.query('INSERT INTO slow VALUES (7)')
    await a.query('BEGIN')
    await a.query('INSERT INTO slow VALUES (7)')
    const committing = a.query('COMMIT')
    await waitFor('the commit on pg3', async () => (await pg3.query('SELECT 1 FROM slow WHERE id = 7')).rows.length === 1)
    await b.query('INSERT INTO later VALUES (1)') // the next LSN, committed everywhere
    const e = await admin.query('RESYNC pg2').then(
      () => null,
      (err: Error) => err,
    )
    t.match(e?.message ?? '', /commits still in flight/, 'the resync cannot finish while the commit is in flight')
    t.same((await pg2.query('SELECT id FROM later')).rows, [], 'the later record was not replayed ahead of the one in flight')
    await pg1.query('ROLLBACK')
    await committing
    const r = await admin.query('RESYNC pg2')
    t.equal(r.rows[0].state, 'enabled')
    t.same((await pg2.query('SELECT id FROM later')).rows, [{ id: 1 }])
    await assertIdentical(t, stack)
  })

  await t.test('a backend lost while its lazy Parse of the log statement is unanswered: the COMMIT is not run again', async (t) => {
    const c = await client(stack, { application_name: 'victim' })
    c.on('error', () => {})
    const pg1 = await stack.cluster.backends[0]!.client()
    t.teardown(() => Promise.all([c.end().catch(() => {}), pg1.end()]))
    await c.query('CREATE TABLE lazy (id int PRIMARY KEY)')
    await admin.query('DISABLE pg2')
    // An extended-protocol COMMIT: the session's pg1 and pg3 connections get pgraid's log statement prepared.
    await c.query('BEGIN')
    await c.query('INSERT INTO lazy VALUES ($1)', [1])
    await c.query({ name: 'commit', text: 'COMMIT' })
    await admin.query('RESYNC pg2')
    // The next transaction attaches pg2; its COMMIT must first Parse the log statement there (pg2 alone).
    await c.query('BEGIN')
    await c.query('INSERT INTO lazy VALUES ($1)', [2])
    const pg2 = await stack.cluster.backends[1]!.client()
    const pid = (await pg2.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'victim'")).rows[0]!.pid
    await pg2.end()
    process.kill(pid, 'SIGSTOP') // pg2 receives the COMMIT batch and answers nothing
    const commit = c.query({ name: 'commit', text: 'COMMIT' }).then(
      () => null,
      (e: Error) => e,
    )
    await waitFor('the commit on pg1', async () => (await pg1.query('SELECT 1 FROM lazy WHERE id = 2')).rows.length === 1)
    process.kill(pid, 'SIGKILL') // its connection closes with the Parse unanswered
    t.equal(await bounded(commit, 30_000, 'COMMIT'), null, 'the COMMIT succeeds on the backends left')
    const logged = await pg1.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgraid.log WHERE record::text LIKE '%INSERT INTO lazy%' AND record->'stmts'->0->'p'->>0 = '2'`)
    t.equal(logged.rows[0]!.n, 1, 'one record for the transaction (a retried batch wrote it twice)')
    t.same((await c.query('SELECT id FROM lazy ORDER BY id')).rows, [{ id: 1 }, { id: 2 }])
    // The killed process made pg2's postmaster restart; the next part resyncs it.
    await waitFor(
      'pg2 back from its crash restart',
      async () => {
        const x = await stack.cluster.backends[1]!.client().catch(() => null)
        await x?.end()
        return !!x
      },
      60_000,
    )
  })

  await t.test('a replayed statement that changes other rows than it first did: the backend is inconsistent, never silently different', async (t) => {
    await admin.query('RESYNC pg2') // out since the test before
    const c = await client(stack)
    t.teardown(() => c.end())
    await c.query('CREATE TABLE rc (id int PRIMARY KEY, v int)')
    await c.query('INSERT INTO rc SELECT g, g FROM generate_series(1, 6) g')
    const direct = async (i: number, sql: string) => {
      const d = await stack.cluster.backends[i]!.client()
      try {
        await d.query(sql)
      } finally {
        await d.end()
      }
    }

    // Resync: the records written while pg3 was out carry their tags ("DELETE 1", "UPDATE 1").
    await admin.query('DISABLE pg3')
    await c.query('DELETE FROM rc WHERE id = 2') // autocommit (tie-safe with two backends)
    await c.query('BEGIN')
    await c.query('UPDATE rc SET v = 10 WHERE id = 1')
    await c.query('COMMIT')
    await direct(2, 'DELETE FROM rc WHERE id = 2') // pg3's data differs behind pgraid's back
    const e = await admin.query('RESYNC pg3').then(
      () => null,
      (err: { code?: string; message: string; hint?: string }) => err,
    )
    t.equal(e?.code, 'XX001', 'RESYNC fails with data_corrupted')
    t.match(e?.message ?? '', /first executed as "DELETE 1", replayed as "DELETE 0"/)
    t.match(e?.hint ?? '', /inconsistent: clone it/)
    t.equal(stack.proxy.context.states.list[2]!.state, 'inconsistent', 'pg3 is inconsistent, not enabled')

    // A transaction that began before pg2 came back: its commit is replayed there by the session.
    await admin.query('DISABLE pg2')
    await c.query('BEGIN')
    await c.query('DELETE FROM rc WHERE id IN (4, 5)')
    await direct(1, 'DELETE FROM rc WHERE id = 5')
    await admin.query('RESYNC pg2')
    t.equal(stack.proxy.context.states.list[1]!.state, 'enabled')
    await c.query('COMMIT')
    t.equal(stack.proxy.context.states.list[1]!.state, 'inconsistent', 'pg2 taken out when the late replay deleted 1 row where the commit deleted 2')
    t.match(stack.proxy.context.states.list[1]!.reason ?? '', /first executed as "DELETE 2", replayed as "DELETE 1"/)
  })
})
