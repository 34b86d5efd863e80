// SCRAM-SHA-256: RFC 7677 test vector, client/server round trips, malformed input, and
// interoperability with node-postgres's client implementation.
import t from 'tap'
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import { ScramClient, ScramError, ScramServer, makeScramVerifier, parseScramVerifier, saslPrep, type ScramVerifier } from '../../src/auth/scram.ts'

// RFC 7677 §3.
const RFC = {
  password: 'pencil',
  user: 'user',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
}

const b = (s: string) => Buffer.from(s, 'utf8')

function verifierFor(password: string, iterations = 4096, salt?: Buffer): ScramVerifier {
  const v = parseScramVerifier(makeScramVerifier(password, iterations, salt))
  if (!v) throw new Error('makeScramVerifier produced an unparsable verifier')
  return v
}

// The few assertions throwsScram needs; both the root and subtests provide them.
type Assert = Pick<typeof t, 'ok' | 'equal' | 'fail'>

/** Asserts fn throws a ScramError of the given kind (and nothing else). */
function throwsScram(t: Assert, fn: () => unknown, kind: ScramError['kind'], msg: string) {
  try {
    fn()
    t.fail(`${msg}: did not throw`)
  } catch (err) {
    t.ok(err instanceof ScramError, `${msg}: is ScramError (${(err as Error).message})`)
    t.equal((err as ScramError).kind, kind, `${msg}: kind ${kind}`)
  }
}

t.test('RFC 7677 test vector, client side', async (t) => {
  const client = new ScramClient(RFC.password, { user: RFC.user, nonce: RFC.clientNonce })
  t.equal(client.first().toString(), RFC.clientFirst)
  t.equal(client.final(b(RFC.serverFirst)).toString(), RFC.clientFinal)
  t.doesNotThrow(() => client.verify(b(RFC.serverFinal)))
})

t.test('RFC 7677 test vector, server side', async (t) => {
  const server = new ScramServer(verifierFor(RFC.password, 4096, RFC.salt), { nonce: RFC.serverNonce })
  t.equal(server.start(b(RFC.clientFirst)).toString(), RFC.serverFirst)
  t.equal(server.finish(b(RFC.clientFinal)).toString(), RFC.serverFinal)
})

t.test('verifier format', async (t) => {
  const text = makeScramVerifier('secret')
  t.match(text, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/)
  const v = parseScramVerifier(text)!
  t.equal(v.iterations, 4096)
  t.equal(v.salt.length, 16)
  t.equal(v.storedKey.length, 32)
  t.equal(v.serverKey.length, 32)
  t.not(makeScramVerifier('secret'), text, 'random salt each time')
  t.equal(makeScramVerifier('secret', 10, RFC.salt), makeScramVerifier('secret', 10, RFC.salt), 'deterministic given a salt')

  for (const bad of [
    '',
    'md5a3556571e93b0d20722ba62be61e8c2d',
    'secret',
    'SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA', // keys too short
    'SCRAM-SHA-256$0:' + text.split(':')[1] + ':' + text.split(':')[2],
    text.replace('SCRAM-SHA-256$', 'SCRAM-SHA-1$'),
    text.replace('$4096:', '$-1:'),
    text + ':x',
    text.replace(/:[^:$]+\$/, ':not base64!$'),
  ]) {
    t.equal(parseScramVerifier(bad), null, `rejects ${JSON.stringify(bad)}`)
  }
  t.throws(() => makeScramVerifier('x', 0), RangeError)
})

