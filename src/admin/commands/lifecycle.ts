// DISABLE, ENABLE, RESYNC, CLONE and VERIFY: the commands that move a backend
// out of or back into service, or compare the backends. The work is lifecycle/'s;
// here its outcome becomes rows and its refusals the console's errors.

import { errors } from '../../errors.ts'
import { behindReason, resync as runResync, ResyncRefused } from '../../lifecycle/resync.ts'
import { clone as runClone, CloneRefused } from '../../lifecycle/clone.ts'
import { verify as runVerify, VerifyRefused, type VerifyReport } from '../../lifecycle/verify.ts'
import { SnapshotRefused } from '../../lifecycle/snapshots.ts'
import { NotReplayable, RowCountMismatch } from '../../recovery/replay.ts'
import type { ServerContext } from '../../server-context.ts'
import type { Call, Result } from './command.ts'

type Targets = ReturnType<ServerContext['backends']>

export async function clone({ ctx, args, dry, signal, notice }: Call): Promise<Result> {
  const targets = ctx.backends()
  const { name, idx } = backendArg(ctx, targets, args[0])
  // FROM is looked up among every configured backend: clone() refuses one not in service, saying why.
  const from = args.length === 3 ? targets.findIndex((t) => t.name === unquote(args[2]!)) : undefined
  if (from === -1) throw errors.unknownBackend(args[2]!, false, configured(ctx, targets))
  try {
    const r = await runClone(ctx, idx, { from, dryRun: dry, signal, notice: (m, p) => notice(m, p) })
    if (!dry) await ctx.statesRecorded()
    return {
      columns: ['name', 'state', 'database', 'lsn', 'tables', 'rows', 'records_replayed', 'commits_held_ms'],
      rows: r.databases.map((d) => [name, dry ? ctx.states.list[idx]!.state : 'enabled', d.name, d.lsn, d.tables, d.rows, r.replayed, r.heldMs]),
      tag: 'CLONE',
    }
  } catch (e) {
    if (e instanceof CloneRefused || e instanceof ResyncRefused) throw errors.cloneRefused(name, e.message)
    throw errors.cloneFailed(name, (e as Error).message)
  }
}

export async function resync({ ctx, args, dry, signal, notice }: Call): Promise<Result> {
  const targets = ctx.backends()
  const { name, idx } = backendArg(ctx, targets, args[0])
  if (dry) {
    const b = ctx.states.list[idx]!
    if (b.state === 'enabled') return dryRun(name, `${name} is in service: nothing to do`)
    if (b.state !== 'disabled') return dryRun(name, `would refuse: ${name} is ${b.state}: clone it`)
    const why = await behindReason(ctx, idx).catch((e: Error) => `would refuse: ${e.message}`)
    return dryRun(
      name,
      why
        ? `${why.startsWith('would') ? why : `${why.replace(/: resync it$/, '')}: would replay them from ${targets[ctx.states.enabled()[0]!]!.name}, hold new commits up to ${ctx.config.lifecycle.holdMs} ms and enable it`}`
        : `has every record: would enable it`,
    )
  }
  try {
    const r = await runResync(ctx, idx, (m, p) => notice(m, p), undefined, signal)
    // Answered once every backend in service records the new state: an operator reads one view.
    await ctx.statesRecorded()
    return { columns: ['name', 'state', 'records_applied', 'commits_held_ms', 'replay_ms'], rows: [[name, 'enabled', r.applied, r.heldMs, Math.round(r.replayMs)]], tag: 'RESYNC' }
  } catch (e) {
    if (e instanceof ResyncRefused) throw errors.resyncRefused(name, e.message)
    if (e instanceof NotReplayable) throw errors.resyncNotReplayable(name, e.message)
    if (e instanceof RowCountMismatch) throw errors.resyncDataDiffers(name, targets[ctx.states.enabled()[0] ?? 0]?.name ?? 'the backends in service', e.message)
    throw errors.resyncFailed(name, (e as Error).message)
  }
}

