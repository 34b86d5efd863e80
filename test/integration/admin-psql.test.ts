// Every admin console command through psql, as an operator types it (issue 8: "every admin command
// through psql"): each answers rows or a command tag psql prints, refusals are ErrorResponses with
// their SQLSTATE, and SHUTDOWN ends pgraid last.

import t from 'tap'
import { execFile } from 'node:child_process'
import { stackFor, client, assertIdentical, waitFor } from '../harness/stack.ts'

const stack = await stackFor(t, {
  config: {
    users: [
      { name: 'app', auth: 'scram-sha-256', password: 'app-secret' },
      { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true },
    ],
  },
})

function psql(sql: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const args = ['-X', '-h', '127.0.0.1', '-p', String(stack.port), '-U', 'ops', '-d', 'pgraid', '-A', '-F', '|', '-v', 'ON_ERROR_STOP=1', '-c', sql]
    execFile('psql', args, { env: { ...process.env, PGPASSWORD: 'ops-secret', PGSSLMODE: 'disable' }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` })
    })
  })
}

t.test('every console command through psql', async (t) => {
  const app = await client(stack)
  await app.query('CREATE TABLE console_t (id int PRIMARY KEY, v text)')
  await app.query("INSERT INTO console_t VALUES (1, 'a'), (2, 'b')")

  const expect: [string, RegExp][] = [
    ['SHOW HELP', /command\|what[\s\S]*SHOW BACKENDS/],
    ['SHOW BACKENDS', /pg1\|.*\|enabled\|[\s\S]*pg3\|/],
    ['SHOW LOG', /postgres\|pg1\|enabled\|\d+\|/],
    ['SHOW SESSIONS', /id\|user\|database\|client\|transaction\|backends[\s\S]*\|app\|postgres\|/],
    ['SHOW CLIENTS', /\|app\|postgres\|127\.0\.0\.1:\d+\|/],
    ['SHOW LOCKS', /resource\|holders\|waiters/],
    ['SHOW STATS', /sessions\|commits_total[\s\S]*\n\d+\|\d+\|[\s\S]*\|all\|[\s\S]*\|pg1\|\d+\|\d+\|\d+\|[1-9]/],
    ['SHOW POOLS', /database\|user\|cl_active\|cl_waiting[\s\S]*\npostgres\|app\|1\|0\|/],
    ['SHOW SERVERS', /type\|user\|database\|state[\s\S]*\nS\|app\|postgres\|idle\|127\.0\.0\.1\|\d+\|/],
    ['SHOW DATABASES', /\npostgres\|postgres\|pg1,pg2,pg3\|session\|/],
    ['SHOW POOL_NODES', /node_id\|hostname\|port\|status[\s\S]*\n0\|127\.0\.0\.1\|\d+\|up\|(up|unknown)\|0\.333333\|replica\|/],
    ['SHOW VERSION', /version\npgraid \d+\.\d+\.\d+/],
    ['SHOW CONFIG', /users\[0\]\.password\|\(hidden\)/],
    ['SHOW HA', /writer/],
    ['PAUSE', /paused\|open_transactions\ntrue\|0/],
    ['RESUME', /paused\nf(alse)?\n/],
    ['DISABLE pg3', /pg3\|.*disabled/],
  ]
  for (const [cmd, re] of expect) {
    const r = await psql(cmd)
    t.equal(r.code, 0, `${cmd}: psql exits 0 (${r.out.split('\n')[0]})`)
    t.match(r.out, re, `${cmd}: its answer`)
  }
  t.notOk(/app-secret|ops-secret/.test((await psql('SHOW CONFIG')).out), 'SHOW CONFIG shows no password')

  await app.query("INSERT INTO console_t VALUES (3, 'written while pg3 was out')")
  const enableBehind = await psql('ENABLE pg3')
  t.not(enableBehind.code, 0, 'ENABLE refuses a backend that missed a commit')
  t.match(enableBehind.out, /behind|RESYNC/i)
  const resync = await psql('RESYNC pg3')
  t.equal(resync.code, 0, resync.out)
  t.match(resync.out, /pg3\|enabled/, 'RESYNC replays and enables')
  const dry = await psql('DISABLE pg2 DRY RUN')
  t.equal(dry.code, 0, dry.out)
  await waitFor('pg2 still enabled after a dry run', async () => /pg2\|[^\n]*\|enabled\|/.test((await psql('SHOW BACKENDS')).out), 10_000)
  t.equal((await psql('DISABLE pg2')).code, 0, 'DISABLE pg2 before cloning it')
  const clone = await psql('CLONE pg2')
  t.equal(clone.code, 0, clone.out)
  t.match(clone.out, /pg2\|enabled\|postgres\|/, 'CLONE copies and enables')
  const verify = await psql('VERIFY')
  t.equal(verify.code, 0, verify.out)
  t.match(verify.out, /identical/i, 'VERIFY finds the backends identical')
  const reload = await psql('RELOAD')
  t.not(reload.code, 0, 'RELOAD of a pgraid started without a file is refused')
  t.match(reload.out, /ERROR:.*without a config file/)
  // A dry run of a command without one is refused; it used to run it (SHUTDOWN DRY RUN shut pgraid down).
  const noDry = await psql('SHUTDOWN DRY RUN')
  t.not(noDry.code, 0, 'SHUTDOWN DRY RUN is refused')
  t.match(noDry.out, /SHUTDOWN has no DRY RUN/)
  t.equal((await app.query('SELECT 1 AS one')).rows[0].one, 1, 'pgraid still serves')
  const unknown = await psql('SHOW NOTHING')
  t.match(unknown.out, /ERROR:/, 'an unknown command is an error')
  await app.end()
  await assertIdentical(t, stack)

  // Last: SHUTDOWN closes pgraid (clients get 57P01 once idle).
  const down = await psql('SHUTDOWN')
  t.equal(down.code, 0, down.out)
  await waitFor('pgraid to stop accepting connections after SHUTDOWN', async () => (await psql('SHOW HELP')).code !== 0, 30_000)
  t.pass('pgraid no longer accepts clients')
})
