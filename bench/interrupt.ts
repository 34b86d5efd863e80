// The benchmark's interruption. Ctrl-C: kill our children (pgbench, pgraid) at once, shut the PostgreSQL servers down
// (immediate mode) and remove their data directories, then exit 130. This runs asynchronously on purpose:
// under `npm run bench` the tsx parent process re-sends the signal and SIGKILLs us if we do not react
// within ~60 ms, so nothing here may block the event loop (the cluster's own synchronous signal handler
// would, which is why it is replaced by this one while the benchmark runs; its exit hook stays as a
// last resort). A second signal more than a second later exits immediately.

import type { Cluster } from '../src/embedded/cluster.ts'
import { killAllChildren, runAbortCleanups } from './procs.ts'

let aborting: number | undefined
/** The clusters running now: the measured one, and the failover scenario's while it runs. */
export const activeClusters = new Set<Cluster>()
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

function onSignal(sig: NodeJS.Signals): void {
  if (aborting !== undefined) {
    if (Date.now() - aborting > 1000) {
      process.stderr.write(`[bench] ${sig} again: exiting without waiting\n`)
      killAllChildren('SIGKILL')
      process.exit(sig === 'SIGINT' ? 130 : 143)
    }
    return
  }
  aborting = Date.now()
  process.stderr.write(`\n[bench] ${sig}: stopping pgbench, pgraid and the PostgreSQL servers\n`)
  killAllChildren('SIGKILL')
  runAbortCleanups()
  const stop = Promise.all([...activeClusters].map((cluster) => Promise.all(cluster.backends.map((b) => b.kill().catch(() => {}))).then(() => cluster.stop())))
  const deadline = new Promise((resolve) => setTimeout(resolve, 30_000).unref())
  void Promise.race([stop, deadline])
    .catch((e: unknown) => process.stderr.write(`[bench] while stopping: ${String(e)}\n`))
    .finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
}

/** Makes onSignal the only visible handler for SIGINT/SIGTERM/SIGHUP (see above). */
export function takeOverSignals(): void {
  for (const sig of SIGNALS) {
    for (const l of process.listeners(sig)) if (l !== onSignal) process.off(sig, l as (...args: unknown[]) => void)
    if (!process.listeners(sig).includes(onSignal)) process.on(sig, onSignal)
  }
}

/** A signal arrived: the run is being torn down. */
export function aborted(): boolean {
  return aborting !== undefined
}
