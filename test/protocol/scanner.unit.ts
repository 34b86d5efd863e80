// Scanner: backend byte stream → message boundaries, bytes passed through untouched. Messages are
// written by hand from the PostgreSQL protocol spec; every stream is fed whole, split at every byte
// offset (and every pair of offsets), and 1 byte at a time. For each run: the `data` slices
// concatenated equal the input exactly, each slice belongs to the message it is tagged with, the
// `end` types come in order, and bodies arrive only (and correctly) for the wanted types.
import t, { type Test } from 'tap'
import { Scanner } from '../../src/protocol/scanner.ts'
import { int32, int16, cstr, typed } from '../harness/bytes.ts'
import { splits } from '../harness/splits.ts'

// AuthenticationOk: 'R' Int32(8) Int32(0)
const authOk = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0])
// ParameterStatus: 'S' name value
const paramStatus = typed('S', cstr('client_encoding'), cstr('UTF8'))
// BackendKeyData: 'K' Int32(12) Int32(pid) Int32(secret)
const keyData = typed('K', int32(4242), int32(-559038737))
// ReadyForQuery: 'Z' Int32(5) Byte1(status)
const readyI = Buffer.from([0x5a, 0, 0, 0, 5, 0x49])
const readyT = Buffer.from([0x5a, 0, 0, 0, 5, 0x54])
// ParseComplete '1', BindComplete '2', NoData 'n': Int32(4), no body
const parseComplete = Buffer.from([0x31, 0, 0, 0, 4])
const bindComplete = Buffer.from([0x32, 0, 0, 0, 4])
// RowDescription: 'T' Int16(#fields) then per field: name, Int32 table oid, Int16 attnum, Int32 type oid, Int16 typlen, Int32 typmod, Int16 format
const rowDesc = typed('T', int16(1), cstr('n'), int32(0), int16(0), int32(23), int16(4), int32(-1), int16(0))
// DataRow: 'D' Int16(#cols) (Int32 len, bytes)...
const dataRow = typed('D', int16(2), int32(1), Buffer.from('1'), int32(-1))
// CommandComplete: 'C' tag
const cmdComplete = typed('C', cstr('SELECT 1'))
// ErrorResponse: 'E' (Byte1 code, string)... \0
const errorResp = typed('E', Buffer.from('S'), cstr('ERROR'), Buffer.from('C'), cstr('42P01'), Buffer.from('M'), cstr('relation "x" does not exist'), Buffer.from([0]))
// NoticeResponse with an empty field list is still a valid message: 'N' Int32(5) \0
const notice = Buffer.from([0x4e, 0, 0, 0, 5, 0])

const WANTED = new Set(['C', 'E', 'Z', 'S'].map((c) => c.charCodeAt(0)))
const wantBody = (type: number) => WANTED.has(type)

interface Result {
  all: Buffer
  /** Per completed message: its type, the bytes of its data slices, whether every slice was tagged with its type, its body. */
  msgs: { type: number; bytes: Buffer; tagsOk: boolean; body: Buffer | null }[]
  /** Bytes of a message not yet ended. */
  tail: Buffer
}

function scan(chunks: Buffer[]): Result {
  const s = new Scanner(wantBody)
  const slices: Buffer[] = []
  let cur: Buffer[] = []
  let curTypes: number[] = []
  const msgs: Result['msgs'] = []
  for (const c of chunks)
    s.push(c, {
      data(type, slice) {
        slices.push(Buffer.from(slice))
        cur.push(Buffer.from(slice))
        curTypes.push(type)
      },
      end(type, body) {
        msgs.push({ type, bytes: Buffer.concat(cur), tagsOk: curTypes.every((x) => x === type), body: body && Buffer.from(body) })
        cur = []
        curTypes = []
      },
    })
  return { all: Buffer.concat(slices), msgs, tail: Buffer.concat(cur) }
}

/** Empty string when the result is right, otherwise what is wrong. */
function check(r: Result, input: Buffer, msgs: Buffer[]): string {
  if (!r.all.equals(input)) return `data slices ${r.all.toString('hex')} != input ${input.toString('hex')}`
  if (r.tail.length) return `${r.tail.length} bytes after the last end`
  if (r.msgs.length !== msgs.length) return `${r.msgs.length} ends, want ${msgs.length}`
  for (let i = 0; i < msgs.length; i++) {
    const want = msgs[i]!
    const got = r.msgs[i]!
    const type = want[0]!
    if (got.type !== type) return `end #${i}: type ${got.type}, want ${type}`
    if (!got.tagsOk) return `message #${i}: a data slice tagged with another type`
    if (!got.bytes.equals(want)) return `message #${i}: data ${got.bytes.toString('hex')} != ${want.toString('hex')}`
    if (wantBody(type)) {
      if (!got.body || !got.body.equals(want.subarray(5))) return `message #${i}: body ${got.body?.toString('hex')} != ${want.subarray(5).toString('hex')}`
    } else if (got.body !== null) return `message #${i}: unwanted type got a body`
  }
  return ''
}

