// A whole pgraid stack in one process: N embedded PostgreSQL backends and
// pgraid in front of them. Shared by the demo, the tests and the benchmark.

import { startCluster, type BackendAuth, type Cluster } from './cluster.ts'
import { startPgraid, type PgraidHandle } from '../server.ts'
import { parseConfig, type Config } from '../config/schema.ts'
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
}

export interface Stack {
  cluster: Cluster
  proxy: PgraidHandle
  config: Config
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
  })
  try {
    const raw = {
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
    const config = parseConfig(raw, 'generated stack config')
    const proxy = await startPgraid(config, createLogger(config.log.level))
    const stack: Stack = {
      cluster,
      proxy,
      config,
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
