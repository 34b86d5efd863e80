// A deliberate bug, for the torture harness's own test only (tools/torture,
// test/torture): with PGRAID_FAULT_DROP_WRITE=n, every n-th autocommit write
// batch is not executed on the session's last backend, while its recovery-log
// row still is: a divergence the harness must report, whether pgraid's vote
// catches it later (a backend taken out as inconsistent counts) or only the
// final comparison does. Unset (as everywhere but that test), it costs one
// comparison per batch.

import { F } from '../protocol/codes.ts'
import type { Plan } from '../router/plan.ts'

const EVERY = Number(process.env.PGRAID_FAULT_DROP_WRITE ?? 0)
let seen = 0

/** Takes `victim` out of the client's Bind/Describe/Execute messages of every n-th batch carrying its commit. */
export function dropWriteForTest(plan: Plan, victim: number | undefined): void {
  if (!EVERY || !plan.commit || victim === undefined || ++seen % EVERY) return
  if (!plan.msgs.some((m) => m.code === F.Execute && !m.swallow)) return
  for (const m of plan.msgs) if (!m.swallow && (m.code === F.Bind || m.code === F.Execute || m.code === F.Describe)) m.targets = m.targets.filter((t) => t !== victim)
}
