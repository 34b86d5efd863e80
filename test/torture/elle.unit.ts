// The list-append checker (tools/torture/elle.ts) on small made-up histories: what each anomaly
// looks like, which cycles count at READ COMMITTED and at REPEATABLE READ, stale reads caught by
// realtime order, and a long serial history checked whole.
import t from 'tap'
import { checkListAppend } from '../../tools/torture/elle.ts'
import { Rng, type Op, type Outcome } from '../../tools/torture/history.ts'
import type { Mop } from '../../tools/torture/list-append.ts'

const ap = (k: number, v: number): Mop => ['append', k, v]
const rd = (k: number, list: number[]): Mop => ['r', k, list]

/** A list-append op; by default ok, READ COMMITTED, and serial (invoked at id*10, done at id*10+5). */
function txn(id: number, mops: Mop[], o: { iso?: 'rc' | 'rr'; at?: [number, number]; outcome?: Outcome } = {}): Op {
  const outcome = o.outcome ?? 'ok'
  const [invokedAt, completedAt] = o.at ?? [id * 10, id * 10 + 5]
  const asked = mops.map((m): Mop => (m[0] === 'r' ? ['r', m[1], null] : m))
  return {
    id,
    client: id,
    kind: 'txn' as Op['kind'],
    args: { isolation: o.iso ?? 'rc', mops: asked },
    invokedAt,
    completedAt,
    outcome,
    ...(outcome === 'ok' ? { result: mops } : {}),
    ...(outcome === 'failed' ? { error: '40001 could not serialize access' } : {}),
  }
}
const lists = (o: Record<number, number[]>) => new Map(Object.entries(o).map(([k, v]): [number, number[]] => [Number(k), v]))
const nothing = { lost: [], phantom: [], anomalies: [] }

t.test('a clean serial history: nothing', async (t) => {
  const ops = [txn(1, [ap(1, 10), rd(1, [10])]), txn(2, [rd(1, [10]), ap(1, 20), ap(2, 21)], { iso: 'rr' }), txn(3, [rd(1, [10, 20]), rd(2, [21]), rd(3, [])])]
  t.same(checkListAppend(ops, lists({ 1: [10, 20], 2: [21] })), nothing)
})

t.test('other kinds of op are ignored', async (t) => {
  const other: Op = { id: 9, client: 0, kind: 'transfer', args: [1, 2, 3], invokedAt: 0, completedAt: 1, outcome: 'ok' }
  t.same(checkListAppend([other, txn(1, [ap(1, 10)])], lists({ 1: [10] })), nothing)
})

t.test('a lost append', async (t) => {
  const r = checkListAppend([txn(1, [ap(1, 10)]), txn(2, [ap(1, 20)])], lists({ 1: [10] }))
  t.same(r, { lost: ['op 2 (rc) appended 20 to key 1, which is not in the final list'], phantom: [], anomalies: [] })
})

t.test('phantoms: a value nobody appended, a value twice, a value in the wrong key', async (t) => {
  const r = checkListAppend([txn(1, [ap(1, 10)]), txn(2, [ap(2, 20)])], lists({ 1: [10, 99, 10, 20], 2: [] }))
  t.same(r.phantom, ['key 1 holds 99, which no transaction appended', 'key 1 holds 10 twice (at 0 and 2); op 1 (rc) appended it once', 'key 1 holds 20, which op 2 (rc) appended to key 2'])
  t.same(r.lost, ['op 2 (rc) appended 20 to key 2, which is not in the final list'])
  t.same(r.anomalies, [])
})

t.test('an aborted write in the final list', async (t) => {
  const r = checkListAppend([txn(1, [ap(1, 10)]), txn(2, [ap(1, 20)], { outcome: 'failed' })], lists({ 1: [10, 20] }))
  t.same(r, { lost: [], phantom: [], anomalies: ['aborted write (G1a): op 2 (rc, failed) failed (40001 could not serialize access), yet its append of 20 to key 1 is in the final list'] })
})

t.test('an aborted read', async (t) => {
  const r = checkListAppend([txn(1, [ap(1, 10)], { outcome: 'failed' }), txn(2, [rd(1, [10])])], lists({}))
  t.same(r, { lost: [], phantom: [], anomalies: ['aborted read (G1a): op 2 (rc) read key 1 = [10]: 10 of op 1 (rc, failed)'] })
})

t.test('a read of a value never appended', async (t) => {
  const r = checkListAppend([txn(1, [rd(1, [7])])], lists({}))
  t.same(r, { lost: [], phantom: ['op 1 (rc) read key 1 = [7]: 7 never appended'], anomalies: [] })
})

