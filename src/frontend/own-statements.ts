// Statements pgraid sends on its own in a client's session, their answers
// swallowed: the BEGIN and ROLLBACK of an undoable autocommit write (each
// checked, sent again where a timeout or cancel cut it), the lifting of the
// client's timeouts before pgraid's COMMIT, and the catalog read inside a
// transaction that changed the schema.

import type { Logger } from 'pino'
import { F, B } from '../protocol/codes.ts'
import { textDataRows } from '../protocol/decode.ts'
import { message } from '../protocol/encode.ts'
import { errors } from '../errors.ts'
import { Exchange, type ExchangeHost, type PlannedMsg } from '../broadcast/exchange.ts'
import { buildCatalog, CATALOG_QUERY, type CatalogData } from '../scheduler/catalog.ts'
import type { Plan } from '../router/plan.ts'
import type { ServerContext } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'
import type { SessionBackends } from './backends.ts'
import type { Cancels } from './cancel.ts'
import { refuse, type RefuseHost } from './refuse.ts'

/** Lifted for the rest of pgraid's transaction once the client's statements ran (SET LOCAL ends with it). */
const LIFT_BEFORE_COMMIT = 'SET LOCAL statement_timeout = 0;SET LOCAL lock_timeout = 0'
/** Lifted at pgraid's BEGIN, where the session set them: pgraid's round trips are not the client idling. */
const LIFT_IN_TRANSACTION = ['idle_in_transaction_session_timeout', 'transaction_timeout']
const ROLLBACK_QUERY = message(F.Query, Buffer.from('ROLLBACK\0', 'utf8'))

function queryMessage(text: string): Buffer {
  return message(F.Query, Buffer.from(`${text}\0`, 'utf8'))
}

/** What pgraid's own statements need from their session. */
export interface OwnHost extends ExchangeHost {
  readonly ctx: ServerContext
  readonly log: Logger
  /** Logged in, connected, not closed: batches run. */
  readonly ready: boolean
  readonly links: readonly BackendLink[]
  readonly backends: SessionBackends
  exchange: Exchange | null
  readonly cancels: Cancels
  /** The session's SET settings (the recovery log's view). */
  readonly logSettings: Map<string, string>
  /** The catalog as this transaction sees it (its own schema changes included), once it changed the schema. */
  txCatalog: CatalogData | null
  /** Sends pgraid's own messages (runOwn, through the session: the commit path uses it too). */
  runOwn(msgs: PlannedMsg[]): Promise<Exchange>
}

/** Sends pgraid's own messages (answers swallowed) and waits until every backend answered them. */
export async function runOwn(host: OwnHost, msgs: PlannedMsg[]): Promise<Exchange> {
  if (host.cancels.pending) await host.cancels.delivered()
  const ex = new Exchange(msgs, host, (idx) => host.backends.at(idx)?.skipping ?? false)
  host.exchange = ex
  host.cancels.own = true
  const payloads = ex.payloads()
  unlinkedOut(host, ex, payloads)
  for (const [idx, bufs] of payloads) host.backends.at(idx)?.conn.write(bufs)
  try {
    await ex.done
  } finally {
    host.exchange = null
    host.cancels.own = false
  }
  return ex
}

/** A message of pgraid's own to the session's backends, answers consumed. */
export async function runInternal(host: OwnHost, msg: Buffer, targets: number[]): Promise<{ diverged: string | null; errorCode: string | null }> {
  const ex = await host.runOwn([{ code: F.Query, bytes: msg, targets, swallow: true }])
  let code: string | null = null
  for (const t of targets) if (ex.answered(0, t, B.ErrorResponse)) code ??= '40000'
  return { diverged: ex.outcome.diverged, errorCode: code }
}

/**
 * Targets whose link was dropped after the messages were planned (a backend lost or taken out while
 * the session waited for locks, a hold or its own statements): nothing is sent there and nothing
 * waits for their answers, which would never come. A read that only such a backend was to answer
 * is lost, as when the connection ends under it.
 */
