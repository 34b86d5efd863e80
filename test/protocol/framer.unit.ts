// Framer: client byte stream → whole messages. Expected messages are written out by hand from the
// PostgreSQL protocol spec ("Message Formats"), not produced by src/protocol/encode.ts, and every
// stream is fed whole, split at every byte offset (and every pair of offsets), and 1 byte at a time.
import t, { type Test } from 'tap'
import { FrameTooLarge, Framer, MalformedFrame, RefusedLength, type Frame } from '../../src/protocol/framer.ts'
import { int32, int16, cstr, typed } from '../harness/bytes.ts'
import { splits } from '../harness/splits.ts'

// ---- hand-built messages ------------------------------------------------------------------------

/** Int32(length incl. itself) body: the startup-phase messages have no type byte. */
const untyped = (...body: Buffer[]) => {
  const b = Buffer.concat(body)
  return Buffer.concat([int32(4 + b.length), b])
}

// Query: 'Q' Int32(13) "SELECT 1\0" — spelled out byte by byte once, as a check on the helpers.
const query = Buffer.from([0x51, 0, 0, 0, 13, ...Buffer.from('SELECT 1'), 0])
// Parse: 'P' name query Int16(#param types) Int32(type oid)...
const parse = typed('P', cstr('s1'), cstr('SELECT $1::int4 + $2'), int16(2), int32(23), int32(0))
// Bind: 'B' portal statement Int16(#formats) Int16(format)... Int16(#params) (Int32 len, bytes)... Int16(#result formats)...
const bind = typed(
  'B',
  cstr(''),
  cstr('s1'),
  int16(1),
  int16(0),
  int16(2),
  int32(2),
  Buffer.from('42'),
  int32(-1), // NULL
  int16(1),
  int16(1),
)
// Execute: 'E' portal Int32(max rows)
const execute = typed('E', cstr(''), int32(0))
// Sync: 'S' Int32(4)
const sync = Buffer.from([0x53, 0, 0, 0, 4])
// SSLRequest: Int32(8) Int32(80877103)
const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
// StartupMessage: Int32(len) Int32(196608 = 3.0) (name\0 value\0)... \0
const startup = untyped(int32(196608), cstr('user'), cstr('alice'), cstr('database'), cstr('shop'), cstr('application_name'), cstr('t\u00e9st'), Buffer.from([0]))

t.test('hand-built messages match the spec', async (t) => {
  t.equal(query.length, 14)
  t.same([...sync], [0x53, 0, 0, 0, 4])
  t.equal(sslRequest.readInt32BE(4), 80877103)
  t.equal(startup.readInt32BE(0), startup.length)
  t.equal(startup.readInt32BE(4), 3 << 16)
  t.equal(parse.readInt32BE(1), parse.length - 1)
  t.equal(bind.readInt32BE(1), bind.length - 1)
})

// ---- helpers ------------------------------------------------------------------------------------

interface Seen {
  type: number
  bytes: Buffer
  bodyOffset: number
}

const copyFrame = (f: Frame): Seen => ({ type: f.type, bytes: Buffer.from(f.bytes), bodyOffset: f.bodyOffset })

/** Feeds `chunks` to a fresh framer; `switchAfter(frame)` returning true flips to typed mode. */
function run(chunks: Buffer[], opts: { untyped?: boolean; max?: number; switchAfter?: (f: Frame) => boolean } = {}) {
  const framer = new Framer(opts.max ?? 1 << 30, opts.untyped ?? false)
  const frames: Seen[] = []
  for (const c of chunks)
    framer.push(c, (f) => {
      frames.push(copyFrame(f))
      if (opts.switchAfter?.(f)) framer.untyped = false
    })
  return { frames, pending: framer.pending }
}

const expectTyped = (msgs: Buffer[]): Seen[] => msgs.map((m) => ({ type: m[0]!, bytes: m, bodyOffset: 5 }))

/** Compares without flooding the TAP output: one assertion per split pattern. */
function sameFrames(t: Test, got: Seen[], want: Seen[], name: string): void {
  const eq = got.length === want.length && got.every((g, i) => g.type === want[i]!.type && g.bodyOffset === want[i]!.bodyOffset && g.bytes.equals(want[i]!.bytes))
  if (eq) t.pass(name)
  else t.same(got.map(show), want.map(show), name)
}
const show = (f: Seen) => ({ type: f.type, bodyOffset: f.bodyOffset, hex: f.bytes.toString('hex') })