// Verifiers written by a real PostgreSQL 15 (CREATE ROLE ... PASSWORD with password_encryption =
// scram-sha-256, read back from pg_authid), including SASLprep's mapping, NFKC and raw-fallback
// paths. Same salt and iterations must give the identical string, and our client must log in.
const FROM_POSTGRES: [string, string][] = [
  ['secret', 'SCRAM-SHA-256$4096:UY60MD1FmwNqzXWWFYAFyg==$dPQ/VfTNUUNvS9cECBBT1tIpa0COcEZRY2Xfkbvbgc4=:HIqfgKjfUYJjXucDe2mbrhbG0UYHtm0NYxwugrEqoxw='],
  ['\u2168\u00a0caf\u00e9', 'SCRAM-SHA-256$4096:SU+dIpO2Wpt12087IIDjBg==$tc6EXH4D7cpt00fxYetaRRpVdffsAito4Fecz9kpYN8=:mBnUnBXU09xEOeQeXBuPhxojE3fmp63I/wUqlXxnSmg='],
  ['\uff21\u0007x', 'SCRAM-SHA-256$4096:g7mpH+ednPSpdShtIHmnQQ==$fBqStSWaKxsVoDcU/PrHWYTQ5W6mkZSWUQAuOw8T01A=:QUupOa+iR17OOC26Mv0Cqz1+foge3FnGM5I6xpvz+mk='],
  ['I\u00adX', 'SCRAM-SHA-256$4096:KJEUp/stAG3gTdmHfa360Q==$lKMUm6qrRRbpQxrQAWRttAsz43XQv4rtgW8Muayx/qI=:Q7yx45Pnfvy0xtBcOSZSL3HtRaMaV/uEG5C6aLxAtrE='],
  ['\u00ad', 'SCRAM-SHA-256$4096:fImnPoONu1ObMpYZ5mbFyQ==$F4BvRd8t6umIBLpGiFiVQYM3R1Qrg8nFR85/EvWOWhU=:Ht7mIY2U2cSRjC9ODP2t/+vqQUaPuBRxszDdv5f4oXU='],
]

t.test('verifiers produced by PostgreSQL 15', async (t) => {
  for (const [password, pgVerifier] of FROM_POSTGRES) {
    const v = parseScramVerifier(pgVerifier)
    if (!v) {
      t.fail(`cannot parse ${pgVerifier}`)
      continue
    }
    t.equal(makeScramVerifier(password, v.iterations, v.salt), pgVerifier, `same verifier for ${JSON.stringify(password)}`)
    const server = new ScramServer(v)
    const client = new ScramClient(password)
    t.doesNotThrow(() => client.verify(server.finish(client.final(server.start(client.first())))), 'client logs in')
  }
})

t.test('ScramClient <-> ScramServer round trip', async (t) => {
  const verifier = verifierFor('secret')

  t.test('right password', async (t) => {
    const client = new ScramClient('secret')
    const server = new ScramServer(verifier)
    const first = client.first()
    t.match(first.toString(), /^n,,n=,r=[A-Za-z0-9+/]{24}$/, 'libpq-style client-first, 18-byte nonce')
    const serverFirst = server.start(first)
    const serverFinal = server.finish(client.final(serverFirst))
    t.doesNotThrow(() => client.verify(serverFinal))
  })

  t.test('wrong password', async (t) => {
    const client = new ScramClient('Secret')
    const server = new ScramServer(verifier)
    const clientFinal = client.final(server.start(client.first()))
    throwsScram(t, () => server.finish(clientFinal), 'bad-proof', 'wrong password')
    throwsScram(t, () => server.finish(clientFinal), 'protocol', 'no second try on the same exchange')
  })

  t.test('tampered nonce', async (t) => {
    const client = new ScramClient('secret')
    const server = new ScramServer(verifier)
    const clientFinal = client.final(server.start(client.first())).toString()
    const tampered = clientFinal.replace(/,r=(.)/, (_m, c: string) => `,r=${c === 'A' ? 'B' : 'A'}`)
    t.not(tampered, clientFinal)
    throwsScram(t, () => server.finish(b(tampered)), 'protocol', 'nonce mismatch')
  })

  t.test('tampered proof', async (t) => {
    const client = new ScramClient('secret')
    const server = new ScramServer(verifier)
    const clientFinal = client.final(server.start(client.first())).toString()
    const proof = Buffer.from(clientFinal.split(',p=')[1]!, 'base64')
    proof[0]! ^= 1
    const tampered = `${clientFinal.split(',p=')[0]},p=${proof.toString('base64')}`
    throwsScram(t, () => server.finish(b(tampered)), 'bad-proof', 'flipped proof bit')
  })

  t.test('client rejects a server that does not know the keys', async (t) => {
    const client = new ScramClient('secret')
    const impostor = new ScramServer(verifierFor('other', verifier.iterations, verifier.salt))
    const serverFirst = impostor.start(client.first())
    const clientFinal = client.final(serverFirst)
    // The impostor cannot produce a valid v=; fake one of the right length.
    throwsScram(t, () => impostor.finish(clientFinal), 'bad-proof', 'impostor rejects the proof')
    throwsScram(t, () => client.verify(b(`v=${randomBytes(32).toString('base64')}`)), 'bad-proof', 'bad signature')
  })

  t.test('server error in server-final', async (t) => {
    const client = new ScramClient('secret')
    const server = new ScramServer(verifier)
    client.final(server.start(client.first()))
    throwsScram(t, () => client.verify(b('e=invalid-proof')), 'protocol', 'e= attribute')
  })

  t.test('user name escaping is part of AuthMessage', async (t) => {
    const client = new ScramClient('secret', { user: 'a=b,c' })
    const server = new ScramServer(verifier)
    const first = client.first()
    t.equal(first.toString().split(',r=')[0], 'n,,n=a=3Db=2Cc')
    t.doesNotThrow(() => client.verify(server.finish(client.final(server.start(first)))))
  })

  t.test("gs2 'y' flag is accepted", async (t) => {
    const server = new ScramServer(verifierFor('pencil', 4096, RFC.salt), { nonce: RFC.serverNonce })
    server.start(b(RFC.clientFirst.replace(/^n/, 'y')))
    // c= must now carry 'y,,' (eSws); the RFC's biws no longer matches.
    throwsScram(t, () => server.finish(b(RFC.clientFinal)), 'protocol', 'channel binding mismatch')
  })
})