export function unlinkedOut(host: Pick<OwnHost, 'ctx' | 'backends'>, ex: Exchange, payloads: Map<number, Buffer[]>): void {
  const { backends } = host
  // Deleting the current key while iterating a Map is safe: no copy of the keys per batch.
  for (const idx of payloads.keys()) {
    if (backends.at(idx)) continue
    payloads.delete(idx)
    if (!ex.dropBackend(idx)) continue
    ex.outcome.lostRead = true
    backends.lostReadBackend = host.ctx.backends()[idx]?.name ?? String(idx)
    backends.lostReadReason = `${backends.lostReadBackend}: its connection ended before the batch was sent`
    ex.abort(`backend ${backends.lostReadBackend} lost`)
  }
}

/**
 * Opens pgraid's transaction for an undoable autocommit write on every backend, each checked: a
 * BEGIN cut by a timeout or a cancel is sent again (the client's statement must not run outside it).
 */
export async function beginEverywhere(host: OwnHost & RefuseHost, plan: Plan): Promise<boolean> {
  const lift = LIFT_IN_TRANSACTION.filter((k) => host.logSettings.has(k))
    .map((k) => `;SET LOCAL ${k} = 0`)
    .join('')
  const text = queryMessage(`BEGIN${lift}`)
  let todo = host.links.map((l) => l.index)
  for (let attempt = 0; attempt < 5 && todo.length; attempt++) {
    // One message per backend: their answers are not compared (a cut on one is expected here).
    const ex = await host.runOwn(todo.map((i) => ({ code: F.Query, bytes: text, targets: [i], swallow: true })))
    const failed = todo.filter((i) => ex.outcome.status.get(i) !== 'T')
    await rollbackEverywhere(
      host,
      failed.filter((i) => ex.outcome.status.get(i) === 'E'),
    )
    todo = failed.filter((i) => host.backends.at(i))
  }
  if (!host.ready) return false
  if (!todo.length) {
    for (const l of host.links) l.txStatus = 'T'
    return true
  }
  await rollbackEverywhere(
    host,
    host.links.map((l) => l.index),
  )
  await refuse(host, errors.canceled(), plan.endsWithSync)
  return false
}

/** ROLLBACK where a transaction of pgraid's is open, sent again where a timeout or cancel cut it. */
export async function rollbackEverywhere(host: OwnHost, targets: number[]): Promise<void> {
  for (let attempt = 0; attempt < 5 && targets.length; attempt++) {
    const ex = await host.runOwn(targets.map((i) => ({ code: F.Query, bytes: ROLLBACK_QUERY, targets: [i], swallow: true })))
    targets = targets.filter((i) => host.backends.at(i) && ex.outcome.status.get(i) !== 'I')
  }
  // Still inside a transaction after five tries: that connection is replaced (its transaction ends with it).
  for (const i of targets) host.backends.drop(i)
}

/** pgraid's own log INSERT and COMMIT must not be cut by the client's timeouts: false when lifting them failed. */
export async function liftTimeouts(host: OwnHost, live: number[]): Promise<boolean> {
  return !(await runInternal(host, queryMessage(LIFT_BEFORE_COMMIT), live)).errorCode
}

/**
 * pgraid's catalog connection cannot see a schema change this transaction
 * has not committed: a table it created, a default it added. Its writes
 * then read the catalog inside the transaction, on one of its backends
 * (all have run the same DDL), within a savepoint so that a failure leaves
 * the client's transaction as it was. Null when that is not possible.
 */
export async function catalogInTx(host: OwnHost): Promise<CatalogData | null> {
  if (host.txCatalog) return host.txCatalog
  const link = host.links.find((l) => l.txStatus === 'T')
  if (!link) return null
  const collect: Buffer[] = []
  const sql = `SAVEPOINT pgraid_catalog; ${CATALOG_QUERY}; RELEASE SAVEPOINT pgraid_catalog`
  const ex = await host.runOwn([{ code: F.Query, bytes: message(F.Query, Buffer.from(`${sql}\0`, 'utf8')), targets: [link.index], swallow: true, collect }])
  if (ex.answered(0, link.index, B.ErrorResponse)) {
    await runInternal(host, message(F.Query, Buffer.from('ROLLBACK TO SAVEPOINT pgraid_catalog; RELEASE SAVEPOINT pgraid_catalog\0', 'utf8')), [link.index])
    host.log.warn('could not read the catalog inside the transaction; using the committed one')
    return null
  }
  host.txCatalog = buildCatalog(textDataRows(Buffer.concat(collect)).map(([k, a, b]) => ({ k: k ?? '', a: a ?? '', b: b ?? null })))
  return host.txCatalog
}
