// md5 password authentication: stored hash, client response, server check; cross-checked
// against an independent computation and node-postgres's client.
import t from 'tap'
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { checkMd5Response, isMd5Hash, md5PasswordHash, md5Response } from '../../src/auth/md5.ts'
import { makeScramVerifier } from '../../src/auth/scram.ts'

const md5 = (s: string | Buffer) => createHash('md5').update(s).digest('hex')
const salt = Buffer.from([0x01, 0x02, 0xfe, 0xff])

t.test('md5PasswordHash', async (t) => {
  t.equal(md5PasswordHash('postgres', 'secret'), 'md5' + md5('secretpostgres'))
  t.match(md5PasswordHash('postgres', 'secret'), /^md5[0-9a-f]{32}$/)
  // Written by PostgreSQL 15 for CREATE ROLE r6 PASSWORD 'secret' with password_encryption = md5.
  t.equal(md5PasswordHash('r6', 'secret'), 'md5e32916d65635923197a3214f70df664a', 'matches PostgreSQL')
  t.equal(md5PasswordHash('jos\u00e9', 'p\u00e4ss'), 'md5' + md5(Buffer.from('p\u00e4ssjos\u00e9', 'utf8')), 'UTF-8 bytes')
})

t.test('md5Response', async (t) => {
  const expected = 'md5' + md5(Buffer.concat([Buffer.from(md5('secretpostgres')), salt]))
  t.equal(md5Response('postgres', 'secret', salt), expected, 'from the plain password')
  t.equal(md5Response('postgres', md5PasswordHash('postgres', 'secret'), salt), expected, 'from the stored hash')
  t.not(md5Response('postgres', 'secret', Buffer.from([1, 2, 3, 4])), expected, 'salt matters')

  // node-postgres computes the same thing when it answers AuthenticationMD5Password.
  const pgUtils = createRequire(import.meta.url)('pg/lib/crypto/utils.js') as {
    postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>
  }
  t.equal(await pgUtils.postgresMd5PasswordHash('postgres', 'secret', salt), expected, 'matches node-postgres')
})

t.test('checkMd5Response', async (t) => {
  const stored = md5PasswordHash('postgres', 'secret')
  const good = md5Response('postgres', 'secret', salt)
  for (const [what, held] of [
    ['stored hash', stored],
    ['plain password', 'secret'],
  ] as const) {
    t.ok(checkMd5Response(held, 'postgres', salt, good), `${what}: accepts the right response`)
    t.notOk(checkMd5Response(held, 'postgres', salt, md5Response('postgres', 'Secret', salt)), `${what}: wrong password`)
    t.notOk(checkMd5Response(held, 'postgres', salt, md5Response('other', 'secret', salt)), `${what}: response for another user`)
    t.notOk(checkMd5Response(held, 'postgres', Buffer.from([9, 9, 9, 9]), good), `${what}: replay with another salt`)
    t.notOk(checkMd5Response(held, 'postgres', salt, good.slice(0, -1)), `${what}: truncated`)
    t.notOk(checkMd5Response(held, 'postgres', salt, ''), `${what}: empty`)
    t.notOk(checkMd5Response(held, 'postgres', salt, good.toUpperCase()), `${what}: case matters`)
  }
  t.notOk(checkMd5Response(makeScramVerifier('secret'), 'postgres', salt, good), 'a SCRAM verifier cannot answer md5')
})

t.test('isMd5Hash', async (t) => {
  t.ok(isMd5Hash(md5PasswordHash('u', 'p')))
  t.notOk(isMd5Hash('md5' + 'A'.repeat(32)), 'uppercase hex is a password, as in PostgreSQL')
  t.notOk(isMd5Hash('md5abc'))
  t.notOk(isMd5Hash('secret'))
})
