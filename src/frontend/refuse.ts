// A batch pgraid answers with an error of its own (refused before it ran,
// or after it ran: a divergence, a lost read), leaving every backend in the
// state PostgreSQL would be in after that error; a message PostgreSQL cannot
// read in the middle of a batch; and after each Sync, every backend brought
// to the client's transaction state.

import { F } from '../protocol/codes.ts'
import type { Frame } from '../protocol/framer.ts'
import { message, readyForQuery, type TxStatus } from '../protocol/encode.ts'
import { errors, type PgError } from '../errors.ts'
import type { Exchange, PlannedMsg } from '../broadcast/exchange.ts'
import type { LockOwner } from '../scheduler/lock-manager.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import type { Plan } from '../router/plan.ts'
import { changesData } from '../router/log-plan.ts'
import type { ServerContext } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'
import type { SessionBackends } from './backends.ts'
import type { TxState } from './tx-state.ts'

/** Describe of a statement that cannot exist: makes a backend fail its transaction on purpose. */
const FORCE_ERROR = message(F.Describe, Buffer.from('S__pgraid_abort__\0', 'binary'))
const SYNC = message(F.Sync)
/** Opens the (failed) transaction a backend must be in when its transaction ended there only (refuse). */
const BEGIN_QUERY = message(F.Query, Buffer.from('BEGIN\0', 'utf8'))
/** Sent after the readable messages of a batch that also holds an unreadable one: their answers come. */
const FLUSH_FRAME: Frame = { type: F.Flush, bytes: message(F.Flush), bodyOffset: 5 }

/** What refusing a batch needs from its session. */
export interface RefuseHost {
  readonly ctx: ServerContext
  readonly owner: LockOwner
  /** Logged in, connected, not closed: batches run. */
  readonly ready: boolean
  readonly tx: TxState
  readonly links: readonly BackendLink[]
  readonly backends: SessionBackends
  /** The client's BEGIN, answered already and not yet sent to the backends (deferred-begin.ts). */
  readonly pendingBegin: Frame | null
  /** Sends the deferred BEGIN alone, its answers swallowed. */
  flushBegin(): Promise<void>
  runFrames(frames: Frame[]): Promise<void>
  runOwn(msgs: PlannedMsg[]): Promise<Exchange>
  out(slice: Buffer): void
  beforeReady(): void
  setStatus(st: TxStatus): void
}

/**
 * After a Sync every backend must be in the client's transaction state. A
 * read that failed on the one backend it ran on leaves the others in a
 * healthy transaction: make them fail too, so COMMIT cannot commit anywhere.
 */
export async function align(host: RefuseHost): Promise<void> {
  if (host.tx.status !== 'E') return
  const healthy = host.links.filter((l) => l.txStatus === 'T').map((l) => l.index)
  if (healthy.length) await forceError(host, healthy, true)
}

/** Makes `targets` fail their current transaction (and skip to Sync unless `withSync`). */
async function forceError(host: RefuseHost, targets: number[], withSync: boolean): Promise<void> {
  const msgs: PlannedMsg[] = [{ code: F.Describe, bytes: FORCE_ERROR, targets, swallow: true, describeStatement: true }]
  if (withSync) msgs.push({ code: F.Sync, bytes: SYNC, targets, swallow: true })
  const ex = await host.runOwn(msgs)
  for (const t of targets) {
    const link = host.backends.at(t)
    if (!link) continue
    const st = ex.outcome.status.get(t)
    if (st) link.txStatus = st
    link.skipping = !withSync
  }
}

/**
 * The batch's message `bad.index` cannot be read: the messages before it run (with a Flush of
 * pgraid's, so their answers come), then the client gets PostgreSQL's error for it; what follows
 * is skipped to the Sync, and the implicit transaction the readable ones opened fails with it.
 */
