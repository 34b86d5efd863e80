// pgraid killed -9 and restarted while an ActiveMQ broker runs on it (issue
// 7, item 3): the broker's pool reconnects to the restarted pgraid (same
// address); messages sent before, during recovery and after are all
// accounted for, and the backends are identical. pgraid runs as a child
// process here (bin/pgraid.js) so it can really be killed.

import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, assertIdentical, bounded, freePort } from '../harness/stack.ts'
import { needJava, startBroker, produce, consume, account, ids, type Got } from './harness.ts'

if (await needJava(t)) {
  t.test('pgraid killed -9 and restarted under a running broker', async (t) => {
    const stack = await stackFor(t, { settings: { fsync: 'off' } })
    await stack.proxy.close() // a child process takes its place
    const dir = await mkdtemp(join(tmpdir(), 'pgraid-amq-kill-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const port = await freePort()
    const file = join(dir, 'pgraid.json')
    await writeFile(file, JSON.stringify({ listen: { host: '127.0.0.1', port }, backends: stack.config.backends, users: [{ name: stack.user, password: stack.password }], log: { level: 'error' } }))
    let child: ChildProcess | null = null
    const start = async () => {
      const c = spawn(process.execPath, ['bin/pgraid.js', 'start', '-c', file], { stdio: ['ignore', 'pipe', 'inherit'] })
      child = c
      await bounded(new Promise<void>((r) => c.stdout!.on('data', (b: Buffer) => /listening/.test(b.toString()) && r())), 30_000, 'pgraid to listen')
    }
    t.teardown(() => void child?.kill('SIGKILL'))
    await start()
    const jdbcUrl = `jdbc:postgresql://127.0.0.1:${port}/postgres`
    const queue = 'pgraid.proxykill'
    const broker = await startBroker({ jdbcUrl, user: stack.user, password: stack.password, locker: 'lease', name: 'survivor', t })
    const p1 = await produce(broker.url, queue, 60, 21)
    t.ok(p1.complete, 'first 60 sent')
    const c1 = await consume(broker.url, queue, 'client-ack', 30, 5_000)
    t.equal(c1.got.length, 30, '30 consumed before the kill')
    const dead = child!
    dead.kill('SIGKILL')
    await new Promise((r) => dead.once('exit', r))
    await start()
    // The broker's pooled connections were cut: its next store operations fail until the pool reconnects.
    // A producer that fails is run again for what it did not get confirmed.
    const sent: number[] = Array.from({ length: p1.confirmed }, (_, i) => i)
    let next = 60
    for (let attempt = 0; next < 120 && attempt < 20; attempt++) {
      const p = await produce(broker.url, queue, 120 - next, 22 + attempt, { firstId: next })
      for (let i = 0; i < p.confirmed; i++) sent.push(next + i)
      next += p.confirmed
      if (!p.complete) t.comment(`producer run after the restart stopped after ${p.confirmed}: ${p.failure}`)
    }
    t.equal(next, 120, 'the broker takes messages again after pgraid came back')
    const got: Got[] = [...c1.got]
    for (let attempt = 0; attempt < 20; attempt++) {
      const c = await consume(broker.url, queue, 'transacted', 120, 3_000)
      got.push(...c.got)
      if (c.run.code === 0 && c.got.length === 0) break
    }
    const acc = account(sent, got)
    t.same(acc.lost, [], `lost: ${acc.lost.length} ${ids(acc.lost)}`)
    t.same(acc.corrupt, [], `corrupt: ${acc.corrupt.length}`)
    t.comment(`duplicates (allowed after a failure): ${acc.duplicates.length} ${ids(acc.duplicates)}`)
    await broker.stop()
    await assertIdentical(t, stack)
  })
}
