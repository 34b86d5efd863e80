// encode.ts / frontend-encode.ts → decode.ts round trips, byte layouts checked against the spec,
// and truncated or garbage input: decoders throw RangeError and nothing else.
import t, { type Test } from 'tap'
import { B, F, PROTOCOL_3_0 } from '../../src/protocol/codes.ts'
import { errorResponse, message, parameterStatus, commandComplete, readyForQuery, type ErrorFields } from '../../src/protocol/encode.ts'
import { startup, cancelRequest } from '../../src/protocol/frontend-encode.ts'
import { Reader, bindHead, cstringBody, describeOrClose, errorFields, executeMsg, parameterStatusBody, parseMsg, queryText, startupPacket } from '../../src/protocol/decode.ts'
import { int32, int16, uint16, cstr } from '../harness/bytes.ts'

const body = (msg: Buffer) => msg.subarray(5)

/** Every strict prefix of `input`: `decode` throws RangeError, or (for prefixes at least
 *  `okFrom` long) returns what it returns for the whole input. Never another error. */
function prefixes<T>(t: Test, name: string, input: Buffer, decode: (b: Buffer) => T, okFrom = input.length): void {
  const whole = decode(input)
  let bad = 0
  for (let n = 0; n < input.length; n++) {
    // A fresh buffer of exactly n bytes, so nothing past the cut is reachable.
    const cut = Buffer.from(input.subarray(0, n))
    let outcome: string
    try {
      const v = decode(cut)
      outcome = n >= okFrom && JSON.stringify(v) === JSON.stringify(whole) ? 'ok' : `returned ${JSON.stringify(v)}`
    } catch (e) {
      outcome = e instanceof RangeError ? (n < okFrom ? 'ok' : 'threw RangeError past the fields read') : `threw ${(e as Error)?.constructor?.name}: ${String(e)}`
    }
    if (outcome !== 'ok' && bad++ < 5) t.fail(`${name}, first ${n} of ${input.length} bytes: ${outcome}`)
  }
  t.equal(bad, 0, `${name}: every truncation throws RangeError`)
}

// ---- encode → decode -------------------------------------------------------------------------

t.test('errorResponse → errorFields', async (t) => {
  const f: ErrorFields = { severity: 'ERROR', code: '42P01', message: 'relation "t\u00e9" does not exist', detail: 'd', hint: 'h', position: 15 }
  const msg = errorResponse(f)
  t.equal(msg[0], B.ErrorResponse)
  t.equal(msg.readInt32BE(1), msg.length - 1, 'length counts itself, not the type')
  t.equal(msg[msg.length - 1], 0, 'terminated by a zero byte')
  t.same(errorFields(body(msg)), { S: 'ERROR', V: 'ERROR', C: '42P01', M: 'relation "t\u00e9" does not exist', D: 'd', H: 'h', P: '15' })

  const minimal = errorResponse({ severity: 'FATAL', code: '28P01', message: 'no' })
  t.same(errorFields(body(minimal)), { S: 'FATAL', V: 'FATAL', C: '28P01', M: 'no' }, 'optional fields omitted')
  // Exact bytes for a minimal one, written from the spec.
  const want = Buffer.concat([Buffer.from('S'), cstr('FATAL'), Buffer.from('V'), cstr('FATAL'), Buffer.from('C'), cstr('28P01'), Buffer.from('M'), cstr('no'), Buffer.from([0])])
  t.ok(minimal.equals(Buffer.concat([Buffer.from('E'), int32(4 + want.length), want])), 'exact bytes')

  const notice = errorResponse({ severity: 'NOTICE', code: '00000', message: 'hi' }, B.NoticeResponse)
  t.equal(notice[0], B.NoticeResponse)
  t.same(errorFields(body(notice)), { S: 'NOTICE', V: 'NOTICE', C: '00000', M: 'hi' })

  prefixes(t, 'errorFields', body(msg), errorFields)
})

t.test('parameterStatus → parameterStatusBody', async (t) => {
  const msg = parameterStatus('application_name', 'caf\u00e9')
  t.equal(msg[0], B.ParameterStatus)
  t.ok(msg.equals(Buffer.concat([Buffer.from('S'), int32(4 + 17 + 6), cstr('application_name'), cstr('caf\u00e9')])), 'exact bytes')
  t.same(parameterStatusBody(body(msg)), ['application_name', 'caf\u00e9'])
  t.same(parameterStatusBody(body(parameterStatus('x', ''))), ['x', ''], 'empty value')
  prefixes(t, 'parameterStatusBody', body(msg), parameterStatusBody)
})

t.test('commandComplete / readyForQuery / message', async (t) => {
  t.equal(cstringBody(body(commandComplete('INSERT 0 3'))), 'INSERT 0 3')
  t.ok(readyForQuery('T').equals(Buffer.from([0x5a, 0, 0, 0, 5, 0x54])))
  t.ok(message(F.Sync).equals(Buffer.from([0x53, 0, 0, 0, 4])))
})

t.test('startup → startupPacket', async (t) => {
  const params = { user: 'alice', database: 'shop', application_name: 'p\u00e4', options: '-c x=1' }
  const msg = startup(params)
  t.equal(msg.readInt32BE(0), msg.length, 'untyped: length counts itself')
  t.equal(msg.readInt32BE(4), PROTOCOL_3_0)
  t.same(startupPacket(msg), { protocol: 196608, params })
  t.same(startupPacket(startup({})), { protocol: 196608, params: {} }, 'no parameters')
  prefixes(t, 'startupPacket', msg, startupPacket)
  t.throws(() => startupPacket(Buffer.from([0, 0, 0, 8, 0, 3, 0, 0])), RangeError, 'version only, no parameter list terminator')

  // CancelRequest layout: Int32(16) Int32(80877102) Int32(pid) Int32(secret).
  t.ok(cancelRequest(7, -1).equals(Buffer.from([0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff])), 'cancelRequest bytes')
})

