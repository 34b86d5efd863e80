// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: the stored verifier string, the
// server side of the SASL exchange (pgraid authenticating a client) and the client side (pgraid
// logging in to a backend). Pure: Buffers in, Buffers out, no sockets, no I/O.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto'

export const SCRAM_SHA_256 = 'SCRAM-SHA-256'

const KEY_LEN = 32 // SHA-256 output; StoredKey, ServerKey and proofs all have this length
const DEFAULT_ITERATIONS = 4096 // PostgreSQL's scram_iterations default
const DEFAULT_SALT_LEN = 16 // what PostgreSQL generates
const NONCE_BYTES = 18 // PostgreSQL and libpq both use 18 random bytes, base64-encoded

export interface ScramVerifier {
  iterations: number
  salt: Buffer
  storedKey: Buffer
  serverKey: Buffer
}

export type ScramErrorKind = 'protocol' | 'bad-proof'

/**
 * Every failure of an exchange. 'bad-proof' means the credentials are wrong (the caller answers
 * 28P01 invalid_password); 'protocol' means the peer sent something malformed or unsupported
 * (08P01 protocol_violation). The distinction matters because only the former may be counted
 * as a failed login attempt.
 */
export class ScramError extends Error {
  override name = 'ScramError'
  readonly kind: ScramErrorKind
  constructor(kind: ScramErrorKind, message: string) {
    super(message)
    this.kind = kind
  }
}

// ---------------------------------------------------------------------------------------------
// SASLprep (RFC 4013), simplified.
//
// PostgreSQL applies SASLprep to the password both when it stores a verifier and in libpq, and
// uses the raw password whenever SASLprep fails, so we must fail in the same cases to derive the
// same keys. Implemented: PostgreSQL's pure-ASCII shortcut, the two mapping tables, the
// "empty after mapping" rule, the prohibited-output tables (checked, like PostgreSQL, on the
// mapped string before normalization) and NFKC.
// Not implemented: the "unassigned in Unicode 3.2" table (A.1) and the bidi rule (RFC 3454 §6).
// Passwords that trip only those checks *and* are changed by mapping/NFKC (e.g. Latin mixed with
// Arabic presentation forms, or fullwidth letters next to an emoji) get keys PostgreSQL would
// not derive. The tables are too large to be worth it for such passwords.

type Ranges = readonly (readonly [number, number])[]

// RFC 3454 C.1.2, non-ASCII space characters: mapped to U+0020.
const NON_ASCII_SPACE: Ranges = [
  [0x00a0, 0x00a0],
  [0x1680, 0x1680],
  [0x2000, 0x200b],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
]

// RFC 3454 B.1, commonly mapped to nothing.
const MAPPED_TO_NOTHING: Ranges = [
  [0x00ad, 0x00ad],
  [0x034f, 0x034f],
  [0x1806, 0x1806],
  [0x180b, 0x180d],
  [0x200b, 0x200d],
  [0x2060, 0x2060],
  [0xfe00, 0xfe0f],
  [0xfeff, 0xfeff],
]

// RFC 4013 §2.3: RFC 3454 C.2.1, C.2.2, C.3, C.5, C.6, C.7, C.8, C.9 (C.4 is tested
// arithmetically below, C.1.2 can no longer occur after mapping).
const PROHIBITED: Ranges = [
  [0x0000, 0x001f],
  [0x007f, 0x009f],
  [0x0340, 0x0341],
  [0x06dd, 0x06dd],
  [0x070f, 0x070f],
  [0x180e, 0x180e],
  [0x200c, 0x200f],
  [0x2028, 0x202e],
  [0x2060, 0x2063],
  [0x206a, 0x206f],
  [0x2ff0, 0x2ffb],
  [0xd800, 0xdfff],
  [0xe000, 0xf8ff],
  [0xfeff, 0xfeff],
  [0xfff9, 0xfffd],
  [0x1d173, 0x1d17a],
  [0xe0001, 0xe0001],
  [0xe0020, 0xe007f],
  [0xf0000, 0xffffd],
  [0x100000, 0x10fffd],
]

