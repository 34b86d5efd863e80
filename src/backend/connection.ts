// One connection from pgraid to one PostgreSQL backend: login (trust,
// cleartext, md5, SCRAM-SHA-256), then a byte stream whose message
// boundaries a Scanner finds for the session that owns it.

import net from 'node:net'
import * as fe from '../protocol/frontend-encode.ts'
import { B } from '../protocol/codes.ts'
import { Scanner, type ScanSink } from '../protocol/scanner.ts'
import { errorFields, parameterStatusBody, Reader } from '../protocol/decode.ts'
import { ScramClient } from '../auth/scram.ts'
import { md5Response } from '../auth/md5.ts'
import { negotiateBackendTls, type BackendTls } from '../tls/backend-tls.ts'

export interface BackendTarget {
  name: string
  host: string
  port: number
  user: string
  password?: string | undefined
  database?: string | null | undefined
  /** TLS to this backend (null/absent: plain TCP). */
  tls?: BackendTls | null | undefined
}

/** A login refused by the backend, with its ErrorResponse fields. */
export class BackendLoginError extends Error {
  constructor(
    readonly fields: Record<string, string>,
    readonly body: Buffer | null,
  ) {
    super(fields.M ?? 'backend refused the connection')
  }
}

/** Message types whose bodies routing, reconciliation and tracking read. */
const WANTED = new Set<number>([B.CommandComplete, B.ErrorResponse, B.ReadyForQuery, B.ParameterStatus, B.NotificationResponse, B.Authentication, B.BackendKeyData, B.CopyInResponse, B.NoticeResponse])

export class BackendConnection {
  readonly params = new Map<string, string>()
  pid = 0
  secret = 0
  /** Status of the last ReadyForQuery. */
  txStatus = 'I'
  closed = false
  private scanner = new Scanner((t) => WANTED.has(t))
  private sink: ScanSink | null = null
  private closeHandlers: ((reason: string) => void)[] = []

  private constructor(
    readonly target: BackendTarget,
    readonly socket: net.Socket,
  ) {}

