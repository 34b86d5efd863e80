// TLS on both sides, SCRAM-SHA-256-PLUS, hba rules, cert authentication and authQuery
// pass-through, with real clients: psql (libpq 15), node-postgres and pgjdbc. Certificates are
// made at test time (test/harness/certs.ts).

import t from 'tap'
import net from 'node:net'
import path from 'node:path'
import { execFile } from 'node:child_process'
import pg from 'pg'
import { startPgraid } from '../../src/server.ts'
import { parseConfig } from '../../src/config/schema.ts'
import { createLogger } from '../../src/observe/logger.ts'
import { makeCerts } from '../harness/certs.ts'
import { stackFor, assertIdentical, onEachBackend, client, bounded } from '../harness/stack.ts'

const certs = await makeCerts()
t.teardown(() => certs.remove())
const certUser = await certs.client('certuser')
const wrongCn = await certs.client('app')
const rogueClient = await certs.client('certuser', { rogue: true })

interface Run {
  code: number
  out: string
}
function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, env: { ...process.env, ...env }, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0
      resolve({ code, out: `${stdout}${stderr}` })
    })
  })
}

function psql(port: number, conn: string, sql = 'SELECT 1', password = 'app-secret'): Promise<Run> {
  return run('psql', [`host=localhost hostaddr=127.0.0.1 port=${port} dbname=postgres connect_timeout=20 ${conn}`, '-XAtc', sql], { PGPASSWORD: password })
}

