// psycopg2 (Debian's python3-psycopg2) through pgraid: an implicit BEGIN
// before each transaction, values interpolated into the text by the client,
// executemany, RETURNING with DEFAULT now()/gen_random_uuid(), a unique
// violation and rollback, a savepoint, a named cursor, autocommit. The
// script (test/clients/python/psycopg2_check.py) checks what it can see; this
// test checks the rest on the backends.

import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import path from 'node:path'
import { stackFor, assertIdentical, onEachBackend } from '../harness/stack.ts'

const run = promisify(execFile)
// Debian's interpreter, where python3-psycopg2 is installed (a pyenv python3 on the PATH would lack it).
const PYTHON = '/usr/bin/python3'

const stack = await stackFor(t)

t.test('a psycopg2 application: transactions, interpolated values, errors, savepoints, named cursor', async (t) => {
  const env = { ...process.env, PGHOST: stack.host, PGPORT: String(stack.port), PGUSER: stack.user, PGPASSWORD: stack.password }
  const { stdout } = await run(PYTHON, [path.resolve('test/clients/python/psycopg2_check.py')], { env, timeout: 120_000 }).catch((e: { stderr?: string; message: string }) => {
    throw new Error(`psycopg2 script failed: ${e.stderr || e.message}`)
  })
  const out = JSON.parse(stdout) as { returningId: number; duplicateCode: string; namedCursorRows: number; sum: string; annNote: string | null; bobNote: string; count: number }
  t.equal(out.duplicateCode, '23505', 'the unique violation reached psycopg2 as 23505')
  t.equal(out.namedCursorRows, 6, 'the named cursor fetched every row, two at a time')
  t.equal(out.sum, '600.00', 'transfers kept the sum; the rolled-back savepoint added nothing')
  t.equal(out.annNote, null, "the failed transaction's update is gone")
  t.equal(out.bobNote, 'kept', 'the update before the savepoint stayed')
  t.equal(out.count, 7, 'the autocommit insert is there')
  const per = await onEachBackend<{ name: string; balance: string; tag: string; created: Date }>(stack, 'SELECT name, balance, tag::text, created FROM py_accounts ORDER BY id')
  t.same(per[1], per[0], 'pg2 holds the same rows, uuids and timestamps as pg1')
  t.same(per[2], per[0], 'pg3 too')
  await assertIdentical(t, stack)
})