function everySplit(t: Test, msgs: Buffer[]): void {
  const stream = Buffer.concat(msgs)
  let failures = 0
  let patterns = 0
  for (const s of splits(stream)) {
    patterns++
    const problem = check(scan(s.chunks), stream, msgs)
    if (problem && failures++ < 5) t.fail(`${s.name}: ${problem}`)
  }
  t.equal(failures, 0, `all ${patterns} split patterns give the same messages`)
}

t.test('hand-built messages are well formed', async (t) => {
  for (const m of [authOk, paramStatus, keyData, readyI, parseComplete, rowDesc, dataRow, cmdComplete, errorResp, notice]) t.equal(m.readInt32BE(1), m.length - 1, String.fromCharCode(m[0]!))
})

t.test('startup reply: R S K Z', async (t) => {
  const msgs = [authOk, paramStatus, keyData, readyI]
  const r = scan([Buffer.concat(msgs)])
  t.equal(check(r, Buffer.concat(msgs), msgs), '')
  t.same(
    r.msgs.map((m) => String.fromCharCode(m.type)),
    ['R', 'S', 'K', 'Z'],
  )
  t.equal(r.msgs[1]!.body!.toString(), 'client_encoding\0UTF8\0', 'ParameterStatus body')
  t.equal(r.msgs[0]!.body, null, 'AuthenticationOk not wanted: no body')
  everySplit(t, msgs)
})

t.test('extended query reply: 1 2 T D D C Z, with empty-body messages', async (t) => {
  everySplit(t, [parseComplete, bindComplete, rowDesc, dataRow, dataRow, cmdComplete, readyT])
})

t.test('error and notice: N E Z', async (t) => {
  everySplit(t, [notice, errorResp, readyI])
})

t.test('a stream of only empty-body messages', async (t) => {
  everySplit(t, [parseComplete, bindComplete, parseComplete])
})

t.test('a large DataRow passes through in views, never assembled', async (t) => {
  const big = typed('D', int16(1), int32(300_000), Buffer.alloc(300_000, 0x78))
  const msgs = [rowDesc, big, cmdComplete, readyI]
  const stream = Buffer.concat(msgs)
  const chunks: Buffer[] = []
  for (let off = 0; off < stream.length; off += 65536) chunks.push(stream.subarray(off, off + 65536))
  t.equal(check(scan(chunks), stream, msgs), '', '64 KiB chunks')

  // Slices handed to `data` are views on the chunk, not copies.
  const s = new Scanner(wantBody)
  const views: boolean[] = []
  for (const c of chunks) s.push(c, { data: (_type, slice) => views.push(slice.buffer === c.buffer), end: () => {} })
  t.ok(views.every(Boolean), 'every slice is a view on its chunk (header never split here)')
})

t.test('wantBody decides per type', async (t) => {
  const asked: number[] = []
  const s = new Scanner((type) => {
    asked.push(type)
    return type === 0x44
  })
  const bodies: (Buffer | null)[] = []
  s.push(Buffer.concat([dataRow, cmdComplete]), { data: () => {}, end: (_t, b) => bodies.push(b) })
  t.same(asked, [0x44, 0x43])
  t.ok(bodies[0]!.equals(dataRow.subarray(5)))
  t.equal(bodies[1], null)
})

t.test('a length below 4 throws', async (t) => {
  for (const len of [3, 0, -1]) {
    const bad = Buffer.concat([Buffer.from('Z'), int32(len)])
    t.throws(() => scan([bad]), /invalid length/, `length ${len}`)
    t.throws(() => scan([Buffer.concat([readyI, bad.subarray(0, 2)]), bad.subarray(2)]), /invalid length/, `length ${len}, split header`)
  }
})

t.test('an incomplete message is not ended', async (t) => {
  const r = scan([Buffer.concat([readyI, cmdComplete.subarray(0, 7)])])
  t.equal(r.msgs.length, 1)
  t.ok(r.tail.equals(cmdComplete.subarray(0, 7)), 'its bytes so far were passed through')
  const r2 = scan([Buffer.concat([readyI, cmdComplete.subarray(0, 3)])])
  t.equal(r2.msgs.length, 1)
  t.equal(r2.all.length, readyI.length, 'a partial header is held back until the header is whole')
})
