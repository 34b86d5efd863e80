// A client gone while its write still runs, then one backend's connection of
// that session lost (found by the torture harness, seed 13: a pipeline sent
// with its Sync by a client that vanished, while a backend shut down): the
// session lets a write that may commit finish everywhere after its client is
// gone, but it ignored the loss of a backend connection once closed, so the
// batch waited for ever and its pgraid locks were never freed: every other
// client writing the same rows hung. Now the batch is decided by the
// backends left and the commit completed where it was lost; the backends end
// identical.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, bounded, waitFor } from '../harness/stack.ts'

t.test('a client vanishes while its UPDATE waits on one backend, then that backend ends the session: nothing hangs, the backends end identical', async (t) => {
  const stack = await stackFor(t)
  const setup = await client(stack)
  await setup.query('CREATE TABLE vl (id int PRIMARY KEY, v int)')
  await setup.query('INSERT INTO vl VALUES (1, 0)')
  await setup.end()

  // A lock pgraid does not know of, on pg3 only: the UPDATE runs at once on pg1 and pg2 and waits there.
  const direct = await stack.cluster.backends[2]!.client()
  t.teardown(() => direct.end().catch(() => {}))
  await direct.query('BEGIN')
  await direct.query('SELECT * FROM vl WHERE id = 1 FOR UPDATE')

  // Watched from outside the lock's transaction (pg_stat_activity is fixed for a transaction's duration).
  const watch = await stack.cluster.backends[2]!.client()
  t.teardown(() => watch.end().catch(() => {}))
  const y = await client(stack)
  y.on('error', () => {})
  void y.query('UPDATE vl SET v = 2 WHERE id = 1').catch(() => {})
  const waiting = async () =>
    (await watch.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE vl SET v = 2%' AND pid <> pg_backend_pid()")).rows[0]?.pid
  await waitFor('the UPDATE waiting on pg3', async () => (await waiting()) !== undefined, 20_000)
  const pid = (await waiting())!
  // The client vanishes (no Terminate) while its write is still running on pg3.
  ;(y as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
  await waitFor('the session closed', () => stack.proxy.context.sessions().length === 0, 20_000)
  // That session's connection on pg3 ends (as when pg3 shuts down, or an operator terminates it).
  await watch.query('SELECT pg_terminate_backend($1)', [pid])
  await direct.query('ROLLBACK')

  const z = await client(stack)
  await bounded(z.query('UPDATE vl SET v = 3 WHERE id = 1'), 20_000, "another client's UPDATE of the same row (it hung for ever)")
  t.same((await z.query('SELECT v FROM vl WHERE id = 1')).rows, [{ v: 3 }], 'the later UPDATE won')
  await z.end()
  await assertIdentical(t, stack)
})

t.test("a client vanishes while its tie-safe write waits for pgraid's own COMMIT: the COMMIT lands on every backend or none (it landed on one: seed 30)", async (t) => {
  const stack = await stackFor(t, {
    config: {
      users: [
        { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
        { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
      ],
    },
  })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
  await admin.connect()
  t.teardown(() => admin.end())
  const setup = await client(stack)
  await setup.query('CREATE TABLE vt (id int PRIMARY KEY)')
  await setup.end()
  // Two backends in service: an autocommit write runs inside pgraid's BEGIN, pgraid's COMMIT follows its answers.
  await admin.query('DISABLE pg1')
  for (let n = 1; n <= 5; n++) {
    // Commits held: the write's answers are in, pgraid's own COMMIT waits (finishDeferred).
    const release = stack.proxy.context.holdCommits()
    const y = await client(stack)
    y.on('error', () => {})
    void y.query('INSERT INTO vt VALUES ($1)', [n]).catch(() => {})
    await waitFor(
      'the write waiting for its COMMIT',
      async () => {
        const rows = await onBackendsInService(stack, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE '%INSERT INTO vt%'`)
        return rows.every((r) => r === 1)
      },
      20_000,
    )
    ;(y as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy()
    // The client is gone before pgraid's COMMIT goes out.
    await new Promise((r) => setTimeout(r, 100))
    release()
    await waitFor(`the session gone (${n})`, () => stack.proxy.context.sessions().every((s) => s.user !== 'app'), 20_000)
  }
  const z = await client(stack)
  await bounded(z.query('INSERT INTO vt VALUES (100)'), 20_000, 'a later write')
  await z.end()
  await admin.query('RESYNC pg1')
  await assertIdentical(t, stack)
})

async function onBackendsInService(stack: Awaited<ReturnType<typeof stackFor>>, sql: string): Promise<number[]> {
  const out: number[] = []
  for (const [i, b] of stack.cluster.backends.entries()) {
    if (stack.proxy.context.states.list[i]!.state !== 'enabled') continue
    const c = await b.client()
    try {
      out.push((await c.query<{ n: number }>(sql)).rows[0]!.n)
    } finally {
      await c.end()
    }
  }
  return out
}
