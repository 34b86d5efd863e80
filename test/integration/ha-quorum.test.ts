// Several pgraid instances with writeQuorum below a majority: fewer locks than a majority make a
// writer only while no reachable backend has the lock held by another instance, so two instances
// started together on a healthy cluster never both write (docs/ha.md).

import t from 'tap'
import { startCluster } from '../../src/embedded/cluster.ts'
import { startPgraid, type PgraidHandle } from '../../src/server.ts'
import { parseConfig } from '../../src/config/schema.ts'
import { createLogger } from '../../src/observe/logger.ts'
import { waitFor } from '../harness/stack.ts'

t.test('writeQuorum 1, two instances started together: never two writers, one writer soon', async (t) => {
  const cluster = await startCluster({ count: 3, settings: { fsync: 'off' } })
  t.teardown(() => cluster.stop())
  const config = () =>
    parseConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        backends: cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password })),
        users: [{ name: 'app', password: 'app-secret' }],
        writeQuorum: 1,
        log: { level: 'silent' },
      },
      'ha-quorum',
    )
  for (let round = 1; round <= Number(process.env.HA_QUORUM_ROUNDS ?? 1); round++) {
    const proxies: PgraidHandle[] = await Promise.all([startPgraid(config(), createLogger('silent')), startPgraid(config(), createLogger('silent'))])
    let both = 0
    const watch = setInterval(() => {
      if (proxies.every((p) => p.context.ha.isWriter())) both++
    }, 5)
    try {
      await waitFor(`round ${round}: one of the two instances to become the writer`, () => proxies.some((p) => p.context.ha.isWriter()), 30_000)
      // Keep watching a while after the first writer appeared: the other must not follow.
      await new Promise((r) => setTimeout(r, 1500))
    } finally {
      clearInterval(watch)
    }
    t.equal(both, 0, `round ${round}: never both instances writers at once`)
    t.equal(proxies.filter((p) => p.context.ha.isWriter()).length, 1, `round ${round}: exactly one writer`)
    await Promise.all(proxies.map((p) => p.close()))
  }
})
