// In-process micro-benchmarks of two per-statement costs of pgraid, run inside the benchmark process
// (no servers needed): statement analysis (src/sql: analyze, analyzeForRouting, findTimeSites) and the
// proxy lock manager (src/scheduler/lock-manager.ts). `npx tsx bench/micro.ts` runs them alone and prints
// the results as JSON.
//
// Timing: process.hrtime.bigint() around each call; the figure reported is the median over the
// iterations, after a warm-up. Calls far below a microsecond (cache hits, lock round trips) are timed in
// batches of BATCH calls and divided, so the timer's own cost (reported as timerOverheadUs) barely shows.
// Every figure is collected in ROUNDS slices interleaved with all the others (see Sampler).
import { pathToFileURL } from 'node:url'
import v8 from 'node:v8'
import vm from 'node:vm'
import { analyze, clearCache, initParser } from '../src/sql/analyze.ts'
import { parseStatements } from '../src/sql/parser.ts'
import { analyzeForRouting, shapeOf, timeSitesByShape } from '../src/sql/shape-cache.ts'
import { findTimeSites, HINT } from '../src/sql/time-rewrite.ts'
import { locksFor } from '../src/scheduler/locks-for.ts'
import { emptyCatalog, type CatalogData } from '../src/scheduler/catalog.ts'
import { LockManager, type LockOwner, type LockRequest } from '../src/scheduler/lock-manager.ts'
import { median } from './results.ts'

const BATCH = 10
const ROUNDS = 5

export interface AnalysisRow {
  label: string
  /** The statement text as measured for the cached figures. */
  text: string
  /** How each "new text" call differs from the previous ones. */
  varied: string
  /** libpg-query's parse and statement split alone (parseStatements), every call a parse. */
  parseUs: number
  /** analyze() after clearCache(): parse + classification + freeze (same text each time). */
  analyzeUncachedUs: number
  /** analyze() of a text already in its LRU cache. */
  analyzeCachedUs: number
  /** analyzeForRouting() of a text never seen before (what a simple-protocol Query pays). */
  routingNewTextUs: number
  /** Which cache, if any, still answers routingNewTextUs. */
  routingNote: string
  /** findTimeSites() of a never-seen text (its own Map cache misses). */
  timeSitesNewTextUs: number
  /** findTimeSites() of a repeated text. */
  timeSitesCachedUs: number
  /** Whether findTimeSites parses this statement at all (texts without a clock/random hint return at once). */
  timeSitesParses: boolean
  /** analyzeForRouting + findTimeSites + locksFor on a never-seen text: the analysis a simple Query costs. */
  simpleQueryNewTextUs: number
}

export interface LockRow {
  label: string
  /** The lock requests, rendered "resource mode, ...". */
  requests: string
  requestCount: number
  uncontendedUs: number
  contendedUs: number
}

export interface MicroResults {
  cachedIterations: number
  uncachedIterations: number
  lockIterations: number
  timerOverheadUs: number
  analysis: AnalysisRow[]
  /** Cost of deriving a statement's lock set (planner locksFor) from its analysis, per statement, median. */
  locksForUs: { label: string; us: number }[]
  locks: LockRow[]
  /** Other owners holding locks during the contended measurements. */
  holders: number
  ms: number
}

interface StatementCase {
  label: string
  /** Text number `i`; i = 0 is the text measured for the cached figures. */
  text: (i: number) => string
  varied: string
}

