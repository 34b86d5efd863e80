// Client faults as torture operations (tools/torture/vanish.ts): each way a
// client can vanish, forced a few times against a real pgraid (scram auth);
// after each, pgraid serves a new client at once, no backend was taken out,
// nothing of the vanished session lingers on any backend (no open
// transaction, no lock on its rows), and at the end checkVanish finds
// nothing and the backends are identical. checkVanish itself is checked on a
// made-up history first.

import t from 'tap'
import type { Test } from 'tap'
import { stackFor, client, assertIdentical, onEachBackend, waitFor, bounded, type Stack } from '../harness/stack.ts'
import { History, Rng, type Op } from '../../tools/torture/history.ts'
import { VANISH_SETUP, VANISH_HOWS, vanishOp, checkVanish, type VanishArgs, type VanishHow } from '../../tools/torture/vanish.ts'

const RUNS = 4

t.test('checkVanish: partial indeterminate, committed failed, lost ok, phantom', async (t) => {
  const op = (id: number, how: VanishHow, rows: number, outcome: Op['outcome']): Op => ({
    id,
    client: 0,
    kind: 'vanish' as Op['kind'],
    args: { how, rows } satisfies VanishArgs,
    invokedAt: 0,
    completedAt: 1,
    outcome,
  })
  const ops = [
    op(1, 'after-commit', 3, 'indeterminate'),
    op(2, 'mid-tx', 2, 'failed'),
    op(3, 'pipeline', 2, 'ok'),
    op(4, 'after-commit', 2, 'indeterminate'),
    op(5, 'pipeline', 1, 'ok'),
    op(6, 'mid-copy', 2, 'failed'),
  ]
  const rows = [
    { op: 1, n: 1 }, // half of op 1
    { op: 2, n: 2 }, // a failed op's row
    { op: 3, n: 1 }, // op 3 lost n=2
    { op: 4, n: 1 },
    { op: 4, n: 2 }, // op 4 all: fine
    { op: 5, n: 1 },
    { op: 5, n: 7 }, // beyond what op 5 wrote
    { op: 9, n: 1 }, // never ran
  ]
  const r = checkVanish(ops, rows)
  t.equal(r.anomalies.length, 2, r.anomalies.join('\n'))
  t.match(r.anomalies.join('\n'), /op 1 .*1 of its 3 rows present \(half a transaction/)
  t.match(r.anomalies.join('\n'), /op 2 .*1 of its 2 rows present, yet nothing can have committed/)
  t.equal(r.lost.length, 1)
  t.match(r.lost[0], /op 3 .*1 of its 2 rows missing/)
  t.equal(r.phantom.length, 2)
  t.match(r.phantom.join('\n'), /op 9, which never ran/)
  t.match(r.phantom.join('\n'), /op 5 wrote 1 rows, yet rows n=7/)
  t.same(
    checkVanish(ops.slice(3, 5), [
      { op: 4, n: 1 },
      { op: 4, n: 2 },
      { op: 5, n: 1 },
    ]),
    { lost: [], phantom: [], anomalies: [] },
    'a consistent history: nothing',
  )
  t.same(checkVanish([op(4, 'after-commit', 2, 'indeterminate')], []), { lost: [], phantom: [], anomalies: [] }, 'an indeterminate op with none of its rows: fine')
})

/** Nothing of a vanished session is left: pgraid serves, every backend in service, no open transaction or lock anywhere. */
async function afterwards(t: Test, stack: Stack, op: Op): Promise<void> {
  const { rows: k } = op.args as VanishArgs
  t.same(
    stack.proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'no backend taken out',
  )
  const c = await client(stack)
  try {
    // Writing the same keys waits on any row lock the vanished session still holds.
    await bounded(c.query('BEGIN'), 10_000, 'BEGIN of a new client')
    await bounded(c.query(`INSERT INTO vanish SELECT ${op.id}, g FROM generate_series(1, ${k}) g ON CONFLICT DO NOTHING`), 15_000, `a new client writing op ${op.id}'s keys`)
    await c.query('ROLLBACK')
  } finally {
    await c.end()
  }
  await waitFor('pgraid to have closed every client session', () => stack.proxy.context.sessions().length === 0, 10_000)
  await waitFor(
    'no open transaction or lock on vanish on any backend',
    async () => {
      const busy = await onEachBackend<{ n: number }>(
        stack,
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle')::int" +
          " + (SELECT count(*) FROM pg_locks l JOIN pg_class r ON r.oid = l.relation WHERE r.relname LIKE 'vanish%' AND l.pid <> pg_backend_pid())::int AS n",
      )
      return busy.every((rows) => rows[0]!.n === 0)
    },
    10_000,
  )
}

t.test('clients that vanish, against pgraid', async (t) => {
  const stack = await stackFor(t, { auth: 'scram-sha-256' })
  const setup = await client(stack)
  for (const sql of VANISH_SETUP) await setup.query(sql)
  await setup.end()
  const ep = { host: stack.host, port: stack.port, user: stack.user, password: stack.password }
  const history = new History()
  const r = new Rng(7)

  for (const how of VANISH_HOWS) {
    await t.test(how, async (t) => {
      for (let i = 0; i < RUNS; i++) {
        await bounded(vanishOp(ep, 0, history, r, how), 60_000, `vanish ${how}`)
        const op = history.ops.at(-1)!
        t.comment(`op ${op.id} ${how} rows=${(op.args as VanishArgs).rows}: ${op.outcome}${op.error ? ` (${op.error})` : ''}`)
        // Each step before the vanish was answered as expected (no error, no hang).
        if (how === 'mid-tx' || how === 'mid-copy' || how === 'mid-pipeline') t.match(op, { outcome: 'failed', error: /^vanished/ }, 'vanished as planned')
        else if (how === 'after-commit' || how === 'pipeline-sync-vanish') t.match(op, { outcome: 'indeterminate', error: /^vanished/ }, 'vanished as planned')
        else if (how === 'pipeline') t.equal(op.outcome, 'ok', 'the control pipeline is acknowledged')
        else t.ok(op.outcome === 'ok' || (op.outcome === 'failed' && /^57014/.test(op.error ?? '')), 'statement_timeout: ok, or failed with 57014')
        await afterwards(t, stack, op)
      }
    })
  }

  const per = await onEachBackend<{ op: number; n: number }>(stack, 'SELECT op, n FROM vanish ORDER BY op, n')
  t.same(per[1], per[0], 'pg2 holds the rows pg1 holds')
  t.same(per[2], per[0], 'pg3 holds the rows pg1 holds')
  t.same(checkVanish(history.ops, per[0]!), { lost: [], phantom: [], anomalies: [] }, 'checkVanish finds nothing')
  // The rows of an operation that ran through pgraid reached the backends.
  const committed = (how: VanishHow) => history.ops.filter((o) => (o.args as VanishArgs).how === how && per[0]!.some((x) => x.op === o.id)).length
  t.equal(committed('pipeline'), RUNS, 'every control pipeline committed on the backends')
  t.ok(committed('after-commit') > 0, `COMMIT sent, then gone: committed ${committed('after-commit')} of ${RUNS}`)
  t.comment(`pipeline then Sync, then gone: committed ${committed('pipeline-sync-vanish')} of ${RUNS}`)
  t.comment(`statement_timeout: ${history.ops.filter((o) => (o.args as VanishArgs).how === 'statement-timeout' && o.outcome === 'ok').length} of ${RUNS} ok`)
  await assertIdentical(t, stack)
})
