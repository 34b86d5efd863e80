// A real Apache ActiveMQ 5.17 broker storing its messages through pgraid (jdbcPersistenceAdapter,
// commons-dbcp2, pgjdbc) in front of three PostgreSQL backends; JMS clients produce and consume
// persistent messages and every message is accounted for. See test/activemq/harness.ts for how
// the broker is started. Needs: apt-get install -y default-jdk-headless activemq
// libactivemq-java libcommons-dbcp2-java libpostgresql-jdbc-java

import t, { type Test } from 'tap'
import { copyFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { stackFor, assertIdentical, onEachBackend, waitFor } from '../harness/stack.ts'
import { needJava, startBroker, produce, consume, account, ids, unexpectedProblems, type Broker, type Consumed, type Produced } from './harness.ts'

const COUNT = 200
const HALF = COUNT / 2
const SEED = 20240611

function showProduce(t: Test, p: Produced, broker: Broker): void {
  t.comment(`producer exit ${p.run.code}${p.run.timedOut ? ' (timed out)' : ''}, ${p.confirmed} confirmed, ${p.run.ms} ms${p.failure ? `: ${p.failure}` : ''}`)
  if (!p.complete) {
    t.comment(`producer stdout tail:\n${p.run.stdout.split('\n').slice(-20).join('\n')}\nstderr:\n${p.run.stderr}`)
    t.comment(`broker log tail:\n${broker.logTail(60)}`)
  }
}

function showConsume(t: Test, what: string, c: Consumed, broker: Broker): void {
  t.comment(`${what}: exit ${c.run.code}${c.run.timedOut ? ' (timed out)' : ''}, ${c.got.length} acknowledged, ${c.run.ms} ms${c.failure ? `: ${c.failure}` : ''}`)
  if (c.run.code !== 0 || c.summary === null) {
    t.comment(`${what} stdout tail:\n${c.run.stdout.split('\n').slice(-20).join('\n')}\nstderr:\n${c.run.stderr}`)
    t.comment(`broker log tail:\n${broker.logTail(60)}`)
  }
}

if (await needJava(t)) {
  t.test('plain run: 200 persistent messages through a JDBC store on pgraid, none lost, duplicated or corrupted', async (t) => {
    const t0 = Date.now()
    const stack = await stackFor(t, { settings: { fsync: 'off' } })
    const jdbcUrl = `jdbc:postgresql://127.0.0.1:${stack.port}/postgres`
    const broker = await startBroker({ jdbcUrl, user: stack.user, password: stack.password, locker: 'database', name: 'plain', t })
    t.comment(`broker ${broker.url} ready after ${Date.now() - t0} ms (pid ${broker.pid}, log ${broker.logFile})`)
    const queue = 'pgraid.plain'

    const p = await produce(broker.url, queue, COUNT, SEED)
    showProduce(t, p, broker)
    t.ok(p.complete && p.run.code === 0, `producer sent all ${COUNT} messages (confirmed ${p.confirmed})`)

    // Half in a transacted session (commit every 10), then the rest with CLIENT_ACKNOWLEDGE,
    // then one more client that must find the queue empty (catches redeliveries).
    const c1 = await consume(broker.url, queue, 'transacted', HALF, 10_000)
    showConsume(t, 'transacted consumer', c1, broker)
    t.equal(c1.run.code, 0, 'transacted consumer exits 0')
    t.equal(c1.got.length, HALF, `transacted consumer committed ${HALF} messages`)

    const c2 = await consume(broker.url, queue, 'client-ack', COUNT - HALF, 10_000)
    showConsume(t, 'client-ack consumer', c2, broker)
    t.equal(c2.run.code, 0, 'client-ack consumer exits 0')
    t.equal(c2.got.length, COUNT - HALF, `client-ack consumer acknowledged ${COUNT - HALF} messages`)

    const c3 = await consume(broker.url, queue, 'client-ack', COUNT, 2_000)
    showConsume(t, 'drain consumer', c3, broker)
    t.equal(c3.run.code, 0, 'drain consumer exits 0')
    t.same(
      c3.got.map((g) => g.id),
      [],
      'nothing left on the queue after both consumers',
    )

    const sent = Array.from({ length: p.confirmed }, (_, i) => i)
    const acc = account(sent, [...c1.got, ...c2.got, ...c3.got])
    t.same(acc.lost, [], `lost: ${acc.lost.length} ${ids(acc.lost)}`)
    t.same(acc.duplicates, [], `duplicated: ${acc.duplicates.length} ${ids(acc.duplicates)}`)
    t.same(acc.corrupt, [], `corrupt: ${acc.corrupt.length} ${ids(acc.corrupt)}`)
    t.same(acc.unexpected, [], `never sent: ${acc.unexpected.length} ${ids(acc.unexpected)}`)
    const redelivered = [...c1.got, ...c2.got].filter((g) => g.redelivered).map((g) => g.id)
    t.comment(`redelivered (JMSRedelivered set): ${redelivered.length} ${ids(redelivered)}`)

    // The JDBC store deletes a queue message when its ack is processed (in the ack's store
    // transaction); allow the last acks a bounded moment to land.
    const msgCounts = async () => (await onEachBackend<{ n: string }>(stack, 'SELECT count(*)::text AS n FROM activemq_msgs')).map((r) => Number(r[0].n))
    await waitFor('activemq_msgs empty on every backend', async () => (await msgCounts()).every((n) => n === 0), 15_000).catch((e: Error) => t.comment(e.message))
    t.same(await msgCounts(), [0, 0, 0], 'activemq_msgs is empty on every backend while the broker runs')

    await broker.stop()
    const exit = await broker.exited
    t.comment(`broker stopped (exit ${exit.code}${exit.signal ? `, signal ${exit.signal}` : ''}) ${Date.now() - t0} ms after start`)
    t.ok(
      broker.entries().some((e) => /Apache ActiveMQ \S+ \([^)]*\) is shutdown/.test(e.line)),
      'broker logged a clean shutdown',
    )

    const problems = unexpectedProblems(broker.entries())
    t.same(
      problems.map((e) => e.line),
      [],
      'broker log: no ERROR, and no WARN beyond the expected table-creation errors (42P07, 42701, 42704, 42P16, 23505)',
    )
    for (const e of problems) t.comment(`broker log:\n${e.text.split('\n').slice(0, 12).join('\n')}`)

    t.same(await msgCounts(), [0, 0, 0], 'activemq_msgs is empty on every backend after the broker stopped')
    await assertIdentical(t, stack)
    t.comment(`total ${Date.now() - t0} ms`)
    if (!t.passing()) {
      const kept = path.join(os.tmpdir(), `pgraid-amq-failed-${Date.now()}.log`)
      await copyFile(broker.logFile, kept).catch(() => {})
      t.comment(`broker log kept as ${kept}; tail:\n${broker.logTail(80)}`)
    }
  })
}