t.test('an intermediate read', async (t) => {
  const r = checkListAppend([txn(1, [ap(1, 10), ap(1, 11)], { at: [0, 50] }), txn(2, [rd(1, [10])], { at: [10, 20] })], lists({ 1: [10, 11] }))
  t.same(r, { lost: [], phantom: [], anomalies: ['intermediate read (G1b): op 2 (rc) read key 1 = [10], ending at 10, which op 1 (rc) followed with another append to key 1'] })
})

t.test('a read that is not a prefix of the final list', async (t) => {
  const r = checkListAppend([txn(1, [ap(1, 10)]), txn(2, [ap(1, 20)]), txn(3, [rd(1, [20])])], lists({ 1: [10, 20] }))
  t.same(r, { lost: [], phantom: [], anomalies: ['incompatible order: op 3 (rc) read key 1 = [20], not a prefix of the final [10,20] (at index 0: 20, the final list 10)'] })
})

t.test('internal inconsistencies', async (t) => {
  t.same(checkListAppend([txn(1, [ap(1, 10), rd(1, [])])], lists({ 1: [10] })).anomalies, ['internal (read your writes): op 1 (rc) read key 1 = [], after appending [10] to it'], 'read your writes')
  t.same(
    checkListAppend([txn(1, [ap(1, 10), ap(1, 11), rd(1, [11, 10])])], lists({ 1: [10, 11] })).anomalies,
    ['internal (read your writes): op 1 (rc) read key 1 = [11,10], after appending [10,11] to it'],
    'own appends out of order',
  )
  // A value committed by another between two reads: fine at READ COMMITTED, not at REPEATABLE READ.
  const ops = (iso: 'rc' | 'rr') => [txn(1, [rd(1, []), ap(2, 21), rd(1, [10])], { iso, at: [0, 50] }), txn(2, [ap(1, 10)], { at: [10, 20] })]
  t.same(checkListAppend(ops('rc'), lists({ 1: [10], 2: [21] })), nothing, 'non-repeatable read at RC')
  t.same(checkListAppend(ops('rr'), lists({ 1: [10], 2: [21] })).anomalies, ['internal (repeatable read): op 1 (rr) read key 1 = [10]; it saw [] before, besides its own appends'], 'at RR')
  // Even at RC a later statement does not see less.
  const back = [txn(1, [rd(1, [10]), rd(1, [])], { at: [30, 50] }), txn(2, [ap(1, 10)], { at: [10, 20] })]
  t.same(checkListAppend(back, lists({ 1: [10] })).anomalies, ['internal (read committed): op 1 (rc) read key 1 = []; it saw [10] before, besides its own appends'], 'going back at RC')
  // Its own appends on top of what others committed in between: fine at RC.
  const rc = [txn(1, [rd(1, []), ap(1, 20), rd(1, [10, 20])], { at: [0, 50] }), txn(2, [ap(1, 10)], { at: [10, 20] })]
  t.same(checkListAppend(rc, lists({ 1: [10, 20] })), nothing, 'RC: others commit between its read and its append')
})

t.test('G0: two transactions writing two keys in opposite orders', async (t) => {
  const ops = [txn(1, [ap(1, 10), ap(2, 11)], { at: [0, 50] }), txn(2, [ap(1, 20), ap(2, 21)], { at: [0, 50] })]
  t.same(checkListAppend(ops, lists({ 1: [10, 20], 2: [21, 11] })), {
    lost: [],
    phantom: [],
    anomalies: ['G0: op 1 (rc) -[ww k1: 10 then 20]-> op 2 (rc) -[ww k2: 21 then 11]-> op 1'],
  })
})

t.test('G1c: each reads the other', async (t) => {
  const ops = [txn(1, [ap(1, 10), rd(2, [20])], { at: [0, 50] }), txn(2, [ap(2, 20), rd(1, [10])], { at: [0, 50] })]
  t.same(checkListAppend(ops, lists({ 1: [10], 2: [20] })).anomalies, ['G1c: op 1 (rc) -[wr k1: read …10]-> op 2 (rc) -[wr k2: read …20]-> op 1'])
})

t.test('G-single (read skew): an anomaly at RR; at RC only when the later read saw the older state', async (t) => {
  // op 2 appends to keys 1 and 2; op 1 reads key 1 before it, key 2 after it.
  const ops = (iso: 'rc' | 'rr', reads: Mop[]) => [txn(1, reads, { iso, at: [0, 50] }), txn(2, [ap(1, 20), ap(2, 21)], { at: [10, 20] })]
  const final = lists({ 1: [20], 2: [21] })
  t.same(checkListAppend(ops('rr', [rd(1, []), rd(2, [21])]), final).anomalies, ['G-single: op 1 (rr) -[rw k1: read [], missing 20]-> op 2 (rc) -[wr k2: read …21]-> op 1'], 'RR: reported')
  t.same(checkListAppend(ops('rc', [rd(1, []), rd(2, [21])]), final), nothing, 'RC: each statement its own snapshot: allowed')
  t.same(
    checkListAppend(ops('rc', [rd(2, [21]), rd(1, [])]), final).anomalies,
    ['G-single: op 1 (rc) -[rw k1: read [], missing 20]-> op 2 (rc) -[wr k2: read …21]-> op 1'],
    'RC, the other way round: the second read must see what the first saw committed',
  )
})

