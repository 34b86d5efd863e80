// Clients that vanish inside a transaction or a pipeline, while an autocommit
// write is done on some backends only, while their batch waits for the
// catalog, and a storm of aborted connections under a write load. After every
// case a new session must work, no backend session or proxy lock of the
// vanished client is left, and the `guard` table is unchanged; at the end
// every backend is identical. Raw-socket cases log in as 'trusted'.

import t from 'tap'
import net from 'node:net'
import { client, onEachBackend, assertIdentical } from '../harness/stack.ts'
import { bind, describe, execute, FLUSH, parse, query, Raw, startupPacket } from '../harness/raw-session.ts'
import { hostileStack, waitUntil, within } from '../harness/hostile.ts'

const { stack, backendSessions, waitBackendSessionsGone, healthy, end } = await hostileStack(t)

t.test('(f) client vanishes inside a transaction after a write', async (t) => {
  const app = 'bad-input-f'
  const r = await Raw.login(stack, app)
  const begin = await r.query('BEGIN')
  t.equal(begin.at(-1)?.body.toString(), 'T', 'BEGIN: in a transaction')
  const ins = await r.query("INSERT INTO guard VALUES (100, 'uncommitted')")
  t.notOk(
    ins.some((m) => m.type === 'E'),
    `INSERT accepted (${ins.map(describe).join(', ')})`,
  )
  t.equal(ins.at(-1)?.body.toString(), 'T', 'INSERT: still in the transaction')
  r.destroy()

  await waitBackendSessionsGone(app)
  t.pass('the backend sessions of the vanished client ended')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM guard WHERE id = 100')
  t.same(
    per.map((x) => x[0].n),
    [0, 0, 0],
    'the insert is rolled back on every backend',
  )

  // The proxy lock on guard (X, held to the end of the transaction) must be gone.
  const c = await client(stack)
  c.on('error', () => {})
  try {
    const upd = await within(c.query('UPDATE guard SET v = v WHERE id = 1'), 5000, "UPDATE guard in a new session hung: the vanished client's lock on guard was not released")
    t.equal(upd.rowCount, 1, 'a new session can UPDATE guard')
  } finally {
    await within(c.end(), 5000, 'closing').catch(() => (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy())
  }
  await healthy(t, 'client vanished in a transaction')
})

t.test('(g) client vanishes with an unsynced pipeline', async (t) => {
  const sleepLike = 'SELECT pg_sleep(5)%'
  t.test('no Sync, no Flush', async (t) => {
    const app = 'bad-input-g1'
    const r = await Raw.login(stack, app)
    r.write(Buffer.concat([parse('', "INSERT INTO guard VALUES (200, 'pipelined')"), bind('', ''), execute(''), parse('', 'SELECT pg_sleep(5) AS g1'), bind('', ''), execute('')]))
    await new Promise((res) => setTimeout(res, 200))
    r.destroy()
    await waitBackendSessionsGone(app, sleepLike)
    t.pass('no backend session of the client is left')
    const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM guard WHERE id = 200')
    t.same(
      per.map((x) => x[0].n),
      [0, 0, 0],
      'nothing committed on any backend',
    )
  })
  t.test('Flush, statement running when the client vanishes', async (t) => {
    const app = 'bad-input-g2'
    const r = await Raw.login(stack, app)
    r.write(Buffer.concat([parse('', "INSERT INTO guard VALUES (201, 'pipelined')"), bind('', ''), execute(''), parse('', 'SELECT pg_sleep(5) AS g2'), bind('', ''), execute(''), FLUSH]))
    let running: number[] = []
    await waitUntil(
      async () => {
        const rows = await onEachBackend<{ n: number }>(stack, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = '${app}' AND state = 'active' AND query LIKE '${sleepLike}'`)
        running = rows.map((x) => x[0].n)
        return running.some((n) => n > 0)
      },
      5000,
      'pg_sleep(5) runs on a backend',
    )
    t.pass(`pg_sleep running (per backend: ${running.join('/')})`)
    r.destroy()
    await waitBackendSessionsGone(app, sleepLike)
    t.pass('no backend session of the client (and no pg_sleep) is left')
    const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM guard WHERE id = 201')
    t.same(
      per.map((x) => x[0].n),
      [0, 0, 0],
      'nothing committed on any backend',
    )
  })
  await t.test('check', async (t) => healthy(t, 'unsynced pipeline'))
})

t.test('(m) 50 aborted connections during a write load', async (t) => {
  const app = 'bad-input-m'
  let stop = false
  const load = (async () => {
    const c = await client(stack)
    c.on('error', () => {})
    let inserted = 0
    const errs: string[] = []
    try {
      while (!stop) {
        const id = inserted + 1
        await c.query('INSERT INTO bad_load VALUES ($1, $2)', [id, `row ${id}`])
        inserted = id
        if (id % 5 === 0) await c.query("UPDATE bad_load SET v = v || '+' WHERE id = $1", [id - 1])
      }
    } catch (e) {
      errs.push(`${(e as { code?: string }).code ?? ''} ${(e as Error).message}`)
    } finally {
      await within(c.end(), 5000, 'closing the load client').catch(() => {})
    }
    return { inserted, errs }
  })()

  const kinds = [
    'destroyed right after connect',
    'destroyed mid startup packet',
    'destroyed right after the startup packet (backends connecting)',
    'destroyed when ready',
    'destroyed inside BEGIN; INSERT',
    'destroyed while a big result streams',
    'destroyed inside a transaction waiting for the load table',
  ]
  // No aborted client runs an autocommit write here: one that vanishes mid-write is case (n).
  const startup = startupPacket({ user: 'trusted', database: 'postgres', application_name: app })
  for (let i = 0; i < 50; i++) {
    const kind = i % kinds.length
    const r = await Raw.open(stack, `${app} #${i}: ${kinds[kind]}`)
    switch (kind) {
      case 0:
        break
      case 1:
        r.write(startup.subarray(0, 11))
        break
      case 2:
        r.write(startup)
        break
      default:
        r.write(startup)
        await r.until('Z', 15_000)
        if (kind === 4) r.write(query(`BEGIN; INSERT INTO bad_chaos VALUES (${i}, 'in tx')`))
        if (kind === 5) r.write(query("SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"))
        if (kind === 6) r.write(query("BEGIN; UPDATE bad_load SET v = v || '!' WHERE id = 1"))
    }
    if (i % 2) await new Promise((res) => setImmediate(res))
    r.destroy()
  }
  stop = true
  const res = await within(load, 20_000, 'the load client did not finish')
  t.same(res.errs, [], 'the load client saw no error')
  t.ok(res.inserted > 0, `the load client kept writing (${res.inserted} inserts)`)
  await waitBackendSessionsGone(app)
  t.pass('every backend session of the aborted clients ended')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM bad_load')
  t.same(
    per.map((x) => x[0].n),
    [res.inserted, res.inserted, res.inserted],
    'every backend has every load insert',
  )
  await assertIdentical(t, stack)
  await healthy(t, 'aborted connections')
})

t.test('(n) client vanishes while an autocommit write is done on some backends only', async (t) => {
  // One backend is slower than the others (here: a row lock taken on it directly). When the
  // client vanishes, the write has committed on two backends; the third must end the same.
  const app = 'bad-input-n'
  const c = await client(stack)
  await c.query('CREATE TABLE bad_split (id int PRIMARY KEY, v int NOT NULL)')
  await c.query('INSERT INTO bad_split VALUES (1, 0)')
  const slow = await stack.cluster.backends[2].client()
  t.teardown(() => slow.end().catch(() => {}))
  await slow.query('BEGIN')
  await slow.query('SELECT v FROM bad_split WHERE id = 1 FOR UPDATE')

  const r = await Raw.login(stack, app)
  r.write(query('UPDATE bad_split SET v = v + 1 WHERE id = 1'))
  let state: string[] = []
  await waitUntil(
    async () => {
      const v = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM bad_split WHERE id = 1')
      const w = await onEachBackend<{ n: number }>(stack, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = '${app}' AND wait_event_type = 'Lock'`)
      state = v.map((x, i) => `v=${x[0]?.v} waiting=${w[i][0].n}`)
      return v[0][0]?.v === 1 && v[1][0]?.v === 1 && w[2][0].n === 1
    },
    5000,
    `the UPDATE committed on backends 0 and 1 and waits on backend 2 (${state.join(' / ')})`,
  )
  const told = r.available().map(describe).join(', ') || 'nothing'
  t.pass(`the write committed on two backends and is blocked on the third (the client was sent: ${told})`)
  r.destroy()
  // Give pgraid its chance to stop the slow backend's statement (it must not), then unblock it.
  await waitUntil(async () => (await backendSessions(app))[2] === 0, 2000, '').catch(() => {})
  await slow.query('COMMIT')
  await waitBackendSessionsGone(app)
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM bad_split WHERE id = 1')
  const vs = per.map((x) => x[0].v)
  t.same(vs, [1, 1, 1], `every backend ends with the write (v per backend: ${vs.join('/')})`)
  await c.query('DROP TABLE bad_split')
  await c.end()
  await assertIdentical(t, stack)
  await healthy(t, 'client vanished mid autocommit write')
})

t.test('(o) client vanishes while its batch waits for the catalog', async (t) => {
  // After DDL every session's next batch waits for the catalog reload; a client that vanishes
  // during that wait must not leave proxy locks behind. The reload is held up here by a lock
  // on pg_trigger (which it reads) on backend 0.
  const app = 'bad-input-o'
  const c = await client(stack)
  c.on('error', () => {})
  await c.query('CREATE TABLE bad_leak (id int PRIMARY KEY, v int NOT NULL)')
  await c.query('INSERT INTO bad_leak VALUES (1, 0)') // reloads the catalog
  const r = await Raw.login(stack, app)
  const blocker = await stack.cluster.backends[0].client()
  t.teardown(() => blocker.end().catch(() => {}))
  await blocker.query('BEGIN')
  await blocker.query('LOCK TABLE pg_catalog.pg_trigger IN ACCESS EXCLUSIVE MODE')
  try {
    await within(c.query("COMMENT ON TABLE bad_leak IS 'invalidates the catalog'"), 5000, 'COMMENT (DDL) through pgraid')
    r.write(query('UPDATE bad_leak SET v = v + 1 WHERE id = 1'))
    await waitUntil(
      async () => (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgraid catalog' AND wait_event_type = 'Lock'"))[0][0].n > 0,
      5000,
      'the catalog reload waits on backend 0',
    )
    r.destroy()
    await waitBackendSessionsGone(app)
    t.pass('the client vanished while its batch waited for the catalog')
  } finally {
    await blocker.query('ROLLBACK')
  }
  await waitUntil(
    async () => (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgraid catalog'"))[0][0].n === 0,
    5000,
    'the catalog reload finished',
  )
  const c2 = await client(stack)
  c2.on('error', () => {})
  const upd = await within(c2.query('UPDATE bad_leak SET v = v + 1 WHERE id = 1'), 5000, 'UPDATE bad_leak').then(
    () => true,
    () => false,
  )
  if (!upd) (c2 as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy()
  else await c2.end()
  await c.end()
  // Every client of this case is gone now: nothing may stay held in pgraid's lock manager.
  let held: string[] = []
  const lockSnapshot = () =>
    stack.proxy.context.locks
      .snapshot()
      .filter((x) => x.holders.length)
      .map((x) => `${x.resource} held by ${x.holders.join(', ')}${x.waiters.length ? `, waited for by ${x.waiters.join(', ')}` : ''}`)
  await waitUntil(async () => (held = lockSnapshot()).length === 0, 2000, '').catch(() => {})
  t.ok(upd, 'a new session can UPDATE bad_leak within 5 s')
  t.same(held, [], `no proxy lock is left held once every client is gone (${held.join('; ') || 'none'})`)
  await healthy(t, 'client vanished while waiting for the catalog')
})

t.test('end: guard on every backend, backends identical', (t) => end(t))