/** Asserts `fn` throws an instance of `cls` (tap's t.throws matches by pattern, not instanceof). */
function throwsA(t: Test, fn: () => unknown, cls: new (...a: never[]) => Error, name: string): void {
  try {
    fn()
  } catch (e) {
    if (e instanceof cls) t.pass(name)
    else t.fail(`${name}: threw ${String(e)}, not a ${cls.name}`)
    return
  }
  t.fail(`${name}: did not throw`)
}

// ---- typed mode ---------------------------------------------------------------------------------

t.test('typed: Query, Parse, Bind, Execute, Sync at every split', async (t) => {
  const msgs = [query, parse, bind, execute, sync]
  const stream = Buffer.concat(msgs)
  const want = expectTyped(msgs)
  const whole = run([stream])
  t.same(
    whole.frames.map((f) => String.fromCharCode(f.type)),
    ['Q', 'P', 'B', 'E', 'S'],
  )
  t.equal(whole.frames[0]!.bytes.subarray(whole.frames[0]!.bodyOffset).toString(), 'SELECT 1\0', 'body after bodyOffset')
  t.equal(whole.pending, 0)
  let failures = 0
  for (const s of splits(stream)) {
    const r = run(s.chunks)
    const ok = r.pending === 0 && r.frames.length === want.length && r.frames.every((f, i) => f.type === want[i]!.type && f.bodyOffset === 5 && f.bytes.equals(want[i]!.bytes))
    if (!ok && failures++ < 5) sameFrames(t, r.frames, want, s.name)
  }
  t.equal(failures, 0, 'every split pattern yields the same frames')
})

t.test('typed: empty chunks and a message with an empty body', async (t) => {
  const r = run([Buffer.alloc(0), sync.subarray(0, 2), Buffer.alloc(0), sync.subarray(2), Buffer.alloc(0)])
  sameFrames(t, r.frames, expectTyped([sync]), 'Sync across empty chunks')
})

t.test('whole messages inside one chunk are views on it; pending counts buffered bytes', async (t) => {
  const stream = Buffer.concat([query, sync, parse])
  const framer = new Framer(1 << 20)
  const seen: Frame[] = []
  framer.push(stream.subarray(0, query.length + sync.length + 7), (f) => seen.push(f))
  t.equal(seen.length, 2)
  t.equal(seen[0]!.bytes.buffer, stream.buffer, 'no copy of a whole message')
  t.equal(framer.pending, 7, '7 bytes of Parse buffered')
  framer.push(stream.subarray(query.length + sync.length + 7), (f) => seen.push(f))
  t.equal(seen.length, 3)
  t.ok(seen[2]!.bytes.equals(parse))
  t.equal(framer.pending, 0)

  const f2 = new Framer(1 << 20)
  f2.push(sync.subarray(0, 3), () => t.fail('no frame yet'))
  t.equal(f2.pending, 3, 'partial header counts')
})

// ---- untyped startup mode and the switch ---------------------------------------------------------

t.test('untyped: SSLRequest, StartupMessage, then typed messages, switching mid-chunk', async (t) => {
  const stream = Buffer.concat([sslRequest, startup, query, sync])
  const want: Seen[] = [{ type: 0, bytes: sslRequest, bodyOffset: 4 }, { type: 0, bytes: startup, bodyOffset: 4 }, ...expectTyped([query, sync])]
  // Like the session: stay untyped after SSLRequest (a StartupMessage follows), switch after StartupMessage.
  const switchAfter = (f: Frame) => f.type === 0 && f.bytes.length >= 8 && f.bytes.readInt32BE(4) === 196608
  const whole = run([stream], { untyped: true, switchAfter })
  sameFrames(t, whole.frames, want, 'whole')
  t.equal(whole.frames[1]!.bytes.subarray(whole.frames[1]!.bodyOffset, whole.frames[1]!.bodyOffset + 4).readInt32BE(0), 196608, 'body starts with the protocol version')
  let failures = 0
  for (const s of splits(stream)) {
    const r = run(s.chunks, { untyped: true, switchAfter })
    const ok = r.pending === 0 && r.frames.length === want.length && r.frames.every((f, i) => f.type === want[i]!.type && f.bodyOffset === want[i]!.bodyOffset && f.bytes.equals(want[i]!.bytes))
    if (!ok && failures++ < 5) sameFrames(t, r.frames, want, s.name)
  }
  t.equal(failures, 0, 'every split pattern yields the same frames')
})

t.test('untyped without a switch frames the following bytes as untyped too', async (t) => {
  const r = run([Buffer.concat([sslRequest, sslRequest])], { untyped: true })
  t.equal(r.frames.length, 2)
  t.ok(r.frames.every((f) => f.type === 0 && f.bodyOffset === 4 && f.bytes.equals(sslRequest)))
})

// ---- large messages -----------------------------------------------------------------------------

