// Authenticates a client: which method applies (hba rules, else the user's own `auth`), where
// its secret comes from (users[], else the backends through authQuery), then the exchange:
// SCRAM-SHA-256 (-PLUS over TLS), md5, cert or trust. An unknown user goes through the same
// exchange as a known one and fails with the same error, so the answer never tells whether a
// user exists.

import { createHmac, randomBytes } from 'node:crypto'
import { makeScramVerifier, parseScramVerifier, ScramServer, type ScramVerifier } from '../auth/scram.ts'
import { checkMd5Response, isMd5Hash } from '../auth/md5.ts'
import { matchHba, type HbaRule } from '../auth/hba.ts'
import { authMd5, authOk, authSasl, authSaslContinue, authSaslFinal } from '../protocol/encode.ts'
import { Reader } from '../protocol/decode.ts'
import { errors, PgError } from '../errors.ts'
import type { UserConfig } from '../config/schema.ts'

/** What pgraid knows about the client's connection when it decides how to authenticate. */
export interface ClientConnection {
  user: string
  database: string
  address: string
  /** TLS in use, and the channel-binding data of our certificate (SCRAM-SHA-256-PLUS). */
  tls: boolean
  binding: Buffer | null
  /** Common name of a client certificate the configured CAs vouched for (null: none, or not valid). */
  certName: string | null
}

export type AuthMethod = 'scram-sha-256' | 'md5' | 'trust' | 'cert'

/** The decision: a method and the stored secret (a plain password, a SCRAM verifier or an md5 hash). */
export interface AuthPlan {
  method: AuthMethod
  secret: string | undefined
  /** The user exists (in users[], or found by authQuery); unknown users still get a full exchange. */
  known: boolean
}

export interface AuthSources {
  users: readonly UserConfig[]
  hba: readonly HbaRule[]
  /** Looks a user's stored password up in the backends (authQuery), or null when disabled. */
  lookup: ((user: string) => Promise<string | null>) | null
}

/** Decides how `c` authenticates; throws a FATAL PgError when the rules refuse it outright. */
export async function planAuth(src: AuthSources, c: ClientConnection): Promise<AuthPlan> {
  const configured = src.users.find((u) => u.name === c.user)
  let method: AuthMethod
  if (src.hba.length) {
    const rule = matchHba(src.hba, c)
    if (!rule) throw errors.noHbaRule(c.address, c.user, c.database, c.tls)
    if (rule.method === 'reject') throw errors.hbaReject(c.address, c.user, c.database, c.tls)
    if (rule.clientcert) {
      if (!c.certName) throw errors.certRequired()
      if (rule.clientcert === 'verify-full' && c.certName !== c.user) throw errors.certAuthFailed(c.user)
    }
    method = rule.method
  } else method = configured?.auth ?? 'scram-sha-256'
  let secret = configured?.password
  let known = !!configured
  if (!configured && src.lookup) {
    const found = await src.lookup(c.user)
    if (found !== null) {
      known = true
      secret = found
      // Without hba rules, the stored secret's kind decides (as PgBouncer's auth_query).
      if (!src.hba.length) method = isMd5Hash(found) ? 'md5' : 'scram-sha-256'
    }
  }
  // As PostgreSQL: md5 with a SCRAM secret runs SCRAM (md5 cannot be computed from a verifier).
  if (method === 'md5' && secret && parseScramVerifier(secret)) method = 'scram-sha-256'
  return { method, secret, known }
}

const verifierCache = new Map<string, ScramVerifier>()

/** The SCRAM verifier for a stored secret (plain passwords are hashed once, then cached); null for an md5 hash. */
function verifierFor(secret: string): ScramVerifier | null {
  let v = verifierCache.get(secret)
  if (!v) {
    if (isMd5Hash(secret)) return null
    v = parseScramVerifier(secret) ?? parseScramVerifier(makeScramVerifier(secret))!
    if (verifierCache.size > 10_000) verifierCache.clear() // authQuery secrets change; keep the cache bounded
    verifierCache.set(secret, v)
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

const SCRAM = 'SCRAM-SHA-256'
const SCRAM_PLUS = 'SCRAM-SHA-256-PLUS'

export class ClientAuth {
  private scram: ScramServer | null = null
  private salt = randomBytes(4)
  private started = false

  constructor(
    private readonly conn: ClientConnection,
    readonly plan: AuthPlan,
  ) {}

  /** First message(s) to send: AuthenticationOk for trust and cert, or the challenge. */
  begin(): AuthStep {
    const { method, known } = this.plan
    if (method === 'trust') {
      if (!known) throw errors.unknownRole(this.conn.user)
      return { reply: [authOk()], done: true }
    }
    if (method === 'cert') {
      // The CAs vouched for the certificate during the handshake; its CN must name the user.
      if (!this.conn.certName) throw errors.certRequired()
      if (this.conn.certName !== this.conn.user || !known) throw errors.certAuthFailed(this.conn.user)
      return { reply: [authOk()], done: true }
    }
    if (method === 'md5') return { reply: [authMd5(this.salt)], done: false }
    // PostgreSQL offers -PLUS first whenever the connection is TLS.
    return { reply: [authSasl(this.conn.binding ? [SCRAM_PLUS, SCRAM] : [SCRAM])], done: false }
  }

  /** Handles a PasswordMessage / SASLInitialResponse / SASLResponse body. Throws PgError to refuse. */
  next(body: Buffer): AuthStep {
    try {
      const { method, secret, known } = this.plan
      if (method === 'md5') {
        const response = new Reader(body).cstring()
        if (!secret || !known || !checkMd5Response(secret, this.conn.user, this.salt, response)) throw this.fail()
        return { reply: [authOk()], done: true }
      }
      if (method !== 'scram-sha-256') throw errors.protocolViolation('password message before authentication request')
      if (!this.started) {
        const r = new Reader(body)
        const mech = r.cstring()
        const plus = mech === SCRAM_PLUS
        if (mech !== SCRAM && !(plus && this.conn.binding))
          throw new PgError('28000', `SASL authentication mechanism ${mech} is not supported; use ${this.conn.binding ? `${SCRAM_PLUS} or ${SCRAM}` : SCRAM}`, 'FATAL')
        const len = r.int32()
        const data = len < 0 ? Buffer.alloc(0) : r.bytes(len)
        // A secret SCRAM cannot use (an md5 hash) gets the mock exchange and fails at the proof.
        const verifier = (known && secret ? verifierFor(secret) : null) ?? mockVerifier(this.conn.user)
        this.scram = new ScramServer(verifier, { channelBinding: this.conn.binding, plus })
        this.started = true
        return { reply: [authSaslContinue(this.scram.start(data))], done: false }
      }
      const final = this.scram!.finish(body)
      if (!known || !secret || !verifierFor(secret)) throw this.fail()
      return { reply: [authSaslFinal(final), authOk()], done: true }
    } catch (e) {
      if (e instanceof PgError) throw e
      if ((e as { kind?: string }).kind === 'protocol' || e instanceof RangeError) throw new PgError('08P01', `malformed authentication message: ${(e as Error).message}`, 'FATAL')
      throw this.fail()
    }
  }

  private fail(): PgError {
    return errors.authFailed(this.conn.user, this.plan.method)
  }
}
