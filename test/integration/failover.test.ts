// Backend failure (issue 5, items 3, 4, 7): a backend that dies or stops
// answering is taken out of service, client sessions keep going on the
// others (none is dropped), open transactions continue, every commit the
// clients saw is on every remaining backend, and the failed backend does not
// come back by itself. Below the write quorum, writes are refused (57P03)
// and reads continue.

import t from 'tap'
import type { Test } from 'tap'
import { stackFor, client, bounded } from '../harness/stack.ts'
import type { Stack } from '../harness/stack.ts'
import { exec } from '../harness/proc.ts'

async function identicalOn(t: Test, stack: Stack, indexes: number[], sql: string): Promise<void> {
  const rows = await Promise.all(
    indexes.map(async (i) => {
      const c = await stack.cluster.backends[i]!.client()
      try {
        return JSON.stringify((await c.query(sql)).rows)
      } finally {
        await c.end()
      }
    }),
  )
  t.ok(
    rows.every((r) => r === rows[0]),
    `same answer on ${indexes.map((i) => stack.cluster.backends[i]!.name).join(', ')}: ${sql}`,
  )
}

t.test('a backend killed mid-transaction: the session and its transaction continue', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  const idle = await client(stack)
  t.teardown(() => Promise.all([c.end(), idle.end()]))
  await c.query('CREATE TABLE f1 (id int PRIMARY KEY, v text)')
  await c.query("INSERT INTO f1 VALUES (1, 'before')")
  await c.query('BEGIN')
  await c.query("INSERT INTO f1 VALUES (2, 'in the transaction')")
  await stack.cluster.backends[2]!.kill()
  await c.query("INSERT INTO f1 VALUES (3, 'after the kill')")
  await c.query('COMMIT')
  const r = await c.query('SELECT count(*)::int AS n FROM f1')
  t.equal(r.rows[0].n, 3, 'the transaction committed on the remaining backends')
  await idle.query("INSERT INTO f1 VALUES (4, 'from a session idle during the kill')")
  const states = stack.proxy.context.states.list.map((b) => b.state)
  t.same(states, ['enabled', 'enabled', 'disabled'])
  await identicalOn(t, stack, [0, 1], 'SELECT * FROM f1 ORDER BY id')
  // It is recorded in the remaining backends.
  const c0 = await stack.cluster.backends[0]!.client()
  const rec = await bounded(
    (async () => {
      for (let i = 0; i < 100; i++) {
        const rows = (await c0.query("SELECT state FROM pgraid.backend_state WHERE backend = 'pg3'")).rows
        if (rows.length) return rows[0].state
        await new Promise((r) => setTimeout(r, 50))
      }
      return null
    })(),
    10_000,
    'backend_state row for pg3',
  )
  await c0.end()
  t.equal(rec, 'disabled')
  // Restarted, it stays out: it missed writes.
  await stack.cluster.backends[2]!.start()
  const again = await client(stack)
  await again.query("INSERT INTO f1 VALUES (5, 'after the restart')")
  await again.end()
  t.equal(stack.proxy.context.states.list[2]!.state, 'disabled', 'a backend that came back is not used until resynced')
  const onPg3 = await stack.cluster.backends[2]!.client()
  t.equal((await onPg3.query('SELECT count(*)::int AS n FROM f1')).rows[0].n, 1, 'pg3 has only what it had when it died')
  await onPg3.end()
  // A fresh pgraid (another machine, same config) learns it from the backends themselves.
  const { startPgraid } = await import('../../src/server.ts')
  const { createLogger } = await import('../../src/observe/logger.ts')
  c.on('error', () => {}) // their proxy goes away
  idle.on('error', () => {})
  await stack.proxy.close()
  const fresh = await startPgraid({ ...stack.config, listen: { ...stack.config.listen, port: 0 } }, createLogger('silent'))
  t.teardown(() => fresh.close())
  const pg = (await import('pg')).default
  const fc = new pg.Client({ host: fresh.host, port: fresh.port, user: 'app', password: 'app-secret', database: 'postgres' })
  await fc.connect()
  t.equal((await fc.query('SELECT count(*)::int AS n FROM f1')).rows[0].n, 5)
  await fc.end()
  t.same(
    fresh.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'disabled'],
    'the fresh pgraid has the same view: pg3 stays out',
  )
  t.match(fresh.context.states.list[2]!.reason ?? '', /recorded as disabled by pg1/)
})

t.test('below the write quorum writes are refused with 57P03, reads continue', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE f2 (id int PRIMARY KEY)')
  await c.query('INSERT INTO f2 VALUES (1)')
  await stack.cluster.backends[1]!.kill()
  await stack.cluster.backends[2]!.kill()
  const e = await c.query('INSERT INTO f2 VALUES (2)').then(
    () => null,
    (err: { code?: string; detail?: string }) => err,
  )
  // Which refusal comes first depends on who notices the two dead servers first: the session's
  // write (57P03, the write quorum) or the writer election, whose locks died with them (25006).
  t.ok(e?.code === '57P03' || e?.code === '25006', `refused with 57P03 or 25006 (got ${e?.code})`)
  if (e?.code === '57P03') t.match(e?.detail ?? '', /pg2.*pg3|pg3.*pg2/)
  else t.match(e?.detail ?? '', /lost the writer lock on a majority/)
  const r = await c.query('SELECT count(*)::int AS n FROM f2')
  t.equal(r.rows[0].n, 1, 'reads still work')
})

