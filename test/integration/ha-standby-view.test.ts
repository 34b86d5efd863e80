// A standby's view of the backends (docs/ha.md): it sees none of the writer's commits and can neither
// resync nor clone, so it never gives a backend a verdict of its own (behind, new, inconsistent). A
// backend restarted while the writer commits is out on both; once the writer has resynced it, the
// standby brings it back too. Before, the standby kept it "behind" for good: the torture harness's
// two-instance run ended with every backend out on the promoted standby, none of them coming back.

import t from 'tap'
import pg from 'pg'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stackFor, assertIdentical, bounded, freePort, waitFor } from '../harness/stack.ts'
import { startPgraidProcess, type PgraidProcess } from '../harness/pgraid-process.ts'

t.test('a backend the writer resynced comes back on the standby too', async (t) => {
  const stack = await stackFor(t)
  await stack.proxy.close() // child processes take its place
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-standby-view-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const backends = stack.cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password }))
  const procs: PgraidProcess[] = []
  t.teardown(() => Promise.all(procs.map((p) => p.kill())))
  // Frequent health checks: the standby compares the restarted backend while the writer commits.
  const config = { health: { intervalMs: 200 } }
  const a = await startPgraidProcess({ dir, name: 'a', port: await freePort(), backends, config })
  procs.push(a)
  await waitFor('pgraid a to become the writer', async () => (await a.ha()).role === 'writer', 60_000)
  const b = await startPgraidProcess({ dir, name: 'b', port: await freePort(), backends, config })
  procs.push(b)
  await waitFor('pgraid b to be a standby', async () => (await b.ha()).role === 'standby', 60_000)
  const stateOn = async (p: PgraidProcess, name: string) => (await p.admin('SHOW BACKENDS')).find((r) => r.name === name)

  const w = new pg.Client({ host: '127.0.0.1', port: a.port, user: 'app', password: 'app-secret', database: 'postgres' })
  w.on('error', () => {})
  await w.connect()
  t.teardown(() => w.end().catch(() => {}))
  await w.query('CREATE TABLE sv (id int PRIMARY KEY)')
  let stop = false
  let next = 1
  const writes = (async () => {
    while (!stop) await w.query('INSERT INTO sv VALUES ($1)', [next++])
  })()

  // pg1 restarts while the writer commits: it comes back lacking those commits.
  const pg1 = stack.cluster.backends[0]!
  await pg1.stop()
  await waitFor('the writer to take pg1 out', async () => (await stateOn(a, 'pg1'))?.state !== 'enabled', 30_000)
  const before = next
  await waitFor('commits while pg1 is down', () => next > before + 20, 30_000)
  await pg1.start()
  await waitFor('the writer to find pg1 behind', async () => (await stateOn(a, 'pg1'))?.cause === 'behind', 60_000)
  await waitFor('the standby to see pg1 restarted', async () => (await stateOn(b, 'pg1'))?.state !== 'enabled', 30_000)
  // Several of the standby's checks while pg1 lacks commits (before, one of them marked it behind for good).
  const seen = next
  await waitFor('more commits while the standby compares pg1', () => next > seen + 50, 30_000)
  const onStandby = await stateOn(b, 'pg1')
  t.not(onStandby?.cause, 'behind', `the standby gives no verdict of its own (pg1 on the standby: ${onStandby?.state}, ${onStandby?.cause}: ${onStandby?.reason})`)

  await bounded(a.admin('RESYNC pg1'), 120_000, 'RESYNC pg1 on the writer')
  t.equal((await stateOn(a, 'pg1'))?.state, 'enabled', 'the writer resynced pg1')
  stop = true
  await bounded(writes, 30_000, 'the writes to stop')
  await waitFor('the standby to bring pg1 back', async () => (await stateOn(b, 'pg1'))?.state === 'enabled', 60_000)
  t.pass('pg1 is back in service on the standby too')
  await assertIdentical(t, stack)
})