function inRanges(cp: number, ranges: Ranges): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true
  return false
}

function isNonCharacter(cp: number): boolean {
  return (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe // RFC 3454 C.4
}

/** The password string whose UTF-8 bytes feed PBKDF2, as PostgreSQL would choose it. */
export function saslPrep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password // PostgreSQL: ASCII needs no processing
  let mapped = ''
  for (const ch of password) {
    const cp = ch.codePointAt(0)!
    if (inRanges(cp, NON_ASCII_SPACE)) mapped += ' '
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped += ch
  }
  if (mapped === '') return password // PostgreSQL refuses an empty result: raw fallback
  for (const ch of mapped) {
    const cp = ch.codePointAt(0)!
    // Lone surrogates land here too (C.5); PostgreSQL would see invalid UTF-8 and fall back.
    if (inRanges(cp, PROHIBITED) || isNonCharacter(cp)) return password
  }
  return mapped.normalize('NFKC')
}

// ---------------------------------------------------------------------------------------------
// Crypto and encoding helpers.

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest()
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest()
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!
  return out
}

// A server keeps one salt per role, so pgraid's logins to a backend always derive the same key:
// remember it (bounded) instead of running 4096 PBKDF2 rounds on the event loop per session.
const saltedCache = new Map<string, Buffer>()

function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  const key = `${iterations}:${salt.toString('base64')}:${password}`
  const hit = saltedCache.get(key)
  if (hit) return hit
  const derived = pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, KEY_LEN, 'sha256')
  if (saltedCache.size >= 256) saltedCache.clear()
  saltedCache.set(key, derived)
  return derived
}

// Buffer.from(x, 'base64') silently skips junk; SCRAM fields must be canonical base64.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

function base64OrNull(text: string): Buffer | null {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : null
}

function base64OrThrow(text: string, what: string): Buffer {
  const buf = base64OrNull(text)
  if (buf === null) throw new ScramError('protocol', `malformed SCRAM message: ${what} is not valid base64`)
  return buf
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** SCRAM messages are UTF-8 text; PostgreSQL treats them as C strings, so NUL is malformed too. */
function messageText(data: Buffer, what: string): string {
  let text: string
  try {
    text = utf8.decode(data)
  } catch {
    throw new ScramError('protocol', `malformed SCRAM message: ${what} is not valid UTF-8`)
  }
  if (text.length === 0) throw new ScramError('protocol', `malformed SCRAM message: ${what} is empty`)
  if (text.includes('\0')) throw new ScramError('protocol', `malformed SCRAM message: ${what} contains NUL`)
  return text
}

/** Value of a "x=value" field that must carry attribute `attr`. */
function attribute(part: string | undefined, attr: string, what: string): string {
  if (part === undefined || part[0] !== attr || part[1] !== '=') {
    throw new ScramError('protocol', `malformed SCRAM message: expected attribute "${attr}" in ${what}`)
  }
  return part.slice(2)
}

// RFC 5802 "printable": %x21-2B / %x2D-7E (no comma, which splitting already excludes).
function checkNonce(nonce: string, what: string): void {
  if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(nonce)) {
    throw new ScramError('protocol', `malformed SCRAM message: invalid nonce in ${what}`)
  }
}

function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64')
}

