// Hostile and broken clients: garbage instead of a startup packet, malformed
// and oversized messages, unsupported requests, stray cancel requests, bad
// credentials. After every case a new session must work and the `guard`
// table must be unchanged; at the end every backend is identical. Clients
// that vanish are in vanishing-clients.test.ts. Raw-socket cases log in as
// 'trusted' (auth trust), so no SCRAM in raw bytes.

import t from 'tap'
import type { Test } from 'tap'
import pg from 'pg'
import { client, onEachBackend } from '../harness/stack.ts'
import { cstr, int16, typed } from '../harness/bytes.ts'
import { CANCEL_REQUEST, dataRow, describe, GSSENC_REQUEST, int32, PROTO, Raw, SSL_REQUEST, startupPacket, SYNC, TERMINATE, untyped, type Msg } from '../harness/raw-session.ts'
import { expectFatal, expectSilentClose, hostileStack, MAX_MESSAGE_BYTES, waitUntil, within } from '../harness/hostile.ts'

const { stack, healthy, end } = await hostileStack(t)

t.test('(a) garbage instead of a startup packet', async (t) => {
  const garbage: [string, Buffer][] = [
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['a TLS ClientHello', Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]), Buffer.alloc(64, 0x2a)])],
    ['a zero length', int32(0)],
    ['a packet shorter than a header', Buffer.concat([int32(6), Buffer.from([1, 2])])],
    ['an unknown request code', untyped(0x12345678)],
    ['a startup packet without terminators', untyped(PROTO(3, 0), Buffer.from('user'))],
    ['1 KiB of pseudo-random bytes', Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7919 + 13) & 0xff))],
  ]
  for (const [name, bytes] of garbage) {
    const r = await Raw.open(stack, `garbage: ${name}`)
    r.write(bytes)
    t.ok(await r.closed().catch((e: Error) => (t.fail(e.message), false)), `${name}: connection closed`)
    // An ErrorResponse before the close is fine; anything else is not.
    let parsed: Msg | undefined
    try {
      while (r.pending) {
        parsed = await r.next('leftover', 100)
        t.equal(parsed.type, 'E', `${name}: only an ErrorResponse is sent back (${describe(parsed)})`)
      }
    } catch (e) {
      t.fail(`${name}: unparseable answer: ${(e as Error).message}`)
    }
  }
  await healthy(t, 'garbage startup packets')
})

t.test('(b) unknown message type after login', async (t) => {
  for (const type of ['y', '\x00']) {
    const r = await Raw.login(stack, 'bad-input-b')
    r.write(typed(type, Buffer.from('hello')))
    await expectFatal(t, r, '08P01', `type byte 0x${type.charCodeAt(0).toString(16)}`)
  }
  await healthy(t, 'unknown message type')
})

t.test('(c) message length below 4', async (t) => {
  for (const len of [3, 0, -1]) {
    const r = await Raw.login(stack, 'bad-input-c')
    r.write(Buffer.concat([Buffer.from('Q'), int32(len), cstr('SELECT 1')]))
    await expectSilentClose(t, r, `length ${len}`)
  }
  await healthy(t, 'length < 4')
})

t.test('(d) message longer than limits.maxMessageBytes', async (t) => {
  // Below the limit still works (900 KB parameter, Bind < 1 MiB).
  const c = await client(stack)
  const big = 'x'.repeat(900_000)
  t.same((await c.query('SELECT length($1::text) AS n', [big])).rows, [{ n: 900_000 }], 'a 900 KB message is accepted')
  await c.end()

  // Only the header and a few bytes are ever sent: the refusal must come from the length field alone.
  for (const len of [MAX_MESSAGE_BYTES + 1, 64 * 1024 * 1024]) {
    const r = await Raw.login(stack, 'bad-input-d')
    r.write(Buffer.concat([Buffer.from('Q'), int32(len), Buffer.from('SELECT ')]))
    const err = await expectFatal(t, r, '08P01', `declared length ${len}`)
    if (err) t.match(err.fields?.M ?? '', /exceeds/, 'the error names the size problem')
  }
  // Beyond PostgreSQL's own limit (1 GiB): closed without a word, as PostgreSQL does.
  const r = await Raw.login(stack, 'bad-input-d')
  r.write(Buffer.concat([Buffer.from('Q'), int32(0x7fffffff), Buffer.from('SELECT ')]))
  await expectSilentClose(t, r, 'declared length 2147483647')
  await healthy(t, 'oversized message')
})

/** PostgreSQL answers a message it cannot read with ERROR 08P01 and goes on (test/cases/framing.test.ts compares). */
async function expectErrorThenUsable(t: Test, r: Raw, what: string): Promise<void> {
  const msgs = await r.until('Z')
  const err = msgs.find((m) => m.type === 'E')
  t.equal(err?.fields?.C, '08P01', `${what}: SQLSTATE 08P01 (${err?.fields?.M})`)
  t.equal(err?.fields?.S, 'ERROR', `${what}: severity ERROR, as PostgreSQL`)
  r.write(Buffer.concat([Buffer.from('Q'), int32(4 + 9), cstr('SELECT 1')]))
  const after = await r.until('Z')
  t.ok(
    after.some((m) => m.type === 'D'),
    `${what}: the session goes on`,
  )
}