t.test('lost update: an anomaly at RR, allowed at RC', async (t) => {
  const ops = (iso: 'rc' | 'rr') => [txn(1, [rd(1, []), ap(1, 10)], { iso, at: [0, 50] }), txn(2, [rd(1, []), ap(1, 20)], { iso, at: [0, 50] })]
  t.same(checkListAppend(ops('rr'), lists({ 1: [10, 20] })).anomalies, ['G-single: op 1 (rr) -[ww k1: 10 then 20]-> op 2 (rr) -[rw k1: read [], missing 10]-> op 1'])
  t.same(checkListAppend(ops('rc'), lists({ 1: [10, 20] })), nothing)
})

t.test('G2 (write skew) at RR: allowed; the same cycle with the rw edges apart is not', async (t) => {
  const skew = [txn(1, [rd(1, []), rd(2, []), ap(1, 10)], { iso: 'rr', at: [0, 50] }), txn(2, [rd(1, []), rd(2, []), ap(2, 20)], { iso: 'rr', at: [0, 50] })]
  t.same(checkListAppend(skew, lists({ 1: [10], 2: [20] })), nothing, 'write skew')
  // op 1 -rw-> op 2 -wr-> op 3 -rw-> op 4 -wr-> op 1: no transaction has two rw in a row.
  const apart = [
    txn(1, [rd(1, []), rd(4, [40])], { iso: 'rr', at: [0, 50] }),
    txn(2, [ap(1, 20), ap(2, 21)], { iso: 'rr', at: [0, 50] }),
    txn(3, [rd(2, [21]), rd(3, [])], { iso: 'rr', at: [0, 50] }),
    txn(4, [ap(3, 30), ap(4, 40)], { iso: 'rr', at: [0, 50] }),
  ]
  t.same(checkListAppend(apart, lists({ 1: [20], 2: [21], 3: [30], 4: [40] })).anomalies, [
    'G2: op 1 (rr) -[rw k1: read [], missing 20]-> op 2 (rr) -[wr k2: read …21]-> op 3 (rr) -[rw k3: read [], missing 30]-> op 4 (rr) -[wr k4: read …40]-> op 1',
  ])
})

t.test('a stale read, caught only by realtime order', async (t) => {
  const ops = [txn(1, [ap(1, 10)], { at: [0, 10] }), txn(2, [rd(1, [])], { at: [20, 30] })]
  t.same(checkListAppend(ops, lists({ 1: [10] })).anomalies, ['G-single-realtime: op 1 (rc) -[rt: done at 10 ms, invoked at 20 ms]-> op 2 (rc) -[rw k1: read [], missing 10]-> op 1'])
  // Overlapping: op 2 may have run first.
  t.same(checkListAppend([txn(1, [ap(1, 10)], { at: [0, 20] }), txn(2, [rd(1, [])], { at: [20, 30] })], lists({ 1: [10] })), nothing, 'same millisecond: no order')
  // Through the transitive reduction: op 1 done, op 3 run, op 2 run; the rt edges are 1 -> 3 -> 2.
  const chain = [txn(1, [ap(1, 10)], { at: [0, 10] }), txn(3, [rd(2, [])], { at: [12, 18] }), txn(2, [rd(1, [])], { at: [20, 30] })]
  t.same(checkListAppend(chain, lists({ 1: [10] })).anomalies, [
    'G-single-realtime: op 1 (rc) -[rt: done at 10 ms, invoked at 12 ms]-> op 3 (rc) -[rt: done at 18 ms, invoked at 20 ms]-> op 2 (rc) -[rw k1: read [], missing 10]-> op 1',
  ])
})

