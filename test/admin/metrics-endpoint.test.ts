// The metrics endpoint's moves on reload (src/admin/metrics.ts, MetricsEndpoint) and the /health
// verdicts (src/admin/health.ts), over real HTTP against a stand-in for the running proxy: moved to
// another port, kept when the new port is taken, moved on the same port (closed first), turned off,
// and each move undone (a reload refused after the move).

import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { MetricsEndpoint } from '../../src/admin/metrics.ts'
import { Counters } from '../../src/observe/counters.ts'
import type { ServerContext } from '../../src/server-context.ts'
import { createLogger } from '../../src/observe/logger.ts'

/** What /health reads of the proxy; the test changes it between requests. */
const world = { writer: true, enabled: [0, 1, 2], quorum: 2 }
const ctx = {
  counters: new Counters(),
  log: createLogger('silent'),
  backends: () => ['pg1', 'pg2', 'pg3'].map((name) => ({ name })),
  states: { enabled: () => world.enabled },
  ha: { isWriter: () => world.writer },
  get writeQuorum() {
    return world.quorum
  },
} as unknown as ServerContext

/** A request on a fresh connection (a pooled keep-alive one would be the endpoint's closed one after a move). */
function request(port: number, path: string, method = 'GET'): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      })
      .on('error', reject)
      .end()
  })
}
async function get(port: number, path: string): Promise<{ status: number; body: { ok: boolean; reason: string } }> {
  const r = await request(port, path)
  return { status: r.status, body: JSON.parse(r.text) as { ok: boolean; reason: string } }
}
const refuses = (port: number) =>
  request(port, '/health').then(
    () => false,
    () => true,
  )

t.test('/health and /health/read', async (t) => {
  const m = new MetricsEndpoint(ctx)
  await m.open('127.0.0.1', 0)
  t.teardown(() => m.close())
  const port = m.port!
  t.same([(await get(port, '/health')).status, (await get(port, '/health/read')).status], [200, 200], 'writer, every backend in service')
  world.enabled = [0]
  const low = await get(port, '/health')
  t.equal(low.status, 503, 'one backend in service, quorum two')
  t.match(low.body.reason, /1 backend\(s\) in service, fewer than the write quorum of 2/)
  t.equal((await get(port, '/health/read')).status, 200, 'reads still served')
  world.enabled = [0, 1]
  world.writer = false
  const standby = await get(port, '/health')
  t.equal(standby.status, 503, 'a standby does not take writes')
  t.match(standby.body.reason, /standby/)
  t.equal((await get(port, '/health/read')).status, 200, 'a standby serves reads')
  world.enabled = []
  t.equal((await get(port, '/health/read')).status, 503, 'no backend in service: no reads')
  const head = await request(port, '/health/read', 'HEAD')
  t.same([head.status, head.text], [503, ''], 'HEAD gets the status alone')
  Object.assign(world, { writer: true, enabled: [0, 1, 2] })
})

t.test('moves: another port, a taken port, the same port, off; each undone', async (t) => {
  const m = new MetricsEndpoint(ctx)
  t.equal(m.port, null)
  await m.open('127.0.0.1', null)
  t.equal(m.port, null, 'port null: nothing served')
  await m.open('127.0.0.1', 0)
  t.teardown(() => m.close())
  const first = m.port!

  const moved = await m.moveTo('127.0.0.1', 0)
  const second = m.port!
  t.not(second, first)
  t.equal((await get(second, '/health')).status, 200, 'served on the new port')
  t.ok(await refuses(first), 'the old port is closed')
  await moved.undo()
  t.equal(m.port, first, 'undone: back on the old port')
  t.equal((await get(first, '/health')).status, 200)

  const squatter = http.createServer()
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r))
  t.teardown(() => squatter.close())
  const taken = (squatter.address() as AddressInfo).port
  await t.rejects(m.moveTo('127.0.0.1', taken), /EADDRINUSE/, 'a taken port: refused')
  t.equal(m.port, first, 'the old endpoint kept')
  t.equal((await get(first, '/health')).status, 200, 'and serving')

  // The same port on every address: the old endpoint must close first, then reopens on undo.
  const wide = await m.moveTo('0.0.0.0', first)
  t.equal(m.port, first)
  t.equal((await get(first, '/health')).status, 200, 'served on 0.0.0.0')
  await wide.undo()
  t.equal((await get(first, '/health')).status, 200, 'undone: back on 127.0.0.1')

  const off = await m.moveTo('127.0.0.1', null)
  t.equal(m.port, null)
  t.ok(await refuses(first), 'turned off')
  await off.undo()
  t.equal((await get(first, '/health')).status, 200, 'undone: on again')
  t.equal((await request(first, '/nope')).status, 404, 'other paths: 404')
})