/** Run `fn`, turning any stray exception into a protocol ScramError (callers rely on one type). */
function guarded<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof ScramError) throw err
    throw new ScramError('protocol', `malformed SCRAM message: ${(err as Error)?.message ?? String(err)}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Verifiers.

/** A verifier in PostgreSQL's pg_authid format: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>. */
export function makeScramVerifier(password: string, iterations: number = DEFAULT_ITERATIONS, salt: Buffer = randomBytes(DEFAULT_SALT_LEN)): string {
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError('iterations must be a positive integer')
  const salted = saltedPassword(password, salt, iterations)
  const storedKey = sha256(hmac(salted, 'Client Key'))
  const serverKey = hmac(salted, 'Server Key')
  return `${SCRAM_SHA_256}$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`
}

export function parseScramVerifier(text: string): ScramVerifier | null {
  const m = /^SCRAM-SHA-256\$([0-9]+):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(text)
  if (!m) return null
  const iterations = Number(m[1])
  const salt = base64OrNull(m[2]!)
  const storedKey = base64OrNull(m[3]!)
  const serverKey = base64OrNull(m[4]!)
  if (!Number.isSafeInteger(iterations) || iterations < 1) return null
  if (!salt || salt.length === 0 || storedKey?.length !== KEY_LEN || serverKey?.length !== KEY_LEN) return null
  return { iterations, salt, storedKey, serverKey }
}

// ---------------------------------------------------------------------------------------------
// Server side.

export interface ScramServerOptions {
  /** Server nonce suffix; random by default. Only tests should set it. */
  nonce?: string
  /**
   * tls-server-end-point channel-binding data (RFC 5929: the hash of our certificate) when the
   * connection is TLS and SCRAM-SHA-256-PLUS was offered; null/undefined on plain connections.
   */
  channelBinding?: Buffer | null
  /** The client chose SCRAM-SHA-256-PLUS (its gs2 header must then be p=tls-server-end-point). */
  plus?: boolean
}

/** One login attempt: start() with the SASLInitialResponse data, finish() with the SASLResponse. */
export class ScramServer {
  readonly #verifier: ScramVerifier
  readonly #serverNonce: string
  #state: 'new' | 'started' | 'done' | 'failed' = 'new'
  #gs2Header = ''
  #nonce = '' // client nonce + server nonce
  #clientFirstBare = ''
  #serverFirst = ''
  readonly #binding: Buffer | null
  readonly #plus: boolean

  constructor(verifier: ScramVerifier, options: ScramServerOptions = {}) {
    if (verifier.storedKey.length !== KEY_LEN || verifier.serverKey.length !== KEY_LEN) {
      throw new TypeError('SCRAM verifier keys must be 32 bytes')
    }
    this.#verifier = verifier
    this.#serverNonce = options.nonce ?? newNonce()
    checkNonce(this.#serverNonce, 'server nonce option')
    this.#binding = options.channelBinding ?? null
    this.#plus = options.plus ?? false
    if (this.#plus && !this.#binding) throw new TypeError('SCRAM-SHA-256-PLUS needs channel-binding data')
  }

  start(clientFirst: Buffer): Buffer {
    return this.#step('new', () => {
      const text = messageText(clientFirst, 'client-first-message')
      const parts = text.split(',')
      const flag = parts[0]!
      // The same checks and wording as PostgreSQL's read_client_first_message.
      if (flag.startsWith('p=')) {
        if (!this.#plus) {
          throw new ScramError('protocol', 'malformed SCRAM message: the client requires channel binding but did not select SCRAM-SHA-256-PLUS')
        }
        if (flag !== 'p=tls-server-end-point') {
          throw new ScramError('protocol', `unsupported SCRAM channel-binding type "${flag.slice(2)}"`)
        }
      } else if (this.#plus) {
        throw new ScramError('protocol', 'malformed SCRAM message: the client selected SCRAM-SHA-256-PLUS without channel binding')
      } else if (flag === 'y' && this.#binding) {
        // 'y' = "client supports channel binding but thinks the server does not": we offered -PLUS, so
        // someone removed it from the list on the way (a downgrade).
        throw new ScramError('protocol', 'SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, while this server does')
      } else if (flag !== 'n' && flag !== 'y') {
        throw new ScramError('protocol', 'malformed SCRAM message: unexpected channel-binding flag')
      }
      if (parts[1] === undefined) throw new ScramError('protocol', 'malformed SCRAM message: truncated gs2 header')
      if (parts[1] !== '') {
        // PostgreSQL refuses authzid too: the role is the startup packet's user, nothing else.
        throw new ScramError('protocol', 'SCRAM authorization identity is not supported')
      }
      if (parts[2]?.startsWith('m=')) {
        throw new ScramError('protocol', 'SCRAM mandatory extensions are not supported')
      }
      // The user name is ignored, as PostgreSQL does: clients send '' or '*' and the startup
      // packet's user is authoritative.
      attribute(parts[2], 'n', 'client-first-message')
      const clientNonce = attribute(parts[3], 'r', 'client-first-message')
      checkNonce(clientNonce, 'client-first-message')
      if (parts.length > 4) {
        throw new ScramError('protocol', 'malformed SCRAM message: garbage at end of client-first-message')
      }

      this.#gs2Header = `${flag},,`
      this.#clientFirstBare = parts.slice(2).join(',')
      this.#nonce = clientNonce + this.#serverNonce
      const v = this.#verifier
      this.#serverFirst = `r=${this.#nonce},s=${v.salt.toString('base64')},i=${v.iterations}`
      this.#state = 'started'
      return Buffer.from(this.#serverFirst, 'utf8')
    })
  }

  finish(clientFinal: Buffer): Buffer {
    return this.#step('started', () => {
      const text = messageText(clientFinal, 'client-final-message')
      const parts = text.split(',')
      const binding = base64OrThrow(attribute(parts[0], 'c', 'client-final-message'), 'channel binding')
      // c= is the gs2 header the client sent first, followed (with -PLUS) by the binding data: the hash
      // of the certificate this TLS connection really presented, so a man in the middle is caught.
      const header = Buffer.from(this.#gs2Header, 'utf8')
      const expected = this.#plus ? Buffer.concat([header, this.#binding!]) : header
      if (!binding.equals(expected)) {
        throw new ScramError('protocol', 'SCRAM channel binding check failed')
      }
      const nonce = attribute(parts[1], 'r', 'client-final-message')
      if (nonce !== this.#nonce) throw new ScramError('protocol', 'SCRAM nonce mismatch')
      // Optional extensions between r= and p= are ignored, as PostgreSQL does; each must still
      // look like an attribute.
      if (parts.length < 3) throw new ScramError('protocol', 'malformed SCRAM message: proof missing')
      for (const ext of parts.slice(2, -1)) {
        if (!/^[A-Za-z]=/.test(ext) || ext[0] === 'p') {
          throw new ScramError('protocol', 'malformed SCRAM message: bad attribute in client-final-message')
        }
      }
      const proof = base64OrThrow(attribute(parts[parts.length - 1], 'p', 'client-final-message'), 'proof')
      if (proof.length !== KEY_LEN) throw new ScramError('protocol', 'malformed SCRAM message: bad proof length')

      const withoutProof = parts.slice(0, -1).join(',')
      const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`
      const { storedKey, serverKey } = this.#verifier
      // ClientKey = proof XOR HMAC(StoredKey, AuthMessage); the client knew the password iff
      // H(ClientKey) is the StoredKey we hold.
      const clientKey = xor(proof, hmac(storedKey, authMessage))
      if (!timingSafeEqual(sha256(clientKey), storedKey)) {
        throw new ScramError('bad-proof', 'SCRAM proof does not match: wrong password')
      }
      this.#state = 'done'
      return Buffer.from(`v=${hmac(serverKey, authMessage).toString('base64')}`, 'utf8')
    })
  }

  #step(expected: 'new' | 'started', fn: () => Buffer): Buffer {
    if (this.#state !== expected) {
      throw new ScramError('protocol', `SCRAM exchange out of order (state ${this.#state})`)
    }
    try {
      return guarded(fn)
    } catch (err) {
      this.#state = 'failed' // one attempt per object: no retrying a proof on the same nonce
      throw err
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Client side.

export interface ScramClientOptions {
  /** SCRAM user name; libpq sends '' since PostgreSQL uses the startup packet's user. */
  user?: string
  /** Client nonce; random by default. Only tests should set it. */
  nonce?: string
  /** Refuse servers asking for more PBKDF2 rounds than this (pbkdf2Sync blocks the event loop). */
  maxIterations?: number
}

export class ScramClient {
  readonly #password: string
  readonly #user: string
  readonly #nonce: string
  readonly #maxIterations: number
  #state: 'new' | 'first' | 'final' | 'done' | 'failed' = 'new'
  #serverSignature: Buffer = Buffer.alloc(0)

  constructor(password: string, options: ScramClientOptions = {}) {
    this.#password = password
    this.#user = options.user ?? ''
    this.#nonce = options.nonce ?? newNonce()
    this.#maxIterations = options.maxIterations ?? Infinity
    checkNonce(this.#nonce, 'client nonce option')
  }

  #bare(): string {
    // RFC 5802 saslname escaping: '=' and ',' cannot appear raw.
    const user = this.#user.replace(/=/g, '=3D').replace(/,/g, '=2C')
    return `n=${user},r=${this.#nonce}`
  }

  first(): Buffer {
    return this.#step('new', () => {
      this.#state = 'first'
      return Buffer.from(`n,,${this.#bare()}`, 'utf8')
    })
  }

  final(serverFirst: Buffer): Buffer {
    return this.#step('first', () => {
      const text = messageText(serverFirst, 'server-first-message')
      const parts = text.split(',')
      if (parts[0]?.startsWith('m=')) throw new ScramError('protocol', 'SCRAM mandatory extensions are not supported')
      const nonce = attribute(parts[0], 'r', 'server-first-message')
      checkNonce(nonce, 'server-first-message')
      if (!nonce.startsWith(this.#nonce) || nonce.length === this.#nonce.length) {
        throw new ScramError('protocol', 'SCRAM server nonce does not extend the client nonce')
      }
      const salt = base64OrThrow(attribute(parts[1], 's', 'server-first-message'), 'salt')
      if (salt.length === 0) throw new ScramError('protocol', 'malformed SCRAM message: empty salt')
      const iterText = attribute(parts[2], 'i', 'server-first-message')
      if (!/^[0-9]+$/.test(iterText)) throw new ScramError('protocol', 'malformed SCRAM message: bad iteration count')
      const iterations = Number(iterText)
      if (iterations < 1 || !Number.isSafeInteger(iterations)) {
        throw new ScramError('protocol', `SCRAM iteration count ${iterText} is out of range`)
      }
      if (iterations > this.#maxIterations) {
        throw new ScramError('protocol', `SCRAM iteration count ${iterations} exceeds limit ${this.#maxIterations}`)
      }
      if (parts.length > 3) {
        throw new ScramError('protocol', 'malformed SCRAM message: garbage at end of server-first-message')
      }

      // c=biws is base64("n,,"): no channel binding, no authzid.
      const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${nonce}`
      const authMessage = `${this.#bare()},${text},${withoutProof}`
      const salted = saltedPassword(this.#password, salt, iterations)
      const clientKey = hmac(salted, 'Client Key')
      const proof = xor(clientKey, hmac(sha256(clientKey), authMessage))
      this.#serverSignature = hmac(hmac(salted, 'Server Key'), authMessage)
      this.#state = 'final'
      return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8')
    })
  }

  verify(serverFinal: Buffer): void {
    this.#step('final', () => {
      const text = messageText(serverFinal, 'server-final-message')
      if (text.startsWith('e=')) {
        throw new ScramError('protocol', `SCRAM server error: ${text.slice(2).split(',')[0]}`)
      }
      const parts = text.split(',')
      const signature = base64OrThrow(attribute(parts[0], 'v', 'server-final-message'), 'server signature')
      if (parts.length > 1) {
        throw new ScramError('protocol', 'malformed SCRAM message: garbage at end of server-final-message')
      }
      // A wrong signature means the server does not know our keys: it may be an impostor.
      if (signature.length !== KEY_LEN || !timingSafeEqual(signature, this.#serverSignature)) {
        throw new ScramError('bad-proof', 'SCRAM server signature does not match')
      }
      this.#state = 'done'
      return Buffer.alloc(0)
    })
  }

  #step(expected: 'new' | 'first' | 'final', fn: () => Buffer): Buffer {
    if (this.#state !== expected) {
      throw new ScramError('protocol', `SCRAM exchange out of order (state ${this.#state})`)
    }
    try {
      return guarded(fn)
    } catch (err) {
      this.#state = 'failed'
      throw err
    }
  }
}
