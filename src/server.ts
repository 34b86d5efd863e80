// Starts pgraid: the listener and the state its sessions share.

import net from 'node:net'
import type { Config } from './control/config.ts'
import type { Logger } from './control/logger.ts'
import { LockManager } from './scheduler/lock-manager.ts'
import { Balancer, type BalancedBackend } from './router/balancer.ts'
import { Catalog } from './scheduler/catalog.ts'
import { RecoveryLog } from './recovery/log.ts'
import { BackendStates } from './cluster/states.ts'
import { RateMeter } from './control/rate.ts'
import { errors } from './errors.ts'
import { Counters, startMetrics, type MetricsServer } from './control/metrics.ts'
import { Session } from './frontend/session.ts'
import { initParser } from './sql/analyze.ts'
import type { ServerContext } from './server-context.ts'
import type { BackendTarget } from './backend/connection.ts'
import { loadServerTls } from './tls/server-tls.ts'
import { loadBackendTls } from './tls/backend-tls.ts'
import { parseHbaRule } from './auth/hba.ts'
import { lookupStoredPassword } from './auth/auth-query.ts'

export interface PgraidHandle {
  host: string
  port: number
  /** Stops accepting clients; closes sessions between transactions, waiting at most graceMs for busy ones (0: at once). */
  close(graceMs?: number): Promise<void>
  /** Shared state, for the admin interface and tests. */
  context: ServerContext
  /** Where GET /metrics is served (null: metrics.port not set). */
  metricsPort: number | null
  /** Who handles the admin console's SHUTDOWN (the CLI: as SIGTERM); by default pgraid closes itself. */
  onShutdownRequest(cb: () => void): void
}

