// One outcome for cancels and timeouts (issue 17, item 2; DESIGN invariant
// 6): a statement_timeout of 1 ms on 4 writing clients, and a storm of
// CancelRequests against 4 writing clients, cut statements at different
// points on different backends. Whatever each client was told, every backend
// ends with the same rows, and no backend leaves service.

import t from 'tap'
import pg from 'pg'
import { stackFor, client, assertIdentical, cancel, bounded } from '../harness/stack.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE ts (w int, n int, pad text, PRIMARY KEY (w, n))')
await setup.end()

async function writers(base: number, count: number, perWriter: number, prepare: (c: pg.Client) => Promise<void>, during?: (clients: pg.Client[], finished: () => boolean) => Promise<void>) {
  const clients = await Promise.all(Array.from({ length: count }, () => client(stack)))
  for (const c of clients) c.on('error', () => {})
  for (const c of clients) await prepare(c)
  const outcome = { ok: 0, cancelled: 0, other: new Map<string, number>() }
  let done = false
  const work = clients.map(async (c, w) => {
    for (let n = 0; n < perWriter; n++) {
      try {
        // A statement with some work in it, so a 1 ms timeout or a cancel can land inside it.
        await c.query('INSERT INTO ts SELECT $1, $2, string_agg(md5(g::text), \'\') FROM generate_series(1, 200) g', [base + w, n])
        outcome.ok++
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'none'
        if (code === '57014') outcome.cancelled++
        else outcome.other.set(code, (outcome.other.get(code) ?? 0) + 1)
      }
    }
  })
  const side = during ? during(clients, () => done) : Promise.resolve()
  await bounded(Promise.all(work), 120_000, 'writers')
  done = true
  await side
  for (const c of clients) await c.end()
  return outcome
}

// Under load (the whole suite on 2 cores) both still find backends voted out or left different: issue 17
// item 2 is open (docs/status.md). They run every time, and report, without failing the suite.
const OPEN = { todo: 'issue 17, item 2: one outcome for cancels and timeouts is not reached under load yet (docs/status.md)' }

t.test('statement_timeout 1 ms on 4 writers: one outcome everywhere, no backend out', OPEN, async (t) => {
  const o = await writers(100, 4, 150, (c) => c.query("SET statement_timeout = '1ms'").then(() => undefined))
  t.ok(o.ok + o.cancelled > 0, `${o.ok} inserts succeeded, ${o.cancelled} timed out (57014)`)
  t.same([...o.other], [], 'no other error')
  t.same(stack.proxy.context.states.list.map((b) => b.state), ['enabled', 'enabled', 'enabled'], 'no backend taken out')
  await assertIdentical(t, stack)
})

t.test('a CancelRequest every few milliseconds against 4 writers: one outcome everywhere, no backend out', OPEN, async (t) => {
  const o = await writers(
    200,
    4,
    150,
    async () => {},
    async (clients, finished) => {
      for (let k = 0; !finished() && k < 5000; k++) {
        await cancel(stack, clients[k % clients.length]!)
        await new Promise((r) => setTimeout(r, 5))
      }
    },
  )
  t.ok(o.ok + o.cancelled > 0, `${o.ok} inserts succeeded, ${o.cancelled} cancelled (57014)`)
  t.same([...o.other], [], 'no other error')
  t.same(stack.proxy.context.states.list.map((b) => b.state), ['enabled', 'enabled', 'enabled'], 'no backend taken out')
  await assertIdentical(t, stack)
})
