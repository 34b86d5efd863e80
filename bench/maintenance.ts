// Things the benchmark does with plain pg clients: databases, between-run maintenance, checks.
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type { RunningBackend } from '../src/embedded/cluster.ts'
import { compareBackends } from '../test/harness/compare.ts'
import type { Endpoint } from './pgbench.ts'

export async function withClient<T>(b: RunningBackend, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await b.client(database)
  try {
    return await fn(c)
  } finally {
    await c.end().catch(() => {})
  }
}

export async function withEndpoint<T>(ep: Endpoint, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: ep.host, port: ep.port, user: ep.user, password: ep.password, database: ep.database })
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end().catch(() => {})
  }
}

export async function serverVersion(b: RunningBackend): Promise<string> {
  return withClient(b, 'postgres', async (c) => (await c.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v)
}

export async function recreateDatabase(b: RunningBackend, name: string): Promise<void> {
  await withClient(b, 'postgres', async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name}`)
    await c.query(`CREATE DATABASE ${name}`)
  })
}

export async function vacuumAnalyze(b: RunningBackend, database: string): Promise<void> {
  await withClient(b, database, async (c) => {
    await c.query('VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history')
  })
}

/**
 * What `pgbench` does before a run unless -n (vacuum the two small hot tables, empty the history), plus a
 * CHECKPOINT so no run pays for the previous run's dirty buffers. `truncateVia` sends the TRUNCATE through
 * pgraid instead, so it is ordered after any replicated writes a lagging backend has not applied yet. With
 * several pgraid instances over the same database, pass them all: each orders its TRUNCATE after its own
 * writes (one after the other: TRUNCATEs commute with each other).
 */
export async function prepareRun(backends: RunningBackend[], database: string, truncateVia?: Endpoint | Endpoint[]): Promise<void> {
  const via = truncateVia === undefined ? [] : Array.isArray(truncateVia) ? truncateVia : [truncateVia]
  for (const ep of via) await withEndpoint(ep, (c) => c.query('TRUNCATE pgbench_history'))
  await Promise.all(
    backends.map((b) =>
      withClient(b, database, async (c) => {
        await c.query('VACUUM pgbench_branches')
        await c.query('VACUUM pgbench_tellers')
        if (!via.length) await c.query('TRUNCATE pgbench_history')
        await c.query('CHECKPOINT')
      }),
    ),
  )
}

/** Sends one VACUUM through pgraid and says what happened, for the report. */
export async function probeVacuum(ep: Endpoint): Promise<string> {
  try {
    await withEndpoint(ep, (c) => c.query('VACUUM pgbench_branches'))
    return 'works'
  } catch (e) {
    return `fails (${(e as Error).message})`
  }
}

/** Row counts of the pgbench tables on each backend, e.g. for a sanity check after init. */
export async function accountCounts(backends: RunningBackend[], database: string): Promise<number[]> {
  return Promise.all(backends.map((b) => withClient(b, database, async (c) => Number((await c.query('SELECT count(*) AS n FROM pgbench_accounts')).rows[0].n))))
}

/**
 * Digests every table on every backend; with a write quorum below N the last backend may still be applying
 * the tail of the previous run, so a difference is re-checked a few times before it counts.
 */
export async function checkReplicas(backends: RunningBackend[], database: string): Promise<{ identical: boolean; report: string }> {
  let last = { identical: false, report: '' }
  for (let attempt = 0; attempt < 6; attempt++) {
    last = await compareBackends(backends, database)
    if (last.identical) return last
    await sleep(2000)
  }
  return last
}
