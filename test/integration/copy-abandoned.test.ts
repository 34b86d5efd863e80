// COPY FROM STDIN left unfinished (issue 17, item 5): a client that vanishes
// or sends Terminate in the middle of a COPY gets its COPY failed on every
// backend and its locks released at once (before, the COPY stayed open on
// every backend and later INSERTs and DROP TABLE on that table hung); a
// message that is not part of the COPY is answered as PostgreSQL answers it
// (compared with a backend reached directly), never queued forever.

import t from 'tap'
import type { Test } from 'tap'
import { stackFor, client, assertIdentical, bounded } from '../harness/stack.ts'
import { RawClient, fe, errorCode } from '../harness/raw-client.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE ca (id int PRIMARY KEY, v text)')
await setup.end()

const copyData = (line: string) => fe.raw('d', Buffer.from(line + '\n'))

async function startCopy(port: number, user: string): Promise<RawClient> {
  const r = await RawClient.login(port, user)
  r.send(fe.query('COPY ca FROM STDIN'))
  await r.until('G', 10_000)
  r.send(copyData('1\tone'), copyData('2\ttwo'))
  return r
}

async function afterwards(t: Test, what: string): Promise<void> {
  const c = await client(stack)
  await bounded(c.query("INSERT INTO ca VALUES (100, 'after')"), 20_000, `an INSERT after ${what}`)
  const r = await c.query('SELECT count(*)::int AS n FROM ca')
  t.equal(r.rows[0].n, 1, `the abandoned COPY left no row (${what})`)
  await c.query('DELETE FROM ca')
  await c.end()
}

t.test('a client that vanishes mid-COPY: its COPY fails everywhere, the table is free at once', async (t) => {
  const r = await startCopy(stack.port, 'trusted')
  r.socket.destroy()
  await afterwards(t, 'a vanished client')
  await assertIdentical(t, stack)
})

t.test('Terminate mid-COPY: the same', async (t) => {
  const r = await startCopy(stack.port, 'trusted')
  r.send(fe.terminate())
  await afterwards(t, 'Terminate')
  await assertIdentical(t, stack)
})

t.test('a Query in the middle of COPY FROM STDIN is answered as PostgreSQL answers it', async (t) => {
  const answer = async (r: RawClient) => {
    r.send(fe.query('SELECT 1'))
    const got = (await r.untilReadyOrClosed(10_000)).map((m) => (m.type === 'E' ? `E:${errorCode(m)}` : m.type)).filter((x) => x !== 'N' && x !== 'S')
    return r.closed ? [...got, 'closed'] : got
  }
  const direct = await answer(await startCopy(stack.cluster.backends[2]!.port, 'postgres'))
  const proxied = await answer(await startCopy(stack.port, 'trusted'))
  t.ok(
    direct.some((x) => x.startsWith('E:08P01')),
    `PostgreSQL answers 08P01 (${direct.join(' ')})`,
  )
  t.same(proxied, direct, 'pgraid answers the same messages')
  await afterwards(t, 'a Query during COPY')
  t.same(
    stack.proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'no backend taken out',
  )
  await assertIdentical(t, stack)
})
