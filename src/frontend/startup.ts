// A client connection before it is a session: SSLRequest / GSSENCRequest
// (the TLS upgrade), a CancelRequest, the startup packet, and the
// authentication exchange, answered as PostgreSQL's postmaster and backend
// startup answer them. The session takes over once the client is logged in
// (StartupHost.loggedIn), or when a cancel request was passed on.

import type net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { F, B, SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST } from '../protocol/codes.ts'
import type { Frame, Framer } from '../protocol/framer.ts'
import { startupPacket } from '../protocol/decode.ts'
import { message } from '../protocol/encode.ts'
import { errors, PgError } from '../errors.ts'
import { ClientAuth, planAuth } from './client-auth.ts'
import type { ClientSession, ServerContext } from '../server-context.ts'
import type { LoginFailure } from '../observe/counters.ts'

/** What the startup needs from its session. */
export interface StartupHost extends ClientSession {
  readonly ctx: ServerContext
  socket: net.Socket
  log: Logger
  user: string
  database: string
  /** Listens on the socket (the TLS socket once the upgrade is done). */
  listen(socket: net.Socket): void
  /** `failed`: a login refused, counted by reason. */
  fatal(err: PgError, failed?: LoginFailure): void
  /** A cancel request passed on: the connection ends without a word. */
  endQuietly(): void
  /** The password exchange is done: the session connects (or opens the admin console). */
  loggedIn(): void
}

export class ClientStartup {
  /** 'startup' until the startup packet is accepted, then 'auth' until login. */
  stage: 'startup' | 'auth' | 'done' = 'startup'
  /** The startup packet's parameters (user, database, options, GUCs). */
  params: Record<string, string> = {}
  /** TLS in use (after SSLRequest), and the CN of a client certificate the configured CAs vouched for. */
  tlsOn = false
  private certName: string | null = null
  /** SSLRequest / GSSENCRequest answered on this connection. */
  private readonly negotiated = new Set<'ssl' | 'gss'>()
  private auth: ClientAuth | null = null

  constructor(
    private readonly host: StartupHost,
    private readonly framer: Framer,
  ) {}

  onFrame(f: Frame): void {
    if (this.stage === 'startup') this.onStartup(f)
    else if (this.stage === 'auth') this.onAuth(f)
  }

