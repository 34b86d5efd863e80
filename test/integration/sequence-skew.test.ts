// A pgraid killed mid-transaction can leave a sequence drawn on some backends
// only (the kill fell between its writes of a statement to them; the
// transaction rolled back, but nextval() is not transactional). Found by the
// torture harness (issue 18, --pgraid-process, seed 1): after the restart the
// next INSERT got another id on that backend, which was voted out. A starting
// pgraid now sets every backend's sequences to the highest state any holds.
// The skew is made here directly, as the half-sent statement would leave it.

import t from 'tap'
import pg from 'pg'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, assertIdentical, onEachBackend, freePort } from '../harness/stack.ts'
import { startPgraidProcess } from '../harness/pgraid-process.ts'

t.test('sequences left uneven by a killed pgraid are aligned before the next one writes', async (t) => {
  const stack = await stackFor(t)
  await stack.proxy.close() // a child process takes its place, so it can be killed
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-skew-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await freePort()
  const options = { dir, name: 'pgraid', port, backends: stack.cluster.backends, logLevel: 'warn' }
  let proc = await startPgraidProcess(options)
  t.teardown(() => proc.kill())
  const connect = async () => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'app', password: 'app-secret', database: 'postgres' })
    c.on('error', () => {})
    await c.connect()
    return c
  }
  const a = await connect()
  await a.query('CREATE TABLE sk (id bigserial PRIMARY KEY, note text)')
  await a.query('CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)')
  await a.query("INSERT INTO sk (note) VALUES ('one')")
  await a.query("INSERT INTO ident (note) VALUES ('one')")
  await a.end()
  await proc.kill()
  // What the half-sent transaction left: draws on pg1 only (two), on pg3 only (one).
  const d1 = await stack.cluster.backends[0]!.client()
  await d1.query("SELECT nextval('sk_id_seq'), nextval('sk_id_seq'), nextval(pg_get_serial_sequence('ident', 'id'))")
  await d1.end()
  const d3 = await stack.cluster.backends[2]!.client()
  await d3.query("SELECT nextval('sk_id_seq')")
  await d3.end()
  proc = await startPgraidProcess(options)
  const b = await connect()
  const r1 = await b.query<{ id: string }>("INSERT INTO sk (note) VALUES ('after the crash') RETURNING id")
  const r2 = await b.query<{ id: number }>("INSERT INTO ident (note) VALUES ('after the crash') RETURNING id")
  t.equal(r1.rows[0]!.id, '4', 'the next bigserial id is past every draw (1, then 2 and 3 drawn on pg1)')
  t.equal(r2.rows[0]!.id, 3, 'the next identity id is past every draw')
  await b.end()
  const states = await proc.ha().then(async () => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
    await c.connect()
    try {
      return (await c.query<{ name: string; state: string }>('SHOW BACKENDS')).rows.map((x) => `${x.name}:${x.state}`)
    } finally {
      await c.end()
    }
  })
  t.same(states, ['pg1:enabled', 'pg2:enabled', 'pg3:enabled'], 'no backend voted out')
  const last = await onEachBackend<{ v: string }>(stack, 'SELECT last_value::text AS v FROM sk_id_seq')
  t.same(
    last.map((x) => x[0]!.v),
    ['4', '4', '4'],
    'the sequence is the same everywhere',
  )
  await assertIdentical(t, stack)
})
