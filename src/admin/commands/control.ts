// PAUSE, RESUME, SHUTDOWN and RELOAD: commands acting on this pgraid instance
// itself rather than on one backend.

import { errors } from '../../errors.ts'
import { ReloadRefused } from '../../config/reload-plan.ts'
import { clientSessions, type ServerContext } from '../../server-context.ts'
import type { Call, Result } from './command.ts'

/** RESUME for the PAUSE in force, per pgraid instance: any admin session may end another's PAUSE. */
const resumes = new WeakMap<ServerContext, () => void>()

/** PAUSE: new transactions wait; answers once every open transaction has ended (NOTICEs while waiting). */
export async function pause({ ctx, signal, notice }: Call): Promise<Result> {
  if (!resumes.has(ctx)) resumes.set(ctx, ctx.pause())
  const busy = () => clientSessions(ctx).filter((s) => s.transactionStatus !== 'idle')
  let last = 0
  while (busy().length && !signal.aborted) {
    if (Date.now() - last >= 1000) {
      last = Date.now()
      notice(
        `paused: new transactions wait; waiting for ${busy().length} open transaction(s) to end (sessions ${busy()
          .map((s) => s.id)
          .join(', ')})`,
      )
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  return { columns: ['paused', 'open_transactions'], rows: [[true, busy().length]], tag: 'PAUSE' }
}

export function resume({ ctx }: Call): Result {
  const resume = resumes.get(ctx)
  resume?.()
  resumes.delete(ctx)
  return { columns: ['paused'], rows: [[false]], tag: resume ? 'RESUME' : 'RESUME (was not paused)' }
}

/** SHUTDOWN: as SIGTERM; answered first, the shutdown starts on the next turn. */
export function shutdown({ ctx, notice }: Call): Result {
  notice(`pgraid shuts down: no new clients; sessions are closed as their transactions end (at most ${ctx.config.timeouts.shutdownMs} ms)`)
  setImmediate(() => ctx.shutdown())
  return { columns: ['shutting_down'], rows: [[true]], tag: 'SHUTDOWN' }
}

/** RELOAD: as SIGHUP; one row per change, or F0000 with every problem (the running configuration stays). */
export async function reload({ ctx, dry, notice }: Call): Promise<Result> {
  let r
  try {
    r = await ctx.reload({ dryRun: dry })
  } catch (e) {
    if (!(e instanceof ReloadRefused)) throw e
    throw errors.configNotReloaded(e.source, e.problems.join('\n'))
  }
  if (!r.changes.length) notice(`${r.source}: nothing changed`)
  return { columns: [dry ? 'would_change' : 'changed'], rows: r.changes.map((c) => [c]), tag: dry ? 'RELOAD DRY RUN' : 'RELOAD' }
}
