// Report lines for issue 6's figures (bench/lifecycle.ts): resync replay rate and pause, clone vs a plain
// dump-and-restore, verify time.
import { f0, f2 } from './format.ts'
import type { LifecycleOutcome } from './lifecycle.ts'

export const PAUSE_GOAL_MS = 1000
export const CLONE_GOAL_RATIO = 2
export const VERIFY_GOAL_MS = 10_000

function verdict(ok: boolean): string {
  return ok ? '**met**' : '**not met**'
}

export function lifecycleTargets(l: LifecycleOutcome | undefined): { lines: string[]; met: boolean | undefined } {
  if (!l) return { lines: [], met: undefined }
  if (!l.ok) return { lines: [`- lifecycle (resync, clone, verify): the scenario did not complete (${l.error.split('\n')[0]}) - **not met**`], met: false }
  const pause = Math.max(l.resync.heldMs, l.resync.probeLongestGapMs)
  const pauseMet = l.resync.heldMs <= PAUSE_GOAL_MS && l.resync.probeLongestGapMs <= PAUSE_GOAL_MS && l.resync.identical
  const ratio = l.clone.ms / l.dumpRestore.ms
  const cloneMet = ratio <= CLONE_GOAL_RATIO && l.clone.identical
  const verifyMet = l.verify.ms <= VERIFY_GOAL_MS && l.verify.identical
  return {
    met: pauseMet && cloneMet && verifyMet,
    lines: [
      `- resync pause <= ${PAUSE_GOAL_MS} ms: commits held ${f0(l.resync.heldMs)} ms, longest gap a probe client saw ${f0(l.resync.probeLongestGapMs)} ms (${f0(pause)} ms) - ${verdict(pauseMet)}`,
      `- clone of scale ${l.scale} under load <= ${CLONE_GOAL_RATIO} x dump-and-restore: ${f2(ratio)}x (${f2(l.clone.ms / 1000)} s vs ${f2(l.dumpRestore.ms / 1000)} s) - ${verdict(cloneMet)}`,
      `- verify of scale ${l.scale} under load < ${VERIFY_GOAL_MS / 1000} s: ${f2(l.verify.ms / 1000)} s - ${verdict(verifyMet)}`,
    ],
  }
}

export function renderLifecycle(l: LifecycleOutcome | undefined): string[] {
  if (!l) return []
  const out = ['', '## Resync, clone, verify (issue 6)', '']
  if (!l.ok) return [...out, `The scenario did not complete:`, '', '```', l.error, '```']
  out.push(
    `A separate cluster of three backends, pgraid in-process, pgbench scale ${l.scale} (${f0(l.accounts)} accounts) loaded through pgraid (bench/lifecycle.ts).`,
    '',
    '| step | figure |',
    '|---|---|',
    `| verify, whole database, under pgbench -c 2 | ${f2(l.verify.ms / 1000)} s for ${f0(l.verify.rows)} rows (${f0(l.verify.rows / (l.verify.ms / 1000))} rows/s); commits held ${f0(l.verify.heldMs)} ms; ${f0(l.verify.commitsDuring)} transactions committed meanwhile; ${l.verify.identical ? 'identical' : '**differences**'} |`,
    `| resync of pg3 after 10 s of pgbench -c 4 without it, under pgbench -c 2 | ${f0(l.resync.records)} records replayed at **${f0(l.resync.perSecond)} records/s** (time spent fetching and replaying them); the whole resync took ${f2(l.resync.ms / 1000)} s while new records kept coming |`,
    `| resync pause | commits held ${f0(l.resync.heldMs)} ms (pgraid's measure: hold start to enable); a probe inserting every 20 ms saw at most ${f0(l.resync.probeLongestGapMs)} ms between successful writes during the resync (${f0(l.resync.probeLongestGapBeforeMs)} ms before it, under the same load); probe errors ${l.resync.probeErrors}; afterwards ${l.resync.identical ? 'identical' : '**differences**'} |`,
    `| clone of pg3 under pgbench -c 2 | ${f2(l.clone.ms / 1000)} s: ${f0(l.clone.rows)} rows copied (incl. pgraid's log and the probe table), then ${f0(l.clone.replayed)} records replayed, commits held ${f0(l.clone.heldMs)} ms; ${f0(l.clone.commitsDuring)} transactions committed meanwhile; afterwards ${l.clone.identical ? 'identical' : '**differences**'} |`,
    `| dump-and-restore of the same pgbench tables pg1 -> pg3, no load | ${f2(l.dumpRestore.ms / 1000)} s for ${f0(l.dumpRestore.rows)} rows (tables, COPY out piped into COPY in per table, primary keys: what pg_dump \\| psql does; there is no pg_dump 18 here) |`,
    `| clone / dump-and-restore | **${f2(l.clone.ms / l.dumpRestore.ms)}x** |`,
  )
  return out
}
