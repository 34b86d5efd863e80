// A session's connections to the backends: one per backend in service at
// login, and one to a backend that came back into service, attached between
// transactions with the session's settings. Which refusals are the client's
// (every backend alike: PostgreSQL's own answer) and which are a backend's
// fault (taken out; the client goes on with the others) is decided here.

import type { Logger } from 'pino'
import { B, F } from '../protocol/codes.ts'
import { errorFields } from '../protocol/decode.ts'
import { message, parameterStatus } from '../protocol/encode.ts'
import { errors, PgError } from '../errors.ts'
import { BackendConnection, BackendLoginError } from '../backend/connection.ts'
import { BackendLink, type LinkHost } from './backend-link.ts'
import type { ServerContext } from '../server-context.ts'

/** Login refusals that are the backend's (pgraid's credentials, its limits, its state), never the client's. */
const BACKEND_FAULT = /^(28|53|57P03|08)/

export interface LinkRequest {
  ctx: ServerContext
  log: Logger
  database: string
  /** The startup packet's parameters: passed on to every backend (but user and database). */
  startupParams: Record<string, string>
  /** A standby's session: its backend connections refuse writes too. */
  readOnly: boolean
  host: LinkHost
  /** A link's connection ended (the session decides what that means). */
  onClose(link: BackendLink, reason: string): void
  /** The client went away meanwhile: connections made are closed, none is returned. */
  closed(): boolean
}

/** What the session's login ends with: its links, or the error the client gets (`asIs`: PostgreSQL's own ErrorResponse, forwarded). */
export type Opened = { links: BackendLink[] } | { error: PgError } | { asIs: BackendLoginError } | null

function paramsFor(r: LinkRequest): Record<string, string> {
  const params: Record<string, string> = {}
  for (const [k, v] of Object.entries(r.startupParams)) if (k !== 'user' && k !== 'database') params[k] = v
  if (r.readOnly) params.default_transaction_read_only = 'on'
  params.database = r.database
  return params
}

function connect(r: LinkRequest, idx: number, params: Record<string, string>): Promise<BackendConnection> {
  const t = r.ctx.backends()[idx]!
  return BackendConnection.connect({ ...t, database: t.database ?? r.database }, params, r.ctx.config.timeouts.connectMs || 10_000)
}

function link(r: LinkRequest, idx: number, conn: BackendConnection): BackendLink {
  const l = new BackendLink(idx, r.ctx.backends()[idx]!.name, conn, r.host)
  r.ctx.counters.backend(idx).connections++
  conn.onClose((reason) => r.onClose(l, reason))
  return l
}

