// One outcome for cancels and timeouts (issue 17, item 2; DESIGN invariant
// 6): a statement_timeout of 1 ms on 4 writing clients, and a storm of
// CancelRequests against 4 writing clients, cut statements at different
// points on different backends. Every backend ends with the same rows, no
// backend leaves service, and each client was told the truth: a row is on
// every backend exactly when its INSERT was acknowledged. Three backends
// complete a commit where it was cut; two (an even number: a tie has no
// majority) run the write inside pgraid's transaction and roll it back
// everywhere when the backends' answers differ.

import t from 'tap'
import pg from 'pg'
import type { Test } from 'tap'
import { stackFor, client, assertIdentical, cancel, bounded, onEachBackend, type Stack } from '../harness/stack.ts'

interface Told {
  ok: number
  cancelled: number
  other: Map<string, number>
  /** `writer/n` -> what the client was told: 'ok' or a SQLSTATE. */
  each: Map<string, string>
}

async function writers(
  stack: Stack,
  base: number,
  count: number,
  perWriter: number,
  prepare: (c: pg.Client) => Promise<void>,
  during?: (clients: pg.Client[], finished: () => boolean) => Promise<void>,
): Promise<Told> {
  const clients = await Promise.all(Array.from({ length: count }, () => client(stack)))
  for (const c of clients) c.on('error', () => {})
  for (const c of clients) await prepare(c)
  const told: Told = { ok: 0, cancelled: 0, other: new Map(), each: new Map() }
  let done = false
  const work = clients.map(async (c, w) => {
    for (let n = 0; n < perWriter; n++) {
      const key = `${base + w}/${n}`
      try {
        // A statement with some work in it, so a 1 ms timeout or a cancel can land inside it.
        await c.query("INSERT INTO ts SELECT $1, $2, string_agg(md5(g::text), '') FROM generate_series(1, 200) g", [base + w, n])
        told.ok++
        told.each.set(key, 'ok')
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'none'
        told.each.set(key, code)
        if (code === '57014') told.cancelled++
        else told.other.set(code, (told.other.get(code) ?? 0) + 1)
      }
    }
  })
  const side = during ? during(clients, () => done) : Promise.resolve()
  await bounded(Promise.all(work), 180_000, 'writers')
  done = true
  await side
  for (const c of clients) await c.end()
  return told
}

/** Each row is on every backend exactly when the client was told its INSERT succeeded. */
async function assertTold(t: Test, stack: Stack, told: Told): Promise<void> {
  const per = await onEachBackend<{ k: string }>(stack, "SELECT w || '/' || n AS k FROM ts")
  const sets = per.map((rows) => new Set(rows.map((r) => r.k)))
  const wrong: string[] = []
  for (const [key, answer] of told.each) {
    const on = sets.map((s) => (s.has(key) ? 1 : 0)).join('')
    const expected = (answer === 'ok' ? '1' : '0').repeat(sets.length)
    if (on !== expected) wrong.push(`${key}: told ${answer}, present ${on}`)
  }
  t.same(wrong, [], `every row of ${told.each.size} is where its client was told it is`)
}

t.test('three backends: cut statements are completed where they were cut', async (t) => {
  const stack = await stackFor(t)
  const setup = await client(stack)
  await setup.query('CREATE TABLE ts (w int, n int, pad text, PRIMARY KEY (w, n))')
  await setup.end()

  t.test('statement_timeout 1 ms on 4 writers: one outcome everywhere, no backend out', async (t) => {
    const o = await writers(stack, 100, 4, 150, (c) => c.query("SET statement_timeout = '1ms'").then(() => undefined))
    t.ok(o.ok + o.cancelled > 0, `${o.ok} inserts succeeded, ${o.cancelled} timed out (57014)`)
    t.same([...o.other], [], 'no other error')
    t.same(
      stack.proxy.context.states.list.map((b) => b.state),
      ['enabled', 'enabled', 'enabled'],
      'no backend taken out',
    )
    await assertTold(t, stack, o)
    await assertIdentical(t, stack)
  })

  t.test('a CancelRequest every few milliseconds against 4 writers: one outcome everywhere, no backend out', async (t) => {
    const o = await writers(
      stack,
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
    t.same(
      stack.proxy.context.states.list.map((b) => b.state),
      ['enabled', 'enabled', 'enabled'],
      'no backend taken out',
    )
    await assertTold(t, stack, o)
    await assertIdentical(t, stack)
  })
})

t.test('two backends: a cut write is rolled back everywhere and the client gets 57014', async (t) => {
  const stack = await stackFor(t, { backends: 2, auth: 'scram-sha-256' })
  const setup = await client(stack)
  await setup.query('CREATE TABLE ts (w int, n int, pad text, PRIMARY KEY (w, n))')
  await setup.end()
  const o = await writers(
    stack,
    300,
    4,
    100,
    (c) => c.query("SET statement_timeout = '1ms'").then(() => undefined),
    async (clients, finished) => {
      for (let k = 0; !finished() && k < 5000; k++) {
        await cancel(stack, clients[k % clients.length]!)
        await new Promise((r) => setTimeout(r, 7))
      }
    },
  )
  t.ok(o.ok + o.cancelled > 0, `${o.ok} inserts succeeded, ${o.cancelled} cut (57014)`)
  t.same([...o.other], [], 'no other error')
  t.same(
    stack.proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled'],
    'no backend taken out',
  )
  await assertTold(t, stack, o)
  await assertIdentical(t, stack)
})