t.test('a 5 MB message in 64 KiB chunks is assembled once, at its final size', async (t) => {
  const body = Buffer.alloc(5 * 1024 * 1024)
  for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff
  const big = typed('B', body)
  const stream = Buffer.concat([query, big, sync])
  const framer = new Framer(16 * 1024 * 1024)
  const frames: Frame[] = []
  const chunk = 64 * 1024
  let maxPending = 0
  for (let off = 0; off < stream.length; off += chunk) {
    framer.push(stream.subarray(off, off + chunk), (f) => frames.push(f))
    maxPending = Math.max(maxPending, framer.pending)
  }
  t.equal(frames.length, 3)
  t.ok(frames[0]!.bytes.equals(query))
  const f = frames[1]!
  t.equal(f.type, 0x42)
  t.equal(f.bodyOffset, 5)
  t.equal(f.bytes.length, big.length)
  t.ok(f.bytes.equals(big), 'frame bytes equal the message')
  t.equal(f.bytes.byteOffset, 0, 'one buffer of its own...')
  t.equal(f.bytes.buffer.byteLength, big.length, '...allocated at the final size')
  t.ok(frames[2]!.bytes.equals(sync), 'the message after it in the last chunk')
  t.ok(maxPending > big.length - chunk && maxPending < big.length, 'pending grew while assembling')
  t.equal(framer.pending, 0)
})

// ---- limits and malformed lengths ---------------------------------------------------------------

t.test('maxMessageBytes: FrameTooLarge from the header alone', async (t) => {
  const max = 100
  const atMax = typed('Q', Buffer.alloc(max - 4, 0x61))
  t.equal(run([atMax], { max }).frames.length, 1, 'length == max is accepted')

  const over = typed('Q', Buffer.alloc(max - 3, 0x61))
  const framer = new Framer(max)
  let err: unknown
  try {
    framer.push(over.subarray(0, 5), () => t.fail('no frame'))
  } catch (e) {
    err = e
  }
  t.ok(err instanceof FrameTooLarge, 'thrown on the 5-byte header, before the body arrives')
  t.equal((err as FrameTooLarge).length, max + 1)
  t.equal((err as FrameTooLarge).max, max)

  throwsA(t, () => run([Buffer.concat([sync, over])], { max }), FrameTooLarge, 'after a good message')
  throwsA(t, () => run([over.subarray(0, 2), over.subarray(2, 6)], { max }), FrameTooLarge, 'header split across chunks')

  const bigStartup = untyped(int32(196608), Buffer.alloc(max - 8, 0x61), Buffer.from([0]))
  t.equal(bigStartup.length, max + 1)
  throwsA(t, () => run([bigStartup.subarray(0, 4)], { untyped: true, max }), FrameTooLarge, 'untyped: length counts itself')
  // Beyond PostgreSQL's own limit: refused as PostgreSQL refuses it (silently), whatever limits.maxMessageBytes says.
  throwsA(t, () => run([Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff])], { max }), RefusedLength, '2 GiB length')
})

t.test('length < 4 is MalformedFrame', async (t) => {
  for (const len of [3, 0, -1, -2147483648]) {
    const hdr = Buffer.concat([Buffer.from('Q'), int32(len)])
    throwsA(t, () => run([hdr]), MalformedFrame, `typed length ${len}`)
    throwsA(t, () => run([Buffer.concat([sync, hdr.subarray(0, 3)]), hdr.subarray(3)]), MalformedFrame, `typed length ${len}, split header`)
    throwsA(t, () => run([Buffer.concat([int32(len), Buffer.alloc(8)])], { untyped: true }), MalformedFrame, `untyped length ${len}`)
  }
  t.equal(run([Buffer.from([0x53, 0, 0, 0, 4])]).frames.length, 1, 'length 4 (empty body) is fine')
  throwsA(t, () => run([int32(4)], { untyped: true }), RefusedLength, 'untyped length 4: below a protocol version, refused as PostgreSQL does')
  throwsA(t, () => run([int32(10_005)], { untyped: true }), RefusedLength, 'a startup packet over 10,000 bytes of body')
  t.equal(run([Buffer.concat([int32(10_004), Buffer.alloc(10_000)])], { untyped: true }).frames.length, 1, 'exactly 10,000 bytes of body is framed')
  throwsA(t, () => run([Buffer.concat([Buffer.from('S'), int32(10_005)])]), RefusedLength, 'a Sync over the small-message limit')
  t.equal(run([Buffer.concat([Buffer.from('Q'), int32(10_005), Buffer.alloc(10_001)])]).frames.length, 1, 'a Query over 10,000 bytes is framed')
})
