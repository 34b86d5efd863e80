// An Elle-style checker of the list-append workload (list-append.ts), pure:
// the recorded transactions against the final lists read from a backend.
//
// The final list of a key is its version order (each append adds one value
// at the end; values are unique in a run), and a read names the version it
// saw. From that: lost appends, phantom values, aborted and intermediate
// reads, internal inconsistencies, reads that are no prefix of the final
// list, and dependency cycles between committed transactions: ww (T2
// appended right after T1 to a key), wr (T2 read a list ending with T1's
// value), rw (T1 read a list that T2's next append is missing), rt (T1's
// COMMIT was acknowledged before T2 was invoked: PostgreSQL's snapshots are
// taken after that, so T2 must see T1; a replicating proxy that reads from a
// backend behind breaks exactly this).
//
// Which cycles are anomalies, and for which isolation levels, is decided by
// time, not by counting edge kinds. Each edge says that a point in T1 came
// before a point in T2: ww, wr and rt leave T1 at its commit; rw leaves T1 at
// the read (its snapshot: T2 had not committed then). They enter T2 at: rt,
// its start; ww, the append (the row lock: T1 had committed); wr, the read's
// snapshot; rw, its commit. At REPEATABLE READ every statement works at the
// first statement's snapshot (and an append on a row changed since fails
// with 40001, so ww enters at the snapshot too); at READ COMMITTED each
// statement at its own. So each transaction is a chain of points: start,
// one per micro-op (RR: all at the first), commit; and a cycle is impossible
// under PostgreSQL exactly when it is a cycle in the graph of these points.
// That gives: G0 and G1c, never allowed; G-single (read skew, lost update),
// an anomaly at RR, and at RC only when the later read saw the older state;
// G2 (write skew: two rw in a row at one transaction) allowed at RR unless
// the rw edges are apart (Fekete et al.: SI cycles need two adjacent rw);
// '-realtime' when only an rt edge closes the cycle (a stale read).

import type { Op } from './history.ts'
import type { ListTxnArgs, Mop } from './list-append.ts'

export interface ListVerdict {
  lost: string[]
  phantom: string[]
  anomalies: string[]
}

const MAX_CYCLES = 20
// Edge kinds as bits, so that a search can take a subset of them.
const INTRA = 1
const WW = 2
const WR = 4
const RW = 8
const RT = 16
const ALL = INTRA | WW | WR | RW | RT
// The most telling cycle first (G0, G1c, G-single/G2, then those needing rt): one witness per component.
const LEVELS = [INTRA | WW, INTRA | WW | WR, INTRA | WW | WR | RW, INTRA | WW | RT, INTRA | WW | WR | RT, ALL]

interface Txn {
  op: Op
  rr: boolean
  mops: Mop[]
  /** Its first point (start) in the graph; -1: not a committed transaction. */
  node: number
}
interface Write {
  t: Txn
  key: number
  mop: number
  /** Its transaction's last append to the key. */
  last: boolean
}

const name = (t: Txn) => `op ${t.op.id} (${t.rr ? 'rr' : 'rc'}${t.op.outcome === 'ok' ? '' : `, ${t.op.outcome}`})`
const show = (xs: readonly number[]) => (xs.length <= 8 ? `[${xs.join(',')}]` : `[${xs.slice(0, 2).join(',')},…${xs.length - 5} more…,${xs.slice(-3).join(',')}]`)
const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i])

