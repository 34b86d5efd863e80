// Hostile and broken clients: garbage instead of a startup packet, malformed
// and oversized messages, unsupported requests, clients that vanish inside a
// transaction or a pipeline, stray cancel requests, bad credentials and a
// storm of aborted connections. After every case a new session must work and
// the `guard` table must be unchanged; at the end every backend is identical.
// Raw-socket cases log in as 'trusted' (auth trust), so no SCRAM in raw bytes.

import t from 'tap'
import type { Test } from 'tap'
import net from 'node:net'
import pg from 'pg'
import { stackFor, client, assertIdentical, onEachBackend, type Stack } from '../harness/stack.ts'
import { cstr, int16, typed } from '../harness/bytes.ts'
import { bind, CANCEL_REQUEST, dataRow, describe, execute, FLUSH, GSSENC_REQUEST, int32, openRaw, parse, PROTO, query, Raw, SSL_REQUEST, startupPacket, SYNC, TERMINATE, untyped, type Msg } from '../harness/raw-session.ts'

const MAX_MESSAGE_BYTES = 1024 * 1024
const stack = await stackFor(t, { config: { limits: { maxMessageBytes: MAX_MESSAGE_BYTES } }, settings: { fsync: 'off' } })

t.teardown(() => {
  for (const r of openRaw) r.destroy()
})

// ---- checks -------------------------------------------------------------------

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

