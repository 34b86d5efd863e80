// Exercises the embedded cluster harness itself: auth per server, digests, kill/restart, clean stop.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { startCluster, type RunningBackend } from '../../src/embedded/cluster.ts'
import { compareBackends } from './compare.ts'

const cluster = await startCluster({ count: 3, auth: ['scram-sha-256', 'md5', 'trust'] })
t.teardown(() => cluster.stop())
const [scram, md5, trust] = cluster.backends as [RunningBackend, RunningBackend, RunningBackend]
const baseDir = path.dirname(scram.dataDir)

async function connectWith(b: RunningBackend, password: string): Promise<unknown> {
  const c = new pg.Client({ host: b.host, port: b.port, user: b.user, password, database: b.database })
  c.on('error', () => {})
  try {
    await c.connect()
    await c.end()
    return undefined
  } catch (e) {
    return e
  }
}

t.test('every server accepts its password, password servers reject a wrong one', async (t) => {
  for (const b of cluster.backends) {
    const c = await b.client()
    const r = await c.query<{ ok: number }>(`SELECT 1 AS ok`)
    await c.end()
    t.equal(r.rows[0]?.ok, 1, `${b.name} answers`)
    t.equal(await connectWith(b, b.password), undefined, `${b.name} accepts the right password`)
  }
  for (const b of [scram, md5]) {
    const err = (await connectWith(b, 'wrong')) as { code?: string } | undefined
    t.equal(err?.code, '28P01', `${b.name} rejects a wrong password`)
  }
  t.equal(await connectWith(trust, 'wrong'), undefined, 'trust server ignores the password')
  // The md5 server must store an md5 hash, or md5 auth would silently negotiate SCRAM.
  const c = await md5.client()
  const pw = (await c.query<{ pw: string }>(`SELECT rolpassword AS pw FROM pg_authid WHERE rolname = current_user`)).rows[0]!.pw
  await c.end()
  t.match(pw, /^md5[0-9a-f]{32}$/, 'md5 server stores an md5 password')
})

t.test('compareBackends sees identical and diverging data', async (t) => {
  for (const b of cluster.backends) {
    const c = await b.client()
    await c.query(`CREATE TABLE items (id int PRIMARY KEY, name text, at timestamptz)`)
    // Different insertion order per server: the checksum must not depend on heap order.
    const ids = b === md5 ? [3, 1, 2] : [1, 2, 3]
    for (const id of ids) await c.query(`INSERT INTO items VALUES ($1, $2, '2024-01-01T00:00:00Z')`, [id, `item ${id}`])
    await c.end()
  }
  const same = await compareBackends(cluster.backends)
  t.ok(same.identical, same.report)
  t.same(
    same.digests[0]?.map((d) => [d.table, d.rows]),
    [['public.items', 3]],
  )

  const c = await md5.client()
  await c.query(`INSERT INTO items VALUES (4, 'extra', now())`)
  await c.end()
  const diff = await compareBackends(cluster.backends)
  t.notOk(diff.identical, 'an extra row is detected')
  t.match(diff.report, /public\.items/, 'report names the table')
  t.match(diff.report, /differs on pg2\b/, 'report names the backend')
  t.match(diff.report, /rows=4/, 'report shows the row counts')
})

t.test('kill() then start() keeps port and data', async (t) => {
  const port = trust.port
  await trust.kill()
  t.not(await connectWith(trust, 'x'), undefined, 'killed server refuses connections')
  await trust.start()
  t.equal(trust.port, port, 'same port')
  const c = await trust.client()
  const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM items`)
  await c.end()
  t.equal(r.rows[0]?.n, '3', 'committed rows survive an immediate stop')
})

t.test('stop() leaves no postgres process behind', async (t) => {
  const postmasters = cluster.backends.map((b) => Number(readFileSync(path.join(b.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]))
  t.ok(
    postmasters.every((p) => p > 0),
    'all postmasters running before stop',
  )
  await cluster.stop()
  await cluster.stop() // idempotent
  const ps = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 3)
  const leftovers = ps.filter(([pid, ppid, ...args]) => args.join(' ').includes(baseDir) || postmasters.includes(Number(pid)) || postmasters.includes(Number(ppid)))
  t.same(leftovers, [], 'no process of the cluster survives')
  t.notOk(existsSync(baseDir), 'base dir removed')
})
