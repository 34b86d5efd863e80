// Stress run, not part of `npm test` (about a minute per run; loop it to hunt rare races):
//   for i in $(seq 10); do CYCLES=5 npx tap --timeout 900 test/stress/activemq-resync.ts || break; done
// A running ActiveMQ broker on pgraid, two producers and two consumers; pg2 is killed (immediate stop),
// restarted and RESYNCed CYCLES times while they run; then every message is accounted for and VERIFY must
// find the backends identical. When a RESYNC fails on a replayed statement (row counts differ), it prints
// the log records around the one named and, for its first parameter, every record touching that
// ActiveMQ message id, with the transaction ids (xmin) they have on pg1 and pg2: that is how the replay
// order bug of 2026-12-02 was found (docs/testing.md).
import t from 'tap'
import pg from 'pg'
import { stackFor, onEachBackend, waitFor, bounded } from '../harness/stack.ts'
import { needJava, startBroker, produce, consume, account, ids, type Got } from '../activemq/harness.ts'

const USERS = [
  { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
  { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
]
const CYCLES = Number(process.env.CYCLES ?? 4)
const PER = 150

if (await needJava(t)) {
  t.test('stress', async (t) => {
    const stack = await stackFor(t, { settings: { fsync: 'off' }, config: { users: USERS } })
    const jdbcUrl = `jdbc:postgresql://127.0.0.1:${stack.port}/postgres`
    const queue = 'pgraid.stress'
    const broker = await startBroker({ jdbcUrl, user: stack.user, password: stack.password, locker: 'database', name: 'steady', t })
    const admin = new pg.Client({ host: '127.0.0.1', port: stack.port, user: 'ops', password: 'ops-secret', database: 'pgraid' })
    await admin.connect()
    t.teardown(() => admin.end())
    const ctx = stack.proxy.context
    const forensics = async (lsn: number) => {
      const logs = await onEachBackend<{ lsn: string; xmin: string; at: string; record: string }>(stack, 'SELECT lsn::text, xmin::text, at::text, record::text FROM pgraid.log ORDER BY lsn')
      const rec = logs[0]!.find((x) => x.lsn === String(lsn))!
      const dec = (r: string) =>
        (JSON.parse(r) as { stmts: { q: string; p?: (string | null)[]; n?: string }[] }).stmts
          .map((s) => `${s.q.slice(0, 6)}:${s.p?.[0] && s.p[0].length === 12 ? Buffer.from(s.p[0], 'base64').readBigInt64BE(0) : s.p?.[0]}:${s.n ?? '-'}`)
          .join(' ')
      for (const l of logs[0]!)
        if (Number(l.lsn) >= lsn - 40 && Number(l.lsn) <= lsn + 5)
          t.comment(`  ${l.lsn} at ${l.at} xmin ${l.xmin} on pg2 ${logs[1]!.find((x) => x.lsn === l.lsn)?.xmin ?? 'MISSING'}: ${dec(l.record)}`)
      const j = JSON.parse(rec.record) as { stmts: { q: string; p?: (string | null)[] }[] }
      const keys = new Set(j.stmts.flatMap((s) => (s.p ?? []).slice(0, 1)).filter((v): v is string => v !== null))
      for (const k of keys) {
        const id = k.length === 12 ? Buffer.from(k, 'base64').readBigInt64BE(0).toString() : k
        t.comment(`key ${k} = id ${id}`)
        for (const r of logs[0]!) {
          const jj = JSON.parse(r.record) as { stmts: { q: string; p?: (string | null)[]; n?: string }[] }
          const hit = jj.stmts.filter((s) => /activemq_msgs/i.test(s.q) && (s.p ?? []).some((v) => v === k))
          if (!hit.length) continue
          const on = logs.map((l) => l.find((x) => x.lsn === r.lsn)?.xmin ?? 'MISSING')
          t.comment(`  lsn ${r.lsn} at ${r.at} xmin pg1/pg2/pg3 ${on.join('/')}: ${hit.map((s) => `${s.q.slice(0, 50)} n=${s.n}`).join(' | ')} (${jj.stmts.length} stmts)`)
        }
        const rows = await onEachBackend<{ id: string; xmin: string }>(stack, `SELECT id::text, xmin::text FROM activemq_msgs WHERE id = ${id}`)
        t.comment(`  row on pg1/pg2/pg3: ${rows.map((r) => (r[0] ? `xmin ${r[0].xmin}` : 'none')).join(' / ')}`)
      }
      const maxes = logs.map((l) => l[l.length - 1]?.lsn)
      t.comment(`max lsn pg1/pg2/pg3: ${maxes.join('/')}`)
    }
    const got: Got[] = []
    let producing = true
    const total = PER * 2 * CYCLES
    const consumers = [0, 1].map((w) =>
      (async () => {
        while (producing || got.length < total) {
          const c = await consume(broker.url, queue, (got.length + w) % 2 ? 'transacted' : 'client-ack', 100, 3_000)
          got.push(...c.got)
          if (!producing && c.got.length === 0) break
        }
      })(),
    )
    const sent: number[] = []
    const producers = [0, 1].map((w) =>
      (async () => {
        for (let k = 0; k < CYCLES; k++) {
          const first = (k * 2 + w) * PER
          const p = await produce(broker.url, queue, PER, 100 + k * 2 + w, { firstId: first })
          for (let i = 0; i < p.confirmed; i++) sent.push(first + i)
        }
      })(),
    )
    void Promise.all(producers).then(() => (producing = false))
    for (let c = 0; c < CYCLES && producing; c++) {
      const base = got.length
      await waitFor('messages flowing', () => got.length >= base + 30 || !producing, 60_000)
      await stack.cluster.backends[1]!.kill()
      await waitFor('pg2 taken out', () => ctx.states.list[1]!.state !== 'enabled', 30_000)
      const b2 = got.length
      await waitFor('more messages while pg2 is down', () => got.length >= b2 + 30 || !producing, 60_000)
      await stack.cluster.backends[1]!.start()
      const r = await bounded(admin.query('RESYNC pg2'), 120_000, 'RESYNC pg2').catch(async (e: Error) => {
        const m = /record (\d+)/.exec(e.message)
        t.comment(`RESYNC failed: ${e.message}`)
        if (m) await forensics(Number(m[1]))
        throw e
      })
      t.comment(`cycle ${c}: ${r.rows[0].state} got=${got.length}`)
    }
    await bounded(Promise.all(producers), 300_000, 'producers')
    await bounded(Promise.all(consumers), 300_000, 'consumers')
    const acc = account(sent, got)
    t.same(acc.lost, [], `lost: ${acc.lost.length} ${ids(acc.lost)}`)
    await broker.stop()
    const v = await admin.query<{ table: string; backend: string; problem: string }>('VERIFY')
    t.same(v.rows, [], 'VERIFY')
    if (v.rows.length) {
      const rows = await onEachBackend<{ id: string; xmin: string }>(stack, 'SELECT id::text, xmin::text FROM activemq_msgs ORDER BY id')
      t.comment(JSON.stringify(rows.map((r) => r.map((x) => `${x.id}@${x.xmin}`))))
      const extra = rows[1]!.filter((r) => !rows[0]!.some((x) => x.id === r.id))
      const logs = await onEachBackend<{ lsn: string; xmin: string; at: string; record: string }>(stack, 'SELECT lsn::text, xmin::text, at::text, record::text FROM pgraid.log ORDER BY lsn')
      for (const e of extra) {
        const id = BigInt(e.id)
        const b8 = Buffer.alloc(8)
        b8.writeBigInt64BE(id)
        const want = [b8.toString('base64'), e.id]
        for (const rec of logs[0]!) {
          const j = JSON.parse(rec.record) as { stmts: { q: string; p?: (string | null)[] }[] }
          const hit = j.stmts.filter((s) => /activemq_msgs/i.test(s.q) && (s.p ?? []).some((v) => v !== null && want.includes(v)))
          if (!hit.length) continue
          const on2 = logs[1]!.find((x) => x.lsn === rec.lsn)
          t.comment(`id ${e.id} (pg2 xmin ${e.xmin}): lsn ${rec.lsn} at ${rec.at} pg1 xmin ${rec.xmin} pg2 xmin ${on2?.xmin ?? 'MISSING'}: ${hit.map((s) => s.q.slice(0, 60)).join(' | ')}`)
        }
      }
    }
  })
}
