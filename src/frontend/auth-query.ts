// Pass-through authentication (config authQuery, as PgBouncer's auth_query): the stored
// password of a user pgraid does not list is read from a backend in service, with pgraid's
// own backend credentials, on a short-lived control connection.

import { controlClient } from '../backend/control-client.ts'
import type { BackendTarget } from '../backend/connection.ts'

export async function lookupStoredPassword(target: BackendTarget, database: string, query: string, user: string, timeoutMs: number): Promise<string | null> {
  const c = controlClient(target, database, 'auth query', timeoutMs)
  try {
    await c.connect()
    const r = await c.query({ text: query, values: [user], rowMode: 'array' })
    const v = (r.rows[0] as unknown[] | undefined)?.[0]
    return typeof v === 'string' && v.length ? v : null
  } finally {
    void c.end().catch(() => {})
  }
}