  static async connect(target: BackendTarget, startup: Record<string, string>, timeoutMs: number): Promise<BackendConnection> {
    const until = Date.now() + timeoutMs
    const socket = await openSocket(target, timeoutMs)
    return new Promise((resolve, reject) => {
      const conn = new BackendConnection(target, socket)
      let settled = false
      const fail = (err: Error) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        socket.destroy()
        reject(err)
      }
      const timer = setTimeout(() => fail(new Error(`no answer within ${timeoutMs} ms`)), Math.max(1, until - Date.now()))
      socket.once('error', (e) => fail(e))
      socket.once('close', () => fail(new Error('connection closed during login')))
      const params: Record<string, string> = { ...startup, user: target.user }
      if (target.database) params.database = target.database
      socket.write(fe.startup(params))
      let scram: ScramClient | null = null
      const onData = (chunk: Buffer) => {
        try {
          conn.scanner.push(chunk, {
            data() {},
            end(type, body) {
              if (settled || !body) {
                if (type === B.ReadyForQuery && !settled) finishLogin()
                return
              }
              switch (type) {
                case B.Authentication: {
                  const r = new Reader(body)
                  const code = r.int32()
                  if (code === 0) return
                  if (code === 3) socket.write(fe.password(target.password ?? ''))
                  else if (code === 5) socket.write(fe.password(md5Response(target.user, target.password ?? '', r.bytes(4))))
                  else if (code === 10) {
                    scram = new ScramClient(target.password ?? '')
                    socket.write(fe.saslInitialResponse('SCRAM-SHA-256', scram.first()))
                  } else if (code === 11) {
                    if (!scram) throw new Error('SASLContinue without SASL')
                    socket.write(fe.saslResponse(scram.final(body.subarray(4))))
                  } else if (code === 12) {
                    if (!scram) throw new Error('SASLFinal without SASL')
                    scram.verify(body.subarray(4))
                  } else throw new Error(`unsupported authentication request ${code}`)
                  return
                }
                case B.ParameterStatus: {
                  const [k, v] = parameterStatusBody(body)
                  conn.params.set(k, v)
                  return
                }
                case B.BackendKeyData: {
                  const r = new Reader(body)
                  conn.pid = r.int32()
                  conn.secret = r.int32()
                  return
                }
                case B.ErrorResponse:
                  fail(new BackendLoginError(errorFields(body), body))
                  return
                case B.ReadyForQuery:
                  finishLogin()
                  return
              }
            },
          })
        } catch (e) {
          fail(e as Error)
        }
      }
      const finishLogin = () => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        socket.removeAllListeners('data')
        socket.removeAllListeners('error')
        socket.removeAllListeners('close')
        socket.on('data', (c: Buffer) => conn.onData(c))
        socket.on('error', (e) => conn.onClosed(e.message))
        socket.on('close', () => conn.onClosed('connection closed'))
        resolve(conn)
      }
      socket.on('data', onData)
    })
  }

  /** Routes the backend's messages to `sink` from now on. */
  attach(sink: ScanSink): void {
    this.sink = sink
  }

  onClose(fn: (reason: string) => void): void {
    this.closeHandlers.push(fn)
  }

  write(buf: Buffer | Buffer[]): void {
    if (this.closed) return
    if (Array.isArray(buf)) {
      if (buf.length === 1) this.socket.write(buf[0])
      else if (buf.length > 1) this.socket.write(Buffer.concat(buf))
    } else this.socket.write(buf)
  }

  /** Asks the server to cancel what this connection is running (new connection, as libpq does). */
  cancel(): Promise<void> {
    const s = net.connect({ host: this.target.host, port: this.target.port })
    s.on('error', () => s.destroy())
    s.on('connect', () => s.end(fe.cancelRequest(this.pid, this.secret)))
    s.setTimeout(5000, () => s.destroy())
    // The server closes the request's connection once it has signalled the session: from then on a
    // message sent to that session can no longer be the one the cancel cuts.
    return new Promise((resolve) => s.on('close', () => resolve()))
  }

  /** Polite close: Terminate, then end. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.socket.end(fe.TERMINATE)
    this.socket.setTimeout(5000, () => this.socket.destroy())
  }

  destroy(): void {
    this.closed = true
    this.socket.destroy()
  }

  private onData(chunk: Buffer): void {
    try {
      this.scanner.push(chunk, this.sink ?? IGNORE)
    } catch (e) {
      this.onClosed(`protocol error from backend: ${(e as Error).message}`)
      this.socket.destroy()
    }
  }

  private onClosed(reason: string): void {
    const wasClosed = this.closed
    this.closed = true
    const hs = this.closeHandlers
    this.closeHandlers = []
    if (!wasClosed || hs.length) for (const h of hs) h(reason)
  }
}

/** A TCP connection to the backend, encrypted first when its tls mode asks for it; bounded by timeoutMs. */
function openSocket(target: BackendTarget, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: target.host, port: target.port })
    raw.setNoDelay(true)
    let done = false
    const finish = (err: Error | null, s?: net.Socket) => {
      if (done) return
      done = true
      clearTimeout(timer)
      raw.off('error', onError)
      raw.off('close', onClose)
      if (err) {
        raw.destroy()
        reject(err)
      } else resolve(s!)
    }
    const onError = (e: Error) => finish(e)
    const onClose = () => finish(new Error('connection closed during TLS negotiation'))
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
    raw.once('error', onError)
    raw.once('close', onClose)
    raw.once('connect', () => {
      if (!target.tls) return finish(null, raw)
      negotiateBackendTls(raw, target.host, target.tls).then(
        (s) => finish(null, s),
        (e: Error) => finish(e),
      )
    })
  })
}

const IGNORE: ScanSink = { data() {}, end() {} }
