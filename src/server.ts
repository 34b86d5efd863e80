// Starts pgraid: the listener and the state its sessions share.

import net from 'node:net'
import { loadConfig, ConfigError, type Config, type LogLevel } from './config/schema.ts'
import { planReload, ReloadRefused, type ReloadPlan, type ReloadResult } from './config/reload-plan.ts'
import type { Logger } from './observe/logger.ts'
import { LockManager } from './scheduler/lock-manager.ts'
import { Balancer, type BalancedBackend } from './router/balancer.ts'
import { Catalog } from './scheduler/catalog.ts'
import { RecoveryLog } from './recovery/log.ts'
import { BackendStates } from './cluster/states.ts'
import { RateMeter } from './observe/rate.ts'
import { errors } from './errors.ts'
import { MetricsEndpoint } from './admin/metrics.ts'
import { Counters } from './observe/counters.ts'
import { Session } from './frontend/session.ts'
import { AdminConsole } from './admin/console.ts'
import { initParser } from './sql/analyze.ts'
import type { ClientSession, ServerContext } from './server-context.ts'
import type { BackendTarget } from './backend/connection.ts'
import { loadServerTls, type ServerTls } from './tls/server-tls.ts'
import { loadBackendTls, type BackendTls } from './tls/backend-tls.ts'
import { parseHbaRule } from './auth/hba.ts'
import { lookupStoredPassword } from './frontend/auth-query.ts'
import { Election, instanceIdentity } from './cluster/election.ts'
import { HealthMonitor } from './cluster/health.ts'
import { reconcile } from './lifecycle/reconcile.ts'
import { loggedDatabases } from './lifecycle/resync.ts'

export interface PgraidHandle {
  host: string
  port: number
  /** Stops accepting clients; closes sessions between transactions, waiting at most graceMs for busy ones (0: at once). */
  close(graceMs?: number): Promise<void>
  /** Shared state, for the admin interface and tests. */
  context: ServerContext
  /** Where GET /metrics is served now (null: metrics.port not set); a reload may change it. */
  readonly metricsPort: number | null
  /** Who handles the admin console's SHUTDOWN (the CLI: as SIGTERM); by default pgraid closes itself. */
  onShutdownRequest(cb: () => void): void
  /** SIGHUP / RELOAD: re-reads the config file (or takes `config`) and applies it live; ReloadRefused when it cannot. */
  reload: ServerContext['reload']
}

export interface StartOptions {
  /** The config file pgraid was started with: what a reload re-reads. */
  configPath?: string
  /** `pgraid start --log-level`: wins over log.level at start and at every reload. */
  logLevel?: LogLevel
}

/** TLS material of a configuration, read from its files: for clients, and per backend name. */
interface TlsFiles {
  server: ServerTls
  backends: Map<string, BackendTls | null>
}

/** Reads every TLS file `config` names; ReloadRefused with each unreadable or unusable one. */
async function loadTlsFiles(config: Config, source: string): Promise<TlsFiles> {
  const problems: string[] = []
  const fail = (e: unknown) => {
    if (!(e instanceof ConfigError)) throw e
    problems.push(...e.problems)
    return null
  }
  const server = await loadServerTls(config.listen.tls, source).catch(fail)
  const backends = new Map<string, BackendTls | null>()
  for (const b of config.backends) backends.set(b.name, await loadBackendTls(b, source).catch(fail))
  if (problems.length || !server) throw new ReloadRefused(source, problems)
  return { server, backends }
}

