// Design trap "Snapshots": in REPEATABLE READ and SERIALIZABLE transactions
// each backend takes its snapshot at the transaction's first statement on
// that backend. pgraid sends such transactions' reads to every backend, so
// all snapshots are taken together and a later conflict fails everywhere
// (40001) instead of on some backends only (which would be a divergence).

import t, { type Test } from 'tap'
import { stackFor, client, assertIdentical } from '../harness/stack.ts'

const stack = await stackFor(t)
const setup = await client(stack)
await setup.query('CREATE TABLE snap (id int PRIMARY KEY, v int)')
await setup.query('INSERT INTO snap VALUES (1, 0)')
await setup.end()

async function conflict(t: Test, begin: string[]) {
  const a = await client(stack)
  const b = await client(stack)
  for (const q of begin) await a.query(q)
  await a.query('SELECT v FROM snap WHERE id = 1') // first statement: the snapshot
  await b.query('UPDATE snap SET v = v + 1 WHERE id = 1') // committed after a's snapshot
  const err = await a.query('UPDATE snap SET v = v + 10 WHERE id = 1').then(
    () => null,
    (e: { code?: string; message: string }) => e,
  )
  t.equal(err?.code, '40001', `every backend refuses the same way (${err?.message ?? 'no error'})`)
  await a.query('ROLLBACK')
  await Promise.all([a.end(), b.end()])
  await assertIdentical(t, stack)
}

t.test('BEGIN ISOLATION LEVEL REPEATABLE READ', (t) => conflict(t, ['BEGIN ISOLATION LEVEL REPEATABLE READ']))
t.test('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', (t) => conflict(t, ['BEGIN', 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE']))
t.test('session default set with SET SESSION CHARACTERISTICS', (t) => conflict(t, ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ', 'BEGIN']))
