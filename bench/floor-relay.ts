// The Node.js floor for reads (issue 20, item 1): a bare relay. Each client connection gets one connection to
// one backend and the bytes are piped both ways without being looked at, so the startup packet, the
// authentication exchange and everything after it pass through untouched. It is the least any Node.js proxy
// spends to carry a session (two sockets, the event loop, one read and one write per direction), and pgraid's
// CPU per transaction on select-only is compared with this process's own in docs/benchmarks.md ("CPU per
// transaction against the Node.js floor", bench/report-floor.ts). It runs as a process of its own so that
// /proc/<pid>/stat counts its CPU alone.
//
//   node --import tsx bench/floor-relay.ts <listen port> <backend host>:<backend port>
//
// Listens on 127.0.0.1 (port 0: any free port) and prints `floor-relay listening on 127.0.0.1:<port>` once it
// does. Exits on SIGTERM/SIGINT. bench/floor.ts starts it for `npm run bench`.
import net from 'node:net'

function usage(msg: string): never {
  process.stderr.write(`floor-relay: ${msg}\nusage: floor-relay.ts <listen port> <backend host>:<backend port>\n`)
  process.exit(2)
}

const [portArg, backendArg] = process.argv.slice(2)
if (portArg === undefined || backendArg === undefined) usage('missing arguments')
const listenPort = Number(portArg)
if (!Number.isInteger(listenPort) || listenPort < 0 || listenPort > 65535) usage(`bad listen port ${JSON.stringify(portArg)}`)
const colon = backendArg.lastIndexOf(':')
const backendHost = backendArg.slice(0, colon)
const backendPort = Number(backendArg.slice(colon + 1))
if (colon <= 0 || !Number.isInteger(backendPort) || backendPort <= 0) usage(`bad backend ${JSON.stringify(backendArg)}`)

const server = net.createServer({ noDelay: true }, (client) => {
  const backend = net.connect({ host: backendHost, port: backendPort, noDelay: true })
  const close = () => {
    client.destroy()
    backend.destroy()
  }
  client.on('error', close)
  backend.on('error', close)
  client.on('close', close)
  backend.on('close', close)
  client.pipe(backend)
  backend.pipe(client)
})

server.on('error', (e) => {
  process.stderr.write(`floor-relay: ${e.message}\n`)
  process.exit(1)
})
server.listen(listenPort, '127.0.0.1', () => {
  const addr = server.address() as net.AddressInfo
  process.stdout.write(`floor-relay listening on ${addr.address}:${addr.port}\n`)
})

for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0))