export function checkListAppend(ops: Op[], finalLists: Map<number, number[]>): ListVerdict {
  const lost: string[] = []
  const phantom: string[] = []
  const anomalies: string[] = []
  const txns: Txn[] = []
  for (const op of ops) {
    if ((op.kind as string) !== 'txn') continue
    const a = op.args as ListTxnArgs
    // Reads are known only for ok transactions (the result); the others only for what they asked.
    const mops = op.outcome === 'ok' && Array.isArray(op.result) ? (op.result as Mop[]) : a.mops
    txns.push({ op, rr: a.isolation === 'rr', mops, node: -1 })
  }

  // Who appended each value.
  const writer = new Map<number, Write>()
  for (const t of txns) {
    const lastOf = new Map<number, Write>()
    t.mops.forEach((m, i) => {
      if (m[0] !== 'append') return
      const prev = writer.get(m[2])
      if (prev) return void anomalies.push(`history: value ${m[2]} appended by ${name(prev.t)} and by ${name(t)}; counted as the first's`)
      const w: Write = { t, key: m[1], mop: i, last: true }
      const before = lastOf.get(m[1])
      if (before) before.last = false
      lastOf.set(m[1], w)
      writer.set(m[2], w)
    })
  }

  // Where each value stands in its key's final list (its first place). A value there twice is a
  // write applied twice (a statement replayed, say after a reconnect): the second copy is a write
  // nobody invoked, so a phantom, like a value never appended; the version order keeps the first.
  const at = new Map<number, number>()
  for (const k of [...finalLists.keys()].sort((a, b) => a - b))
    finalLists.get(k)!.forEach((v, i) => {
      const w = writer.get(v)
      if (!w) phantom.push(`key ${k} holds ${v}, which no transaction appended`)
      else if (w.key !== k) phantom.push(`key ${k} holds ${v}, which ${name(w.t)} appended to key ${w.key}`)
      else if (at.has(v)) phantom.push(`key ${k} holds ${v} twice (at ${at.get(v)} and ${i}); ${name(w.t)} appended it once`)
      else at.set(v, i)
    })

  // Appends against the final lists; the committed transactions (ok, or indeterminate with their appends there).
  let points = 0
  for (const t of txns) {
    const present: string[] = []
    const absent: string[] = []
    for (const m of t.mops) if (m[0] === 'append' && writer.get(m[2])!.t === t) (at.has(m[2]) ? present : absent).push(`${m[2]} to key ${m[1]}`)
    const o = t.op.outcome
    if (o === 'ok') for (const a of absent) lost.push(`${name(t)} appended ${a}, which is not in the final list`)
    if (o === 'failed') for (const p of present) anomalies.push(`aborted write (G1a): ${name(t)} failed (${t.op.error ?? 'no error'}), yet its append of ${p} is in the final list`)
    if (o === 'indeterminate' && present.length && absent.length) anomalies.push(`partial commit: ${name(t)} has ${present.join(', ')} in the final lists but not ${absent.join(', ')}`)
    if (o === 'ok' || (o === 'indeterminate' && present.length)) {
      t.node = points
      points += t.mops.length + 2
    }
  }
  const start = (t: Txn) => t.node
  const stmt = (t: Txn, i: number) => t.node + 1 + (t.rr ? 0 : i)
  const commit = (t: Txn) => t.node + 1 + t.mops.length

  // Edges: from, to, kind, and three numbers that say what made it (for the witnesses).
  const ef: number[] = []
  const et: number[] = []
  const ek: number[] = []
  const ex: number[][] = []
  const edge = (from: number, to: number, kind: number, ...x: number[]) => void (ef.push(from), et.push(to), ek.push(kind), ex.push(x))
  const txnAt = new Int32Array(points)
  txns.forEach((t, i) => {
    if (t.node < 0) return
    txnAt.fill(i, start(t), commit(t) + 1)
    for (let p = start(t); p < commit(t); p++) edge(p, p + 1, INTRA)
  })

  // ww: consecutive values of different committed transactions in a final list.
  for (const [k, list] of finalLists) {
    let prev: Write | null = null
    let pv = 0
    list.forEach((v, i) => {
      const w = writer.get(v)
      if (!w || at.get(v) !== i || w.key !== k || w.t.node < 0) return
      if (prev && prev.t !== w.t) edge(commit(prev.t), stmt(w.t, w.mop), WW, k, pv, v)
      prev = w
      pv = v
    })
  }

  // Reads of ok transactions: one finding per bad read (the first check it fails); good ones give wr and rw.
  for (const t of txns) {
    if (t.op.outcome !== 'ok') continue
    const own = new Map<number, number[]>()
    const seen = new Map<number, number[]>()
    t.mops.forEach((m, i) => {
      if (m[0] === 'append') return void (own.get(m[1]) ?? own.set(m[1], []).get(m[1])!).push(m[2])
      const [, k, r] = m
      if (!Array.isArray(r)) return
      const what = `${name(t)} read key ${k} = ${show(r)}`
      const unknown = r.filter((v) => !writer.has(v))
      if (unknown.length) return void phantom.push(`${what}: ${unknown.join(',')} never appended`)
      const aborted = r.filter((v) => writer.get(v)!.t.op.outcome === 'failed')
      if (aborted.length) return void anomalies.push(`aborted read (G1a): ${what}: ${aborted.map((v) => `${v} of ${name(writer.get(v)!.t)}`).join(', ')}`)
      // A transaction's appends to a key are contiguous (it holds the row lock from its first), so
      // any read after them ends with them; what comes before is what others had committed.
      const mine = own.get(k) ?? []
      if (r.length < mine.length || mine.some((v, j) => r[r.length - mine.length + j] !== v)) return void anomalies.push(`internal (read your writes): ${what}, after appending ${show(mine)} to it`)
      const base = r.slice(0, r.length - mine.length)
      const before = seen.get(k)
      if (before && t.rr && !same(before, base)) return void anomalies.push(`internal (repeatable read): ${what}; it saw ${show(before)} before, besides its own appends`)
      if (before && !t.rr && base.length < before.length) return void anomalies.push(`internal (read committed): ${what}; it saw ${show(before)} before, besides its own appends`)
      seen.set(k, base)
      const f = finalLists.get(k) ?? []
      const d = r.findIndex((v, j) => v !== f[j])
      if (d >= 0) return void anomalies.push(`incompatible order: ${what}, not a prefix of the final ${show(f)} (at index ${d}: ${r[d]}, the final list ${f[d] ?? 'ends'})`)
      if (base.length) {
        const x = base[base.length - 1]!
        const w = writer.get(x)!
        if (w.t !== t && !w.last) return void anomalies.push(`intermediate read (G1b): ${what}, ending at ${x}, which ${name(w.t)} followed with another append to key ${k}`)
        if (w.t !== t && w.t.node >= 0) edge(commit(w.t), stmt(t, i), WR, k, x)
      }
      // rw: to the writer of the next version (the first valid value after what it read).
      for (let j = base.length; j < f.length; j++) {
        const y = f[j]!
        const w = writer.get(y)
        if (!w || w.key !== k || at.get(y) !== j || w.t.node < 0) continue
        if (w.t !== t) edge(stmt(t, i), commit(w.t), RW, k, base.length ? base[base.length - 1]! : NaN, y)
        break
      }
    })
  }

  // rt between ok transactions, transitively reduced (Elle's way): walking invocations in time
  // order, a frontier holds the completed transactions not yet known to precede another completed
  // one; an invocation is linked from all of the frontier, and a completion replaces in the frontier
  // those linked to its own invocation (they reach later ones through it). Every "completed before
  // invoked" pair is then a path, with O(n x concurrency) edges. Only strictly earlier times count
  // (they are in whole milliseconds).
  const ok = txns.filter((t) => t.op.outcome === 'ok')
  const byInvoke = [...ok].sort((a, b) => a.op.invokedAt - b.op.invokedAt)
  const byComplete = [...ok].sort((a, b) => a.op.completedAt - b.op.completedAt)
  const frontier = new Set<Txn>()
  const preds = new Map<Txn, Txn[]>()
  let c = 0
  for (const t of byInvoke) {
    for (; c < byComplete.length && byComplete[c]!.op.completedAt < t.op.invokedAt; c++) {
      const u = byComplete[c]!
      for (const p of preds.get(u) ?? []) frontier.delete(p)
      preds.delete(u)
      frontier.add(u)
    }
    preds.set(t, [...frontier])
    for (const p of frontier) edge(commit(p), start(t), RT, p.op.completedAt, t.op.invokedAt)
  }

  // Adjacency (CSR).
  const adjStart = new Int32Array(points + 1)
  for (const f of ef) adjStart[f + 1]!++
  for (let v = 0; v < points; v++) adjStart[v + 1]! += adjStart[v]!
  const adj = new Int32Array(ef.length)
  const fillAt = adjStart.slice(0, points)
  ef.forEach((f, e) => (adj[fillAt[f]!++] = e))

  // Tarjan's SCC, iterative; only edges of the mask's kinds.
  function scc(mask: number): { comp: Int32Array; size: number[] } {
    const index = new Int32Array(points).fill(-1)
    const low = new Int32Array(points)
    const comp = new Int32Array(points).fill(-1)
    const stack = new Int32Array(points)
    const calls = new Int32Array(points)
    const pos = new Int32Array(points)
    const size: number[] = []
    let sp = 0
    let next = 0
    for (let s = 0; s < points; s++) {
      if (index[s] !== -1) continue
      let cp = 0
      const visit = (v: number) => {
        index[v] = low[v] = next++
        stack[sp++] = v
        calls[cp] = v
        pos[cp++] = adjStart[v]!
      }
      visit(s)
      while (cp > 0) {
        const v = calls[cp - 1]!
        if (pos[cp - 1]! < adjStart[v + 1]!) {
          const e = adj[pos[cp - 1]!++]!
          if (!(ek[e]! & mask)) continue
          const w = et[e]!
          if (index[w] === -1) visit(w)
          else if (comp[w] === -1) low[v] = Math.min(low[v]!, index[w]!)
          continue
        }
        cp--
        if (cp > 0) low[calls[cp - 1]!] = Math.min(low[calls[cp - 1]!]!, low[v]!)
        if (low[v] !== index[v]) continue
        let n = 0
        let w: number
        do {
          w = stack[--sp]!
          comp[w] = size.length
          n++
        } while (w !== v)
        size.push(n)
      }
    }
    return { comp, size }
  }

  // A shortest cycle through s within its component (BFS), as edge ids.
  const parent = new Int32Array(points).fill(-1)
  function cycleThrough(s: number, mask: number, comp: Int32Array): number[] {
    const queue = [s]
    let found = -1
    for (let q = 0; q < queue.length && found < 0; q++) {
      const v = queue[q]!
      for (let p = adjStart[v]!; p < adjStart[v + 1]!; p++) {
        const e = adj[p]!
        const w = et[e]!
        if (!(ek[e]! & mask) || comp[w] !== comp[s]) continue
        if (w === s) {
          found = e
          break
        }
        if (parent[w] === -1) {
          parent[w] = e
          queue.push(w)
        }
      }
    }
    const path = [found]
    for (let v = ef[found]!; v !== s; v = ef[parent[v]!]!) path.push(parent[v]!)
    for (const v of queue) parent[v] = -1
    return path.reverse()
  }

  const describe = (e: number): string => {
    const [a, b, d] = ex[e]!
    if (ek[e] === WW) return `ww k${a}: ${b} then ${d}`
    if (ek[e] === WR) return `wr k${a}: read …${b}`
    if (ek[e] === RW) return `rw k${a}: read ${Number.isNaN(b) ? '[]' : `…${b}`}, missing ${d}`
    return `rt: done at ${a} ms, invoked at ${b} ms`
  }
  function witness(path: number[]): string {
    const inter = path.filter((e) => ek[e] !== INTRA)
    const first = inter.reduce((m, e, i) => (txns[txnAt[ef[e]!]!]!.op.id < txns[txnAt[ef[inter[m]!]!]!]!.op.id ? i : m), 0)
    const edges = [...inter.slice(first), ...inter.slice(0, first)]
    const rw = edges.filter((e) => ek[e] === RW).length
    const kind = (rw === 0 ? (edges.some((e) => ek[e] === WR) ? 'G1c' : 'G0') : rw === 1 ? 'G-single' : 'G2') + (edges.some((e) => ek[e] === RT) ? '-realtime' : '')
    const t0 = txns[txnAt[ef[edges[0]!]!]!]!
    return `${kind}: ${name(t0)} ${edges.map((e) => `-[${describe(e)}]-> ${e === edges[edges.length - 1] ? `op ${t0.op.id}` : name(txns[txnAt[et[e]!]!]!)}`).join(' ')}`
  }

  // Every cycle among the points is an anomaly; one witness per component of the whole graph.
  const whole = scc(ALL)
  const cyclic = whole.size.filter((n) => n > 1).length
  if (cyclic) {
    const witnessed = new Uint8Array(whole.size.length)
    let shown = 0
    for (const mask of LEVELS) {
      if (shown >= MAX_CYCLES) break
      const sub = mask === ALL ? whole : scc(mask)
      for (let v = 0; v < points && shown < MAX_CYCLES; v++) {
        if (sub.size[sub.comp[v]!]! < 2 || witnessed[whole.comp[v]!]) continue
        witnessed[whole.comp[v]!] = 1
        anomalies.push(witness(cycleThrough(v, mask, sub.comp)))
        shown++
      }
    }
    if (cyclic > shown) anomalies.push(`… and ${cyclic - shown} more dependency cycles not shown (${cyclic} in all)`)
  }
  return { lost, phantom, anomalies }
}