async function waitUntil(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Backend sessions (on every backend) whose application_name is `app`, and those whose query matches `like`. */
async function backendSessions(app: string, like?: string): Promise<number[]> {
  const cond = like === undefined ? '' : ` OR query LIKE '${like.replace(/'/g, "''")}'`
  const rows = await onEachBackend<{ n: number }>(
    stack,
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (application_name = '${app}'${cond})`,
  )
  return rows.map((r) => r[0].n)
}

async function waitBackendSessionsGone(app: string, like?: string, ms = 10_000): Promise<void> {
  let last: number[] = []
  await waitUntil(
    async () => (last = await backendSessions(app, like)).every((n) => n === 0),
    ms,
    `no backend session of "${app}"${like ? ` or running ${like}` : ''} is left (still: ${last.join('/')})`,
  ).catch((e: Error) => {
    throw new Error(`${e.message}; sessions per backend: ${last.join('/')}`)
  })
}

const GUARD_ROWS = [
  { id: 1, v: 'one' },
  { id: 2, v: 'two' },
  { id: 3, v: 'three' },
  { id: 4, v: 'four' },
  { id: 5, v: 'five' },
]

/** After each case: a new session works and `guard` is intact. */
async function healthy(t: Test, what: string): Promise<void> {
  const c = await within(client(stack), 10_000, `a new session after "${what}" could not log in`)
  c.on('error', () => {})
  try {
    const one = await within(c.query('SELECT 1 AS one'), 10_000, `SELECT 1 in a new session after "${what}"`)
    t.same(one.rows, [{ one: 1 }], `after ${what}: a new session answers SELECT 1`)
    const g = await within(c.query('SELECT id, v FROM guard ORDER BY id'), 10_000, `reading guard after "${what}"`)
    t.same(g.rows, GUARD_ROWS, `after ${what}: guard is intact through pgraid`)
  } finally {
    await within(c.end(), 5000, 'closing the check session').catch(() => {})
  }
}

/** PostgreSQL closes without a word on a length it refuses (test/cases/framing.test.ts compares): so must pgraid. */
async function expectSilentClose(t: Test, r: Raw, what: string): Promise<void> {
  t.ok(await r.closed().catch((e: Error) => (t.fail(e.message), false)), `${what}: connection closed`)
  t.notOk(r.seen.some((m) => m.type === 'E'), `${what}: without an ErrorResponse, as PostgreSQL`)
}

async function expectFatal(t: Test, r: Raw, code: string, what: string): Promise<Msg | undefined> {
  let err: Msg | undefined
  try {
    const msgs = await r.until('E')
    err = msgs[msgs.length - 1]
    t.equal(err.fields?.C, code, `${what}: SQLSTATE ${code} (${err.fields?.M})`)
    t.equal(err.fields?.S, 'FATAL', `${what}: severity FATAL`)
  } catch (e) {
    t.fail(`${what}: expected ErrorResponse ${code}: ${(e as Error).message}`)
  }
  t.ok(await r.closed().catch((e: Error) => (t.fail(e.message), false)), `${what}: pgraid closed the connection`)
  return err
}

// ---- setup ----------------------------------------------------------------------

{
  const c = await client(stack)
  await c.query('CREATE TABLE guard (id int PRIMARY KEY, v text NOT NULL)')
  for (const r of GUARD_ROWS) await c.query('INSERT INTO guard VALUES ($1, $2)', [r.id, r.v])
  await c.query('CREATE TABLE bad_load (id int PRIMARY KEY, v text NOT NULL)')
  await c.query('CREATE TABLE bad_chaos (id int, v text)')
  await c.end()
}

// ---- cases ----------------------------------------------------------------------

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
  t.ok(after.some((m) => m.type === 'D'), `${what}: the session goes on`)
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

t.test('(f) client vanishes inside a transaction after a write', async (t) => {
  const app = 'bad-input-f'
  const r = await Raw.login(stack, app)
  const begin = await r.query('BEGIN')
  t.equal(begin.at(-1)?.body.toString(), 'T', 'BEGIN: in a transaction')
  const ins = await r.query("INSERT INTO guard VALUES (100, 'uncommitted')")
  t.notOk(ins.some((m) => m.type === 'E'), `INSERT accepted (${ins.map(describe).join(', ')})`)
  t.equal(ins.at(-1)?.body.toString(), 'T', 'INSERT: still in the transaction')
  r.destroy()

  await waitBackendSessionsGone(app)
  t.pass('the backend sessions of the vanished client ended')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM guard WHERE id = 100')
  t.same(per.map((x) => x[0].n), [0, 0, 0], 'the insert is rolled back on every backend')

  // The proxy lock on guard (X, held to the end of the transaction) must be gone.
  const c = await client(stack)
  c.on('error', () => {})
  try {
    const upd = await within(
      c.query('UPDATE guard SET v = v WHERE id = 1'),
      5000,
      'UPDATE guard in a new session hung: the vanished client\'s lock on guard was not released',
    )
    t.equal(upd.rowCount, 1, 'a new session can UPDATE guard')
  } finally {
    await within(c.end(), 5000, 'closing').catch(() => (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy())
  }
  await healthy(t, 'client vanished in a transaction')
})

t.test('(g) client vanishes with an unsynced pipeline', async (t) => {
  const sleepLike = 'SELECT pg_sleep(5)%'
  t.test('no Sync, no Flush', async (t) => {
    const app = 'bad-input-g1'
    const r = await Raw.login(stack, app)
    r.write(Buffer.concat([parse('', "INSERT INTO guard VALUES (200, 'pipelined')"), bind('', ''), execute(''), parse('', 'SELECT pg_sleep(5) AS g1'), bind('', ''), execute('')]))
    await new Promise((res) => setTimeout(res, 200))
    r.destroy()
    await waitBackendSessionsGone(app, sleepLike)
    t.pass('no backend session of the client is left')
    const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM guard WHERE id = 200')
    t.same(per.map((x) => x[0].n), [0, 0, 0], 'nothing committed on any backend')
  })
  t.test('Flush, statement running when the client vanishes', async (t) => {
    const app = 'bad-input-g2'
    const r = await Raw.login(stack, app)
    r.write(Buffer.concat([parse('', "INSERT INTO guard VALUES (201, 'pipelined')"), bind('', ''), execute(''), parse('', 'SELECT pg_sleep(5) AS g2'), bind('', ''), execute(''), FLUSH]))
    let running: number[] = []
    await waitUntil(
      async () => {
        const rows = await onEachBackend<{ n: number }>(stack, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = '${app}' AND state = 'active' AND query LIKE '${sleepLike}'`)
        running = rows.map((x) => x[0].n)
        return running.some((n) => n > 0)
      },
      5000,
      'pg_sleep(5) runs on a backend',
    )
    t.pass(`pg_sleep running (per backend: ${running.join('/')})`)
    r.destroy()
    await waitBackendSessionsGone(app, sleepLike)
    t.pass('no backend session of the client (and no pg_sleep) is left')
    const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM guard WHERE id = 201')
    t.same(per.map((x) => x[0].n), [0, 0, 0], 'nothing committed on any backend')
  })
  await t.test('check', async (t) => healthy(t, 'unsynced pipeline'))
})