t.test('(e) truncated Parse body', async (t) => {
  const r = await Raw.login(stack, 'bad-input-e')
  // Length says 20: 16 body bytes, no terminating NUL for the statement name or the query.
  r.write(Buffer.concat([Buffer.from('P'), int32(20), Buffer.alloc(16, 0x78), SYNC]))
  await expectErrorThenUsable(t, r, 'Parse without NULs')

  const r2 = await Raw.login(stack, 'bad-input-e')
  // Name and query terminated, but the parameter count (int16) is cut off.
  const body = Buffer.concat([cstr(''), cstr('SELECT 1'), Buffer.from([0])])
  r2.write(Buffer.concat([Buffer.from('P'), int32(4 + body.length), body, SYNC]))
  await expectErrorThenUsable(t, r2, 'Parse with a truncated parameter count')
  await healthy(t, 'truncated Parse')
})

t.test('(h) FunctionCall is refused, the session stays usable', async (t) => {
  const r = await Raw.login(stack, 'bad-input-h')
  // oid of some function, 0 argument formats, 0 arguments, text result.
  const fcall = typed('F', Buffer.concat([int32(1598), int16(0), int16(0), int16(0)]))
  r.write(fcall)
  const ans = await r.until('Z')
  t.same(
    ans.map((m) => m.type),
    ['E', 'Z'],
    `ErrorResponse then ReadyForQuery (${ans.map(describe).join(', ')})`,
  )
  t.equal(ans[0].fields?.C, '0A000', 'SQLSTATE 0A000')
  t.equal(ans[0].fields?.S, 'ERROR', 'severity ERROR, not FATAL')
  t.equal(ans[1].body.toString(), 'I', 'idle afterwards')
  const one = await r.query('SELECT 1')
  const row = one.find((m) => m.type === 'D')
  t.same(row && dataRow(row.body), ['1'], 'SELECT 1 works on the same session')

  // Inside a transaction the error aborts it, as any error does.
  await r.query('BEGIN')
  r.write(fcall)
  const inTx = await r.until('Z')
  t.equal(inTx[0].fields?.C, '0A000', 'refused inside a transaction too')
  t.equal(inTx.at(-1)?.body.toString(), 'E', 'the transaction is now failed')
  const rb = await r.query('ROLLBACK')
  t.equal(rb.at(-1)?.body.toString(), 'I', 'ROLLBACK ends it')
  const two = await r.query('SELECT 2')
  t.same(dataRow(two.find((m) => m.type === 'D')!.body), ['2'], 'session usable after ROLLBACK')
  r.write(TERMINATE)
  t.ok(await r.closed(), 'Terminate closes the session')
  await healthy(t, 'FunctionCall')
})

t.test('(i) SSLRequest and GSSENCRequest are declined with N', async (t) => {
  const r = await Raw.open(stack, 'bad-input-i')
  r.write(untyped(SSL_REQUEST))
  t.equal(String.fromCharCode(await r.byte()), 'N', "SSLRequest → 'N'")
  t.equal(r.pending, 0, 'nothing but the single byte')
  await r.login()
  const one = await r.query('SELECT 1')
  t.same(dataRow(one.find((m) => m.type === 'D')!.body), ['1'], 'startup after SSLRequest works on the same socket')
  r.destroy()

  const g = await Raw.open(stack, 'bad-input-i')
  g.write(untyped(GSSENC_REQUEST))
  t.equal(String.fromCharCode(await g.byte()), 'N', "GSSENCRequest → 'N'")
  g.write(untyped(SSL_REQUEST))
  t.equal(String.fromCharCode(await g.byte()), 'N', "then SSLRequest → 'N'")
  await g.login()
  const q = await g.query('SELECT 1')
  t.same(dataRow(q.find((m) => m.type === 'D')!.body), ['1'], 'startup after both requests works')
  g.destroy()
  await healthy(t, 'SSL/GSS requests')
})