export async function enable({ ctx, user, args, dry, notice }: Call): Promise<Result> {
  const { name, idx } = backendArg(ctx, ctx.backends(), args[0])
  if (ctx.states.isEnabled(idx)) return { columns: ['name', 'state'], rows: [[name, 'enabled']], tag: 'ENABLE' }
  const force = args.length === 2
  const state = ctx.states.list[idx]!.state
  const why = state === 'inconsistent' || state === 'new' ? `it is ${state}: clone it` : await behindReason(ctx, idx)
  if (dry) return dryRun(name, why ? (force ? `would enable it by force although ${why}` : `would refuse: ${why}`) : 'would enable it')
  if (why && !force) throw errors.enableRefused(name, why)
  if (why) notice(`WARNING: ${name} enabled by force although ${why}; run pgraid verify`)
  ctx.enable(idx, force ? `enabled by force by admin ${user}` : `enabled by admin ${user}`)
  await ctx.statesRecorded()
  return { columns: ['name', 'state'], rows: [[name, 'enabled']], tag: 'ENABLE' }
}

export async function disable({ ctx, user, args, dry }: Call): Promise<Result> {
  const { name, idx } = backendArg(ctx, ctx.backends(), args[0])
  if (ctx.states.list[idx]!.state !== 'enabled') return { columns: ['name', 'state'], rows: [[name, ctx.states.list[idx]!.state]], tag: 'DISABLE' }
  if (ctx.states.enabled().length === 1) throw errors.lastBackendInService(name)
  if (dry) return dryRun(name, `would take it out of service (${ctx.states.enabled().length - 1} left; writes need ${ctx.writeQuorum})`)
  ctx.takeOut(idx, 'disabled', `disabled by admin ${user}`, true, 'operator')
  await ctx.statesRecorded()
  return { columns: ['name', 'state'], rows: [[name, 'disabled']], tag: 'DISABLE' }
}

/** VERIFY [JSON] [TABLES ...]: each difference as a row, or (JSON) the whole report in one. */
export async function verify({ ctx, text, notice }: Call): Promise<Result> {
  const m = /^VERIFY(\s+JSON)?(?:\s+TABLES\s+(.+))?$/is.exec(text.trim())
  if (!m) throw errors.verifyUsage()
  const tables = m[2]?.split(/[\s,]+/).filter(Boolean)
  let report: VerifyReport
  try {
    report = await runVerify(ctx, { tables, progress: (msg, done, total) => notice(msg, { done, total, unit: 'tables' }) })
  } catch (e) {
    if (e instanceof VerifyRefused || e instanceof SnapshotRefused) throw errors.verifyRefused(e.message)
    throw errors.verifyFailed((e as Error).message)
  }
  if (m[1]) return { columns: ['report'], rows: [[JSON.stringify(report)]], tag: 'VERIFY' }
  const compared = report.tables.filter((t) => t.rows || t.chunks).length
  notice(
    `verify: ${report.identical ? 'identical' : `${report.differences.length} difference(s)`}: ${report.backends.join(', ')} compared at ${report.databases.map((d) => `"${d.name}" LSN ${d.lsn ?? '-'}`).join(', ')}; ${compared} tables, ${report.tables.reduce((n, t) => n + t.rows, 0)} rows${report.skipped.length ? `; not compared (out of service): ${report.skipped.join(', ')}` : ''}`,
  )
  return { columns: ['database', 'table', 'backend', 'problem', 'key', 'detail'], rows: report.differences.map((d) => [d.database, d.table, d.backend, d.problem, d.key, d.detail]), tag: 'VERIFY' }
}

/** The backend a command names (its quotes dropped); one a reload removed is named as such. */
function backendArg(ctx: ServerContext, targets: Targets, word: string | undefined): { name: string; idx: number } {
  const name = unquote(word ?? '')
  const idx = targets.findIndex((t, i) => t.name === name && ctx.states.list[i]!.state !== 'removed')
  if (idx < 0)
    throw errors.unknownBackend(
      name,
      targets.some((t) => t.name === name),
      configured(ctx, targets),
    )
  return { name, idx }
}

/** The backends an unknown name could have meant: those still configured. */
function configured(ctx: ServerContext, targets: Targets): string {
  return targets
    .filter((_, i) => ctx.states.list[i]!.state !== 'removed')
    .map((t) => t.name)
    .join(', ')
}

function unquote(word: string): string {
  return word.replace(/^"|"$/g, '')
}

function dryRun(name: string, what: string): Result {
  return { columns: ['name', 'dry_run'], rows: [[name, what]], tag: 'DRY RUN' }
}
