// The nemesis: a random, seeded schedule of faults, one at a time, each
// healed before the next (a majority of backends stays up: writes need it).
// Kinds: kill a backend (immediate shutdown, SIGQUIT: crash recovery at the
// next start) and start it again; restart one (fast shutdown); freeze one
// (SIGSTOP) for a while; a storm of CancelRequests; nothing for a while;
// crash: kill -9 pgraid itself and start it again (pgraid as a process).

import net from 'node:net'
import type pg from 'pg'
import type { RunningBackend } from '../../src/embedded/cluster.ts'
import { cancelRequest } from '../../src/protocol/frontend-encode.ts'
import { Rng } from './history.ts'

export const KINDS = ['kill', 'restart', 'freeze', 'cancel', 'calm', 'crash'] as const
export type NemesisKind = (typeof KINDS)[number]

export interface Fault {
  kind: NemesisKind
  target: string
  at: number
  ms: number
}

export interface NemesisDeps {
  backends: RunningBackend[]
  /** The clients' current connections (for CancelRequests), through pgraid at host:port. */
  clients: () => (pg.Client | null)[]
  host: string
  port: number
  now: () => number
  log: (msg: string) => void
  /** Back to every backend in service (resync what is behind): a fault never meets another. */
  heal: () => Promise<void>
  /** kill -9 pgraid and start it again after `ms` (when it runs as a process). */
  crashProxy?: (ms: number) => Promise<void>
}

export async function runNemesis(deps: NemesisDeps, rng: Rng, kinds: readonly NemesisKind[], until: () => boolean): Promise<Fault[]> {
  const faults: Fault[] = []
  while (!until()) {
    const kind = rng.pick(kinds)
    const b = rng.pick(deps.backends)
    const ms = rng.int(500, 2500)
    const fault: Fault = { kind, target: kind === 'kill' || kind === 'restart' || kind === 'freeze' ? b.name : kind === 'cancel' ? 'clients' : kind === 'crash' ? 'pgraid' : '-', at: deps.now(), ms }
    faults.push(fault)
    deps.log(`nemesis: ${kind} ${fault.target} for ${ms} ms`)
    if (kind === 'kill' || kind === 'restart') {
      await (kind === 'kill' ? b.kill() : b.stop())
      await sleep(ms)
      await b.start()
    } else if (kind === 'freeze') {
      b.pause()
      await sleep(ms)
      b.resume()
    } else if (kind === 'cancel') {
      // Its own stream: how many cancels fit in the storm depends on timing, the schedule must not.
      const storm = new Rng(rng.int(1, 2 ** 31))
      const end = Date.now() + ms
      while (Date.now() < end) {
        const c = storm.pick(deps.clients())
        if (c) await cancel(deps.host, deps.port, c).catch(() => {})
        await sleep(storm.int(2, 20))
      }
    } else if (kind === 'crash' && deps.crashProxy) await deps.crashProxy(ms)
    else await sleep(ms)
    await deps.heal()
    await sleep(rng.int(300, 1500))
  }
  return faults
}

function cancel(host: string, port: number, c: pg.Client): Promise<void> {
  const k = c as unknown as { processID: number; secretKey: number }
  if (!k.processID) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => s.end(cancelRequest(k.processID, k.secretKey)))
    s.on('close', () => resolve())
    s.on('error', reject)
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