t.test('SASLprep', async (t) => {
  t.equal(saslPrep('pencil'), 'pencil', 'ASCII untouched')
  t.equal(saslPrep('a\u0007b'), 'a\u0007b', 'ASCII untouched even with controls (PostgreSQL shortcut)')
  t.equal(saslPrep('I\u00ADX'), 'IX', 'soft hyphen maps to nothing')
  t.equal(saslPrep('a\u00A0b\u00e9'), 'a b\u00e9', 'non-ASCII space maps to space')
  t.equal(saslPrep('\u2168'), 'IX', 'NFKC')
  t.equal(saslPrep('\uFF21\u0007'), '\uFF21\u0007', 'prohibited character: raw fallback')
  t.equal(saslPrep('\u00AD'), '\u00AD', 'empty after mapping: raw fallback')
  t.equal(saslPrep('e\u0301'), '\u00e9', 'composition')

  // A verifier made from the normalized form accepts the unnormalized password.
  const server = new ScramServer(verifierFor('IX', 64))
  const client = new ScramClient('\u2168')
  t.doesNotThrow(() => client.verify(server.finish(client.final(server.start(client.first())))))
})

t.test('malformed input to the server is always a protocol ScramError', async (t) => {
  const verifier = verifierFor('pencil', 4096, RFC.salt)
  const startCases: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['invalid UTF-8', Buffer.from([0x6e, 0x2c, 0x2c, 0xff, 0xfe])],
    ['NUL', b('n,,n=,r=abc\0def')],
    ['no commas', b('garbage')],
    ['truncated header', b('n,')],
    ['header only', b('n,,')],
    ['unknown flag', b('x,,n=,r=abc')],
    ['channel binding p=', b('p=tls-server-end-point,,n=,r=abc')],
    ['authzid', b('n,a=bob,n=,r=abc')],
    ['mandatory extension', b('n,,m=foo,n=,r=abc')],
    ['missing user', b('n,,r=abc')],
    ['missing nonce', b('n,,n=')],
    ['empty nonce', b('n,,n=,r=')],
    ['non-printable nonce', b('n,,n=,r=ab\u00e9')],
    ['trailing garbage', b('n,,n=,r=abc,x=1')],
  ]
  for (const [name, input] of startCases) {
    throwsScram(t, () => new ScramServer(verifier).start(input), 'protocol', `start: ${name}`)
  }

  const nonce = `${RFC.clientNonce}${RFC.serverNonce}`
  const proof = RFC.clientFinal.split(',p=')[1]
  const finishCases: [string, string][] = [
    ['empty', ''],
    ['garbage', 'garbage'],
    ['missing c', `r=${nonce},p=${proof}`],
    ['bad base64 binding', `c=b!ws,r=${nonce},p=${proof}`],
    ['wrong binding', `c=eSws,r=${nonce},p=${proof}`],
    ['missing nonce', `c=biws,p=${proof}`],
    ['nonce is only the client part', `c=biws,r=${RFC.clientNonce},p=${proof}`],
    ['missing proof', `c=biws,r=${nonce}`],
    ['bad base64 proof', `c=biws,r=${nonce},p=###`],
    ['short proof', `c=biws,r=${nonce},p=AAAA`],
    ['proof not last', `c=biws,r=${nonce},p=${proof},x=1`],
    ['bad extension', `c=biws,r=${nonce},junk,p=${proof}`],
  ]
  for (const [name, input] of finishCases) {
    const server = new ScramServer(verifier, { nonce: RFC.serverNonce })
    server.start(b(RFC.clientFirst))
    throwsScram(t, () => server.finish(b(input)), 'protocol', `finish: ${name}`)
  }

  // Extensions between r= and p= are ignored, as PostgreSQL does.
  const server = new ScramServer(verifier, { nonce: RFC.serverNonce })
  server.start(b(RFC.clientFirst))
  throwsScram(
    t,
    () => server.finish(b(RFC.clientFinal.replace(',p=', ',x=ext,p='))),
    'bad-proof', // well-formed, but the extension is part of AuthMessage so the old proof fails
    'extension accepted syntactically',
  )

  throwsScram(t, () => new ScramServer(verifier).finish(b(RFC.clientFinal)), 'protocol', 'finish before start')
  const twice = new ScramServer(verifier)
  twice.start(b(RFC.clientFirst))
  throwsScram(t, () => twice.start(b(RFC.clientFirst)), 'protocol', 'start twice')

  // Random bytes and random mutations of valid messages never escape as another error type.
  let others = 0
  for (let i = 0; i < 2000; i++) {
    const s = new ScramServer(verifier, { nonce: RFC.serverNonce })
    const mutate = (msg: string) => {
      const buf = i % 3 === 0 ? randomBytes(i % 40) : b(msg)
      if (buf.length) buf[i % buf.length] = randomBytes(1)[0]!
      return buf
    }
    try {
      s.start(i % 2 ? mutate(RFC.clientFirst) : b(RFC.clientFirst))
      s.finish(mutate(RFC.clientFinal))
    } catch (err) {
      if (!(err instanceof ScramError)) others++
    }
  }
  t.equal(others, 0, 'fuzzing produced only ScramErrors')
})

