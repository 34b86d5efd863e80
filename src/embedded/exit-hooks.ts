// Exit hooks: best effort so an aborted test does not leave servers or temp dirs behind.
import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'

/** What the hooks need of a running server (an interface, so this module imports no server code). */
export interface LiveServer {
  readonly dataDir: string
  signalSync(sig: NodeJS.Signals): void
}

export const live = new Set<LiveServer>() // servers whose postmaster runs
export const ownedDirs = new Set<string>() // base dirs to remove if the process dies before cluster.stop()
let hooksInstalled = false

/** Synchronous sleep, for the process-exit hook where the event loop no longer runs. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

function onExit(): void {
  const pending = [...live]
  for (const b of pending) b.signalSync('SIGQUIT') // immediate shutdown, all at once
  const until = Date.now() + 5_000
  // Cannot poll pid liveness: an exited child stays a zombie until our (stopped) event loop
  // reaps it. The postmaster removes postmaster.pid on exit, which is what pg_ctl waits for too.
  while (pending.some((b) => existsSync(path.join(b.dataDir, 'postmaster.pid'))) && Date.now() < until) sleepSync(20)
  live.clear()
  for (const d of ownedDirs) rmSync(d, { recursive: true, force: true })
  ownedDirs.clear()
}

function onSignal(sig: NodeJS.Signals): void {
  // Someone else handles this signal (the demo stops its stack cleanly, with a fast shutdown):
  // leave it to them; the 'exit' hook still catches whatever they leave running.
  if (process.listenerCount(sig) > 1) return
  onExit()
  uninstallHooks()
  // Our listener replaced the default action; re-raise it unless someone else handles the signal.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
}

const sigHandlers: Partial<Record<NodeJS.Signals, () => void>> = {}

export function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', onExit)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    sigHandlers[sig] = () => onSignal(sig)
    process.on(sig, sigHandlers[sig])
  }
}

function uninstallHooks(): void {
  if (!hooksInstalled) return
  hooksInstalled = false
  process.off('exit', onExit)
  for (const [sig, h] of Object.entries(sigHandlers)) if (h) process.off(sig, h)
}

export function maybeUninstallHooks(): void {
  // Only hold signal handlers while servers exist, so processes without clusters keep default behaviour.
  if (live.size === 0 && ownedDirs.size === 0) uninstallHooks()
}
