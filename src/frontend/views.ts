// What the admin console reads of a session beyond plain fields: what it is
// doing or waiting for (SHOW SESSIONS `waiting`, a commit in flight's
// description) and its backend connections (SHOW SERVERS).

import type tls from 'node:tls'
import type { Exchange } from '../broadcast/exchange.ts'
import type { ServerView } from '../server-context.ts'
import type { BackendLink } from './backend-link.ts'

export interface WaitsHost {
  readonly step: string
  readonly exchange: Exchange | null
  readonly links: readonly BackendLink[]
  readonly backends: { readonly lossChecks: readonly unknown[] }
  readonly ctx: { backends(): readonly { name: string }[] }
}

/** Phase, step, links, the backends an exchange still waits on, loss checks under way. */
export function waitingText(host: WaitsHost, phase: string): string {
  const ex = host.exchange
  const names = (ids: number[]) => ids.map((i) => host.ctx.backends()[i]?.name ?? i).join(',')
  return [
    phase,
    `step ${host.step || '-'}`,
    `links ${names(host.links.map((l) => l.index)) || 'none'}`,
    ex ? `exchange ${ex.complete ? 'complete' : `pending on ${names(ex.pendingBackends()) || 'none'}`}` : '',
    host.backends.lossChecks.length ? `${host.backends.lossChecks.length} loss check(s)` : '',
  ]
    .filter(Boolean)
    .join(', ')
}

export function serverViews(links: readonly BackendLink[]): ServerView[] {
  return links.map((l) => {
    const s = l.conn.socket
    return {
      index: l.index,
      backend: l.name,
      pid: l.conn.pid,
      localAddress: s.localAddress ?? null,
      localPort: s.localPort ?? null,
      connectedAt: l.connectedAt,
      tls: 'getProtocol' in s ? ((s as tls.TLSSocket).getProtocol() ?? null) : null,
    }
  })
}

/** application_name as the session has it now: its last SET, else the startup packet's. */
export function applicationName(logSettings: ReadonlyMap<string, string>, startupParams: Readonly<Record<string, string>>): string {
  const set = logSettings.get('application_name')
  return set ? set.replace(/^SET application_name = '(.*)'$/s, '$1').replace(/''/g, "'") : (startupParams.application_name ?? '')
}