  private onStartup(f: Frame): void {
    const { host, framer } = this
    const ctx = host.ctx
    const len = f.bytes.length
    if (len < 8) return host.fatal(errors.protocolViolation('startup packet too short'), 'protocol')
    const code = f.bytes.readInt32BE(4)
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
      if (len !== 8) return host.fatal(errors.protocolViolation('invalid SSL/GSS request'), 'protocol')
      // One of each per connection, as PostgreSQL allows; a second is an unsupported protocol to it.
      const kind = code === SSL_REQUEST ? 'ssl' : 'gss'
      if (this.negotiated.has(kind)) return host.fatal(errors.unsupportedProtocol(code >>> 16, code & 0xffff), 'protocol')
      this.negotiated.add(kind)
      if (code === SSL_REQUEST && !this.tlsOn && ctx.tls.mode !== 'disable' && ctx.tls.context) {
        // Bytes sent after the SSLRequest before the handshake would be trusted as if encrypted
        // (CVE-2021-23214): refuse them, as PostgreSQL does.
        if (framer.pending) return host.fatal(errors.protocolViolation('received unencrypted data after SSL request'), 'protocol')
        return this.startTls()
      }
      host.socket.write('N')
      // PostgreSQL refuses bytes the client sent before reading the answer (it could not have known it).
      if (framer.pending)
        return host.fatal(new PgError('08P01', kind === 'ssl' ? 'received unencrypted data after SSL request' : 'received unencrypted data after GSSAPI encryption request', 'FATAL'), 'protocol')
      return
    }
    if (code === CANCEL_REQUEST) {
      if (len !== 16) return host.fatal(errors.protocolViolation('invalid cancel request'), 'protocol')
      ctx.cancel(f.bytes.readInt32BE(8), f.bytes.readInt32BE(12))
      return host.endQuietly()
    }
    let packet
    try {
      packet = startupPacket(f.bytes)
    } catch {
      return host.fatal(errors.protocolViolation('malformed startup packet'), 'protocol')
    }
    const major = packet.protocol >>> 16
    const minor = packet.protocol & 0xffff
    if (major !== 3) return host.fatal(errors.unsupportedProtocol(major, minor), 'protocol')
    const unknown = Object.keys(packet.params).filter((k) => k.startsWith('_pq_.'))
    if (minor > 0 || unknown.length) {
      // We speak 3.0 only; tell the client, as PostgreSQL does for newer minors.
      const body = Buffer.concat([int32(0x30000), int32(unknown.length), ...unknown.map((u) => Buffer.from(u + '\0'))])
      host.socket.write(message(B.NegotiateProtocolVersion, body))
      for (const u of unknown) delete packet.params[u]
    }
    if (packet.params.replication && packet.params.replication !== 'false' && packet.params.replication !== 'off')
      return host.fatal(new PgError('0A000', 'pgraid does not support replication connections', 'FATAL'), 'protocol')
    host.user = packet.params.user ?? ''
    if (!host.user) return host.fatal(errors.noUser(), 'protocol')
    if (ctx.tls.mode === 'require' && !this.tlsOn) return host.fatal(errors.tlsRequired(), 'tls')
    host.database = packet.params.database || host.user
    this.params = packet.params
    host.log = host.log.child({ user: host.user, database: host.database })
    const full = ctx.admit(host)
    if (full) return host.fatal(full, 'too-many')
    framer.untyped = false
    framer.authenticating = true
    this.stage = 'auth'
    void this.beginAuth()
  }

  /** SSLRequest answered 'S': the rest of the connection runs over TLS. */
  private startTls(): void {
    const host = this.host
    const { context, requestCert } = host.ctx.tls
    const raw = host.socket
    raw.removeAllListeners('data')
    raw.removeAllListeners('error')
    raw.removeAllListeners('close')
    raw.removeAllListeners('drain')
    raw.on('error', () => {}) // the TLS socket reports it
    raw.write('S')
    // Our own check of a presented certificate (rejectUnauthorized would also refuse clients without one).
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context!, requestCert, rejectUnauthorized: false })
    host.socket = secure
    this.tlsOn = true
    host.listen(secure)
    secure.once('secure', () => {
      if (!requestCert) return
      const peer = secure.getPeerCertificate()
      if (!peer || !Object.keys(peer).length) return
      // A TLSSocket made outside tls.Server does not set `authorized`: ask OpenSSL's verify result, as tls.Server does.
      const verifyError = (secure as unknown as { _handle?: { verifyError?(): Error | null } })._handle?.verifyError?.()
      if (verifyError !== null) return host.fatal(errors.clientCertInvalid(verifyError ? `${(verifyError as Error & { code?: string }).code ?? verifyError.message}` : 'not verified'), 'cert')
      const cn = peer.subject?.CN
      this.certName = Array.isArray(cn) ? (cn[0] ?? null) : (cn ?? null)
    })
  }

  /** Decides the method (hba rules, users, authQuery) and sends the first authentication request. */
  private async beginAuth(): Promise<void> {
    const { host } = this
    const ctx = host.ctx
    const conn = {
      user: host.user,
      database: host.database,
      address: host.socket.remoteAddress ?? '',
      tls: this.tlsOn,
      binding: this.tlsOn ? ctx.tls.binding : null,
      certName: this.certName,
    }
    try {
      const plan = await planAuth({ users: ctx.config.users, hba: ctx.hba, lookup: ctx.lookupPassword }, conn)
      if (this.stage !== 'auth') return
      this.auth = new ClientAuth(conn, plan)
      const step = this.auth.begin()
      for (const b of step.reply) host.socket.write(b)
      if (step.done) this.done()
    } catch (e) {
      if (this.stage !== 'auth') return
      const err = e instanceof PgError ? e : errors.internal((e as Error).message)
      host.log.info({ reason: err.message }, 'authentication refused')
      // Before the exchange: the hba rules (a rule's clientcert) or the authQuery lookup; at begin(): trust or cert.
      host.fatal(err, !this.auth ? (err.code === '28000' ? (/certificate/.test(err.message) ? 'cert' : 'hba') : 'unavailable') : this.auth.plan.known ? 'cert' : 'unknown-user')
    }
  }

  private onAuth(f: Frame): void {
    const { host } = this
    if (f.type !== F.Password || !this.auth) return host.fatal(errors.protocolViolation(`expected password message, got '${String.fromCharCode(f.type)}'`), 'protocol')
    try {
      const step = this.auth.next(f.bytes.subarray(f.bodyOffset))
      for (const b of step.reply) host.socket.write(b)
      if (step.done) this.done()
    } catch (e) {
      if (e instanceof PgError) {
        host.log.info({ reason: e.message }, 'authentication failed')
        return host.fatal(e, e.code !== '28P01' ? 'protocol' : this.auth.plan.known ? 'password' : 'unknown-user')
      }
      return host.fatal(errors.protocolViolation((e as Error).message), 'protocol')
    }
  }

  private done(): void {
    this.stage = 'done'
    this.auth = null
    this.framer.authenticating = false
    this.host.loggedIn()
  }

  /** The connection was closed: a login still being planned must not answer. */
  abandon(): void {
    this.stage = 'done'
  }
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeInt32BE(n)
  return b
}

/** GUCs set by the startup packet (and its `options` -c switches), as name/value pairs. */
export function startupSettings(params: Record<string, string>): [string, string][] {
  const out: [string, string][] = []
  for (const [k, v] of Object.entries(params)) {
    if (k === 'user' || k === 'database' || k === 'replication' || k === 'application_name' || k.startsWith('_pq_')) continue
    if (k === 'options') {
      // -c name=value or --name=value, space separated; backslash escapes a space.
      const words = v.match(/(?:\\.|[^\s])+/g) ?? []
      for (let i = 0; i < words.length; i++) {
        let w = words[i]!.replace(/\\(.)/g, '$1')
        if (w === '-c' && i + 1 < words.length) w = words[++i]!.replace(/\\(.)/g, '$1')
        else if (w.startsWith('--')) w = w.slice(2)
        else if (w.startsWith('-c')) w = w.slice(2)
        else continue
        const eq = w.indexOf('=')
        if (eq > 0) out.push([w.slice(0, eq).replace(/-/g, '_').toLowerCase(), w.slice(eq + 1)])
      }
      continue
    }
    if (/^[a-z_][a-z0-9_.]*$/i.test(k)) out.push([k.toLowerCase(), v])
  }
  return out
}

/** The startup settings as the SET statements a replay runs them with (the recovery log's session settings). */
export function startupSetStatements(params: Record<string, string>): [string, string][] {
  return startupSettings(params).map(([k, v]) => [k, `SET ${k} = ${quoteLiteral(v)}`])
}

function quoteLiteral(v: string): string {
  return `'${v.replace(/'/g, "''")}'`
}
