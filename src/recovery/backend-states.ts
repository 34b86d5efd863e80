// The backends' states as pgraid records them inside the backends
// (pgraid.backend_state): every state change is written to every backend in
// service, and a starting pgraid takes its view back from those records, so
// a backend out of service stays out across restarts with nothing kept on the
// proxy's disk (invariant 7). RecoveryLog owns one recorder per database.

import type pg from 'pg'
import type { Logger } from 'pino'
import type { BackendTarget } from '../backend/connection.ts'
import { SELF_HEALING, type BackendStates, type BackendStatus, type OutCause } from '../cluster/states.ts'

/** A row of pgraid.backend_state: what one backend recorded about one backend, and when. */
export interface RecordedState {
  backend: string
  state: string
  reason: string | null
  cause: string | null
  /** When that state began (epoch ms); the latest record of a backend wins. */
  at: number
}

/** What one backend's records say, as read at startup (a BackendLogState is one). */
export interface RecordedView {
  backend: string
  states: readonly RecordedState[]
}

/** Takes a backend out of service (the server's state machine; the log only reports what it found). */
export type TakeOut = (index: number, state: 'disabled' | 'inconsistent' | 'new', reason: string, cause: OutCause) => void

/** Queues writes of the backends' states into every backend in service. */
export class StateRecorder {
  private recording: Promise<void> = Promise.resolve()
  private recordQueued = false

  constructor(
    private readonly targets: BackendTarget[],
    private readonly states: BackendStates,
    private readonly connect: (t: BackendTarget) => Promise<pg.Client>,
    /** Whether the log was asked to get ready (no write before: the schema may not be there). */
    private readonly started: () => boolean,
    /** The highest LSN handed out, stored with a state that is out (where it left off). */
    private readonly last: () => number,
  ) {}

  /**
   * Writes the backends' states into every backend still in service. Writes are queued one after another, each with the states as they are when it runs: a slow
   * earlier write never lands after a later one, and a burst of changes ends in the latest view.
   */
  record(list: readonly BackendStatus[]): Promise<void> {
    if (this.recordQueued) return this.recording
    this.recordQueued = true
    this.recording = this.recording
      .catch(() => {})
      .then(() => {
        this.recordQueued = false
        return this.writeStates(list)
      })
    return this.recording
  }

  /** Resolves once every state change so far is written (ServerContext.statesRecorded). */
  recorded(): Promise<void> {
    return this.recording.catch(() => {})
  }

  private async writeStates(list: readonly BackendStatus[]): Promise<void> {
    if (!this.started()) return
    await Promise.allSettled(
      this.states.enabled().map(async (i) => {
        const client = await this.connect(this.targets[i]!)
        try {
          // One view, whole: a reader never sees half of it.
          await client.query('BEGIN')
          for (const b of list)
            await client.query(
              `INSERT INTO pgraid.backend_state (backend, state, reason, lsn, at, cause) VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (backend) DO UPDATE SET state = excluded.state, reason = excluded.reason, lsn = excluded.lsn, at = excluded.at, cause = excluded.cause`,
              [b.name, b.state, b.reason, b.state === 'enabled' ? null : this.last(), b.since, b.cause],
            )
          await client.query('COMMIT')
        } finally {
          await client.end().catch(() => {})
        }
      }),
    )
  }
}

/** At startup, states the reachable backends recorded are restored: a backend recorded as out never comes back by itself. */
export function restoreRecorded(found: readonly RecordedView[], targets: readonly BackendTarget[], takeOut: TakeOut, log: Logger, database: string): void {
  for (const { rec, by } of latestStates(found, (names) => log.warn({ database, backends: names }, 'the backends recorded different states: the latest record of each backend wins'))) {
    const i = targets.findIndex((t) => t.name === rec.backend)
    if (i < 0 || rec.state === 'enabled') continue
    // A reason that was itself restored from a record is not wrapped again at each restart.
    const why = (rec.reason ?? '').replace(/^(recorded as \w+ by [^:]+: )+/, '')
    takeOut(
      i,
      rec.state === 'inconsistent' || rec.state === 'new' ? rec.state : 'disabled',
      `recorded as ${rec.state} by ${by}: ${why}`,
      rec.cause && SELF_HEALING.has(rec.cause as OutCause) ? (rec.cause as OutCause) : 'recorded',
    )
  }
}

/**
 * One view of the backends' states from the views the backends recorded (each writes the whole list
 * into every backend in service, so a backend that was out holds an older view). Per backend the
 * record with the latest start time wins, whoever holds it. A view itself is evidence: a backend
 * that holds records up to time T was in service at T (pgraid writes only there), which outweighs
 * an older record of it being out; its records about itself count for nothing else (it is never
 * told it is out). On a tie, out wins.
 */
export function latestStates(found: readonly RecordedView[], disagreed: (names: string[]) => void): { rec: RecordedState; by: string }[] {
  const best = new Map<string, { rec: RecordedState; by: string }>()
  const differ = new Set<string>()
  const offer = (rec: RecordedState, by: string) => {
    const cur = best.get(rec.backend)
    if (cur && cur.rec.state !== rec.state) differ.add(rec.backend)
    if (!cur || rec.at > cur.rec.at || (rec.at === cur.rec.at && cur.rec.state === 'enabled' && rec.state !== 'enabled')) best.set(rec.backend, { rec, by })
  }
  for (const s of found) {
    let seen = 0
    for (const rec of s.states) {
      seen = Math.max(seen, rec.at)
      if (rec.backend !== s.backend) offer(rec, s.backend)
    }
    if (s.states.length) offer({ backend: s.backend, state: 'enabled', reason: null, cause: null, at: seen }, s.backend)
  }
  if (differ.size) disagreed([...differ])
  return [...best.values()]
}
