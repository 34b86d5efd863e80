// Differential cases (issue 17, items 4 and 7): the same bytes sent to
// pgraid and to a PostgreSQL backend directly, the answers compared message
// by message (type, SQLSTATE, severity) and whether the server closed the
// connection. After every case a canary session through pgraid must work
// and no backend may have left service.

import t from 'tap'
import net from 'node:net'
import { stackFor, client } from '../harness/stack.ts'
import { cstr, int32, typed } from '../harness/bytes.ts'

const stack = await stackFor(t)
const direct = stack.cluster.backends[2]! // auth trust: logs in with user postgres and no password

const startup = (user: string) => {
  const params = Buffer.concat([cstr('user'), cstr(user), cstr('database'), cstr('postgres'), Buffer.from([0])])
  return Buffer.concat([int32(8 + params.length), int32(196608), params])
}
const SSL_REQUEST = Buffer.concat([int32(8), int32(80877103)])
const GSS_REQUEST = Buffer.concat([int32(8), int32(80877104)])

interface Outcome {
  /** Single-byte answers ('N'/'S'/'G') and messages, as "type" or "E:SQLSTATE:severity". */
  seen: string[]
  closed: boolean
}

/**
 * Sends `steps` (each after the previous answer settled), collecting what comes back until the
 * server closes the connection or stays silent for `quietMs`.
 */
async function run(port: number, steps: Buffer[], opts: { byteAnswers?: number; quietMs?: number } = {}): Promise<Outcome> {
  const sock = net.connect({ host: '127.0.0.1', port })
  await new Promise<void>((res, rej) => {
    sock.once('connect', () => res())
    sock.once('error', rej)
  })
  let buf = Buffer.alloc(0)
  const seen: string[] = []
  let closed = false
  let byteAnswers = opts.byteAnswers ?? 0
  let wake: (() => void) | null = null
  sock.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c])
    for (;;) {
      if (byteAnswers > 0 && buf.length >= 1 && (buf[0] === 0x4e || buf[0] === 0x53 || buf[0] === 0x47)) {
        seen.push(`byte:${String.fromCharCode(buf[0]!)}`)
        buf = buf.subarray(1)
        byteAnswers--
        continue
      }
      if (buf.length < 5) break
      const len = buf.readInt32BE(1)
      if (buf.length < len + 1) break
      const type = String.fromCharCode(buf[0]!)
      const body = buf.subarray(5, len + 1)
      if (type === 'E' || type === 'N') {
        const fields: Record<string, string> = {}
        let i = 0
        while (i < body.length && body[i] !== 0) {
          const end = body.indexOf(0, i + 1)
          fields[String.fromCharCode(body[i]!)] = body.toString('utf8', i + 1, end)
          i = end + 1
        }
        if (type === 'E') seen.push(`E:${fields.C}:${fields.V ?? fields.S}`)
      } else if (type !== 'S' && type !== 'K') seen.push(type)
      buf = buf.subarray(len + 1)
    }
    wake?.()
  })
  sock.on('close', () => {
    closed = true
    wake?.()
  })
  sock.on('error', () => {})
  const settle = async () => {
    for (;;) {
      const before = seen.length
      const quiet = new Promise<void>((res) => {
        const timer = setTimeout(res, opts.quietMs ?? 600)
        wake = () => {
          clearTimeout(timer)
          res()
        }
      })
      await quiet
      wake = null
      if (closed || seen.length === before) return
    }
  }
  for (const s of steps) {
    if (closed) break
    sock.write(s)
    await settle()
  }
  sock.destroy()
  return { seen, closed }
}

