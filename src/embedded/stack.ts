// A whole pgraid stack in one process: N embedded PostgreSQL backends and
// pgraid in front of them. Shared by the demo, the tests and the benchmark.

import { startCluster, type BackendAuth, type Cluster } from './cluster.ts'
import { startPgraid, type PgraidHandle } from '../server.ts'
import { loadConfig, parseConfig, type Config } from '../config/schema.ts'
import { createLogger } from '../observe/logger.ts'
import type { LogLevel } from '../config/schema.ts'

export interface StackOptions {
  backends?: number
  baseDir?: string
  reuse?: boolean
  auth?: BackendAuth | BackendAuth[]
  /** pgraid listen port (0 = any free port). */
  port?: number
  logLevel?: LogLevel
  /** Extra config keys merged over the generated config. */
  config?: Record<string, unknown>
  settings?: Record<string, string>
  /** Backends serve TLS with this certificate/key (hostssl only); pgraid connects with `backendTls`. */
  backendTls?: { cert: string; key: string; ca: string; mode: 'require' | 'verify-ca' | 'verify-full' }
  /** The backends' ports (fixed: a port taken is an error); default: free ports chosen now. */
  ports?: number[]
  /**
   * Run pgraid from a config file, as `pgraid start -c FILE` does (RELOAD and SIGHUP re-read it), instead of
   * the generated config: called once the backends run, with the config that would have been generated;
   * returns the file's path. Its backends must be the cluster's (same names and ports). The demo's way.
   */
  configFile?: (generated: GeneratedConfig, cluster: Cluster) => Promise<string>
}

/** The config startStack generates (before validation): what a configFile callback may write. */
export interface GeneratedConfig {
  listen: { host: string; port: number }
  backends: Record<string, unknown>[]
  users: Record<string, unknown>[]
  log: { level: LogLevel }
  [key: string]: unknown
}

export interface Stack {
  cluster: Cluster
  proxy: PgraidHandle
  config: Config
  /** The config file pgraid runs with (StackOptions.configFile), else null. */
  configPath: string | null
  host: string
  port: number
  /** Credentials of the client user the stack configures. */
  user: string
  password: string
  url(database?: string): string
  stop(): Promise<void>
}

export const CLIENT_USER = 'app'
export const CLIENT_PASSWORD = 'app-secret'

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const cluster = await startCluster({
    count: opts.backends ?? 3,
    baseDir: opts.baseDir,
    reuse: opts.reuse,
    auth: opts.auth ?? ['scram-sha-256', 'md5', 'trust'],
    settings: opts.settings,
    tls: opts.backendTls,
    ports: opts.ports,
  })
  try {
    const raw: GeneratedConfig = {
      listen: { host: '127.0.0.1', port: opts.port ?? 0 },
      backends: cluster.backends.map((b) => ({
        name: b.name,
        host: b.host,
        port: b.port,
        user: b.user,
        password: b.password,
        ...(opts.backendTls ? { tls: { mode: opts.backendTls.mode, ca: opts.backendTls.ca } } : {}),
      })),
      users: [
        { name: CLIENT_USER, auth: 'scram-sha-256', password: CLIENT_PASSWORD },
        { name: 'md5user', auth: 'md5', password: 'md5-secret' },
        { name: 'trusted', auth: 'trust' },
      ],
      log: { level: opts.logLevel ?? (process.env.PGRAID_LOG_LEVEL as LogLevel | undefined) ?? 'warn' },
      ...opts.config,
    }
    let config: Config
    let configPath: string | null = null
    if (opts.configFile) {
      configPath = await opts.configFile(raw, cluster)
      config = await loadConfig(configPath)
      for (const b of config.backends) {
        const c = cluster.backends.find((x) => x.name === b.name)
        if (c && (b.host !== c.host || b.port !== c.port)) throw new Error(`${configPath}: backend ${b.name} is at ${b.host}:${b.port} but that server runs on ${c.host}:${c.port}`)
      }
    } else config = parseConfig(raw, 'generated stack config')
    const proxy = await startPgraid(config, createLogger(config.log.level), configPath ? { configPath } : {})
    const stack: Stack = {
      cluster,
      proxy,
      config,
      configPath,
      host: '127.0.0.1',
      port: proxy.port,
      user: CLIENT_USER,
      password: CLIENT_PASSWORD,
      url: (database = 'postgres') => `postgresql://${CLIENT_USER}:${CLIENT_PASSWORD}@127.0.0.1:${proxy.port}/${database}`,
      async stop() {
        // The pgraid in front now (a test may have replaced the first one on the same port).
        await stack.proxy.close().catch(() => {})
        await cluster.stop()
      },
    }
    return stack
  } catch (e) {
    await cluster.stop()
    throw e
  }
}