t.test('a read whose backend dies is retried on another one', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE f3 (id int PRIMARY KEY)')
  await c.query('INSERT INTO f3 SELECT generate_series(1, 100)')
  // A slow read (no volatile function: it runs on one backend), simple and prepared, while its backend is killed.
  // One row, at the end: nothing reaches the client before the backend has done all the work.
  const slow = 'SELECT count(*)::int AS n FROM f3, generate_series(1, 100000) g'
  const readers = await Promise.all([0, 1, 2, 3, 4, 5].map(() => client(stack)))
  t.teardown(() => Promise.all(readers.map((r) => r.end())))
  const reads = readers.map((r, i) => (i % 2 ? r.query(slow) : r.query({ text: slow + ' WHERE g > $1::int', values: [0] })))
  // Kill pg1 once it is running at least one of them.
  const watch = await stack.cluster.backends[0]!.client()
  let running = 0
  for (let i = 0; i < 200 && !running; i++) {
    running = (await watch.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%generate_series(1, 100000)%' AND pid <> pg_backend_pid()")).rows[0].n
    if (!running) await new Promise((r) => setTimeout(r, 10))
  }
  await watch.end()
  t.ok(running > 0, `pg1 was answering ${running} of the reads when it was killed`)
  await stack.cluster.backends[0]!.kill()
  const results = await bounded(Promise.all(reads), 30_000, 'reads during the kill')
  t.ok(
    results.every((r) => r.rows[0].n === 10_000_000),
    'every read answered, the ones on the killed backend after a retry elsewhere',
  )
  const after = await c.query('SELECT count(*)::int AS n FROM f3')
  t.equal(after.rows[0].n, 100, 'the session that saw the kill goes on')
})