t.test('malformed input to the client is always a protocol ScramError', async (t) => {
  const fresh = () => {
    const c = new ScramClient(RFC.password, { user: RFC.user, nonce: RFC.clientNonce })
    c.first()
    return c
  }
  const cases: [string, string][] = [
    ['empty', ''],
    ['garbage', 'garbage'],
    ['mandatory extension', `m=x,${RFC.serverFirst}`],
    ['nonce not extending ours', RFC.serverFirst.replace('r=rOpr', 'r=XOpr')],
    ['nonce equal to ours', `r=${RFC.clientNonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`],
    ['bad salt', RFC.serverFirst.replace('s=W22Z', 's=W2!Z')],
    ['empty salt', RFC.serverFirst.replace('s=W22ZaJ0SNY7soEsUEjb6gQ==', 's=')],
    ['zero iterations', RFC.serverFirst.replace('i=4096', 'i=0')],
    ['negative iterations', RFC.serverFirst.replace('i=4096', 'i=-1')],
    ['non-numeric iterations', RFC.serverFirst.replace('i=4096', 'i=lots')],
    ['missing iterations', RFC.serverFirst.replace(',i=4096', '')],
    ['trailing garbage', `${RFC.serverFirst},x=1`],
  ]
  for (const [name, input] of cases) throwsScram(t, () => fresh().final(b(input)), 'protocol', `final: ${name}`)

  throwsScram(t, () => new ScramClient('x').final(b(RFC.serverFirst)), 'protocol', 'final before first')
  const capped = new ScramClient('x', { nonce: RFC.clientNonce, maxIterations: 1000 })
  capped.first()
  throwsScram(t, () => capped.final(b(RFC.serverFirst)), 'protocol', 'iterations above maxIterations')

  for (const [name, input] of [
    ['empty', ''],
    ['garbage', 'garbage'],
    ['bad base64', 'v=!!!!'],
    ['trailing garbage', `${RFC.serverFinal},x=1`],
  ] as const) {
    const c = fresh()
    c.final(b(RFC.serverFirst))
    throwsScram(t, () => c.verify(b(input)), 'protocol', `verify: ${name}`)
  }
})