export async function startPgraid(config: Config, logger: Logger, opts: StartOptions = {}): Promise<PgraidHandle> {
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
  const sessions = new Set<ClientSession>()
  const byPid = new Map<number, ClientSession>()
  const catalogs = new Map<string, Catalog>()
  const logs = new Map<string, RecoveryLog>()
  /** Resolves once the commits of this process's previous term have landed (or after a bounded wait). */
  let previousTerm: Promise<void> = Promise.resolve()
  let nextId = 1
  /** Databases a CREATE/DROP/ALTER DATABASE in flight names (ServerContext.holdDatabases). */
  const heldDatabases = new Map<string, number>()
  let hold: Promise<void> | null = null
  let holders = 0
  let releaseHold: () => void = () => {}
  let pausedBy: Promise<void> | null = null
  // SHUTDOWN: whoever runs pgraid (the CLI) may take it over; otherwise pgraid closes itself.
  let onShutdown: () => void = () => void handle.close(ctx.config.timeouts.shutdownMs)
  const commits = new RateMeter()
  const counters = new Counters()
  const states = new BackendStates(targets.map((t) => t.name))
  states.setMaxListeners(0) // one listener per session
  const writeQuorum = config.writeQuorum ?? Math.floor(targets.length / 2) + 1
  // authQuery (reads the running config at each login: a reload may change the query or turn it off).
  const lookupPassword = async (user: string): Promise<string | null> => {
    const i = states.enabled()[0]
    if (i === undefined) throw errors.backendUnavailable('any', 'no backend in service for the authQuery lookup')
    const q = ctx.config.authQuery
    try {
      return await lookupStoredPassword(targets[i]!, q.database, q.query, user, ctx.config.timeouts.connectMs || 10_000)
    } catch (e) {
      logger.warn({ backend: targets[i]!.name, err: (e as Error).message }, 'authQuery lookup failed')
      throw errors.backendUnavailable(targets[i]!.name, `authQuery lookup failed: ${(e as Error).message}`)
    }
  }
  // The writer holds the lock on a majority of the configured backends; a writeQuorum set below
  // that is an explicit choice of availability over partition safety, and the election follows it.
  const ha = new Election(targets, { ...config.ha, needed: Math.min(Math.floor(targets.length / 2) + 1, writeQuorum), identity: instanceIdentity(config.listen.port) }, logger.child({ part: 'ha' }))
  let haDone!: () => void
  const haReady = new Promise<void>((r) => (haDone = r))
  /** Backend states are written into the backends by the writer only: a standby's view is its own. */
  const recordStates = () => {
    if (!ha.isWriter()) return
    for (const l of logs.values()) void l.recordStates(states.list).catch((e: Error) => logger.warn({ err: e.message }, 'could not record backend states'))
  }
  const health = new HealthMonitor({
    targets: () => targets,
    states,
    options: () => ({ ...ctx.config.health }),
    log: logger.child({ part: 'health' }),
    takeOut: (i, reason, cause) => ctx.takeOut(i, 'disabled', reason, false, cause),
    reconcile: (i, systemChanged) => reconcile(ctx, i, systemChanged),
    // Only the writer's own LSNs are compared: a standby's logs are not ready.
    logs: () => [...logs.values()].filter((l) => !heldDatabases.has(l.database)),
    markOut: (i, state, reason, cause) => ctx.markOut(i, state, reason, cause),
  })
  const ctx: ServerContext = {
    openConsole: (socket, c, user, pid, secret) => new AdminConsole(socket, c, user, pid, secret),
    health,
    states,
    writeQuorum,
    ha,
    haReady,
    takeOut(index, state, reason, drain, cause) {
      if (!states.takeOut(index, state, reason, drain, cause)) return
      if (state === 'inconsistent') counters.divergences++
      counters.takeouts.set(cause, (counters.takeouts.get(cause) ?? 0) + 1)
      logger.error({ backend: targets[index]?.name, state, cause, reason, enabled: states.enabled().map((i) => targets[i]!.name) }, 'backend taken out of service')
      // Recorded in the remaining backends, so a pgraid started later knows (invariant 7).
      recordStates()
    },
    markOut(index, state, reason, cause) {
      if (!states.mark(index, state, reason, cause)) return
      logger.warn({ backend: targets[index]?.name, state, cause, reason }, 'backend state changed')
      recordStates()
    },
    config,
    tls: serverTls,
    hba,
    lookupPassword: config.authQuery.enabled ? lookupPassword : null,
    log: logger,
    locks: new LockManager(),
    balancer: new Balancer(stats),
    stats,
    enable(index, reason) {
      if (!states.enable(index, reason)) return
      logger.info({ backend: targets[index]?.name, reason }, 'backend back in service')
      recordStates()
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
      // Counted: a resync's tail and several snapshot points may hold at once; commits go on after the last.
      if (!holders++) hold = new Promise<void>((r) => (releaseHold = r))
      let released = false
      return () => {
        if (released) return
        released = true
        if (--holders) return
        hold = null
        releaseHold()
      }
    },
    waitHold: () => hold ?? Promise.resolve(),
    held: () => hold !== null,
    commitsInFlight: () => [...logs.values()].reduce((n, l) => n + l.inFlightCount, 0),
    describeInFlight: () => [...logs.values()].flatMap((l) => l.describeInFlight()).join('; '),
    commits,
    counters,
    nextSessionId: () => nextId++,
    sessions: () => [...sessions],
    databases: () => [...logs.keys()].filter((d) => !heldDatabases.has(d)),
    statesRecorded: async () => {
      await Promise.all([...logs.values()].map((l) => l.recorded()))
    },
    async holdDatabases(names) {
      for (const n of names) heldDatabases.set(n, (heldDatabases.get(n) ?? 0) + 1)
      health.releaseDatabases(names)
      await Promise.all(names.map((n) => catalogs.get(n)?.close()))
      let released = false
      return (done) => {
        if (released) return
        released = true
        for (const n of names) {
          const k = (heldDatabases.get(n) ?? 1) - 1
          if (k) heldDatabases.set(n, k)
          else heldDatabases.delete(n)
          if (!done) continue
          // No session can be on it now (PostgreSQL refuses, or ends them with FORCE): nothing in flight.
          logs.delete(n)
          void catalogs.get(n)?.close()
          catalogs.delete(n)
        }
        if (done) logger.info({ databases: names }, 'a database was created, dropped, renamed or copied: pgraid starts afresh with it')
      }
    },
    backends: () => targets,
    catalog(database) {
      let c = catalogs.get(database)
      if (!c) catalogs.set(database, (c = new Catalog(() => targets[states.enabled()[0] ?? 0]!, database)))
      return c
    },
    recovery(database) {
      let l = logs.get(database)
      if (!l) {
        logs.set(database, (l = new RecoveryLog(targets, states, (i, state, reason, cause) => ctx.takeOut(i, state, reason, false, cause), database, logger)))
        l.gate = () => previousTerm
      }
      return l
    },
    admit(s) {
      const config = ctx.config
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
    reload: (o = {}) => {
      const run = reloading.then(() => reload(o))
      reloading = run.catch(() => {})
      return run
    },
  }
  const purgeTick = () => {
    if (!ha.isWriter()) return
    for (const l of logs.values())
      void l.purge(ctx.config.recovery.retainRecords).then(
        (n) => n && logger.debug({ database: l.database, purged: n }, 'recovery log purged'),
        (e: Error) => logger.warn({ err: e.message }, 'recovery log purge failed'),
      )
  }
  /** GET /metrics and /health (metrics.port; a reload opens, moves or closes it). */
  const metrics = new MetricsEndpoint(ctx)
  let purge = setInterval(purgeTick, config.recovery.purgeIntervalMs)
  purge.unref()

  // ---- reload (src/config/reload-plan.ts has the rules) ----
  let reloading: Promise<unknown> = Promise.resolve()
  async function reload(o: { config?: Config; dryRun?: boolean }): Promise<ReloadResult> {
    const source = o.config ? 'the given configuration' : (opts.configPath ?? '')
    let plan: ReloadPlan
    let files: TlsFiles
    try {
      if (!o.config && !opts.configPath) throw new ReloadRefused('(no file)', ['(file): pgraid was started without a config file, so there is nothing to re-read'])
      let next: Config
      try {
        next = o.config ?? (await loadConfig(opts.configPath!))
      } catch (e) {
        if (e instanceof ConfigError) throw new ReloadRefused(e.source, e.problems)
        throw e
      }
      // TLS files are read again at every reload (a renewed certificate needs no restart), before anything changes.
      files = await loadTlsFiles(next, source)
      const planNow = () => planReload(ctx.config, next, { targets, states: states.list, weights: stats.map((s) => s.weight), writeQuorum: ctx.writeQuorum }, source)
      plan = planNow()
      // The metrics endpoint moves first (listening may fail, refusing the reload); then the plan is
      // made again, so planning and applying stay one synchronous step: no session runs in between.
      const m = next.metrics
      if (!o.dryRun && (m.port !== ctx.config.metrics.port || m.host !== ctx.config.metrics.host)) {
        const moved = await metrics.moveTo(m.host, m.port).catch((e: Error) => {
          throw new ReloadRefused(source, [`metrics.port: cannot listen on ${m.host}:${m.port} (${e.message}); the metrics endpoint is unchanged`])
        })
        try {
          plan = planNow()
        } catch (e) {
          await moved.undo().catch((err: Error) => logger.error({ err: err.message }, 'metrics endpoint could not be put back'))
          throw e
        }
      }
    } catch (e) {
      if (!o.dryRun) logger.error({ source, problems: e instanceof ReloadRefused ? e.problems : [(e as Error).message] }, 'configuration not reloaded; the running configuration is unchanged')
      throw e
    }
    if (!o.dryRun) applyReload(plan, files)
    if (!o.dryRun) logger.info({ source, changes: plan.changes }, plan.changes.length ? 'configuration reloaded' : 'configuration reloaded: no change')
    return { source, changes: plan.changes, dryRun: !!o.dryRun }
  }
  function applyReload(plan: ReloadPlan, files: TlsFiles): void {
    const prev = ctx.config
    const next = plan.next
    for (const [i, w] of plan.weights) stats[i]!.weight = w
    for (const [i, p] of plan.passwords) targets[i]!.password = p
    // Used by connections opened from now on; open ones keep theirs.
    for (const [i, t] of targets.entries()) if (states.list[i]!.state !== 'removed' && files.backends.has(t.name)) t.tls = files.backends.get(t.name)
    ctx.tls = files.server
    ctx.hba = next.hba.map(parseHbaRule)
    ctx.lookupPassword = next.authQuery.enabled ? lookupPassword : null
    for (const i of plan.removed) {
      const reason = `removed from the configuration by a reload at ${new Date().toISOString()}`
      stats[i]!.weight = 0
      // Drained as DISABLE does: busy sessions finish their unit of work there, then leave it.
      if (!states.takeOut(i, 'removed', reason, true, 'removed')) states.mark(i, 'removed', reason, 'removed')
    }
    for (const b of plan.added) {
      const index = targets.length
      targets.push({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password ?? undefined, database: b.database ?? null, tls: files.backends.get(b.name) ?? null })
      stats.push({ index, weight: b.weight, outstanding: 0 })
      states.add(b.name, 'new', `added by a reload at ${new Date().toISOString()}; not served until cloned: pgraid clone ${b.name}`)
    }
    ctx.writeQuorum = plan.writeQuorum
    ctx.config = next
    const level = opts.logLevel ?? next.log.level
    if (logger.level !== level) {
      logger.level = level
      // Child loggers keep the level they were made with.
      for (const s of sessions) s.log.level = level
    }
    server.maxConnections = next.limits.maxClients + 100
    if (next.recovery.purgeIntervalMs !== prev.recovery.purgeIntervalMs) {
      clearInterval(purge)
      purge = setInterval(purgeTick, next.recovery.purgeIntervalMs)
      purge.unref()
    }
    if (plan.removed.length || plan.added.length) recordStates()
    if (next.metrics.port !== prev.metrics.port || next.metrics.host !== prev.metrics.host)
      logger.info({ host: next.metrics.host, port: metrics.port }, metrics.port === null ? 'metrics endpoint closed' : 'metrics endpoint listening')
  }

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
  /**
   * Promotion (a standby, or a writer that had lost its majority, now holds it): start over
   * as a fresh pgraid would. Backend states come back from what the backends record (a
   * standby's own view is dropped), and each database's recovery log is prepared again:
   * LSNs continue past the highest anywhere (with the margin for commits the old writer may
   * still land) and in-doubt commits are completed. Sessions wait for that before their
   * next batch; known databases are prepared at once. Standby sessions end when idle.
   */
  const promote = () => {
    const known = new Set([...logs.keys(), ...[...sessions].map((s) => s.database).filter((d) => d && d !== 'pgraid')])
    const before = [...logs.values()]
    logs.clear()
    // A backend this process has out stays out, whatever the cause: what it saw is first-hand (a backend
    // found behind must not come back because the only views readable now are its own and say nothing
    // of it: the torture harness found a behind backend put back in service alone, and the current ones
    // then judged against it). The health monitor brings back the self-healing ones once proven current;
    // what the backends recorded adds to this.
    // Commits this process sent under its previous term are still landing: they are not in doubt, and
    // the new logs' preparation must not replay them beside their own COMMITs (bounded wait).
    previousTerm = settledOrTimeout(before, 10_000)
    void previousTerm.then(() => prepareLogs(known))
    sweep()
  }
  async function settledOrTimeout(before: RecoveryLog[], ms: number): Promise<void> {
    const until = Date.now() + ms
    while (before.some((l) => l.inFlightCount > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
    const left = before.flatMap((l) => l.describeInFlight())
    if (left.length) logger.warn({ inFlight: left }, 'commits of the previous term still in flight after the promotion wait')
  }
  /**
   * Eager start (issue 16, item 5): every database with a pgraid recovery log on any backend in
   * service gets its log prepared (positions, recorded states, in-doubt commits) before pgraid
   * reports ready, so status, resync, clone and enable answer right before any client connects.
   */
  async function prepareLogs(known: Iterable<string> = []): Promise<void> {
    const dbs = new Set(known)
    const found = await Promise.allSettled(states.enabled().map((i) => loggedDatabases(targets[i]!)))
    for (const f of found) if (f.status === 'fulfilled') for (const db of f.value) dbs.add(db)
    await Promise.all(
      [...dbs].map((db) =>
        ctx
          .recovery(db)
          .ready()
          .catch((e: Error) => logger.warn({ database: db, err: e.message }, 'recovery log not prepared at start (retried on first use)')),
      ),
    )
  }
  const sweep = () => {
    if (!ha.isWriter()) return
    for (const s of sessions) if (s.readOnly && s.idle()) s.terminateWith(errors.roleChanged('writer'))
  }
  ha.on('role', (role) => {
    if (role === 'writer') promote()
  })
  const sweeper = setInterval(sweep, 250)
  sweeper.unref()
  await metrics.open(config.metrics.host, config.metrics.port)
  const addr = server.address() as net.AddressInfo
  if (config.listen.port === 0) ha.setIdentity(instanceIdentity(addr.port))
  // The monitor's first look comes first: a backend that does not answer is out before anything uses it.
  await health.start()
  try {
    await ha.start()
    if (ha.isWriter()) await prepareLogs()
  } finally {
    haDone()
  }
  logger.info({ host: addr.address, port: addr.port, role: ha.role, metricsPort: metrics.port ?? undefined, backends: targets.map((t) => `${t.name}@${t.host}:${t.port}`) }, 'pgraid listening')
  const handle: PgraidHandle = {
    host: addr.address,
    port: addr.port,
    context: ctx,
    get metricsPort() {
      return metrics.port
    },
    onShutdownRequest(cb) {
      onShutdown = cb
    },
    reload: (o) => ctx.reload(o),
    async close(graceMs = 0) {
      clearInterval(purge)
      clearInterval(sweeper)
      await metrics.close()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      // Graceful: no new clients; sessions are closed as each is between transactions, the rest after graceMs.
      const until = Date.now() + graceMs
      while (sessions.size && Date.now() < until) {
        for (const s of sessions) if (s.idle()) s.terminate()
        if (sessions.size) await new Promise((r) => setTimeout(r, 20))
      }
      for (const s of sessions) s.close('pgraid shutting down')
      await closed
      // Last: the locks go only once no session of ours can write any more.
      await health.close()
      await ha.close()
      await Promise.all([...catalogs.values()].map((c) => c.close()))
    },
  }
  return handle
}
