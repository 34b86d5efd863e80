// How a backend the health monitor took out for its own fault (unreachable,
// refused pgraid's login, restarted) comes back by itself: only when it is
// proven current (DESIGN invariant 9). Its recovery log is compared with a
// backend in service in every logged database: a database without a log
// where the others have one, or a changed system identifier, means a wiped
// or replaced server (`new`: clone it); records it lacks mean it is behind
// (`disabled`: resync it); records only it has mean it is `inconsistent`.
// Equal: the tail is compared again under a brief commit hold, exactly as a
// resync's last step, and it is enabled.

import type { ServerContext } from '../server-context.ts'
import { SELF_HEALING } from '../cluster/states.ts'
import { createLog, hasLog, logTop } from '../recovery/log-presence.ts'
import { behindReason, catchUpAndEnable, loggedDatabases, RECONCILING } from './resync.ts'

export async function reconcile(ctx: ServerContext, index: number, systemChanged: boolean): Promise<void> {
  const b = ctx.states.list[index]
  if (!b || b.state === 'enabled' || b.state === 'removed' || !b.cause || !SELF_HEALING.has(b.cause) || b.activity) return
  // Busy while it compares: a resync or clone started meanwhile is refused rather than run alongside.
  b.activity = RECONCILING
  try {
    await check(ctx, index, systemChanged)
  } finally {
    b.activity = null
  }
}

async function check(ctx: ServerContext, index: number, systemChanged: boolean): Promise<void> {
  const b = ctx.states.list[index]!
  const targets = ctx.backends()
  const was = b.reason ?? b.cause ?? 'out'
  // A standby sees none of the writer's commits and can neither resync nor clone: a verdict of its own
  // (new, behind, inconsistent) would be stale once the writer acts, and kept after a promotion it left
  // every backend out for good (the torture harness: a standby's "behind" for backends the writer had
  // since resynced). It only brings back a backend proven current; otherwise the backend stays out
  // with its self-healing cause and is compared again at the next check (as writer after a promotion).
  const judge = ctx.ha.isWriter()
  if (systemChanged) {
    if (!judge) return
    ctx.markOut(index, 'new', `${was}; a different PostgreSQL system holds no copy pgraid can trust: clone it (pgraid clone ${b.name})`, 'new-system')
    return
  }
  const source = ctx.states.enabled()[0]
  if (source === undefined) return fromNothing(ctx, index)
  for (const db of await loggedDatabases(targets[source]!)) {
    if (await hasLog(targets[index]!, db)) continue
    if (!judge) return
    // The log was created while it was out, and nothing was logged since: it lacks nothing but the schema.
    if ((await logTop(targets[source]!, db)) === 0 && (await createLog(targets[index]!, db))) continue
    ctx.markOut(index, 'new', `${was}; database "${db}" has no pgraid recovery log there while ${targets[source]!.name} has one: wiped or replaced; clone it (pgraid clone ${b.name})`, 'new-system')
    return
  }
  const why = await behindReason(ctx, index)
  if (why && !judge) return
  if (why) {
    if (/the backends in service lack/.test(why)) ctx.markOut(index, 'inconsistent', `${was}; ${why}`, 'diverged')
    else ctx.markOut(index, 'disabled', `${was}; behind: ${why} (pgraid resync ${b.name})`, 'behind')
    return
  }
  await catchUpAndEnable(ctx, index, source, () => {}, ctx.config.lifecycle.holdMs, undefined, `back in service: ${was.replace(/;.*$/, '')}; its recovery log is current in every database`)
}

/**
 * Every backend is out (pgraid lost them all at once: its own network, a restart of every server).
 * Nothing can have committed since. The backends out for their own fault (self-healing causes) were
 * in service until then; the others (behind, disabled by an operator, inconsistent, new) were out
 * while later commits landed elsewhere, so they are never brought back here. When every self-healing
 * one answers, the ones whose logs reach highest in every logged database are current: this one is
 * enabled if it is among them, and no other backend that answers holds more (the others then come
 * back through the usual comparison with it). Otherwise an operator decides (ENABLE FORCE).
 */
async function fromNothing(ctx: ServerContext, index: number): Promise<void> {
  const targets = ctx.backends()
  const all = ctx.states.list.filter((x) => x.state !== 'removed')
  const healing = (x: (typeof all)[number]) => !!x.cause && SELF_HEALING.has(x.cause)
  const dbs = new Set<string>()
  for (const x of all) {
    const found = await loggedDatabases(targets[x.index]!).catch((e: Error) => (healing(x) ? Promise.reject(e) : []))
    for (const db of found) dbs.add(db)
  }
  const tops = new Map<number, number[]>()
  for (const x of all)
    tops.set(
      x.index,
      await Promise.all(
        [...dbs].map((db) =>
          // One out for another reason that does not answer cannot be more current: it counts for nothing.
          logTop(targets[x.index]!, db).catch((e: { code?: string }) => (e.code === '42P01' || e.code === '3D000' || !healing(x) ? -1 : Promise.reject(e))),
        ),
      ),
    )
  const mine = tops.get(index)!
  const best = [...dbs].every((_, k) => [...tops.values()].every((t) => t[k]! <= mine[k]!))
  if (!best) throw new Error('every backend is out and another one holds more of the recovery log: it comes back first')
  ctx.enable(index, `back in service: every backend was out, and its recovery log is the most current in every database (${[...dbs].join(', ') || 'none logged'})`)
}