t.test('(h) FunctionCall is refused, the session stays usable', async (t) => {
  const r = await Raw.login(stack, 'bad-input-h')
  // oid of some function, 0 argument formats, 0 arguments, text result.
  const fcall = typed('F', Buffer.concat([int32(1598), int16(0), int16(0), int16(0)]))
  r.write(fcall)
  const ans = await r.until('Z')
  t.same(ans.map((m) => m.type), ['E', 'Z'], `ErrorResponse then ReadyForQuery (${ans.map(describe).join(', ')})`)
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
    async () => (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(1) AS slept%'")).some((r) => r[0].n > 0),
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
  t.ok(msgs.some((m) => m.type === 'R' && m.body.readInt32BE(0) === 0), 'AuthenticationOk')
  t.ok(msgs.some((m) => m.type === 'K'), 'BackendKeyData')
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
  const shape = (e: pg.DatabaseError | null, user: string) =>
    e && { severity: e.severity, code: e.code, message: e.message.split(user).join('<user>'), detail: e.detail, hint: e.hint }
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
    const attrs = Object.fromEntries(cont.body.toString('utf8', 4).split(',').map((a) => [a[0], a.slice(2)]))
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

t.test('(m) 50 aborted connections during a write load', async (t) => {
  const app = 'bad-input-m'
  let stop = false
  const load = (async () => {
    const c = await client(stack)
    c.on('error', () => {})
    let inserted = 0
    const errs: string[] = []
    try {
      while (!stop) {
        const id = inserted + 1
        await c.query('INSERT INTO bad_load VALUES ($1, $2)', [id, `row ${id}`])
        inserted = id
        if (id % 5 === 0) await c.query("UPDATE bad_load SET v = v || '+' WHERE id = $1", [id - 1])
      }
    } catch (e) {
      errs.push(`${(e as { code?: string }).code ?? ''} ${(e as Error).message}`)
    } finally {
      await within(c.end(), 5000, 'closing the load client').catch(() => {})
    }
    return { inserted, errs }
  })()

  const kinds = [
    'destroyed right after connect',
    'destroyed mid startup packet',
    'destroyed right after the startup packet (backends connecting)',
    'destroyed when ready',
    'destroyed inside BEGIN; INSERT',
    'destroyed while a big result streams',
    'destroyed inside a transaction waiting for the load table',
  ]
  // No aborted client runs an autocommit write here: one that vanishes mid-write is case (n).
  const startup = startupPacket({ user: 'trusted', database: 'postgres', application_name: app })
  for (let i = 0; i < 50; i++) {
    const kind = i % kinds.length
    const r = await Raw.open(stack, `${app} #${i}: ${kinds[kind]}`)
    switch (kind) {
      case 0:
        break
      case 1:
        r.write(startup.subarray(0, 11))
        break
      case 2:
        r.write(startup)
        break
      default:
        r.write(startup)
        await r.until('Z', 15_000)
        if (kind === 4) r.write(query(`BEGIN; INSERT INTO bad_chaos VALUES (${i}, 'in tx')`))
        if (kind === 5) r.write(query("SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"))
        if (kind === 6) r.write(query("BEGIN; UPDATE bad_load SET v = v || '!' WHERE id = 1"))
    }
    if (i % 2) await new Promise((res) => setImmediate(res))
    r.destroy()
  }
  stop = true
  const res = await within(load, 20_000, 'the load client did not finish')
  t.same(res.errs, [], 'the load client saw no error')
  t.ok(res.inserted > 0, `the load client kept writing (${res.inserted} inserts)`)
  await waitBackendSessionsGone(app)
  t.pass('every backend session of the aborted clients ended')
  const per = await onEachBackend<{ n: number }>(stack, 'SELECT count(*)::int AS n FROM bad_load')
  t.same(per.map((x) => x[0].n), [res.inserted, res.inserted, res.inserted], 'every backend has every load insert')
  await assertIdentical(t, stack)
  await healthy(t, 'aborted connections')
})

t.test('(n) client vanishes while an autocommit write is done on some backends only', async (t) => {
  // One backend is slower than the others (here: a row lock taken on it directly). When the
  // client vanishes, the write has committed on two backends; the third must end the same.
  const app = 'bad-input-n'
  const c = await client(stack)
  await c.query('CREATE TABLE bad_split (id int PRIMARY KEY, v int NOT NULL)')
  await c.query('INSERT INTO bad_split VALUES (1, 0)')
  const slow = await stack.cluster.backends[2].client()
  t.teardown(() => slow.end().catch(() => {}))
  await slow.query('BEGIN')
  await slow.query('SELECT v FROM bad_split WHERE id = 1 FOR UPDATE')

  const r = await Raw.login(stack, app)
  r.write(query('UPDATE bad_split SET v = v + 1 WHERE id = 1'))
  let state: string[] = []
  await waitUntil(
    async () => {
      const v = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM bad_split WHERE id = 1')
      const w = await onEachBackend<{ n: number }>(stack, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = '${app}' AND wait_event_type = 'Lock'`)
      state = v.map((x, i) => `v=${x[0]?.v} waiting=${w[i][0].n}`)
      return v[0][0]?.v === 1 && v[1][0]?.v === 1 && w[2][0].n === 1
    },
    5000,
    `the UPDATE committed on backends 0 and 1 and waits on backend 2 (${state.join(' / ')})`,
  )
  const told = r.available().map(describe).join(', ') || 'nothing'
  t.pass(`the write committed on two backends and is blocked on the third (the client was sent: ${told})`)
  r.destroy()
  // Give pgraid its chance to stop the slow backend's statement (it must not), then unblock it.
  await waitUntil(async () => (await backendSessions(app))[2] === 0, 2000, '').catch(() => {})
  await slow.query('COMMIT')
  await waitBackendSessionsGone(app)
  const per = await onEachBackend<{ v: number }>(stack, 'SELECT v FROM bad_split WHERE id = 1')
  const vs = per.map((x) => x[0].v)
  t.same(vs, [1, 1, 1], `every backend ends with the write (v per backend: ${vs.join('/')})`)
  await c.query('DROP TABLE bad_split')
  await c.end()
  await assertIdentical(t, stack)
  await healthy(t, 'client vanished mid autocommit write')
})

t.test('(o) client vanishes while its batch waits for the catalog', async (t) => {
  // After DDL every session's next batch waits for the catalog reload; a client that vanishes
  // during that wait must not leave proxy locks behind. The reload is held up here by a lock
  // on pg_trigger (which it reads) on backend 0.
  const app = 'bad-input-o'
  const c = await client(stack)
  c.on('error', () => {})
  await c.query('CREATE TABLE bad_leak (id int PRIMARY KEY, v int NOT NULL)')
  await c.query('INSERT INTO bad_leak VALUES (1, 0)') // reloads the catalog
  const r = await Raw.login(stack, app)
  const blocker = await stack.cluster.backends[0].client()
  t.teardown(() => blocker.end().catch(() => {}))
  await blocker.query('BEGIN')
  await blocker.query('LOCK TABLE pg_catalog.pg_trigger IN ACCESS EXCLUSIVE MODE')
  try {
    await within(c.query("COMMENT ON TABLE bad_leak IS 'invalidates the catalog'"), 5000, 'COMMENT (DDL) through pgraid')
    r.write(query('UPDATE bad_leak SET v = v + 1 WHERE id = 1'))
    await waitUntil(
      async () => (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgraid catalog' AND wait_event_type = 'Lock'"))[0][0].n > 0,
      5000,
      'the catalog reload waits on backend 0',
    )
    r.destroy()
    await waitBackendSessionsGone(app)
    t.pass('the client vanished while its batch waited for the catalog')
  } finally {
    await blocker.query('ROLLBACK')
  }
  await waitUntil(
    async () => (await onEachBackend<{ n: number }>(stack, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgraid catalog'"))[0][0].n === 0,
    5000,
    'the catalog reload finished',
  )
  const c2 = await client(stack)
  c2.on('error', () => {})
  const upd = await within(c2.query('UPDATE bad_leak SET v = v + 1 WHERE id = 1'), 5000, 'UPDATE bad_leak').then(
    () => true,
    () => false,
  )
  if (!upd) (c2 as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy()
  else await c2.end()
  await c.end()
  // Every client of this case is gone now: nothing may stay held in pgraid's lock manager.
  let held: string[] = []
  const lockSnapshot = () =>
    stack.proxy.context.locks
      .snapshot()
      .filter((x) => x.holders.length)
      .map((x) => `${x.resource} held by ${x.holders.join(', ')}${x.waiters.length ? `, waited for by ${x.waiters.join(', ')}` : ''}`)
  await waitUntil(async () => (held = lockSnapshot()).length === 0, 2000, '').catch(() => {})
  t.ok(upd, 'a new session can UPDATE bad_leak within 5 s')
  t.same(held, [], `no proxy lock is left held once every client is gone (${held.join('; ') || 'none'})`)
  await healthy(t, 'client vanished while waiting for the catalog')
})

t.test('end: guard on every backend, backends identical', async (t) => {
  const per = await onEachBackend<{ id: number; v: string }>(stack, 'SELECT id, v FROM guard ORDER BY id')
  for (const [i, rows] of per.entries()) t.same(rows, GUARD_ROWS, `backend ${i}: guard intact`)
  await assertIdentical(t, stack)
})
