// Resync under real load (issue 6 tests): a backend is killed (immediate
// stop) while pgbench runs, restarted and `pgraid resync`ed while pgbench
// keeps running, with a client holding a SELECT ... FOR UPDATE transaction
// open across the whole resync (ActiveMQ's locker does this) and committing
// afterwards: pgbench sees no failed transaction, the locker's commit reaches
// every backend, `pgraid verify` reports identical. (One scenario covers
// both of the pgbench cases: it takes two minutes less than two.)

import t from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import { stackFor, client, waitFor, bounded, type Stack } from '../harness/stack.ts'
import { cliFor, ADMIN } from '../harness/cli.ts'
import { exec } from '../harness/proc.ts'

const USERS = [{ name: 'app', auth: 'scram-sha-256', password: 'app-secret' }, ADMIN]

/** pgbench running until stopped (its -T far away): everything it printed is kept, errors show up there as they happen. */
function pgbenchUntilStopped(stack: Stack, args: string[]): { stop: () => Promise<string> } {
  const child = spawn('pgbench', ['-h', stack.host, '-p', String(stack.port), '-U', stack.user, ...args, '-T', '600', 'postgres'], { env: { ...process.env, PGPASSWORD: stack.password } })
  let out = ''
  child.stdout.on('data', (b: Buffer) => (out += b.toString()))
  child.stderr.on('data', (b: Buffer) => (out += b.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  return {
    async stop() {
      child.kill('SIGINT')
      await bounded(exited, 30_000, 'pgbench to stop')
      return out
    },
  }
}

async function pgbench(stack: Stack, args: string[]): Promise<{ code: number; out: string }> {
  const r = await exec('pgbench', ['-h', stack.host, '-p', String(stack.port), '-U', stack.user, ...args, 'postgres'], { env: { PGPASSWORD: stack.password }, timeoutMs: 180_000 })
  return { code: r.code, out: r.out + r.err }
}

/** pgbench runs while pg3 is killed, restarted and resynced, and goes on afterwards; `during` runs with the load, before the kill. */
async function killRestartResync(t: Test, stack: Stack, during?: () => Promise<void>) {
  const run = await cliFor(t, stack)
  const ctx = stack.proxy.context
  const load = pgbenchUntilStopped(stack, ['-n', '-c', '4', '-j', '2', '-M', 'prepared'])
  await waitFor('pgbench to commit', () => ctx.commits.total > 100)
  await during?.()
  await stack.cluster.backends[2]!.kill()
  await waitFor('pg3 to be taken out', () => ctx.states.list[2]!.state !== 'enabled')
  const down = ctx.commits.total
  await waitFor('commits while pg3 is down', () => ctx.commits.total > down + 200)
  await stack.cluster.backends[2]!.start()
  const r = await run(['resync', 'pg3'])
  t.equal(r.code, 0, `resync: ${r.err}`)
  t.match(r.out, /name=pg3 state=enabled/)
  const committedAfter = ctx.commits.total
  await waitFor('pgbench to go on committing after the resync', () => ctx.commits.total > committedAfter + 200)
  const out = await load.stop()
  t.ok(ctx.commits.total > committedAfter + 200, 'pgbench went on committing after the resync')
  t.notMatch(out, /abort|error|fail/i, `pgbench printed no error, no aborted client, no failed transaction (${out.trim().slice(0, 300) || 'nothing'})`)
  return run
}

t.test('kill a backend under pgbench, restart, resync while pgbench runs and a SELECT ... FOR UPDATE transaction stays open; verify identical', async (t) => {
  const stack = await stackFor(t, { config: { users: USERS } })
  const init = await pgbench(stack, ['-i', '-s', '1', '-q'])
  t.equal(init.code, 0, init.out)
  const locker = await client(stack)
  t.teardown(() => locker.end())
  await locker.query('CREATE TABLE activemq_lock (id bigint PRIMARY KEY, time bigint, broker_name varchar(250))')
  await locker.query('INSERT INTO activemq_lock (id) VALUES (1)')
  const run = await killRestartResync(t, stack, async () => {
    // ActiveMQ's database locker: one transaction for the broker's lifetime, the lock row held FOR UPDATE, keep-alive updates.
    await locker.query('BEGIN')
    await locker.query('SELECT * FROM activemq_lock WHERE id = 1 FOR UPDATE')
    await locker.query("UPDATE activemq_lock SET time = 1, broker_name = 'broker-a' WHERE id = 1")
  })
  t.equal(stack.proxy.context.sessions().find((s) => s.transactionStatus === 'in transaction') !== undefined, true, 'the locker transaction stayed open through the resync')
  await locker.query("UPDATE activemq_lock SET time = 2, broker_name = 'broker-a' WHERE id = 1")
  await locker.query('COMMIT')
  const v = await run(['verify'])
  t.equal(v.code, 0, `verify after the held transaction committed: ${v.out}${v.err}`)
  const rows = await Promise.all(
    stack.cluster.backends.map(async (b) => {
      const x = await b.client()
      const r = (await x.query('SELECT time, broker_name FROM activemq_lock')).rows
      await x.end()
      return r
    }),
  )
  t.same(
    rows,
    [0, 1, 2].map(() => [{ time: '2', broker_name: 'broker-a' }]),
    "the locker's commit reached every backend, including the resynced one",
  )
})