t.test('(j) CancelRequest with a wrong key is ignored', async (t) => {
  const c = await client(stack)
  c.on('error', () => {})
  t.teardown(() => c.end())
  const key = c as unknown as { processID: number; secretKey: number }
  const running = c.query('SELECT pg_sleep(1) AS slept, 42 AS answer')
  const outcome = running.then(
    (r) => ({ ok: true as const, rows: r.rows }),
    (e: Error & { code?: string }) => ({ ok: false as const, code: e.code, message: e.message }),
  )
  await waitUntil(
    async () =>
      (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(1) AS slept%'")).some((r) => r[0].n > 0),
    5000,
    'the statement runs on a backend',
  )
  const wrong: [string, number, number][] = [
    ['right pid, wrong secret', key.processID, (key.secretKey ^ 0x5a5a5a5a) | 0],
    ['wrong pid, right secret', key.processID + 100_000, key.secretKey],
  ]
  for (const [name, pid, secret] of wrong) {
    const r = await Raw.open(stack, `cancel: ${name}`)
    r.write(Buffer.concat([int32(16), int32(CANCEL_REQUEST), int32(pid), int32(secret)]))
    t.ok(await r.closed(), `${name}: pgraid closes the cancel connection`)
    t.equal(r.pending + r.seen.length, 0, `${name}: without answering anything`)
  }
  const res = await within(outcome, 15_000, 'the statement never finished')
  t.same(res, { ok: true, rows: [{ slept: '', answer: 42 }] }, 'the statement ran to completion, not canceled')
  await healthy(t, 'wrong CancelRequest')
})

t.test('(k) protocol versions', async (t) => {
  for (const [major, minor] of [
    [2, 0],
    [4, 0],
  ]) {
    const r = await Raw.open(stack, `bad-input-k${major}`)
    r.write(startupPacket({ user: 'trusted', database: 'postgres' }, PROTO(major, minor)))
    await expectFatal(t, r, '0A000', `protocol ${major}.${minor}`)
  }

  const r = await Raw.open(stack, 'bad-input-k32')
  const msgs = await r.login({}, PROTO(3, 2))
  t.equal(msgs[0]?.type, 'v', `NegotiateProtocolVersion first (${msgs.map(describe).join(', ')})`)
  if (msgs[0]?.type === 'v') {
    t.equal(msgs[0].body.readInt32BE(0), PROTO(3, 0), 'offers 3.0')
    t.equal(msgs[0].body.readInt32BE(4), 0, 'no unrecognised options')
  }
  t.ok(
    msgs.some((m) => m.type === 'R' && m.body.readInt32BE(0) === 0),
    'AuthenticationOk',
  )
  t.ok(
    msgs.some((m) => m.type === 'K'),
    'BackendKeyData',
  )
  const one = await r.query('SELECT 1')
  t.same(dataRow(one.find((m) => m.type === 'D')!.body), ['1'], 'the session works after negotiation')
  r.destroy()

  const o = await Raw.open(stack, 'bad-input-k30opt')
  const om = await o.login({ '_pq_.bad_input_option': 'on' })
  t.equal(om[0]?.type, 'v', 'an unknown _pq_ option is answered with NegotiateProtocolVersion')
  if (om[0]?.type === 'v') {
    t.equal(om[0].body.readInt32BE(4), 1, 'one unrecognised option')
    t.equal(om[0].body.toString('utf8', 8, om[0].body.length - 1), '_pq_.bad_input_option', 'named')
  }
  o.destroy()
  await healthy(t, 'protocol versions')
})

t.test('(l) wrong password and unknown user look the same', async (t) => {
  const failure = async (user: string, password: string) => {
    try {
      const c = await client(stack, { user, password })
      await c.end()
      return null
    } catch (e) {
      return e as pg.DatabaseError
    }
  }
  const wrongPw = await failure('app', 'not-the-password')
  const noUser = await failure('no_such_user', 'whatever')
  t.equal(wrongPw?.code, '28P01', 'wrong password: 28P01')
  t.equal(noUser?.code, '28P01', 'unknown user: 28P01')
  const shape = (e: pg.DatabaseError | null, user: string) => e && { severity: e.severity, code: e.code, message: e.message.split(user).join('<user>'), detail: e.detail, hint: e.hint }
  t.same(shape(noUser, 'no_such_user'), shape(wrongPw, 'app'), 'same severity, code, message (but the name), no detail or hint')

  // SCRAM's server-first-message must not tell either: a stable salt and the same iteration count per user.
  const serverFirst = async (user: string) => {
    const r = await Raw.open(stack, `scram ${user}`)
    r.write(startupPacket({ user, database: 'postgres' }))
    const sasl = await r.next('AuthenticationSASL')
    if (sasl.type !== 'R' || sasl.body.readInt32BE(0) !== 10) throw new Error(`scram ${user}: expected AuthenticationSASL, got ${describe(sasl)}`)
    const first = Buffer.from('n,,n=,r=badinputnonce0123456789')
    r.write(typed('p', Buffer.concat([cstr('SCRAM-SHA-256'), int32(first.length), first])))
    const cont = await r.next('AuthenticationSASLContinue')
    r.destroy()
    if (cont.type !== 'R' || cont.body.readInt32BE(0) !== 11) throw new Error(`scram ${user}: expected SASLContinue, got ${describe(cont)}`)
    const attrs = Object.fromEntries(
      cont.body
        .toString('utf8', 4)
        .split(',')
        .map((a) => [a[0], a.slice(2)]),
    )
    return { salt: attrs.s, iterations: attrs.i }
  }
  const app1 = await serverFirst('app')
  const app2 = await serverFirst('app')
  const none1 = await serverFirst('no_such_user')
  const none2 = await serverFirst('no_such_user')
  t.equal(app1.salt, app2.salt, 'a known user always gets the same salt')
  t.equal(none1.iterations, app1.iterations, 'same iteration count for an unknown user')
  t.equal(none1.salt, none2.salt, `an unknown user also gets a stable (mock) salt (got ${none1.salt} then ${none2.salt})`)
  await healthy(t, 'bad credentials')
})

t.test('end: guard on every backend, backends identical', (t) => end(t))