t.test('indeterminate transactions: counted when their appends are there, no finding either way', async (t) => {
  const present = [txn(1, [ap(1, 10), rd(2, [])], { outcome: 'indeterminate' }), txn(2, [rd(1, [10])])]
  t.same(checkListAppend(present, lists({ 1: [10] })), nothing, 'present')
  const absent = [txn(1, [ap(1, 10)], { outcome: 'indeterminate' }), txn(2, [rd(1, [])])]
  t.same(checkListAppend(absent, lists({})), nothing, 'absent')
  // Present, and its write is ordered before a later ok transaction's: part of the graph (a G0 through it).
  const cyc = [txn(1, [ap(1, 10), ap(2, 11)], { outcome: 'indeterminate', at: [0, 50] }), txn(2, [ap(1, 20), ap(2, 21)], { at: [0, 50] })]
  t.same(checkListAppend(cyc, lists({ 1: [10, 20], 2: [21, 11] })).anomalies, ['G0: op 1 (rc, indeterminate) -[ww k1: 10 then 20]-> op 2 (rc) -[ww k2: 21 then 11]-> op 1'], 'in a cycle')
  const partial = [txn(1, [ap(1, 10), ap(2, 11)], { outcome: 'indeterminate' })]
  t.same(checkListAppend(partial, lists({ 1: [10] })).anomalies, ['partial commit: op 1 (rc, indeterminate) has 10 to key 1 in the final lists but not 11 to key 2'], 'partly there')
})

t.test('many cycles: 20 shown and a count', async (t) => {
  const ops: Op[] = []
  const final: Record<number, number[]> = {}
  for (let i = 0; i < 30; i++) {
    const a = 2 * i + 1
    const b = 2 * i + 2
    ops.push(txn(a, [ap(a, a * 10), ap(b, a * 10 + 1)], { at: [i * 100, i * 100 + 50] }), txn(b, [ap(a, b * 10), ap(b, b * 10 + 1)], { at: [i * 100, i * 100 + 50] }))
    final[a] = [a * 10, b * 10]
    final[b] = [b * 10 + 1, a * 10 + 1]
  }
  const r = checkListAppend(ops, lists(final))
  t.equal(r.anomalies.length, 21)
  t.equal(r.anomalies[20], '… and 10 more dependency cycles not shown (30 in all)')
})

t.test('50,000 transactions of a random serial history: nothing found', async (t) => {
  const r = new Rng(7)
  const state = new Map<number, number[]>()
  const slots = [1, 2, 3, 4, 5, 6, 7, 8]
  const appends = slots.map(() => 0)
  let nextKey = 9
  const ops: Op[] = []
  for (let id = 1; id <= 50_000; id++) {
    const x = r.next()
    const outcome: Outcome = x < 0.9 ? 'ok' : x < 0.95 ? 'failed' : 'indeterminate'
    const applies = outcome === 'ok' || (outcome === 'indeterminate' && r.next() < 0.5)
    const own = new Map<number, number[]>()
    const mops: Mop[] = []
    for (let i = 0, n = r.int(1, 4); i < n; i++) {
      const s = r.int(0, 7)
      const k = slots[s]!
      if (r.next() < 0.5) {
        own.set(k, [...(own.get(k) ?? state.get(k) ?? []), id * 10 + i])
        mops.push(ap(k, id * 10 + i))
        if (++appends[s]! >= 32) {
          slots[s] = nextKey++
          appends[s] = 0
        }
      } else mops.push(rd(k, own.get(k) ?? state.get(k) ?? []))
    }
    if (applies) for (const [k, v] of own) state.set(k, v)
    ops.push(txn(id, mops, { iso: r.next() < 0.5 ? 'rc' : 'rr', at: [id * 2, id * 2 + 1], outcome }))
  }
  const started = performance.now()
  t.same(checkListAppend(ops, state), nothing)
  t.comment(`${ops.length} transactions checked in ${Math.round(performance.now() - started)} ms`)
})

t.test('a random concurrent history, each transaction atomic at a moment between its invocation and completion: nothing found', async (t) => {
  const r = new Rng(11)
  const txns = Array.from({ length: 5000 }, (_, i) => {
    const invokedAt = r.int(0, 20_000)
    const at = invokedAt + r.int(0, 30)
    return { id: i + 1, invokedAt, at, completedAt: at + r.int(0, 30) }
  }).sort((a, b) => a.at - b.at)
  const state = new Map<number, number[]>()
  const ops: Op[] = []
  for (const x of txns) {
    const own = new Map<number, number[]>()
    const mops: Mop[] = []
    for (let i = 0, n = r.int(1, 4); i < n; i++) {
      const k = r.int(1, 6) + 6 * Math.floor(x.at / 2000)
      if (r.next() < 0.5) {
        own.set(k, [...(own.get(k) ?? state.get(k) ?? []), x.id * 10 + i])
        mops.push(ap(k, x.id * 10 + i))
      } else mops.push(rd(k, own.get(k) ?? state.get(k) ?? []))
    }
    for (const [k, v] of own) state.set(k, v)
    ops.push(txn(x.id, mops, { iso: r.next() < 0.5 ? 'rc' : 'rr', at: [x.invokedAt, x.completedAt] }))
  }
  t.same(checkListAppend(ops, state), nothing)
})