t.test('pgbench -c 8 while a backend is killed: no client aborted, the others identical', async (t) => {
  const stack = await stackFor(t)
  const pgbench = async (args: string[]) => {
    const r = await exec('pgbench', ['-h', '127.0.0.1', '-p', String(stack.port), '-U', 'app', ...args, 'postgres'], { env: { PGPASSWORD: 'app-secret' }, timeoutMs: 120_000 })
    return { code: r.code, out: r.out + r.err }
  }
  const init = await pgbench(['-i', '-s', '1', '-q'])
  t.equal(init.code, 0, init.out)
  const run = pgbench(['-c', '8', '-j', '2', '-T', '5', '-n'])
  await new Promise((r) => setTimeout(r, 2000))
  await stack.cluster.backends[1]!.kill()
  const res = await run
  t.equal(res.code, 0, res.out)
  t.match(res.out, /number of failed transactions: 0/)
  t.notMatch(res.out, /aborted|terminated/i, 'no client aborted')
  const done = Number(/number of transactions actually processed: (\d+)/.exec(res.out)?.[1] ?? 0)
  t.ok(done > 0, `${done} transactions`)
  for (const tbl of ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history']) await identicalOn(t, stack, [0, 2], `SELECT count(*), sum(hashtext(x::text)) FROM ${tbl} x`)
  const hist = await client(stack)
  const n = (await hist.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n
  await hist.end()
  t.equal(n, done, 'every transaction pgbench saw committed is in the history')
})

t.test('a hung backend (SIGSTOP) is taken out after the stall timeout; SIGCONT does not bring it back', async (t) => {
  const stack = await stackFor(t, { config: { timeouts: { stallMs: 1000 } } })
  const c = await client(stack)
  t.teardown(async () => {
    stack.cluster.backends[1]!.resume()
    await c.end()
  })
  await c.query('CREATE TABLE f4 (id int PRIMARY KEY)')
  stack.cluster.backends[1]!.pause()
  await bounded(c.query('INSERT INTO f4 VALUES (1)'), 20_000, 'insert while pg2 hangs')
  const pg2 = stack.proxy.context.states.list[1]!
  t.equal(pg2.state, 'disabled')
  t.match(pg2.reason ?? '', /stalled/)
  await c.query('INSERT INTO f4 VALUES (2)')
  stack.cluster.backends[1]!.resume()
  await new Promise((r) => setTimeout(r, 200))
  await c.query('INSERT INTO f4 VALUES (3)')
  t.equal(stack.proxy.context.states.list[1]!.state, 'disabled', 'it stays out once it answers again')
  await identicalOn(t, stack, [0, 2], 'SELECT * FROM f4 ORDER BY id')
})

t.test('a backend killed while COMMITs are in flight: every acknowledged commit is on the others', async (t) => {
  const stack = await stackFor(t)
  const setup = await client(stack)
  await setup.query('CREATE TABLE f5 (id int PRIMARY KEY, w int)')
  await setup.end()
  const acked: number[] = []
  let stop = false
  let next = 1
  const errors: string[] = []
  const workers = [0, 1, 2, 3].map(async (w) => {
    const c = await client(stack)
    while (!stop) {
      const id = next++
      try {
        await c.query('BEGIN')
        await c.query('INSERT INTO f5 VALUES ($1, $2)', [id, w])
        await c.query('COMMIT')
        acked.push(id)
      } catch (e) {
        errors.push((e as Error).message)
        await c.query('ROLLBACK').catch(() => {})
      }
    }
    await c.end()
  })
  // Kill while commits flow, and let more be acknowledged after (bounded waits, not timings).
  const waitAcked = async (n: number) => {
    for (let i = 0; i < 400 && acked.length < n; i++) await new Promise((r) => setTimeout(r, 25))
  }
  await waitAcked(5)
  await stack.cluster.backends[0]!.kill()
  const atKill = acked.length
  await waitAcked(atKill + 5)
  stop = true
  await bounded(Promise.all(workers), 20_000, 'workers')
  t.same(errors, [], 'no client saw an error: the sessions went on')
  t.ok(acked.length >= atKill + 5, `${acked.length} commits acknowledged, ${acked.length - atKill} after the kill`)
  for (const i of [1, 2]) {
    const d = await stack.cluster.backends[i]!.client()
    const have = new Set((await d.query('SELECT id FROM f5')).rows.map((r) => r.id))
    await d.end()
    t.same(
      acked.filter((id) => !have.has(id)),
      [],
      `${stack.cluster.backends[i]!.name} has every acknowledged commit`,
    )
  }
  await identicalOn(t, stack, [1, 2], 'SELECT * FROM f5 ORDER BY id')
})

t.test('a backend killed mid-COPY and mid-pipeline: the statements complete on the others', async (t) => {
  // Two backends die in this test: with writeQuorum 1 the last one keeps accepting writes.
  const stack = await stackFor(t, { config: { writeQuorum: 1 } })
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query('CREATE TABLE f6 (id int PRIMARY KEY, v text)')
  const { from } = await import('pg-copy-streams')
  const stream = c.query(from('COPY f6 FROM STDIN'))
  const done = new Promise<void>((resolve, reject) => {
    stream.on('finish', resolve)
    stream.on('error', reject)
  })
  for (let i = 0; i < 5000; i++) stream.write(`${i}\trow ${i}\n`)
  await new Promise((r) => setTimeout(r, 100))
  await stack.cluster.backends[1]!.kill()
  for (let i = 5000; i < 10000; i++) stream.write(`${i}\trow ${i}\n`)
  stream.end()
  await bounded(done, 20_000, 'COPY after the kill')
  t.equal((await c.query('SELECT count(*)::int AS n FROM f6')).rows[0].n, 10000, 'every row copied')
  // A pipeline (node-postgres's pipeline mode: the statements sent without waiting, each with its Sync),
  // pg3 killed while it runs. Queued on a plain client they went one at a time (and node-postgres warned).
  const raw = await client(stack, { pipeline: true })
  t.teardown(() => raw.end())
  await raw.query('BEGIN')
  const pipeline = Promise.all(Array.from({ length: 200 }, (_, i) => raw.query('UPDATE f6 SET v = $1 WHERE id = $2', [`updated ${i}`, i])))
  await new Promise((r) => setTimeout(r, 5))
  await stack.cluster.backends[2]!.kill()
  await bounded(pipeline, 20_000, 'pipeline after the kill')
  await raw.query('COMMIT')
  t.equal((await c.query("SELECT count(*)::int AS n FROM f6 WHERE v LIKE 'updated%'")).rows[0].n, 200)
  t.same(stack.proxy.context.states.enabled(), [0], 'pg1 alone in service')
})

t.test('a backend dying while a read streams its rows: 08006 (or a retry before the first row), the session goes on', async (t) => {
  const stack = await stackFor(t)
  const c = await client(stack)
  t.teardown(() => c.end())
  await c.query("CREATE TABLE big AS SELECT g, repeat('x', 300) AS pad FROM generate_series(1, 150000) g")
  const r = await client(stack)
  t.teardown(() => r.end())
  const read = r.query('SELECT * FROM big').then(
    (res) => ({ rows: res.rows.length, code: null as string | null }),
    (e: { code?: string }) => ({ rows: 0, code: e.code ?? 'none' }),
  )
  // Find the backend answering it and kill that one while the rows flow.
  let victim = -1
  for (let i = 0; i < 300 && victim < 0; i++) {
    for (const [k, b] of stack.cluster.backends.entries()) {
      const d = await b.client()
      const n = (await d.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT * FROM big' AND pid <> pg_backend_pid()")).rows[0].n
      await d.end()
      if (n) victim = k
    }
  }
  t.ok(victim >= 0, 'the read was seen running')
  await stack.cluster.backends[victim]!.kill()
  const out = await bounded(read, 30_000, 'the streaming read')
  t.ok(out.code === '08006' || out.rows === 150000, `the client got 08006 or, retried before its first row, every row (${JSON.stringify(out)})`)
  t.equal((await r.query('SELECT count(*)::int AS n FROM big')).rows[0].n, 150000, 'the session goes on')
})
