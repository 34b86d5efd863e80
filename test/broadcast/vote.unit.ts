// The vote (src/broadcast/vote.ts, DESIGN invariant 6): every outcome of
// comparing the answers several backends gave to one message.

import t from 'tap'
import { B } from '../../src/protocol/codes.ts'
import { clientCaused, compareUnits, describeUnit, majority, type Unit } from '../../src/broadcast/vote.ts'
import { cstr } from '../harness/bytes.ts'

const done = (tag: string, rows?: Unit['rows']): Unit => ({ type: B.CommandComplete, body: cstr(tag), slices: [], rows })
const ready = (status: 'I' | 'T' | 'E'): Unit => ({ type: B.ReadyForQuery, body: Buffer.from(status), slices: [] })
/** An ErrorResponse body: S, V, C, M fields. */
const error = (code: string, message = 'boom'): Unit => ({
  type: B.ErrorResponse,
  body: Buffer.concat([cstr(`SERROR`), cstr(`VERROR`), cstr(`C${code}`), cstr(`M${message}`), Buffer.from([0])]),
  slices: [],
})
const rows = (count: number, s1: number, s2: number) => ({ count, s1, s2 })

t.test('compareUnits: what counts as the same answer', async (t) => {
  t.equal(compareUnits([done('INSERT 0 1'), done('INSERT 0 1'), done('INSERT 0 1')]), null, 'same tags agree')
  t.equal(compareUnits([done('UPDATE 1'), done('UPDATE 2')]), 'different results', 'different row counts in the tag')
  t.equal(compareUnits([done('SELECT 2', rows(2, 5, 7)), done('SELECT 2', rows(2, 5, 7))]), null, 'same row digests agree (order is not compared)')
  t.equal(compareUnits([done('SELECT 2', rows(2, 5, 7)), done('SELECT 2', rows(2, 5, 8))]), 'different rows', 'different row contents')
  t.equal(compareUnits([done('INSERT 0 1'), error('23505')]), 'different messages', 'a result against an error')
  t.equal(compareUnits([error('23505', 'duplicate key a'), error('23505', 'duplicate key b')]), null, 'errors agree by SQLSTATE, not by message text')
  t.equal(compareUnits([error('23505'), error('23503')]), 'different errors', 'different SQLSTATEs')
  t.equal(compareUnits([ready('I'), ready('I')]), null, 'same transaction status')
  t.equal(compareUnits([ready('I'), ready('E')]), 'different results', 'different transaction status')
})

t.test('majority: a strict majority wins, the others lose; none on a tie', async (t) => {
  t.same(majority([done('UPDATE 1'), done('UPDATE 1'), done('UPDATE 1')]), { winner: 0, losers: [] }, 'unanimous')
  t.same(majority([done('UPDATE 1'), done('UPDATE 2'), done('UPDATE 1')]), { winner: 0, losers: [1] }, 'two of three: the odd one loses')
  t.same(majority([done('UPDATE 2'), done('UPDATE 1'), done('UPDATE 1')]), { winner: 1, losers: [0] }, 'the winner is the first of the majority')
  t.equal(majority([done('UPDATE 1'), done('UPDATE 2')]), null, 'one against one: no majority (two backends)')
  t.equal(majority([done('UPDATE 1'), done('UPDATE 1'), done('UPDATE 2'), done('UPDATE 2')]), null, 'two against two: no majority')
  t.equal(majority([done('UPDATE 1'), done('UPDATE 2'), done('UPDATE 3')]), null, 'all different: no majority')
  t.same(majority([done('UPDATE 1'), undefined, done('UPDATE 1')]), { winner: 0, losers: [1] }, 'a backend that answered nothing loses to two that agree')
  t.same(majority([done('X'), done('X'), done('X'), done('Y'), done('Z')]), { winner: 0, losers: [3, 4] }, 'three of five')
  t.same(majority([done('UPDATE 1')]), { winner: 0, losers: [] }, 'one backend is its own majority')
})

t.test("clientCaused: differences that are the client's doing, never a divergence", async (t) => {
  for (const code of ['57014', '55P03', '40001', '40P01']) t.equal(clientCaused([done('UPDATE 1'), error(code)])?.C, code, `${code} on one backend only`)
  t.equal(clientCaused([error('57014'), error('57014')]), null, 'every backend failed alike: one outcome already')
  t.equal(clientCaused([done('UPDATE 1'), error('23505')]), null, 'a unique violation on one backend only is a divergence')
  t.equal(clientCaused([done('UPDATE 1'), done('UPDATE 2')]), null, "different results are not the client's doing")
  t.equal(clientCaused([error('57014'), error('40001')])?.C, '57014', 'two different client-caused errors: the first is reported')
})

t.test('describeUnit: what a divergence message says', async (t) => {
  t.equal(describeUnit(undefined), 'nothing')
  t.equal(describeUnit(done('INSERT 0 1')), '"INSERT 0 1"')
  t.equal(describeUnit(done('SELECT 1', rows(1, 0xab, 0xcd))), '"SELECT 1" with rows abcd')
  t.equal(describeUnit(error('23505', 'duplicate key')), 'error 23505: duplicate key')
  t.equal(describeUnit(ready('T')), 'ready (transaction status T)')
})
