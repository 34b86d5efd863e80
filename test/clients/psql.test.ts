// psql through pgraid: -c, -f of a multi-statement script, \copy both ways,
// \gset-free variables, and ON_ERROR_STOP behaviour; backends end identical.

import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stackFor, assertIdentical, onEachBackend } from '../harness/stack.ts'

const run = promisify(execFile)
const stack = await stackFor(t)
const dir = await mkdtemp(path.join(tmpdir(), 'pgraid-psql-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

function psql(args: string[], input?: string) {
  const env = { ...process.env, PGPASSWORD: stack.password, PGCONNECT_TIMEOUT: '10' }
  const p = run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-h', stack.host, '-p', String(stack.port), '-U', stack.user, '-d', 'postgres', ...args], { env, timeout: 60_000 })
  if (input !== undefined) p.child.stdin!.end(input)
  return p
}

t.test('psql -c runs a statement', async (t) => {
  const { stdout } = await psql(['-At', '-c', 'SELECT 40 + 2'])
  t.equal(stdout.trim(), '42')
})

t.test('psql -f runs a multi-statement script with transactions and savepoints', async (t) => {
  const { stdout } = await psql(['-At', '-f', path.resolve('fixtures/sql/schema-and-data.sql')])
  t.match(stdout, /Ann\|61\.00/)
  t.match(stdout, /Cid\|0/)
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM orders')
  t.same(
    per.map((r) => r[0].n),
    [2, 2, 2],
    'cascade and savepoint rollback happened on every backend',
  )
  await assertIdentical(t, stack)
})

t.test('psql \\copy in and out', async (t) => {
  const csv = path.join(dir, 'in.csv')
  const rows = Array.from({ length: 2000 }, (_, i) => `${i},name ${i},"comma, and ""quote"""`).join('\n') + '\n'
  await writeFile(csv, rows)
  await psql(['-c', 'CREATE TABLE imported (id int PRIMARY KEY, name text, extra text)'])
  await psql(['-c', `\\copy imported FROM '${csv}' WITH (FORMAT csv)`])
  const out = path.join(dir, 'out.csv')
  await psql(['-c', `\\copy (SELECT * FROM imported ORDER BY id) TO '${out}' WITH (FORMAT csv)`])
  t.equal(await readFile(out, 'utf8'), rows)
  await assertIdentical(t, stack)
})

t.test('psql stops on the first error and reports the SQLSTATE message', async (t) => {
  const err = await psql(['-c', 'SELECT * FROM no_such_table']).then(
    () => null,
    (e: { code: number; stderr: string }) => e,
  )
  t.ok(err, 'psql failed')
  t.equal(err?.code, 1)
  t.match(err?.stderr ?? '', /relation "no_such_table" does not exist/)
})

t.test('psql reads a script from stdin with COPY FROM STDIN data inline', async (t) => {
  const script = 'CREATE TABLE inline_copy (a int, b text);\nCOPY inline_copy FROM STDIN;\n1\tone\n2\ttwo\n\\.\nSELECT count(*) FROM inline_copy;\n'
  const { stdout } = await psql(['-At'], script)
  t.match(stdout, /^2$/m)
  await assertIdentical(t, stack)
})
