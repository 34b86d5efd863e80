// A shared-store master/slave pair on pgraid (issue 7, item 3): a second
// broker on the same store waits on ActiveMQ's database lock (its
// SELECT ... FOR UPDATE blocks for as long as the master lives, without
// holding up anyone else); when the master is killed -9 it takes over and
// serves the rest of the messages: nothing lost or corrupted.

import t from 'tap'
import { stackFor, assertIdentical, onEachBackend, waitFor } from '../harness/stack.ts'
import { needJava, startBroker, produce, consume, account, ids } from './harness.ts'

if (await needJava(t)) {
  t.test('slave waits on the lock, takes over when the master is killed', async (t) => {
    const stack = await stackFor(t, { settings: { fsync: 'off' } })
    const jdbcUrl = `jdbc:postgresql://127.0.0.1:${stack.port}/postgres`
    const queue = 'pgraid.failover'
    const COUNT = 160
    const master = await startBroker({ jdbcUrl, user: stack.user, password: stack.password, locker: 'database', name: 'master', t })
    const p = await produce(master.url, queue, COUNT, 11)
    t.ok(p.complete, `all ${COUNT} sent to the master`)
    const slave = await startBroker({ jdbcUrl, user: stack.user, password: stack.password, locker: 'database', name: 'slave', lockAcquireSleepInterval: 1000, waitReady: false, t })
    // The slave's locker is blocked on the lock row (in pgraid's lock manager or on the backends).
    const waiting = async () =>
      stack.proxy.context.locks.snapshot().some((l) => l.waiters.length > 0) ||
      (await onEachBackend<{ n: string }>(stack, "SELECT count(*)::text AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).some((r) => Number(r[0]!.n) > 0)
    await waitFor('the slave to wait on the lock', waiting, 60_000)
    const c1 = await consume(master.url, queue, 'client-ack', COUNT / 2, 10_000)
    t.equal(c1.got.length, COUNT / 2, 'half consumed from the master while the slave waits')
    await master.kill()
    await slave.ready(90_000)
    t.pass('the slave took over after the master was killed')
    const c2 = await consume(slave.url, queue, 'transacted', COUNT, 5_000)
    t.equal(c2.run.code, 0, 'consumer on the slave exits 0')
    const acc = account(
      Array.from({ length: p.confirmed }, (_, i) => i),
      [...c1.got, ...c2.got],
    )
    t.same(acc.lost, [], `lost: ${acc.lost.length} ${ids(acc.lost)}`)
    t.same(acc.corrupt, [], `corrupt: ${acc.corrupt.length}`)
    t.comment(`duplicates after the master was killed (allowed by JMS): ${acc.duplicates.length} ${ids(acc.duplicates)}`)
    await slave.stop()
    await assertIdentical(t, stack)
  })
}
