// The session's prepared statements and portals, and on which backends each
// exists. A statement prepared on one backend (a read) and later executed on
// all (a write) is prepared on the others just in time ("lazy Parse").

import type { Analysis } from '../sql/analyze.ts'
import type { Rewrite, TimeParams } from './time-params.ts'
import type { BindParams } from '../scheduler/key-values.ts'

export interface Statement {
  name: string
  query: string
  /** The Parse message as the client sent it, replayed on backends that lack it. */
  parseBytes: Buffer
  analysis: Analysis
  /** Backends where it is prepared. */
  on: Set<number>
  /** Clock calls turned into extra parameters, filled in at each Bind. */
  time?: TimeParams | undefined
  /** Value rewrites of its text (covered random calls, a refused default). */
  rewrite?: Rewrite | null
  /** The text as sent to the backends (after rewrites) and its declared parameter types: the recovery log's copy. */
  sent: string
  paramTypes: number[]
}

export interface Portal {
  name: string
  statement: Statement | null
  targets: number[]
  /** Its parameters, for key locks when it is executed in a later batch. */
  params: BindParams | null
  /** The Bind body as sent (after rewrites), for the recovery log. */
  bindBody: Buffer | null
}

export class StatementRegistry {
  readonly statements = new Map<string, Statement>()
  readonly portals = new Map<string, Portal>()

  define(st: Statement): void {
    this.statements.set(st.name, st)
  }

  forget(name: string): void {
    this.statements.delete(name)
  }

  /** A simple Query destroys the unnamed statement on the backends it ran on. */
  unnamedGoneOn(backends: Iterable<number>): void {
    const st = this.statements.get('')
    if (st) for (const b of backends) st.on.delete(b)
  }

  /** A backend left the session: nothing is prepared there any more, portals bound there are gone. */
  forgetBackend(idx: number): void {
    for (const st of this.statements.values()) st.on.delete(idx)
    for (const [name, p] of this.portals) {
      if (p.targets.includes(idx)) {
        if (p.targets.length === 1) this.portals.delete(name)
        else p.targets = p.targets.filter((t) => t !== idx)
      }
    }
  }

  /** Protocol-level portals do not outlive their transaction. */
  endTransaction(): void {
    this.portals.clear()
  }

  clearAll(): void {
    this.statements.clear()
    this.portals.clear()
  }
}