async function canary(t: Test): Promise<void> {
  const c = await client(stack)
  t.same((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'a new session through pgraid works')
  await c.end()
  t.same(
    stack.proxy.context.states.list.map((b) => b.state),
    ['enabled', 'enabled', 'enabled'],
    'every backend in service',
  )
}

import type { Test } from 'tap'

/** `md5`: compared with an md5-password backend (user postgres) and pgraid's md5 user, not the trust ones. */
type Case = { name: string; steps: (user: string) => Buffer[]; byteAnswers?: number; md5?: boolean }

const loggedIn = (user: string, ...after: Buffer[]) => [startup(user), ...after]

const CASES: Case[] = [
  { name: 'random bytes as the startup packet', steps: () => [Buffer.from('8f3a91c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829', 'hex')] },
  { name: 'a 20 kB startup packet', steps: () => [Buffer.concat([int32(20_000), int32(196608), Buffer.alloc(20_000 - 8, 0x61)])] },
  { name: 'Terminate before the startup packet', steps: () => [typed('X', Buffer.alloc(0))] },
  { name: 'a second SSLRequest after N', steps: () => [SSL_REQUEST, SSL_REQUEST], byteAnswers: 2 },
  { name: 'garbage right after an SSLRequest', steps: () => [Buffer.concat([SSL_REQUEST, Buffer.from('garbage!')])], byteAnswers: 1 },
  { name: 'garbage right after a GSSENCRequest', steps: () => [Buffer.concat([GSS_REQUEST, Buffer.from('garbage!')])], byteAnswers: 1 },
  { name: 'a message declaring exactly 1 GiB', steps: (u) => loggedIn(u, Buffer.concat([Buffer.from('Q'), int32(1 << 30), Buffer.from('SELECT 1')])) },
  { name: 'a Sync with a 100 kB body', steps: (u) => loggedIn(u, typed('S', Buffer.alloc(100_000))) },
  { name: 'a Flush with a 100 kB body', steps: (u) => loggedIn(u, typed('H', Buffer.alloc(100_000))) },
  { name: 'a Sync with a 4-byte body', steps: (u) => loggedIn(u, typed('S', Buffer.alloc(4))) },
  { name: 'a Query with an empty body', steps: (u) => loggedIn(u, typed('Q', Buffer.alloc(0)), typed('Q', cstr('SELECT 1'))) },
  { name: 'a Query without its NUL', steps: (u) => loggedIn(u, typed('Q', Buffer.from('SELECT 1')), typed('Q', cstr('SELECT 1'))) },
  { name: 'a Parse without NULs, then Sync', steps: (u) => loggedIn(u, Buffer.concat([typed('P', Buffer.alloc(16, 0x78)), typed('S', Buffer.alloc(0))]), typed('Q', cstr('SELECT 1'))) },
  {
    name: 'a Parse with a truncated parameter count, then Sync',
    steps: (u) => loggedIn(u, Buffer.concat([typed('P', Buffer.concat([cstr(''), cstr('SELECT 1'), Buffer.from([0])])), typed('S', Buffer.alloc(0))]), typed('Q', cstr('SELECT 1'))),
  },
  {
    name: 'a Describe of an unknown kind, then Sync',
    steps: (u) => loggedIn(u, Buffer.concat([typed('D', Buffer.concat([Buffer.from('Z'), cstr('')])), typed('S', Buffer.alloc(0))]), typed('Q', cstr('SELECT 1'))),
  },
  // Behind readable messages: PostgreSQL answers those first, then the error, then skips to the Sync.
  {
    name: 'Parse/Bind/Execute, then a Describe of an unknown kind, then Sync',
    steps: (u) =>
      loggedIn(
        u,
        Buffer.concat([...extendedSelect(), typed('D', Buffer.concat([Buffer.from('Z'), cstr('')])), typed('E', Buffer.concat([cstr(''), int32(0)])), typed('S', Buffer.alloc(0))]),
        typed('Q', cstr('SELECT 1')),
      ),
  },
  { name: 'Parse/Bind/Execute, then a Sync with a 4-byte body', steps: (u) => loggedIn(u, Buffer.concat([...extendedSelect(), typed('S', Buffer.alloc(4))]), typed('Q', cstr('SELECT 1'))) },
  { name: 'Parse/Bind/Execute, then a Query without its NUL', steps: (u) => loggedIn(u, Buffer.concat([...extendedSelect(), typed('Q', Buffer.from('SELECT 1'))]), typed('Q', cstr('SELECT 1'))) },
  // PostgreSQL reads an authentication message up to 65,535 bytes (PG_MAX_AUTH_TOKEN_LENGTH).
  { name: 'a 100 kB password message', steps: (u) => [startup(u), typed('p', Buffer.alloc(100_000, 0x61))], md5: true },
  { name: 'a password message without its NUL', steps: (u) => [startup(u), typed('p', Buffer.from('secret'))], md5: true },
  {
    name: 'Parse/Bind/Execute, then a Parse without NULs, then Sync',
    steps: (u) => loggedIn(u, Buffer.concat([...extendedSelect(), typed('P', Buffer.alloc(16, 0x78)), typed('S', Buffer.alloc(0))]), typed('Q', cstr('SELECT 1'))),
  },
]

function extendedSelect(): Buffer[] {
  return [
    typed('P', Buffer.concat([cstr(''), cstr('SELECT 1'), Buffer.from([0, 0])])),
    typed('B', Buffer.concat([cstr(''), cstr(''), Buffer.from([0, 0, 0, 0, 0, 0])])),
    typed('E', Buffer.concat([cstr(''), int32(0)])),
  ]
}

for (const c of CASES) {
  t.test(c.name, async (t) => {
    const pgOut = await run((c.md5 ? stack.cluster.backends[1]! : direct).port, c.steps('postgres'), { byteAnswers: c.byteAnswers })
    const ours = await run(stack.port, c.steps(c.md5 ? 'md5user' : 'trusted'), { byteAnswers: c.byteAnswers })
    t.same(ours, pgOut, `pgraid: ${JSON.stringify(ours)}; PostgreSQL: ${JSON.stringify(pgOut)}`)
    await canary(t)
  })
}
