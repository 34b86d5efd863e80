// Key canonicalisation: one row must get one lock name however its key value
// arrives (literal, text parameter, binary parameter), and values pgraid
// cannot canonicalise must give null (the caller then locks the table).

import t from 'tap'
import { int32 } from '../harness/bytes.ts'
import { canonical, bindParams } from '../../src/scheduler/key-values.ts'
import { keyLocks } from '../../src/scheduler/locks-for.ts'
import { emptyCatalog, type CatalogData } from '../../src/scheduler/catalog.ts'
import { analyze, initParser } from '../../src/sql/analyze.ts'

await initParser()

const int4 = int32
const int8 = (n: bigint) => {
  const b = Buffer.alloc(8)
  b.writeBigInt64BE(n)
  return b
}

t.test('integers: literal, text and binary parameters agree', async (t) => {
  const p = { formats: [0, 1, 1], values: [Buffer.from(' 42 '), int4(42), int8(42n)] }
  t.equal(canonical({ kind: 'const', text: '42', type: 'int' }, 'int4', null), '42')
  t.equal(canonical({ kind: 'const', text: '42', type: 'string' }, 'int8', null), '42')
  t.equal(canonical({ kind: 'param', index: 1 }, 'int4', p), '42')
  t.equal(canonical({ kind: 'param', index: 2 }, 'int4', p), '42')
  t.equal(canonical({ kind: 'param', index: 3 }, 'int8', p), '42')
  t.equal(canonical({ kind: 'const', text: '4.2', type: 'float' }, 'int4', null), null, 'a float for an int key: unknown')
  t.equal(canonical({ kind: 'param', index: 1 }, 'int4', null), null, 'no parameters: unknown')
})

t.test('text, bpchar, uuid, bool; other types are unknown', async (t) => {
  t.equal(canonical({ kind: 'const', text: 'a b', type: 'string' }, 'text', null), 'a b')
  t.equal(canonical({ kind: 'const', text: 'ab  ', type: 'string' }, 'bpchar', null), 'ab', 'char(n) ignores trailing spaces')
  t.equal(canonical({ kind: 'const', text: '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}', type: 'string' }, 'uuid', null), 'a0eebc999c0b4ef8bb6d6bb9bd380a11')
  t.equal(canonical({ kind: 'const', text: 'yes', type: 'string' }, 'bool', null), 't')
  t.equal(canonical({ kind: 'const', text: '1.0', type: 'float' }, 'numeric', null), null)
  t.equal(canonical({ kind: 'const', text: 'x', type: 'string' }, 'citext', null), null, 'case-insensitive text: unknown')
})

t.test('bindParams decodes formats and values, NULLs and truncation', async (t) => {
  const body = Buffer.concat([
    Buffer.from('p\0s\0'),
    Buffer.from([0, 1, 0, 1]), // one format code: binary
    Buffer.from([0, 2]),
    int4(4),
    int4(7),
    int4(-1),
    Buffer.from([0, 0]),
  ])
  const p = bindParams(body)
  t.same(p.formats, [1])
  t.same(p.values[0], int4(7))
  t.equal(p.values[1], null)
  t.throws(() => bindParams(body.subarray(0, 14)), RangeError)
})

const catalog = (over: Partial<CatalogData> = {}): CatalogData => ({
  ...emptyCatalog(),
  uniques: new Map([
    [
      't',
      [
        { columns: ['id'], types: ['int4'], primary: true },
        { columns: ['email'], types: ['text'], primary: false },
      ],
    ],
  ]),
  ...over,
})

function locks(sql: string, cat = catalog(), params: Parameters<typeof keyLocks>[3] = null) {
  const a = analyze(sql)
  if (!a.ok) throw new Error(a.error)
  const s = a.statements[0]
  return keyLocks(s, s.writes[0], cat, params)
}

t.test('keyLocks: which statements are keyed, and by what', async (t) => {
  t.same(
    locks('UPDATE t SET v = 1 WHERE id = 5')?.map((l) => `${l.resource}:${l.mode}`),
    ['rel:t:IX', 'key:t:id=5:X'],
  )
  t.same(locks('DELETE FROM t WHERE id IN (1, 2)'), null, 'a delete frees unique keys pgraid cannot name (email): table lock')
  t.same(
    locks('DELETE FROM t WHERE id IN (1, 2)', catalog({ uniques: new Map([['t', [{ columns: ['id'], types: ['int4'], primary: true }]]]) }))?.map((l) => l.resource),
    ['rel:t', 'key:t:id=1', 'key:t:id=2'],
  )
  t.same(
    locks("INSERT INTO t (id, email) VALUES (1, 'a@x')")?.map((l) => l.resource),
    ['rel:t', 'key:t:id=1', 'key:t:email=a@x'],
    'an insert locks every unique key',
  )
  t.same(locks('INSERT INTO t (id) VALUES (1)'), null, 'a unique column left to its default: table lock')
  t.same(locks("UPDATE t SET email = 'b' WHERE id = 1"), null, 'moving a unique key: table lock')
  t.same(locks("UPDATE t SET v = 0 WHERE email = 'a'"), null, 'only the primary key names a row for updates')
  t.same(locks('UPDATE t SET v = 1 WHERE id = 5', catalog({ family: new Map([['t', new Set(['t_child'])]]) })), null, 'inheritance: table lock')
  t.same(
    locks('UPDATE t SET v = 1 WHERE id = $1', catalog(), { formats: [], values: [Buffer.from('9')] })?.map((l) => l.resource),
    ['rel:t', 'key:t:id=9'],
  )
})