export async function startPgraid(config: Config, logger: Logger): Promise<PgraidHandle> {
  await initParser()
  const serverTls = await loadServerTls(config.listen.tls)
  const backendTls = await Promise.all(config.backends.map((b) => loadBackendTls(b)))
  const targets: BackendTarget[] = config.backends.map((b, i) => ({
    name: b.name,
    host: b.host,
    port: b.port,
    user: b.user,
    password: b.password ?? undefined,
    database: b.database ?? null,
    tls: backendTls[i],
  }))
  const hba = config.hba.map(parseHbaRule)
  const stats: BalancedBackend[] = config.backends.map((b, i) => ({ index: i, weight: b.weight, outstanding: 0 }))
  const sessions = new Set<Session>()
  const byPid = new Map<number, Session>()
  const catalogs = new Map<string, Catalog>()
  const logs = new Map<string, RecoveryLog>()
  let nextId = 1
  let hold: Promise<void> | null = null
  let inFlight = 0
  let pausedBy: Promise<void> | null = null
  // SHUTDOWN: whoever runs pgraid (the CLI) may take it over; otherwise pgraid closes itself.
  let onShutdown: () => void = () => void handle.close(config.timeouts.shutdownMs)
  const commits = new RateMeter()
  const counters = new Counters()
  const states = new BackendStates(targets.map((t) => t.name))
  states.setMaxListeners(0) // one listener per session
  const writeQuorum = config.writeQuorum ?? Math.floor(targets.length / 2) + 1
  const ctx: ServerContext = {
    states,
    writeQuorum,
    takeOut(index, state, reason, drain = false) {
      if (!states.takeOut(index, state, reason, drain)) return
      if (state === 'inconsistent') counters.divergences++
      logger.error({ backend: targets[index]?.name, state, reason, enabled: states.enabled().map((i) => targets[i]!.name) }, 'backend taken out of service')
      // Recorded in the remaining backends, so a pgraid started later knows (invariant 7).
      for (const l of logs.values()) void l.recordStates(states.list).catch((e: Error) => logger.warn({ err: e.message }, 'could not record backend states'))
    },
    markOut(index, state, reason) {
      if (!states.mark(index, state, reason)) return
      logger.warn({ backend: targets[index]?.name, state, reason }, 'backend state changed')
      for (const l of logs.values()) void l.recordStates(states.list).catch((e: Error) => logger.warn({ err: e.message }, 'could not record backend states'))
    },
    config,
    tls: serverTls,
    hba,
    lookupPassword: config.authQuery.enabled
      ? async (user) => {
          const i = states.enabled()[0]
          if (i === undefined) throw errors.backendUnavailable('any', 'no backend in service for the authQuery lookup')
          const q = config.authQuery
          try {
            return await lookupStoredPassword(targets[i]!, q.database, q.query, user, config.timeouts.connectMs || 10_000)
          } catch (e) {
            logger.warn({ backend: targets[i]!.name, err: (e as Error).message }, 'authQuery lookup failed')
            throw errors.backendUnavailable(targets[i]!.name, `authQuery lookup failed: ${(e as Error).message}`)
          }
        }
      : null,
    log: logger,
    locks: new LockManager(),
    balancer: new Balancer(stats),
    stats,
    enable(index, reason) {
      if (!states.enable(index, reason)) return
      logger.warn({ backend: targets[index]?.name, reason }, 'backend back in service')
      for (const l of logs.values()) void l.recordStates(states.list).catch((e: Error) => logger.warn({ err: e.message }, 'could not record backend states'))
    },
    pause() {
      let release!: () => void
      const p = new Promise<void>((r) => (release = r))
      pausedBy ??= p
      const mine = pausedBy
      return () => {
        if (pausedBy === mine) pausedBy = null
        release()
      }
    },
    paused: () => pausedBy !== null,
    waitPause: () => pausedBy ?? Promise.resolve(),
    shutdown: () => onShutdown(),
    holdCommits() {
      let release!: () => void
      const p = new Promise<void>((r) => (release = r))
      hold = p
      return () => {
        if (hold === p) hold = null
        release()
      }
    },
    waitHold: () => hold ?? Promise.resolve(),
    held: () => hold !== null,
    commitsInFlight: () => inFlight,
    commitStarted: () => void inFlight++,
    commitEnded: () => {
      inFlight--
      commits.mark()
    },
    commits,
    counters,
    nextSessionId: () => nextId++,
    sessions: () => [...sessions],
    databases: () => [...logs.keys()],
    backends: () => targets,
    catalog(database) {
      let c = catalogs.get(database)
      if (!c) catalogs.set(database, (c = new Catalog(() => targets[states.enabled()[0] ?? 0]!, database)))
      return c
    },
    recovery(database) {
      let l = logs.get(database)
      if (!l) logs.set(database, (l = new RecoveryLog(targets, states, (i, state, reason) => ctx.takeOut(i, state, reason), database, logger)))
      return l
    },
    admit(s) {
      if (sessions.size >= config.limits.maxClients) return errors.tooManyClients(config.limits.maxClients)
      const max = config.users.find((u) => u.name === s.user)?.maxConnections
      if (max !== undefined && [...sessions].filter((o) => o.user === s.user).length >= max) return errors.tooManyForUser(s.user, max)
      sessions.add(s)
      byPid.set(s.pid, s)
      return null
    },
    release(s) {
      sessions.delete(s)
      byPid.delete(s.pid)
    },
    cancel(pid, secret) {
      const s = byPid.get(pid)
      // A wrong secret is ignored silently, as PostgreSQL does.
      if (s && s.secret === secret) s.cancelRequested()
    },
  }
  const purge = setInterval(() => {
    for (const l of logs.values())
      void l.purge(config.recovery.retainRecords).then(
        (n) => n && logger.debug({ database: l.database, purged: n }, 'recovery log purged'),
        (e: Error) => logger.warn({ err: e.message }, 'recovery log purge failed'),
      )
  }, config.recovery.purgeIntervalMs)
  purge.unref()
  const server = net.createServer((socket) => {
    socket.on('error', () => {})
    new Session(socket, ctx)
  })
  server.maxConnections = config.limits.maxClients + 100 // cancel requests and refusals still get through
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const metrics: MetricsServer | null = config.metrics.port === null ? null : await startMetrics(ctx, config.metrics.host, config.metrics.port)
  const addr = server.address() as net.AddressInfo
  logger.info({ host: addr.address, port: addr.port, metricsPort: metrics?.port, backends: targets.map((t) => `${t.name}@${t.host}:${t.port}`) }, 'pgraid listening')
  const handle: PgraidHandle = {
    host: addr.address,
    port: addr.port,
    context: ctx,
    metricsPort: metrics?.port ?? null,
    onShutdownRequest(cb) {
      onShutdown = cb
    },
    async close(graceMs = 0) {
      clearInterval(purge)
      await metrics?.close()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      // Graceful: no new clients; sessions are closed as each is between transactions, the rest after graceMs.
      const until = Date.now() + graceMs
      while (sessions.size && Date.now() < until) {
        for (const s of sessions) if (s.idle()) s.terminate()
        if (sessions.size) await new Promise((r) => setTimeout(r, 20))
      }
      for (const s of sessions) s.close('pgraid shutting down')
      await closed
      await Promise.all([...catalogs.values()].map((c) => c.close()))
    },
  }
  return handle
}