t.test('client side: TLS, SCRAM-SHA-256-PLUS, hba rules, cert auth, authQuery', async (t) => {
  const stack = await stackFor(t, {
    settings: { fsync: 'off' },
    config: {
      listen: { host: '127.0.0.1', port: 0, tls: { mode: 'allow', cert: certs.serverCert, key: certs.serverKey, ca: certs.ca } },
      users: [
        { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
        { name: 'md5user', auth: 'md5', password: 'md5-secret' },
        { name: 'certuser', auth: 'trust' },
        { name: 'sslonly', auth: 'scram-sha-256', password: 'ssl-secret' },
        { name: 'blocked', auth: 'scram-sha-256', password: 'blocked-secret' },
        { name: 'admin', auth: 'scram-sha-256', password: 'admin-secret', admin: true },
      ],
      timeouts: { authMs: 10_000 }, // long enough for a JVM's TLS login on a busy machine
      hba: [
        'hostssl all certuser all cert',
        'host all blocked all reject',
        'hostssl all sslonly 127.0.0.1/32 scram-sha-256',
        'hostnossl all sslonly all reject',
        'host all md5user 127.0.0.1/32 md5',
        'host postgres all 127.0.0.1/32 scram-sha-256',
        'hostssl pgraid admin 127.0.0.1/32 scram-sha-256',
      ],
      authQuery: { enabled: true },
    },
  })
  const port = stack.port
  // A client that connects and never says anything: closed after timeouts.authMs (checked at the end).
  const silent = net.connect({ host: '127.0.0.1', port })
  const silentClosed = new Promise<void>((resolve) => silent.on('close', () => resolve()))
  silent.on('error', () => {})

  t.test('psql verify-full with channel_binding=require logs in over TLS (SCRAM-SHA-256-PLUS)', async (t) => {
    const r = await psql(port, `user=app sslmode=verify-full sslrootcert=${certs.ca} channel_binding=require`, 'CREATE TABLE tls_t (id int primary key, v text)')
    t.equal(r.code, 0, r.out)
    const ins = await psql(port, `user=app sslmode=verify-full sslrootcert=${certs.ca} channel_binding=require`, "INSERT INTO tls_t VALUES (1, 'over tls') RETURNING v")
    t.equal(ins.code, 0, ins.out)
    t.match(ins.out, /over tls/)
  })

  t.test('psql refuses a server certificate from another CA', async (t) => {
    const r = await psql(port, `user=app sslmode=verify-full sslrootcert=${certs.rogueCa}`)
    t.not(r.code, 0)
    t.match(r.out, /certificate verify failed/)
  })

  t.test('psql verify-full refuses a host name the certificate does not carry', async (t) => {
    const r = await run('psql', [`host=not-the-server.invalid hostaddr=127.0.0.1 port=${port} dbname=postgres user=app sslmode=verify-full sslrootcert=${certs.ca}`, '-XAtc', 'SELECT 1'], {
      PGPASSWORD: 'app-secret',
    })
    t.not(r.code, 0)
    t.match(r.out, /does not match host name|server certificate for "localhost"/)
  })

  t.test('plain connections still work in mode allow; md5 from an hba rule', async (t) => {
    const r = await psql(port, 'user=app sslmode=disable', 'SELECT v FROM tls_t')
    t.equal(r.code, 0, r.out)
    t.match(r.out, /over tls/)
    const m = await psql(port, 'user=md5user sslmode=disable', 'SELECT 2', 'md5-secret')
    t.equal(m.code, 0, m.out)
  })

  t.test('node-postgres: ssl with the CA, and channel binding', async (t) => {
    for (const enableChannelBinding of [false, true]) {
      const c = await client(stack, { host: '127.0.0.1', user: 'sslonly', password: 'ssl-secret', ssl: { ca: await readText(certs.ca) }, enableChannelBinding } as pg.ClientConfig)
      t.same((await c.query('SELECT v FROM tls_t')).rows, [{ v: 'over tls' }], `channel binding ${enableChannelBinding}`)
      await c.end()
    }
    // node-postgres refuses our certificate when told to trust only the rogue CA.
    const bad = new pg.Client({ host: '127.0.0.1', port, user: 'app', password: 'app-secret', database: 'postgres', ssl: { ca: await readText(certs.rogueCa) } })
    await t.rejects(bad.connect(), /self.signed|unable to verify|certificate/i)
  })

  t.test('pgjdbc sslmode=verify-full', async (t) => {
    const src = path.join(import.meta.dirname, '..', 'clients', 'java', 'JdbcConnect.java')
    const url = `jdbc:postgresql://localhost:${port}/postgres?ssl=true&sslmode=verify-full&sslrootcert=${certs.ca}&connectTimeout=20`
    const ok = await run('java', ['-cp', '/usr/share/java/postgresql.jar', src, url, 'app', 'app-secret'])
    t.equal(ok.code, 0, ok.out)
    t.match(ok.out, /ok 1/)
    const rogue = await run('java', ['-cp', '/usr/share/java/postgresql.jar', src, url.replace(certs.ca, certs.rogueCa), 'app', 'app-secret'])
    t.not(rogue.code, 0, 'a server certificate from another CA is refused')
    t.match(rogue.out, /error 08006/)
    const wrong = await run('java', ['-cp', '/usr/share/java/postgresql.jar', src, url, 'app', 'wrong'])
    t.match(wrong.out, /error 28P01/, 'wrong password over TLS: 28P01')
  })

  t.test('hba rules: no TLS where hostssl is needed, reject, wrong password', async (t) => {
    const plain = await psql(port, 'user=sslonly sslmode=disable', 'SELECT 1', 'ssl-secret')
    t.not(plain.code, 0)
    t.match(plain.out, /pgraid hba rejects connection for host "127\.0\.0\.1", user "sslonly", database "postgres", no encryption/)
    const nodb = await run('psql', [`host=127.0.0.1 port=${port} dbname=other user=app sslmode=require`, '-XAtc', 'SELECT 1'], { PGPASSWORD: 'app-secret' })
    t.match(nodb.out, /no pgraid hba rule for host "127\.0\.0\.1", user "app", database "other", SSL encryption/)
    const tls = await psql(port, `user=sslonly sslmode=verify-full sslrootcert=${certs.ca}`, 'SELECT 1', 'ssl-secret')
    t.equal(tls.code, 0, tls.out)
    const blocked = await psql(port, `user=blocked sslmode=require`, 'SELECT 1', 'blocked-secret')
    t.match(blocked.out, /pgraid hba rejects connection for host "127\.0\.0\.1", user "blocked"/)
    const wrong = await psql(port, `user=app sslmode=require`, 'SELECT 1', 'nope')
    t.match(wrong.out, /password authentication failed for user "app"/)
  })

  t.test('cert authentication', async (t) => {
    const ok = await psql(port, `user=certuser sslmode=verify-full sslrootcert=${certs.ca} sslcert=${certUser.cert} sslkey=${certUser.key}`, 'SELECT v FROM tls_t')
    t.equal(ok.code, 0, ok.out)
    t.match(ok.out, /over tls/)
    const none = await psql(port, `user=certuser sslmode=require sslcert=/nonexistent sslkey=/nonexistent`)
    t.match(none.out, /connection requires a valid client certificate/)
    const cn = await psql(port, `user=certuser sslmode=require sslcert=${wrongCn.cert} sslkey=${wrongCn.key}`)
    t.match(cn.out, /certificate authentication failed for user "certuser"/)
    const rogue = await psql(port, `user=certuser sslmode=require sslcert=${rogueClient.cert} sslkey=${rogueClient.key}`)
    t.not(rogue.code, 0)
    t.match(rogue.out, /client certificate was not accepted/)
  })

  t.test('authQuery: a role that only the backends know logs in with its own password', async (t) => {
    const admin = await client(stack)
    await admin.query("CREATE ROLE passuser LOGIN PASSWORD 'pass-secret'")
    await admin.query('GRANT SELECT ON tls_t TO passuser')
    await admin.end()
    const ok = await psql(port, 'user=passuser sslmode=require', 'SELECT v FROM tls_t', 'pass-secret')
    t.equal(ok.code, 0, ok.out)
    t.match(ok.out, /over tls/)
    const wrong = await psql(port, 'user=passuser sslmode=require', 'SELECT 1', 'wrong')
    const unknown = await run('psql', [`host=127.0.0.1 port=${port} dbname=postgres user=nosuchrole sslmode=require`, '-XAtc', 'SELECT 1'], { PGPASSWORD: 'x' })
    t.match(wrong.out, /password authentication failed for user "passuser"/)
    t.match(unknown.out, /password authentication failed for user "nosuchrole"/, 'an unknown role fails the same way')
  })

  t.test('bytes after an SSLRequest, before the handshake, are refused', async (t) => {
    const s = net.connect({ host: '127.0.0.1', port })
    await new Promise((r) => s.once('connect', r))
    const req = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
    const startup = Buffer.from([0, 0, 0, 9, 0, 3, 0, 0, 0])
    s.write(Buffer.concat([req, startup]))
    const got = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = []
      s.on('data', (c) => chunks.push(c))
      s.on('close', () => resolve(Buffer.concat(chunks)))
      setTimeout(() => s.destroy(), 10_000).unref()
    })
    t.equal(got[0], 0x45, 'an ErrorResponse, not S')
    t.match(got.toString('latin1'), /08P01.*unencrypted data after SSL request/s)
  })

  t.test('SHOW CLIENTS names the TLS protocol; a silent client is closed after timeouts.authMs', async (t) => {
    const c = await client(stack, { ssl: { ca: await readText(certs.ca) } })
    const r = await psql(port, `user=admin dbname=pgraid sslmode=require`, 'SHOW CLIENTS', 'admin-secret')
    t.equal(r.code, 0, r.out)
    t.match(r.out, /\|TLSv1\.3/, 'the TLS client shows its protocol')
    await c.end()
    await bounded(silentClosed, 30_000, 'a client that sent nothing to be closed (timeouts.authMs = 10000)')
    t.pass('the silent connection was closed')
  })

  t.test('backends identical', (t) => assertIdentical(t, stack))
})

