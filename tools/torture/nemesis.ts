// The nemesis: a random, seeded schedule of faults, one at a time, each
// healed before the next (a majority of backends stays up: writes need it),
// unless --overlap. Kinds:
// - a backend: kill (immediate shutdown, SIGQUIT: crash recovery at the next
//   start), kill9 (kill -9 of the postmaster alone), restart (fast
//   shutdown), freeze (SIGSTOP, then SIGCONT), restore (its data directory
//   replaced by a copy taken earlier in the run: a backup restored), wipe
//   (a fresh initdb in its place: a new disk), netcut (its link to pgraid
//   down, then up: packets dropped, root only);
// - pgraid: crash (kill -9 one instance, start it again), failover (kill -9
//   the writer of two: the standby takes over);
// - clients: a storm of CancelRequests; calm: nothing for a while. (Clients
//   vanishing mid-transaction, mid-COPY, mid-pipeline and statement_timeout
//   are operations of the workload: vanish.ts.)

import net from 'node:net'
import path from 'node:path'
import type { RunningBackend } from '../../src/embedded/cluster.ts'
import { cancelRequest } from '../../src/protocol/frontend-encode.ts'
import { Rng } from './history.ts'
import type { ClientSession } from './drivers/driver.ts'

export const KINDS = ['kill', 'kill9', 'restart', 'freeze', 'restore', 'wipe', 'netcut', 'cancel', 'calm', 'crash', 'failover'] as const
const ON_BACKEND: readonly NemesisKind[] = ['kill', 'kill9', 'restart', 'freeze', 'restore', 'wipe', 'netcut']
export type NemesisKind = (typeof KINDS)[number]

export interface Fault {
  kind: NemesisKind
  target: string
  at: number
  ms: number
}

export interface NemesisDeps {
  backends: RunningBackend[]
  /** The clients' current sessions and the pgraid each is connected to (for CancelRequests). */
  clients: () => ({ session: ClientSession; host: string; port: number } | null)[]
  now: () => number
  log: (msg: string) => void
  /** Back to every backend in service (resync what is behind): a fault never meets another. */
  heal: () => Promise<void>
  /** kill -9 pgraid (the writer, or instance n modulo their count) and start it again after `ms` (when it runs as a process). */
  crashProxy?: (ms: number, which: 'writer' | number) => Promise<string>
  network?: { cut(i: number): void; heal(i: number): void }
  /** A folder for data directory copies. */
  scratch: string
}

export async function runNemesis(deps: NemesisDeps, rng: Rng, kinds: readonly NemesisKind[], until: () => boolean): Promise<Fault[]> {
  const faults: Fault[] = []
  const copies = new Map<string, string>()
  while (!until()) {
    const kind = rng.pick(kinds)
    const i = rng.int(0, deps.backends.length - 1)
    const b = deps.backends[i]!
    const ms = rng.int(500, 2500)
    const pick = rng.int(0, 9)
    const fault: Fault = { kind, target: ON_BACKEND.includes(kind) ? b.name : kind === 'cancel' ? 'clients' : kind === 'crash' || kind === 'failover' ? 'pgraid' : '-', at: deps.now(), ms }
    faults.push(fault)
    deps.log(`nemesis: ${kind} ${fault.target} for ${ms} ms`)
    if (kind === 'kill' || kind === 'kill9' || kind === 'restart') {
      await (kind === 'kill' ? b.kill() : kind === 'kill9' ? b.crash() : b.stop())
      await sleep(ms)
      await b.start()
    } else if (kind === 'freeze') {
      b.pause()
      await sleep(ms)
      b.resume()
    } else if (kind === 'restore') {
      const copy = copies.get(b.name)
      if (!copy) {
        // The first restore of a backend takes the copy (a backup: the server stopped, the folder copied).
        fault.target += ' (copy taken)'
        const dir = path.join(deps.scratch, `${b.name}-copy`)
        await b.stop()
        await b.copyData(dir)
        await b.start()
        copies.set(b.name, dir)
      } else {
        await b.kill()
        await b.replaceData(copy)
        await sleep(ms)
        await b.start()
      }
    } else if (kind === 'wipe') {
      await b.kill()
      await b.replaceData(null)
      await sleep(ms)
      await b.start()
    } else if (kind === 'netcut' && deps.network) {
      deps.network.cut(i)
      // Long enough, often, for the health monitor to judge it (a short cut only stalls writes).
      await sleep(ms * 4)
      deps.network.heal(i)
    } else if (kind === 'cancel') {
      // Its own stream: how many cancels fit in the storm depends on timing, the schedule must not.
      const storm = new Rng(rng.int(1, 2 ** 31))
      const end = Date.now() + ms
      while (Date.now() < end) {
        const c = storm.pick(deps.clients())
        if (c) await cancel(c.host, c.port, c.session).catch(() => {})
        await sleep(storm.int(2, 20))
      }
    } else if ((kind === 'crash' || kind === 'failover') && deps.crashProxy) fault.target = await deps.crashProxy(ms, kind === 'failover' ? 'writer' : pick)
    else await sleep(ms)
    await deps.heal()
    await sleep(rng.int(300, 1500))
  }
  return faults
}

function cancel(host: string, port: number, c: ClientSession): Promise<void> {
  const k = c.cancelKey()
  if (!k) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => s.end(cancelRequest(k.pid, k.secret)))
    s.on('close', () => resolve())
    s.on('error', reject)
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
