// The Node.js floor for replicated writes (issue 20, item 1): a bare 3-way fan-out. What any Node.js proxy that
// sends every statement to three backends spends at the least, to set against pgraid's CPU per transaction on
// autocommit INSERTs in docs/benchmarks.md ("CPU per transaction against the Node.js floor").
//
// Per client connection:
//  - it answers the client's startup itself, with no authentication: AuthenticationOk, the first backend's
//    ParameterStatus messages, its BackendKeyData, ReadyForQuery (an SSLRequest/GSSENCRequest first is
//    answered 'N'; a CancelRequest is dropped);
//  - it opens one connection to each backend and logs in with BackendConnection.connect
//    (src/backend/connection.ts: trust, cleartext, md5 or SCRAM-SHA-256), with the client's startup
//    parameters (database, application_name, ...) and the backend user of the environment;
//  - after that it frames the client's bytes into whole messages by their 5-byte headers (type, length; nothing
//    else is decoded) and writes each run of whole messages to all backends, the same buffer to each;
//  - it finds the backends' message boundaries the same way and counts their ReadyForQuery ('Z') messages. The
//    first backend's answer up to and including its n-th ReadyForQuery goes to the client once every backend
//    has sent its n-th ReadyForQuery; the other backends' answers are dropped.
//
// No ordering between sessions, no locks, no error reconciliation, no backpressure: only for workloads that
// cannot deadlock or diverge (single-statement autocommit writes on rows nobody else touches, and reads).
//
//   FLOOR_BACKEND_USER=postgres FLOOR_BACKEND_PASSWORD=... \
//     node --import tsx bench/floor-fanout.ts <listen port> <host>:<port> <host>:<port> <host>:<port>
//
// Listens on 127.0.0.1 (port 0: any free port) and prints `floor-fanout listening on 127.0.0.1:<port>` once it
// does. Exits on SIGTERM/SIGINT. bench/floor.ts starts it for `npm run bench`.
import net from 'node:net'
import { BackendConnection, type BackendTarget } from '../src/backend/connection.ts'
import { B, CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_3_0, SSL_REQUEST } from '../src/protocol/codes.ts'
import * as be from '../src/protocol/encode.ts'

function usage(msg: string): never {
  process.stderr.write(`floor-fanout: ${msg}\nusage: floor-fanout.ts <listen port> <host>:<port>... (FLOOR_BACKEND_USER, FLOOR_BACKEND_PASSWORD)\n`)
  process.exit(2)
}

const [portArg, ...backendArgs] = process.argv.slice(2)
if (portArg === undefined || backendArgs.length === 0) usage('missing arguments')
const listenPort = Number(portArg)
if (!Number.isInteger(listenPort) || listenPort < 0 || listenPort > 65535) usage(`bad listen port ${JSON.stringify(portArg)}`)
const backendUser = process.env.FLOOR_BACKEND_USER ?? 'postgres'
const backendPassword = process.env.FLOOR_BACKEND_PASSWORD
const TARGETS: BackendTarget[] = backendArgs.map((a, i) => {
  const colon = a.lastIndexOf(':')
  const port = Number(a.slice(colon + 1))
  if (colon <= 0 || !Number.isInteger(port) || port <= 0) usage(`bad backend ${JSON.stringify(a)}`)
  return { name: `b${i + 1}`, host: a.slice(0, colon), port, user: backendUser, password: backendPassword }
})
const LOGIN_TIMEOUT_MS = 30_000

/**
 * Finds the ends of a backend's messages from their 5-byte headers alone and calls `onReady(end)` at the end of
 * each ReadyForQuery, `end` being the offset in the current chunk just past it.
 */
class ReadyScanner {
  private left = 0 // body bytes of the current message still to come
  private type = 0
  private readonly head = Buffer.alloc(5)
  private headFill = 0

  constructor(private readonly onReady: (end: number) => void) {}

  scan(chunk: Buffer): void {
    const n = chunk.length
    let off = 0
    while (off < n) {
      if (this.left > 0) {
        const take = Math.min(this.left, n - off)
        this.left -= take
        off += take
        if (this.left === 0 && this.type === B.ReadyForQuery) this.onReady(off)
        continue
      }
      if (this.headFill === 0 && n - off >= 5) {
        this.type = chunk[off]!
        this.left = chunk.readInt32BE(off + 1) - 4
        off += 5
      } else {
        this.head[this.headFill++] = chunk[off++]!
        if (this.headFill < 5) continue
        this.headFill = 0
        this.type = this.head[0]!
        this.left = this.head.readInt32BE(1) - 4
      }
      if (this.left < 0) throw new Error(`message length ${this.left + 4} from a backend`)
      if (this.left === 0 && this.type === B.ReadyForQuery) this.onReady(off)
    }
  }
}

/** Splits the client's bytes into whole messages by their 5-byte headers; keeps an incomplete tail for the next chunk. */
class ClientFramer {
  private carry: Buffer | null = null

  /** The whole messages received so far and not yet returned, as one buffer (a view where possible); null if none. */
  push(chunk: Buffer): Buffer | null {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk
    let off = 0
    while (buf.length - off >= 5) {
      const len = buf.readInt32BE(off + 1)
      if (len < 4) throw new Error(`message length ${len} from the client`)
      if (buf.length - off < len + 1) break
      off += len + 1
    }
    this.carry = off < buf.length ? buf.subarray(off) : null
    return off > 0 ? buf.subarray(0, off) : null
  }
}

