// The demo's control channel: `npm run demo -- <verb> [backend]` (command.ts), run from another
// terminal, asks the running demo (main.ts) to stop, kill, start or wipe one of its PostgreSQL servers.
// The demo process owns the postmasters (it spawned them, as the postgres OS user when run as root), so
// it is the one that signals and restarts them: HTTP over a unix socket whose path demo.json names.
//
//   stop <backend>   fast shutdown (pg_ctl stop -m fast): sessions rolled back, a checkpoint, exit
//   kill <backend>   SIGKILL of the postmaster (a crashed machine); its sessions exit by themselves
//   start <backend>  starts it again on its port (a fresh empty cluster first if its data was wiped)
//   wipe <backend>   stops it, deletes its data directory and starts a fresh empty cluster in its place
//                    (a replaced disk): pgraid finds it without its data; `pgraid clone` it
//   status           the demo's servers: port, running or not, pid, data directory

import http from 'node:http'
import { existsSync, readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import type { RunningBackend } from '../embedded/cluster.ts'
import { pidAlive } from '../embedded/binaries.ts'

export const VERBS = ['stop', 'kill', 'start', 'wipe', 'status'] as const
export type Verb = (typeof VERBS)[number]

/** The postmaster's pid from postmaster.pid, if it runs. */
export function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
    return pid > 0 && pidAlive(pid) ? pid : null
  } catch {
    return null
  }
}

export interface BackendStatus {
  name: string
  port: number
  dataDir: string
  running: boolean
  pid: number | null
  /** The data directory holds a cluster (false after a wipe until start). */
  initialised: boolean
}

export function backendStatus(b: Pick<RunningBackend, 'name' | 'port' | 'dataDir'>): BackendStatus {
  const pid = postmasterPid(b.dataDir)
  return { name: b.name, port: b.port, dataDir: b.dataDir, running: pid !== null, pid, initialised: existsSync(path.join(b.dataDir, 'PG_VERSION')) }
}

class Refused extends Error {
  constructor(
    message: string,
    readonly status = 409,
  ) {
    super(message)
  }
}

/** What the control server needs of the demo. */
export interface DemoControl {
  backends: RunningBackend[]
  /** The lines to paste after a change (the pgraid commands, with this demo's config file). */
  pgraid(args: string): string
  /** The same for a demo verb (`npm run demo -- <args>`, with PGRAID_DEMO_DIR when not the default). */
  demo(args: string): string
  log(line: string): void
}

/** Performs one verb; returns the text to answer (Refused: a 4xx answer). One at a time per backend. */
export async function perform(demo: DemoControl, verb: string, name: string | undefined, busy: Set<string>): Promise<string> {
  if (verb === 'status') return statusText(demo)
  if (!(VERBS as readonly string[]).includes(verb)) throw new Refused(`unknown verb "${verb}": one of ${VERBS.join(', ')}`, 400)
  const names = demo.backends.map((b) => b.name)
  const b = demo.backends.find((x) => x.name === name)
  if (!b) throw new Refused(name ? `no backend "${name}" in the demo: one of ${names.join(', ')}` : `${verb} needs a backend: one of ${names.join(', ')}`, 400)
  if (busy.has(b.name)) throw new Refused(`${b.name} is busy with another demo command; try again`)
  busy.add(b.name)
  try {
    const before = backendStatus(b)
    switch (verb as Verb) {
      case 'stop':
        if (!before.running) return `${b.name} is not running\n`
        await b.stop()
        demo.log(`${b.name} stopped (fast shutdown)`)
        return `${b.name} stopped (fast shutdown, as pg_ctl stop -m fast); pgraid takes it out of service.\nSee it: ${demo.pgraid('status')}\nThen: ${demo.demo(`start ${b.name}`)}\n`
      case 'kill': {
        if (!before.running) return `${b.name} is not running\n`
        await b.crash()
        demo.log(`${b.name} killed (SIGKILL of postmaster ${before.pid})`)
        return `${b.name}: postmaster ${before.pid} killed with SIGKILL (as a crash); pgraid takes it out of service.\nSee it: ${demo.pgraid('status')}\nThen: ${demo.demo(`start ${b.name}`)}\n`
      }
      case 'start': {
        if (before.running) return `${b.name} is already running (pid ${before.pid}, port ${b.port})\n`
        const fresh = !before.initialised
        if (fresh) await b.replaceData(null)
        await b.start()
        demo.log(`${b.name} started on port ${b.port}${fresh ? ' (fresh empty cluster)' : ''}`)
        return (
          `${b.name} started on 127.0.0.1:${b.port} (pid ${postmasterPid(b.dataDir) ?? '?'})${fresh ? ', a fresh empty cluster' : ''}.\n` +
          `pgraid puts it back by itself if nothing was written meanwhile; otherwise: ${demo.pgraid(fresh ? `clone ${b.name}` : `resync ${b.name}`)}\n`
        )
      }
      case 'wipe': {
        if (before.running) await b.stop()
        await fs.rm(b.dataDir, { recursive: true, force: true })
        demo.log(`${b.name} wiped: data directory ${b.dataDir} deleted`)
        // A fresh initdb (the cached template's copy) with the same superuser and password, started on the same port.
        await b.replaceData(null)
        await b.start()
        demo.log(`${b.name} started as a fresh empty cluster on port ${b.port}`)
        return (
          `${b.name} wiped: stopped, ${b.dataDir} deleted, a fresh empty cluster started on 127.0.0.1:${b.port} (as after a disk replacement).\n` +
          `pgraid finds it without its data: ${demo.pgraid('status')} shows it out of service; copy it back: ${demo.pgraid(`clone ${b.name}`)}\n`
        )
      }
    }
    throw new Refused(`unknown verb "${verb}"`, 400)
  } finally {
    busy.delete(b.name)
  }
}

function statusText(demo: DemoControl): string {
  const rows = demo.backends.map(backendStatus)
  const lines = rows.map((s) => `  ${s.name}  127.0.0.1:${s.port}  ${s.running ? `running (pid ${s.pid})` : s.initialised ? 'STOPPED' : 'STOPPED, no data'}  ${s.dataDir}`)
  return `the demo's PostgreSQL servers:\n${lines.join('\n')}\npgraid's view: ${demo.pgraid('status')}\n`
}

/** Serves the verbs on a unix socket: POST /<verb>[/<backend>]. */
export async function startControl(socket: string, demo: DemoControl): Promise<{ close(): Promise<void> }> {
  const busy = new Set<string>()
  const server = http.createServer((req, res) => {
    const [verb = '', name] = (req.url ?? '/').split('/').filter(Boolean).map(decodeURIComponent)
    perform(demo, verb, name, busy).then(
      (text) => {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' })
        res.end(text)
      },
      (e: Error) => {
        res.writeHead(e instanceof Refused ? e.status : 500, { 'content-type': 'text/plain; charset=utf-8' })
        res.end(`${e.message}\n`)
      },
    )
  })
  await fs.rm(socket, { force: true })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socket, () => resolve())
  })
  await fs.chmod(socket, 0o600)
  server.unref()
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
        void fs.rm(socket, { force: true })
      }),
  }
}

/** Sends one verb to the running demo; resolves with the HTTP status and the answer text. */
export function request(socket: string, verb: string, name: string | undefined, timeoutMs = 120_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method: 'POST', path: `/${encodeURIComponent(verb)}${name ? `/${encodeURIComponent(name)}` : ''}`, timeout: timeoutMs }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 500, text }))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from the demo within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}