// The pgbench TPC-B statements as pgbench -M simple sends them (literals inlined), an ActiveMQ JDBC store
// insert (extended protocol, parameters), and a reporting join.
const STATEMENTS: StatementCase[] = [
  {
    label: 'TPC-B UPDATE pgbench_accounts',
    text: (i) => `UPDATE pgbench_accounts SET abalance = abalance + 123 WHERE aid = ${4567 + i};`,
    varied: 'aid',
  },
  {
    label: 'TPC-B SELECT abalance',
    text: (i) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${4567 + i};`,
    varied: 'aid',
  },
  {
    label: 'TPC-B UPDATE pgbench_tellers',
    text: (i) => `UPDATE pgbench_tellers SET tbalance = tbalance + 123 WHERE tid = ${17 + i};`,
    varied: 'tid',
  },
  {
    label: 'TPC-B UPDATE pgbench_branches',
    text: (i) => `UPDATE pgbench_branches SET bbalance = bbalance + 123 WHERE bid = ${3 + i};`,
    varied: 'bid',
  },
  {
    label: 'TPC-B INSERT pgbench_history (CURRENT_TIMESTAMP)',
    text: (i) => `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (17, 3, ${4567 + i}, 123, CURRENT_TIMESTAMP);`,
    varied: 'aid',
  },
  {
    label: 'ActiveMQ INSERT ACTIVEMQ_MSGS ($1..$8)',
    text: (i) => 'INSERT INTO ACTIVEMQ_MSGS(ID, MSGID_PROD, MSGID_SEQ, CONTAINER, EXPIRATION, PRIORITY, MSG, XID) ' + `VALUES ($1, $2, $3, $4, $5, $6, $7, $8)${i === 0 ? '' : ` /* ${i} */`}`,
    varied: 'a trailing comment',
  },
  {
    label: 'SELECT, 3 joins',
    text: (i) =>
      'SELECT a.aid, a.abalance, t.tid, t.tbalance, b.bbalance, h.delta, h.mtime FROM pgbench_accounts a ' +
      'JOIN pgbench_branches b ON b.bid = a.bid JOIN pgbench_tellers t ON t.bid = b.bid ' +
      `LEFT JOIN pgbench_history h ON h.aid = a.aid AND h.tid = t.tid WHERE a.aid = ${4567 + i} AND t.tbalance > 0 ` +
      'ORDER BY h.mtime DESC LIMIT 10',
    varied: 'aid',
  },
]

// The pre-check findTimeSites makes before parsing (HINT in src/sql/time-rewrite.ts, not exported).

// A full collection before each timed block, so a major GC started by an earlier block's garbage (parse
// trees are allocation-heavy) does not run its incremental marking during the next one.
let fullGc: () => void = () => {}
try {
  v8.setFlagsFromString('--expose-gc')
  fullGc = vm.runInNewContext('gc') as () => void
} catch {
  // figures are noisier without it, nothing else changes
}

const ns = () => process.hrtime.bigint()
const us = (d: bigint) => Number(d) / 1000

/**
 * Collects timing samples for named measurements. Each measurement runs in ROUNDS slices, the slices of all
 * measurements interleaved (round 1 of every measurement, then round 2, ...), with a full GC before each
 * slice: on a shared machine a slow stretch (another process's burst, a major GC) then spreads over all
 * figures instead of inflating whichever block happened to run during it.
 */
class Sampler {
  private readonly tasks: { key: string; calls: number; run: (calls: number, warm: boolean) => Promise<number[]> | number[] }[] = []
  private readonly samples = new Map<string, number[]>()

  /** fn timed alone per call; setup (untimed) before each call. */
  each(key: string, calls: number, fn: () => void, setup?: () => void): void {
    this.tasks.push({
      key,
      calls,
      run: (n, warm) => {
        for (let i = 0; i < (warm ? 20 : 3); i++) {
          setup?.()
          fn()
        }
        const xs: number[] = []
        for (let i = 0; i < n; i++) {
          setup?.()
          const t = ns()
          fn()
          xs.push(us(ns() - t))
        }
        return xs
      },
    })
  }

  /** fn timed in batches of BATCH calls (for sub-microsecond calls); a sample is the mean of a batch. */
  batched(key: string, calls: number, fn: () => void): void {
    this.tasks.push({
      key,
      calls,
      run: (n, warm) => {
        for (let i = 0; i < (warm ? 500 : 20); i++) fn()
        const xs: number[] = []
        for (let b = 0; b < Math.ceil(n / BATCH); b++) {
          const t = ns()
          for (let k = 0; k < BATCH; k++) fn()
          xs.push(us(ns() - t) / BATCH)
        }
        return xs
      },
    })
  }

  /** As batched, for an async fn awaited call by call (as the session awaits the lock manager). */
  batchedAsync(key: string, calls: number, fn: () => Promise<void>): void {
    this.tasks.push({
      key,
      calls,
      run: async (n, warm) => {
        for (let i = 0; i < (warm ? 500 : 20); i++) await fn()
        const xs: number[] = []
        for (let b = 0; b < Math.ceil(n / BATCH); b++) {
          const t = ns()
          for (let k = 0; k < BATCH; k++) await fn()
          xs.push(us(ns() - t) / BATCH)
        }
        return xs
      },
    })
  }

  async run(rounds = ROUNDS): Promise<void> {
    for (let r = 0; r < rounds; r++) {
      for (const t of this.tasks) {
        fullGc()
        const xs = await t.run(Math.ceil(t.calls / rounds), r === 0)
        const all = this.samples.get(t.key) ?? []
        all.push(...xs)
        this.samples.set(t.key, all)
      }
    }
  }

  median(key: string): number {
    return median(this.samples.get(key) ?? [])
  }
}

/** A catalog with pgbench's primary keys, as pgraid reads it from a backend (no foreign keys, no triggers). */
function pgbenchCatalog(): CatalogData {
  const cat = emptyCatalog()
  cat.uniques.set('pgbench_accounts', [{ columns: ['aid'], types: ['int4'], primary: true }])
  cat.uniques.set('pgbench_tellers', [{ columns: ['tid'], types: ['int4'], primary: true }])
  cat.uniques.set('pgbench_branches', [{ columns: ['bid'], types: ['int4'], primary: true }])
  cat.uniques.set('activemq_msgs', [{ columns: ['id'], types: ['int8'], primary: true }])
  // The catalog load lists every function with no volatile overload; now() (CURRENT_TIMESTAMP) is stable.
  for (const f of ['now', 'abs', 'coalesce', 'lower', 'upper', 'length']) cat.nonVolatile.add(f)
  return cat
}

function lockSet(sql: string, cat: CatalogData): LockRequest[] {
  const a = analyze(sql)
  if (!a.ok) throw new Error(`micro: cannot analyse ${sql}: ${a.error}`)
  const out: LockRequest[] = []
  for (const s of a.statements) locksFor(s, cat, out)
  return out
}

function tpcbTransaction(aid: number, tid: number, bid: number): string[] {
  return [
    `UPDATE pgbench_accounts SET abalance = abalance + 123 WHERE aid = ${aid};`,
    `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`,
    `UPDATE pgbench_tellers SET tbalance = tbalance + 123 WHERE tid = ${tid};`,
    `UPDATE pgbench_branches SET bbalance = bbalance + 123 WHERE bid = ${bid};`,
    `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, ${bid}, ${aid}, 123, CURRENT_TIMESTAMP);`,
  ]
}

/** Registers the analysis measurements of every statement; returns how to read the rows afterwards. */
function analysisTasks(sm: Sampler, cachedN: number, uncachedN: number, cat: CatalogData): () => AnalysisRow[] {
  let fresh = 1_000_000 // text numbers never used before, shared by every "new text" measurement
  const finish: (() => AnalysisRow)[] = []
  STATEMENTS.forEach((st, idx) => {
    const text = st.text(0)
    const first = analyze(text)
    if (!first.ok) throw new Error(`micro: cannot analyse ${text}: ${first.error}`)
    const isRead = first.statements.every((s) => s.kind === 'read' && !s.lockingClause)
    const shapeEligible = shapeOf(text) !== null
    // Seed the shape cache the way a running pgraid would have after the first execution.
    analyzeForRouting(st.text(fresh++))
    const probe = st.text(fresh++)
    const served = analyzeForRouting(probe) !== analyze(probe)
    const shape = shapeOf(text)
    const timeParses = HINT.test(text) && (shape === null || findTimeSites(shape) === null)
    const k = (m: string) => `${idx}:${m}`
    sm.each(k('parse'), uncachedN, () => {
      parseStatements(text)
    })
    sm.each(
      k('analyzeUncached'),
      uncachedN,
      () => {
        analyze(text)
      },
      () => clearCache(),
    )
    sm.batched(k('analyzeCached'), cachedN, () => {
      analyze(text)
    })
    sm.each(k('routingNew'), uncachedN, () => {
      analyzeForRouting(st.text(fresh++))
    })
    sm.each(k('timeNew'), uncachedN, () => {
      timeSitesByShape(st.text(fresh++))
    })
    sm.batched(k('timeCached'), cachedN, () => {
      timeSitesByShape(text)
    })
    sm.each(k('query'), uncachedN, () => {
      const t = st.text(fresh++)
      const a = analyzeForRouting(t)
      timeSitesByShape(t)
      const out: LockRequest[] = []
      if (a.ok) for (const s of a.statements) locksFor(s, cat, out)
    })
    finish.push(() => ({
      label: st.label,
      text,
      varied: st.varied,
      parseUs: sm.median(k('parse')),
      analyzeUncachedUs: sm.median(k('analyzeUncached')),
      analyzeCachedUs: sm.median(k('analyzeCached')),
      routingNewTextUs: sm.median(k('routingNew')),
      routingNote: !shapeEligible
        ? 'not shape-eligible: text cache misses, parsed'
        : !served
          ? 'shape not cacheable: parsed'
          : isRead
            ? 'shape-cache hit'
            : 'shape-cache hit, its own literals as key values',
      timeSitesNewTextUs: sm.median(k('timeNew')),
      timeSitesCachedUs: sm.median(k('timeCached')),
      timeSitesParses: timeParses,
      simpleQueryNewTextUs: sm.median(k('query')),
    }))
  })
  return () => finish.map((f) => f())
}

/** Registers the lock manager measurements; returns how to read the rows afterwards. */
async function lockTasks(sm: Sampler, n: number, holders: number, cat: CatalogData): Promise<() => { rows: LockRow[]; locksForUs: { label: string; us: number }[] }> {
  const owner: LockOwner = { id: 1, label: 'session 1' }
  const tx = tpcbTransaction(4567, 17, 3)
  const stmtLocks = lockSet(tx[0]!, cat)
  const txLocks = tx.map((s) => lockSet(s, cat)).filter((l) => l.length > 0)
  const render = (rs: LockRequest[]) => rs.map((r) => `${r.resource} ${r.mode}`).join(', ')

  // What the session does: acquire per statement (awaited), release everything at COMMIT/ROLLBACK.
  const oneStatement = (lm: LockManager) => async () => {
    await lm.acquire(owner, stmtLocks)
    lm.releaseAll(owner)
  }
  const wholeTx = (lm: LockManager) => async () => {
    for (const l of txLocks) await lm.acquire(owner, l)
    lm.releaseAll(owner)
  }
  const withHolders = async (): Promise<LockManager> => {
    const lm = new LockManager()
    // Other sessions in the middle of their own TPC-B transactions, on other accounts, tellers and branches.
    for (let h = 0; h < holders; h++) {
      const other: LockOwner = { id: 100 + h, label: `session ${100 + h}` }
      for (const s of tpcbTransaction(10_000 + h, 40 + h, 100 + h)) {
        const l = lockSet(s, cat)
        if (l.length) await lm.acquire(other, l)
      }
    }
    // The measured owner must never wait (a wait nobody ends would just stop the event loop).
    for (const l of txLocks) if (!lm.tryAcquire(owner, l)) throw new Error(`micro: ${render(l)} would wait: ${JSON.stringify(lm.snapshot())}`)
    lm.releaseAll(owner)
    return lm
  }

  sm.batchedAsync('lock:stmt:un', n, oneStatement(new LockManager()))
  sm.batchedAsync('lock:stmt:co', n, oneStatement(await withHolders()))
  sm.batchedAsync('lock:tx:un', n, wholeTx(new LockManager()))
  sm.batchedAsync('lock:tx:co', n, wholeTx(await withHolders()))
  STATEMENTS.forEach((st, idx) => {
    const a = analyze(st.text(0))
    if (!a.ok) return
    sm.batched(`locksFor:${idx}`, n, () => {
      const out: LockRequest[] = []
      for (const s of a.statements) locksFor(s, cat, out)
    })
  })
  const all = txLocks.flat()
  return () => ({
    rows: [
      {
        label: 'one statement (UPDATE pgbench_accounts): acquire + releaseAll',
        requests: render(stmtLocks),
        requestCount: stmtLocks.length,
        uncontendedUs: sm.median('lock:stmt:un'),
        contendedUs: sm.median('lock:stmt:co'),
      },
      {
        label: `TPC-B transaction: ${txLocks.length} acquires (one per writing statement) + releaseAll`,
        requests: render(all),
        requestCount: all.length,
        uncontendedUs: sm.median('lock:tx:un'),
        contendedUs: sm.median('lock:tx:co'),
      },
    ],
    locksForUs: STATEMENTS.map((st, idx) => ({ label: st.label, us: sm.median(`locksFor:${idx}`) })),
  })
}

export async function runMicro(opts: { cached?: number; uncached?: number; locks?: number; holders?: number } = {}): Promise<MicroResults> {
  const t0 = Date.now()
  const cachedN = opts.cached ?? 2000
  const uncachedN = opts.uncached ?? 300
  const lockN = opts.locks ?? 2000
  const holders = opts.holders ?? 8
  await initParser()
  const cat = pgbenchCatalog()
  const sm = new Sampler()
  sm.each('timer', 2000, () => {})
  const analysis = analysisTasks(sm, cachedN, uncachedN, cat)
  const locks = await lockTasks(sm, lockN, holders, cat)
  await sm.run()
  clearCache()
  const { rows, locksForUs } = locks()
  return {
    cachedIterations: cachedN,
    uncachedIterations: uncachedN,
    lockIterations: lockN,
    timerOverheadUs: sm.median('timer'),
    analysis: analysis(),
    locksForUs,
    locks: rows,
    holders,
    ms: Date.now() - t0,
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runMicro().then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`)
    },
    (e: unknown) => {
      process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`)
      process.exit(1)
    },
  )
}
