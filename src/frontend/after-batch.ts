// Bookkeeping after a batch's answers: which backends have each prepared
// statement and portal, each backend's transaction status and skipping,
// the client's transaction state (locks released at 'I'), the catalog a
// schema change made stale, and the recovery log's view of the session.

import { F, B } from '../protocol/codes.ts'
import type { TxStatus } from '../protocol/encode.ts'
import type { Exchange } from '../broadcast/exchange.ts'
import type { CatalogData } from '../scheduler/catalog.ts'
import type { Plan } from '../router/plan.ts'
import type { StatementRegistry } from '../router/statements.ts'
import type { LogContext } from '../router/log-plan.ts'
import type { ServerContext } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'
import type { SessionBackends } from './backends.ts'
import type { TxState } from './tx-state.ts'
import { trackLog } from './log-commit.ts'
import { learnSettings } from './known-settings.ts'

/** What the bookkeeping after a batch needs from its session. */
export interface AfterBatchHost {
  readonly ctx: ServerContext
  readonly database: string
  readonly links: readonly BackendLink[]
  readonly backends: SessionBackends
  readonly registry: StatementRegistry
  readonly tx: TxState
  /** The session's SET settings (the recovery log's view), updated in place. */
  readonly logSettings: Map<string, string>
  /** The recovery log's view of the open transaction. */
  logCtx: LogContext
  /** The catalog as this transaction sees it, once it changed the schema (own-statements.ts, catalogInTx). */
  txCatalog: CatalogData | null
  /** The session holds state no other connection can rebuild: it never attaches a backend that came back. */
  pinned: boolean
  /** The client's transaction status, as its ReadyForQuery reports it. */
  setStatus(st: TxStatus): void
}

/** Bookkeeping after the answers: statements, portals, status, locks. */
export function afterBatch(host: AfterBatchHost, plan: Plan, ex: Exchange): void {
  const { registry, tx } = host
  const idleBefore = tx.status === 'I' && !tx.sinceSync.size
  for (const [i, st] of plan.parses) {
    for (const t of plan.msgs[i].targets) if (!ex.answered(i, t, B.ParseComplete)) st.on.delete(t)
    // A backend dropped during the batch (or before it was sent) never got the Parse: a connection made
    // there later must be sent it again (lazy Parse), not assumed to have it (26000 on that backend alone).
    for (const t of st.on) if (!host.backends.at(t)) st.on.delete(t)
    if (st.on.size || st.name === '') registry.define(st)
  }
  for (const [i, portal] of plan.binds) {
    if (plan.msgs[i].targets.some((t) => ex.answered(i, t, B.BindComplete))) registry.portals.set(portal.name, portal)
  }
  for (const [, c] of plan.closes) {
    if (c.kind === 'S') {
      const st = registry.statements.get(c.name)
      if (st) registry.forget(c.name)
    } else registry.portals.delete(c.name)
  }
  plan.msgs.forEach((m) => {
    if (m.code === F.Query) registry.unnamedGoneOn(m.targets)
  })
  for (const s of plan.executed) {
    tx.track(s)
    if (s.session?.op === 'deallocate') {
      if (s.session.name) registry.forget(s.session.name)
    }
    if (s.session?.op === 'discard_all') registry.clearAll()
  }
  for (const link of host.links) {
    const st = ex.outcome.status.get(link.index)
    if (st) link.txStatus = st
    const sk = ex.skippingAfter(link.index)
    if (sk !== undefined) link.skipping = sk
  }
  if (plan.ddl || plan.executed.some((s) => s.tx?.op === 'rollback_to')) host.txCatalog = null
  if (plan.ddl) {
    host.ctx.catalog(host.database).invalidate()
    // Inside a transaction the change is not visible to the catalog's own connection until COMMIT:
    // a reload before then (any session's next batch) caches the old catalog, so reload again at the end.
    tx.ddl = true
  }
  const tracked = trackLog(host.logCtx, host.logSettings, plan, ex)
  host.logCtx = tracked.context
  if (tracked.pin) host.pinned = true
  if (plan.endsWithSync) {
    tx.sinceSync.clear()
    tx.clientSkipping = false
    const final = plan.msgs[plan.msgs.length - 1]
    const primary = final.targets[0]
    const st = primary !== undefined ? ex.outcome.status.get(primary) : undefined
    if (st === 'I' || st === 'T' || st === 'E') host.setStatus(st)
  } else {
    for (const m of plan.msgs) for (const t of m.targets) tx.sinceSync.add(t)
    if (ex.outcome.errored.size) tx.clientSkipping = true
  }
  learnSettings(tx, plan, ex, idleBefore)
}