export async function refuseFrom(host: RefuseHost, frames: Frame[], bad: { index: number; error: PgError }): Promise<void> {
  const f = frames[bad.index]!
  // Where the session stands after it: a Query or Sync ends the batch; anything else skips to a Sync.
  const endsWithSync = f.type === F.Query || f.type === F.Sync || frames.slice(bad.index + 1).some((x) => x.type === F.Sync)
  if (bad.index > 0) {
    await host.runFrames([...frames.slice(0, bad.index), FLUSH_FRAME])
    if (!host.ready) return
    // An error among the readable ones skips the rest to the Sync already, the unreadable one too.
    if (host.tx.clientSkipping) return host.runFrames(frames.slice(bad.index))
  }
  await refuse(host, bad.error, endsWithSync)
}

/**
 * Answers the batch with `err` as if its first message had failed, keeping
 * every backend in the state PostgreSQL would be in after that error.
 */
export async function refuse(host: RefuseHost, err: PgError, endsWithSync: boolean, alreadyRan = false): Promise<void> {
  const { tx } = host
  // The backends must be in the transaction the client was told it is in, to fail it there too.
  if (host.pendingBegin) await host.flushBegin()
  const inTx = tx.status !== 'I' || host.links.some((l) => l.txStatus !== 'I')
  if (inTx) {
    // The transaction ended on some backends only (a timeout or a late cancel stopped the statements
    // before its ROLLBACK or COMMIT elsewhere): the client is told it is in a failed transaction, so
    // those backends open one to fail too; left idle they would accept what the others refuse (25P02).
    const ended = host.links.filter((l) => l.txStatus === 'I').map((l) => l.index)
    if (ended.length) {
      const ex = await host.runOwn([{ code: F.Query, bytes: BEGIN_QUERY, targets: ended, swallow: true }])
      for (const t of ended) {
        const link = host.backends.at(t)
        const st = ex.outcome.status.get(t)
        if (link && st) link.txStatus = st
      }
    }
    const targets = host.links.filter((l) => l.txStatus === 'T' || !endsWithSync).map((l) => l.index)
    if (targets.length) await forceError(host, targets, endsWithSync)
    if (tx.savepoints === 0) host.ctx.locks.releaseAll(host.owner)
  } else {
    // Messages since the last Sync opened an implicit transaction there: it fails with this error.
    const open = host.links.filter((l) => tx.sinceSync.has(l.index)).map((l) => l.index)
    if (open.length) await forceError(host, open, endsWithSync)
    if (!alreadyRan) host.ctx.locks.releaseAll(host.owner)
  }
  host.out(err.toMessage())
  if (endsWithSync) {
    host.setStatus(inTx ? 'E' : 'I')
    host.beforeReady()
    host.out(readyForQuery(tx.status))
    tx.clientSkipping = false
    tx.sinceSync.clear()
  } else tx.clientSkipping = true
}

/** 25006 for a write on a pgraid that is not the writer, worded as PostgreSQL's hot standby words it. */
export function readOnlyError(host: { readonly ctx: ServerContext; readonly readOnly: boolean }, plan: Plan, catalog: CatalogData): PgError {
  const s = plan.executed.find((x) => changesData(x, catalog) || x.session?.op === 'notify')
  const what = s ? (s.sequences?.length && s.kind === 'read' ? 'nextval()' : s.command) : 'COMMIT'
  const ha = host.ctx.ha
  const writer = ha.writerHint && ha.writerHint !== ha.identity ? `pgraid ${ha.writerHint}` : 'another pgraid instance'
  const detail = host.readOnly
    ? ha.isWriter()
      ? `this session was opened while pgraid ${ha.identity} was a standby; it has since become the writer: reconnect`
      : `pgraid ${ha.identity} is a standby: ${writer} holds the writer lock on a majority of the backends and orders the writes`
    : ha.isWriter()
      ? `pgraid ${ha.identity} lost its writer lock majority while this transaction was open; the transaction cannot commit`
      : `pgraid ${ha.identity} lost the writer lock on a majority of its backends (holds ${ha.heldBy().length}, needs ${ha.needed}) and stopped accepting writes`
  return errors.readOnly(what, detail, 'connect to the writer: with every pgraid host in the connection string, libpq target_session_attrs=read-write or pgjdbc targetServerType=primary finds it')
}
