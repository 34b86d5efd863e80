// Authenticates a client against the configured users: SCRAM-SHA-256, md5 or
// trust. An unknown user goes through the same exchange as a known one and
// fails with the same error, so the answer never tells whether a user exists.

import { createHmac, randomBytes } from 'node:crypto'
import { makeScramVerifier, parseScramVerifier, ScramServer, type ScramVerifier } from '../auth/scram.ts'
import { checkMd5Response } from '../auth/md5.ts'
import { authMd5, authOk, authSasl, authSaslContinue, authSaslFinal } from '../protocol/encode.ts'
import { Reader } from '../protocol/decode.ts'
import { errors, PgError } from '../errors.ts'

export interface AuthUser {
  name: string
  auth: 'scram-sha-256' | 'md5' | 'trust'
  password?: string | undefined
}

const verifierCache = new Map<string, ScramVerifier>()

/** The SCRAM verifier for a configured password (plain passwords are hashed once, then cached). */
function verifierFor(password: string): ScramVerifier {
  let v = verifierCache.get(password)
  if (!v) {
    v = parseScramVerifier(password) ?? parseScramVerifier(makeScramVerifier(password))!
    verifierCache.set(password, v)
  }
  return v
}

// A secret of this process: mock verifiers for unknown users are derived from it, so the same
// unknown name gets the same salt every time (as PostgreSQL's mock salt), without PBKDF2 work.
const MOCK_SECRET = randomBytes(32)

function mockVerifier(user: string): ScramVerifier {
  const h = (label: string) => createHmac('sha256', MOCK_SECRET).update(`${label}\0${user}`).digest()
  return { iterations: 4096, salt: h('salt').subarray(0, 16), storedKey: h('stored'), serverKey: h('server') }
}

export type AuthStep = { reply: Buffer[]; done: false } | { reply: Buffer[]; done: true }

export class ClientAuth {
  private scram: ScramServer | null = null
  private salt = randomBytes(4)
  private method: AuthUser['auth']

  constructor(
    private readonly userName: string,
    private readonly user: AuthUser | undefined,
  ) {
    // Unknown users are asked for SCRAM like everyone else, then refused.
    this.method = user?.auth ?? 'scram-sha-256'
  }

  /** First message(s) to send: AuthenticationOk for trust, or the challenge. */
  begin(): AuthStep {
    if (this.method === 'trust' && this.user) return { reply: [authOk()], done: true }
    if (this.method === 'md5') return { reply: [authMd5(this.salt)], done: false }
    const pw = this.user?.password
    this.scram = new ScramServer(pw ? verifierFor(pw) : mockVerifier(this.userName))
    return { reply: [authSasl(['SCRAM-SHA-256'])], done: false }
  }

  /** Handles a PasswordMessage / SASLInitialResponse / SASLResponse body. Throws PgError to refuse. */
  next(body: Buffer): AuthStep {
    try {
      if (this.method === 'md5') {
        const response = new Reader(body).cstring()
        const pw = this.user?.password
        if (!pw || !this.user || !checkMd5Response(pw, this.userName, this.salt, response)) throw this.fail()
        return { reply: [authOk()], done: true }
      }
      if (!this.scram) throw errors.protocolViolation('password message before authentication request')
      if (!this.started) {
        const r = new Reader(body)
        const mech = r.cstring()
        if (mech !== 'SCRAM-SHA-256') throw new PgError('28000', `SASL authentication mechanism ${mech} is not supported; use SCRAM-SHA-256`, 'FATAL')
        const len = r.int32()
        const data = len < 0 ? Buffer.alloc(0) : r.bytes(len)
        this.started = true
        return { reply: [authSaslContinue(this.scram.start(data))], done: false }
      }
      const final = this.scram.finish(body)
      if (!this.user) throw this.fail()
      return { reply: [authSaslFinal(final), authOk()], done: true }
    } catch (e) {
      if (e instanceof PgError) throw e
      if ((e as { kind?: string }).kind === 'protocol' || e instanceof RangeError)
        throw new PgError('08P01', `malformed authentication message: ${(e as Error).message}`, 'FATAL')
      throw this.fail()
    }
  }

  private started = false

  private fail(): PgError {
    return errors.authFailed(this.userName, this.method)
  }
}