// ---- hand-built frontend messages → decode ---------------------------------------------------

const parseBody = Buffer.concat([cstr('s1'), cstr('SELECT $1::int4, $2'), int16(2), int32(23), int32(0)])
const bindBody = Buffer.concat([cstr('p1'), cstr('s1'), int16(1), int16(1), int16(1), int32(4), int32(7), int16(0)])

t.test('parseMsg', async (t) => {
  t.same(parseMsg(parseBody), { name: 's1', query: 'SELECT $1::int4, $2', paramTypes: [23, 0] })
  t.same(parseMsg(Buffer.concat([cstr(''), cstr('SELECT 1'), int16(0)])), { name: '', query: 'SELECT 1', paramTypes: [] }, 'unnamed, no types')
  prefixes(t, 'parseMsg', parseBody, parseMsg)
})

t.test('parseMsg: parameter type count is unsigned (up to 65535)', async (t) => {
  // PostgreSQL reads this count with pq_getmsgint(msg, 2), i.e. unsigned: 32768..65535 are valid.
  const n = 40000
  const types = Buffer.alloc(4 * n)
  for (let i = 0; i < n; i++) types.writeInt32BE(23, 4 * i)
  const p = parseMsg(Buffer.concat([cstr(''), cstr('SELECT 1'), uint16(n), types]))
  t.equal(p.paramTypes.length, n, '40000 parameter types')
})

t.test('bindHead', async (t) => {
  t.same(bindHead(bindBody), { portal: 'p1', statement: 's1' })
  t.same(bindHead(Buffer.concat([cstr(''), cstr(''), int16(0), int16(0), int16(0)])), { portal: '', statement: '' }, 'unnamed')
  // Only the names are read, so any prefix holding both names decodes the same.
  prefixes(t, 'bindHead', bindBody, bindHead, 6)
})

t.test('describeOrClose', async (t) => {
  t.same(describeOrClose(Buffer.concat([Buffer.from('S'), cstr('s1')])), { kind: 'S', name: 's1' })
  t.same(describeOrClose(Buffer.concat([Buffer.from('P'), cstr('')])), { kind: 'P', name: '' })
  t.throws(() => describeOrClose(Buffer.concat([Buffer.from('X'), cstr('s1')])), RangeError, 'unknown target type')
  prefixes(t, 'describeOrClose', Buffer.concat([Buffer.from('P'), cstr('portal')]), describeOrClose)
})

t.test('executeMsg', async (t) => {
  const b = Buffer.concat([cstr('p1'), int32(100)])
  t.same(executeMsg(b), { portal: 'p1', maxRows: 100 })
  t.same(executeMsg(Buffer.concat([cstr(''), int32(0)])), { portal: '', maxRows: 0 }, '0 = no limit')
  prefixes(t, 'executeMsg', b, executeMsg)
})

t.test('queryText', async (t) => {
  t.equal(queryText(Buffer.from('SELECT \u00e9\0')), 'SELECT \u00e9')
  prefixes(t, 'queryText', Buffer.from('SELECT 1\0'), queryText)
})

t.test('Reader', async (t) => {
  const r = new Reader(Buffer.from([0, 0, 0, 1, 0xff, 0xfe, 7, 0x61, 0, 1, 2]))
  t.equal(r.int32(), 1)
  t.equal(r.int16(), -2)
  t.equal(r.byte(), 7)
  t.equal(r.cstring(), 'a')
  t.same([...r.bytes(2)], [1, 2])
  t.ok(r.done)
  t.throws(() => r.byte(), RangeError)
  t.throws(() => r.int16(), RangeError)
  t.throws(() => r.int32(), RangeError)
  t.throws(() => r.cstring(), RangeError)
  t.throws(() => r.bytes(1), RangeError)
  t.throws(() => new Reader(Buffer.alloc(4)).bytes(-1), RangeError, 'negative length')
  t.throws(() => new Reader(Buffer.alloc(2), 5).int32(), RangeError, 'offset past the end')
})

t.test('random bytes: decoders return or throw RangeError, nothing else', async (t) => {
  let seed = 0x5eed
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const decoders: [string, (b: Buffer) => unknown][] = [
    ['errorFields', errorFields],
    ['parameterStatusBody', parameterStatusBody],
    ['startupPacket', startupPacket],
    ['parseMsg', parseMsg],
    ['bindHead', bindHead],
    ['describeOrClose', describeOrClose],
    ['executeMsg', executeMsg],
    ['queryText', queryText],
  ]
  const bad: string[] = []
  for (let i = 0; i < 3000; i++) {
    const len = Math.floor(rand() * 24)
    // Biased towards zero bytes, so strings terminate often and deeper fields get read.
    const b = Buffer.from(Array.from({ length: len }, () => (rand() < 0.3 ? 0 : Math.floor(rand() * 256))))
    for (const [name, d] of decoders) {
      try {
        d(b)
      } catch (e) {
        if (!(e instanceof RangeError) && bad.length < 5) bad.push(`${name}(${b.toString('hex')}): ${String(e)}`)
      }
    }
  }
  t.same(bad, [])
})