/** The client's startup packet (after any SSL/GSS request, answered 'N'); null for a CancelRequest. */
function readStartup(client: net.Socket): Promise<{ params: Record<string, string>; rest: Buffer } | null> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0)
    const done = (v: { params: Record<string, string>; rest: Buffer } | null, err?: Error) => {
      client.pause() // until the session's own reader is attached
      client.off('data', onData)
      client.off('close', onClose)
      if (err) reject(err)
      else resolve(v)
    }
    const onClose = () => done(null, new Error('client closed during startup'))
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk
      while (buf.length >= 8) {
        const len = buf.readInt32BE(0)
        if (len < 8 || len > 10_000) return done(null, new Error(`startup packet of ${len} bytes`))
        if (buf.length < len) return
        const code = buf.readInt32BE(4)
        const packet = buf.subarray(0, len)
        buf = buf.subarray(len)
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          client.write('N')
          continue
        }
        if (code === CANCEL_REQUEST) return done(null)
        if (code !== PROTOCOL_3_0) return done(null, new Error(`unsupported protocol ${code >> 16}.${code & 0xffff}`))
        const params: Record<string, string> = {}
        const parts = packet.subarray(8).toString('utf8').split('\0')
        for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) params[parts[i]!] = parts[i + 1]!
        return done({ params, rest: buf })
      }
    }
    client.on('data', onData)
    client.on('close', onClose)
  })
}

async function session(client: net.Socket): Promise<void> {
  client.on('error', () => client.destroy())
  const startup = await readStartup(client)
  if (!startup) {
    client.destroy()
    return
  }
  const { user, database, ...rest } = startup.params
  let conns: BackendConnection[]
  try {
    const settled = await Promise.allSettled(TARGETS.map((t) => BackendConnection.connect({ ...t, database: database ?? user }, rest, LOGIN_TIMEOUT_MS)))
    const failed = settled.find((s) => s.status === 'rejected')
    if (failed) {
      for (const s of settled) if (s.status === 'fulfilled') s.value.destroy()
      throw (failed as PromiseRejectedResult).reason
    }
    conns = settled.map((s) => (s as PromiseFulfilledResult<BackendConnection>).value)
  } catch (e) {
    client.end(be.errorResponse({ severity: 'FATAL', code: '08006', message: `floor-fanout: backend login failed: ${(e as Error).message}` }))
    return
  }
  // From here on the backends' sockets are read here, not by BackendConnection's scanner.
  const socks = conns.map((c) => {
    const s = c.socket
    s.removeAllListeners('data')
    s.removeAllListeners('error')
    s.removeAllListeners('close')
    return s
  })
  let closed = false
  const closeAll = () => {
    if (closed) return
    closed = true
    client.destroy()
    for (const s of socks) s.destroy()
  }
  // The client leaving (its Terminate already forwarded): the backends' sockets are ended, not destroyed, so
  // that Terminate reaches them.
  client.on('close', () => {
    if (closed) return
    closed = true
    for (const s of socks) s.end()
  })
  client.on('error', closeAll)
  for (const s of socks) {
    s.on('close', closeAll)
    s.on('error', closeAll)
  }

  // ReadyForQuery messages seen per backend; batches of the first backend's answer, each ending with its
  // ReadyForQuery, not yet sent; the bytes of its answer in progress.
  const ready = socks.map(() => 0)
  let released = 0
  const batches: Buffer[][] = []
  let current: Buffer[] = []
  let chunk: Buffer = Buffer.alloc(0)
  let start = 0
  const release = () => {
    let upTo = ready[0]!
    for (let i = 1; i < ready.length; i++) upTo = Math.min(upTo, ready[i]!)
    while (released < upTo) {
      const b = batches.shift()!
      client.write(b.length === 1 ? b[0]! : Buffer.concat(b))
      released++
    }
  }
  const scanners = socks.map(
    (_, i) =>
      new ReadyScanner(
        i === 0
          ? (end) => {
              current.push(chunk.subarray(start, end))
              batches.push(current)
              current = []
              start = end
              ready[0]!++
            }
          : () => {
              ready[i]!++
            },
      ),
  )
  socks.forEach((s, i) =>
    s.on('data', (c: Buffer) => {
      try {
        if (i === 0) {
          chunk = c
          start = 0
          scanners[0]!.scan(c)
          if (start < c.length) current.push(start === 0 ? c : c.subarray(start))
        } else scanners[i]!.scan(c)
      } catch (e) {
        process.stderr.write(`floor-fanout: ${(e as Error).message}\n`)
        closeAll()
        return
      }
      release()
    }),
  )

  const first = conns[0]!
  const hello: Buffer[] = [be.authOk()]
  for (const [k, v] of first.params) hello.push(be.parameterStatus(k, v))
  hello.push(be.backendKeyData(first.pid, first.secret), be.readyForQuery('I'))
  client.write(Buffer.concat(hello))

  const framer = new ClientFramer()
  const forward = (c: Buffer) => {
    let whole: Buffer | null
    try {
      whole = framer.push(c)
    } catch (e) {
      process.stderr.write(`floor-fanout: ${(e as Error).message}\n`)
      closeAll()
      return
    }
    if (whole) for (const s of socks) s.write(whole)
  }
  if (startup.rest.length > 0) forward(startup.rest)
  client.on('data', forward)
  client.resume()
}

const server = net.createServer({ noDelay: true }, (client) => {
  session(client).catch((e: unknown) => {
    process.stderr.write(`floor-fanout: ${(e as Error).message}\n`)
    client.destroy()
  })
})
server.on('error', (e) => {
  process.stderr.write(`floor-fanout: ${e.message}\n`)
  process.exit(1)
})
server.listen(listenPort, '127.0.0.1', () => {
  const addr = server.address() as net.AddressInfo
  process.stdout.write(`floor-fanout listening on ${addr.address}:${addr.port}\n`)
})

for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0))
