// node-postgres clients pgraid's control plane opens to a backend (recovery
// log checks, resync, the admin console): the backend's credentials, the
// database asked for unless the backend pins one, a name that shows in
// pg_stat_activity, a bounded connect, and errors after the connect left to
// the caller's query promises instead of crashing the process.

import pg from 'pg'
import type { BackendTarget } from './connection.ts'
import { tlsOptions } from '../tls/backend-tls.ts'

export function controlClient(t: BackendTarget, database: string, purpose: string, connectMs = 10_000): pg.Client {
  const c = new pg.Client({
    host: t.host,
    port: t.port,
    user: t.user,
    password: t.password ?? undefined,
    database: t.database ?? database,
    application_name: `pgraid ${purpose}`,
    connectionTimeoutMillis: connectMs,
    ssl: t.tls ? tlsOptions(t.host, t.tls) : false,
  })
  c.on('error', () => {})
  return c
}
