// `pgraid check-config --connect`: logs in to every configured backend as
// pgraid would (its credentials, TLS and database) and reports each one's
// result, so a wrong password or a pg_hba rule shows before pgraid starts.

import type { Config } from '../config/schema.ts'
import { loadBackendTls } from '../tls/backend-tls.ts'
import { controlClient } from '../backend/control-client.ts'

export interface ConnectResult {
  backend: string
  address: string
  ok: boolean
  /** "PostgreSQL 18.4 ..." when ok, else the SQLSTATE and message (or the socket error). */
  detail: string
}

export async function checkConnections(config: Config): Promise<ConnectResult[]> {
  return Promise.all(
    config.backends.map(async (b) => {
      const address = `${b.host}:${b.port}`
      try {
        const tls = await loadBackendTls(b)
        const t = { name: b.name, host: b.host, port: b.port, user: b.user, password: b.password ?? undefined, database: b.database ?? null, tls }
        const c = controlClient(t, b.database ?? 'postgres', 'check-config', config.timeouts.connectMs || 10_000)
        try {
          await c.connect()
          const v = (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v
          return { backend: b.name, address, ok: true, detail: `PostgreSQL ${v}, logged in as ${b.user}` }
        } finally {
          await c.end().catch(() => {})
        }
      } catch (e) {
        const err = e as Error & { code?: string }
        return { backend: b.name, address, ok: false, detail: `${err.code ? `${err.code} ` : ''}${err.message}` }
      }
    }),
  )
}