t.test('server side: backends over TLS (verify-full), listen.tls.mode require', async (t) => {
  const stack = await stackFor(t, {
    settings: { fsync: 'off' },
    backendTls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, mode: 'verify-full' },
    config: { listen: { host: '127.0.0.1', port: 0, tls: { mode: 'require', cert: certs.serverCert, key: certs.serverKey } } },
  })
  const plain = await psql(stack.port, 'user=app sslmode=disable')
  t.not(plain.code, 0)
  t.match(plain.out, /pgraid accepts only TLS connections/)
  const c = await client(stack, { ssl: { ca: await readText(certs.ca) } })
  await c.query('CREATE TABLE over_tls (id serial primary key, v text)')
  await c.query("INSERT INTO over_tls (v) SELECT 'row ' || g FROM generate_series(1, 100) g")
  t.same((await c.query('SELECT count(*)::int AS n FROM over_tls')).rows, [{ n: 100 }])
  await c.end()
  // Every backend saw pgraid's sessions encrypted.
  const ssl = await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'pgraid%' AND NOT s.ssl")
  t.same(
    ssl.map((r) => r[0]!.n),
    [0, 0, 0],
    'no pgraid control connection in plain text',
  )
  await assertIdentical(t, stack)

  // A pgraid that trusts another CA refuses the backends' certificates and says why.
  const cfg = parseConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      backends: stack.cluster.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password, tls: { mode: 'verify-ca', ca: certs.rogueCa } })),
      users: [{ name: 'app', auth: 'scram-sha-256', password: 'app-secret' }],
      log: { level: 'silent' },
    },
    'test',
  )
  const other = await startPgraid(cfg, createLogger('silent'))
  t.teardown(() => other.close())
  const bad = new pg.Client({ host: '127.0.0.1', port: other.port, user: 'app', password: 'app-secret', database: 'postgres' })
  await t.rejects(bad.connect(), /certificate/i, 'the backend certificate is refused, and the error names it')
})

async function readText(p: string): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  return readFile(p, 'utf8')
}
