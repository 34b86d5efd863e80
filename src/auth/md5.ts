// PostgreSQL's legacy md5 password authentication: the stored hash, the client's response to
// AuthenticationMD5Password, and the server-side check. Pure functions, no I/O.
import { createHash, timingSafeEqual } from 'node:crypto'

// PostgreSQL recognises a stored md5 hash by exactly this shape (lowercase hex only).
const MD5_HASH = /^md5[0-9a-f]{32}$/

function md5hex(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex')
}

/** True if `text` is a stored md5 hash rather than a plain password (PostgreSQL's own test). */
export function isMd5Hash(text: string): boolean {
  return MD5_HASH.test(text)
}

/** 'md5' + md5(password + user): the value PostgreSQL keeps in pg_authid.rolpassword. */
export function md5PasswordHash(user: string, password: string): string {
  return 'md5' + md5hex(Buffer.from(password + user, 'utf8'))
}

/**
 * The PasswordMessage payload answering AuthenticationMD5Password:
 * 'md5' + md5(md5hex(password + user) + salt). A stored 'md5…' hash works in place of the
 * password because the inner digest is all the protocol needs — which is also why md5 hashes
 * are password-equivalent. As in PostgreSQL, a plain password that looks exactly like an md5
 * hash is taken to be one.
 */
export function md5Response(user: string, passwordOrStoredHash: string, salt: Buffer): string {
  const inner = isMd5Hash(passwordOrStoredHash) ? passwordOrStoredHash.slice(3) : md5hex(Buffer.from(passwordOrStoredHash + user, 'utf8'))
  return 'md5' + md5hex(Buffer.concat([Buffer.from(inner, 'ascii'), salt]))
}

/**
 * Server side: does `response` prove knowledge of the password? `storedOrPlain` is what we hold
 * for the role: an md5 hash or a plain password. A SCRAM verifier cannot answer an md5
 * challenge (PostgreSQL switches to SCRAM instead), so it never matches here.
 */
export function checkMd5Response(storedOrPlain: string, user: string, salt: Buffer, response: string): boolean {
  if (storedOrPlain.startsWith('SCRAM-SHA-256$')) return false
  const expected = Buffer.from(md5Response(user, storedOrPlain, salt), 'utf8')
  const got = Buffer.from(response, 'utf8')
  // The length (always 35) is public; only the content comparison must not leak timing.
  return got.length === expected.length && timingSafeEqual(got, expected)
}