// node-postgres's client SCRAM (the code `pg` runs against real PostgreSQL servers) driving our server.
interface PgSession {
  mechanism: string
  response: string
  message: string
}
interface PgSasl {
  startSession(mechanisms: string[], stream?: unknown): PgSession
  continueSession(session: PgSession, password: string, serverData: string, stream?: unknown): Promise<void>
  finalizeSession(session: PgSession, serverData: string): void
}
const pgSasl = createRequire(import.meta.url)('pg/lib/crypto/sasl.js') as PgSasl

t.test('interop with node-postgres client SCRAM', async (t) => {
  const verifier = parseScramVerifier(makeScramVerifier('secret'))!

  t.test('right password', async (t) => {
    const server = new ScramServer(verifier)
    const session = pgSasl.startSession(['SCRAM-SHA-256'])
    t.match(session.response, /^n,,n=\*,r=/, 'pg sends user "*", which we ignore')
    const serverFirst = server.start(b(session.response)).toString()
    await pgSasl.continueSession(session, 'secret', serverFirst)
    const serverFinal = server.finish(b(session.response)).toString()
    t.doesNotThrow(() => pgSasl.finalizeSession(session, serverFinal), 'pg accepts our server signature')
  })

  t.test('wrong password', async (t) => {
    const server = new ScramServer(verifier)
    const session = pgSasl.startSession(['SCRAM-SHA-256'])
    await pgSasl.continueSession(session, 'not-secret', server.start(b(session.response)).toString())
    throwsScram(t, () => server.finish(b(session.response)), 'bad-proof', 'pg with wrong password')
  })

  t.test("'y' flag (TLS stream, server offers no -PLUS)", async (t) => {
    const server = new ScramServer(verifier)
    const fakeTlsStream = {}
    const session = pgSasl.startSession(['SCRAM-SHA-256'], fakeTlsStream)
    t.match(session.response, /^y,,/)
    await pgSasl.continueSession(session, 'secret', server.start(b(session.response)).toString(), fakeTlsStream)
    const serverFinal = server.finish(b(session.response)).toString()
    t.doesNotThrow(() => pgSasl.finalizeSession(session, serverFinal))
  })

  t.test("'p=' channel binding is refused", async (t) => {
    const session = pgSasl.startSession(['SCRAM-SHA-256-PLUS'], { getPeerCertificate: () => ({}) })
    t.match(session.response, /^p=tls-server-end-point,,/)
    throwsScram(t, () => new ScramServer(verifier).start(b(session.response)), 'protocol', 'SCRAM-SHA-256-PLUS')
  })

  t.test('non-ASCII password goes through SASLprep on both sides', async (t) => {
    const server = new ScramServer(parseScramVerifier(makeScramVerifier('\u2168\u00a0caf\u00e9'))!)
    const session = pgSasl.startSession(['SCRAM-SHA-256'])
    await pgSasl.continueSession(session, 'IX cafe\u0301', server.start(b(session.response)).toString())
    t.doesNotThrow(() => server.finish(b(session.response)))
  })
})
