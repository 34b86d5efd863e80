// GET /health and /health/read on the metrics port: what a load balancer or an orchestrator asks
// before sending clients here. /health: this pgraid accepts writes now (it is the writer and
// at least writeQuorum backends are in service, as admit.ts requires of a write); /health/read:
// it can serve reads (a backend in service; a standby serves reads too). Read from memory: no
// backend is asked, so a check costs nothing and answers even when the backends hang.

import type { ServerContext } from '../server-context.ts'

export interface HealthAnswer {
  /** 200 when true, 503 when false. */
  ok: boolean
  check: 'write' | 'read'
  role: 'writer' | 'standby'
  /** Backends in service, by name. */
  inService: string[]
  writeQuorum: number
  /** Why, in a sentence. */
  reason: string
}

export function healthAnswer(ctx: ServerContext, check: 'write' | 'read'): HealthAnswer {
  const names = ctx.backends()
  const inService = ctx.states.enabled().map((i) => names[i]!.name)
  const role = ctx.ha.isWriter() ? 'writer' : 'standby'
  const quorum = ctx.writeQuorum
  const n = inService.length
  const base = { check, role, inService, writeQuorum: quorum } as const
  if (check === 'read') return n > 0 ? { ok: true, ...base, reason: `${n} backend(s) in service` } : { ok: false, ...base, reason: 'no backend in service' }
  if (role !== 'writer') return { ok: false, ...base, reason: 'this pgraid is a standby: it does not hold the writer lock on enough backends (SHOW HA); writes go to the writer' }
  if (n < quorum) return { ok: false, ...base, reason: `${n} backend(s) in service, fewer than the write quorum of ${quorum}: writes are refused` }
  return { ok: true, ...base, reason: `writer, ${n} backend(s) in service (write quorum ${quorum})` }
}