/** One connection per backend in service, at login (null: the client left meanwhile). */
export async function openLinks(r: LinkRequest): Promise<Opened> {
  const { ctx } = r
  const params = paramsFor(r)
  const all = ctx.backends()
  const enabled = ctx.states.enabled()
  const results = await Promise.allSettled(enabled.map((i) => connect(r, i, params)))
  const closeAll = () => {
    for (const x of results) if (x.status === 'fulfilled') x.value.close()
  }
  if (r.closed()) return (closeAll(), null)
  // A refusal every backend gives alike, for something the client asked (a database that does not
  // exist, a bad startup option), is what PostgreSQL would say. A refusal of pgraid's own login
  // (credentials, too many connections, a database missing on that backend only) is that backend's
  // fault: it is taken out and the client goes on with the others; the client never gets a backend
  // role's auth error as its own (issue 16, item 4).
  const refusals = results.flatMap((x, k) => (x.status === 'rejected' && x.reason instanceof BackendLoginError && x.reason.body ? [{ k, err: x.reason as BackendLoginError }] : []))
  const loginUp = results.some((x) => x.status === 'fulfilled')
  if (refusals.length && !loginUp) {
    closeAll()
    const codes = new Set(refusals.map((x) => x.err.fields.C))
    const first = refusals[0]!.err
    if (refusals.length === results.length && codes.size === 1 && !BACKEND_FAULT.test(first.fields.C ?? '')) return { asIs: first }
    const names = refusals.map((x) => `${all[enabled[x.k]!]!.name}: ${x.err.fields.C} ${x.err.message}`).join('; ')
    r.log.warn({ refusals: names }, "every backend refused pgraid's login")
    if (first.fields.C === '53300') return { error: new PgError('53300', 'sorry, too many clients already', 'FATAL', `every backend refused pgraid's login: ${names}`) }
    return { error: errors.backendUnavailable('any', `every backend refused pgraid's login (${names})`) }
  }
  for (const { k, err } of refusals) refusedBy(ctx, enabled[k]!, err)
  // Unreachable backends: the health monitor judges the server (a session's failed connect alone is not enough).
  const unreached = results.flatMap((x, k) => (x.status === 'rejected' && !(x.reason instanceof BackendLoginError && x.reason.body) ? [enabled[k]!] : []))
  if (unreached.length) await Promise.all(unreached.map((i) => ctx.health.probe(i, performance.now())))
  if (r.closed()) return (closeAll(), null)
  const up = results.flatMap((x, k) => (x.status === 'fulfilled' ? [k] : []))
  const stillIn = unreached.filter((i) => ctx.states.isEnabled(i))
  if (!up.length || stillIn.length) {
    // A backend in service that this session could not reach: a session without it would miss writes.
    closeAll()
    const err = results.find((x) => x.status === 'rejected') as PromiseRejectedResult | undefined
    const name = stillIn.length ? all[stillIn[0]!]!.name : enabled.length ? all[enabled[0]!]!.name : 'any'
    return { error: errors.backendUnavailable(name, (err?.reason as Error | undefined)?.message ?? 'no backend in service') }
  }
  const links = up.flatMap((k) => {
    const i = enabled[k]!
    const conn = (results[k] as PromiseFulfilledResult<BackendConnection>).value
    if (!ctx.states.isEnabled(i)) {
      conn.close() // taken out while we connected
      return []
    }
    return [link(r, i, conn)]
  })
  if (!links.length) return { error: errors.backendUnavailable('any', 'no backend in service') }
  return { links }
}

/**
 * A connection to backend `idx`, back in service, brought to the session's
 * `settings` (SET statements) before it joins; null when it cannot (the
 * backend is taken out) or is not wanted any more.
 */
export async function attachLink(r: LinkRequest, idx: number, settings: Iterable<string>): Promise<BackendLink | null> {
  const { ctx } = r
  let conn: BackendConnection
  try {
    conn = await connect(r, idx, paramsFor(r))
    for (const set of settings) {
      const err = await runSetup(conn, set)
      if (err) throw new Error(`${set}: ${err}`)
    }
  } catch (e) {
    if (e instanceof BackendLoginError && e.body) refusedBy(ctx, idx, e)
    else ctx.takeOut(idx, 'disabled', `unreachable when a session attached it: ${(e as Error).message}`, false, 'unreachable')
    return null
  }
  if (r.closed() || !ctx.states.isEnabled(idx)) {
    conn.close()
    return null
  }
  return link(r, idx, conn)
}

/** A backend refused pgraid's login: out, as refused, or as unreachable when it is shutting down or starting (57P03). */
function refusedBy(ctx: ServerContext, idx: number, err: BackendLoginError): void {
  const going = err.fields.C === '57P03'
  ctx.takeOut(idx, 'disabled', `${going ? 'unreachable' : 'login refused'}: ${err.fields.C} ${err.message}`, false, going ? 'unreachable' : 'refused')
}

/** Runs one statement on a fresh backend connection before it joins a session; the error text, if any. */
function runSetup(conn: BackendConnection, sql: string): Promise<string | null> {
  return new Promise((resolve) => {
    let err: string | null = null
    conn.attach({
      data() {},
      end(type, body) {
        if (type === B.ErrorResponse && body) err ??= errorFields(body).M ?? 'error'
        if (type === B.ReadyForQuery) resolve(err)
      },
    })
    conn.write(message(F.Query, Buffer.from(sql + '\0', 'utf8')))
  })
}

/** The ParameterStatus messages a client gets at login: the first backend's, with what libpq's
 * target_session_attrs=read-write and pgjdbc's targetServerType=primary look at set for this pgraid. */
export function startupReport(primary: BackendConnection, readOnly: boolean): Buffer[] {
  const reported = new Map(primary.params)
  reported.set('default_transaction_read_only', readOnly ? 'on' : (primary.params.get('default_transaction_read_only') ?? 'off'))
  reported.set('in_hot_standby', readOnly ? 'on' : 'off')
  return [...reported].map(([k, v]) => parameterStatus(k, v))
}
