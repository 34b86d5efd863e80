// `pgbench -i` timed through pgraid and directly on one backend (the other backends get their own
// copies untimed, for the ceiling runs); pgbench's default init steps, or without VACUUM when those
// fail through pgraid.

import type { RunningBackend } from '../src/embedded/cluster.ts'
import { vacuumAnalyze } from './maintenance.ts'
import type { BenchOptions } from './options.ts'
import { initDataset, PgbenchError, type Endpoint, type InitResult } from './pgbench.ts'
import type { InitTiming } from './results.ts'

export const PGRAID_DB = 'postgres'
export const DIRECT_DB = 'benchraw'
const DEFAULT_INIT_STEPS = 'dtgvp' // pgbench's default: drop, tables, client-side generate (COPY), vacuum, primary keys
const FALLBACK_INIT_STEPS = 'dtgp'

export function backendEndpoint(b: RunningBackend, database: string): Endpoint {
  return { name: b.name, host: b.host, port: b.port, user: b.user, password: b.password, database }
}

export async function timedInit(log: (msg: string) => void, opts: BenchOptions, backends: RunningBackend[], pgraidEp: Endpoint): Promise<InitTiming> {
  let steps = DEFAULT_INIT_STEPS
  let fallback: string | undefined
  let pgraid: InitResult
  log(`pgbench -i -s ${opts.scale} through pgraid (steps ${steps})`)
  try {
    pgraid = await initDataset(pgraidEp, opts.scale, steps)
  } catch (e) {
    if (!(e instanceof PgbenchError) || e.result.signal !== null) throw e
    const why = e.result.stderr.split('\n').find((l) => /error|ERROR|FATAL/.test(l)) ?? e.message
    log(`pgbench -i through pgraid failed with the default steps:\n${e.details()}`)
    steps = FALLBACK_INIT_STEPS
    fallback =
      `\`pgbench -i\` with the default steps (\`${DEFAULT_INIT_STEPS}\`) failed through pgraid (${why.trim()}); ` +
      `both inits therefore used \`-I ${FALLBACK_INIT_STEPS}\` (no VACUUM step) and the benchmark ran ` +
      '`VACUUM ANALYZE` directly on each backend afterwards (untimed).'
    log(`retrying through pgraid with -I ${steps}`)
    pgraid = await initDataset(pgraidEp, opts.scale, steps)
    await Promise.all(backends.map((b) => vacuumAnalyze(b, PGRAID_DB)))
  }
  log(`  through pgraid: ${pgraid.totalS} s ${JSON.stringify(pgraid.steps)}`)

  // The direct comparison: pg1 alone, nothing else running; then the other two backends' own copies.
  log(`pgbench -i -s ${opts.scale} directly on ${backends[0]!.name}, database ${DIRECT_DB}`)
  const direct = await initDataset(backendEndpoint(backends[0]!, DIRECT_DB), opts.scale, steps)
  log(`  direct: ${direct.totalS} s ${JSON.stringify(direct.steps)}`)
  log(
    `pgbench -i directly on ${backends
      .slice(1)
      .map((b) => b.name)
      .join(', ')} (untimed, for the ceiling runs)`,
  )
  await Promise.all(backends.slice(1).map((b) => initDataset(backendEndpoint(b, DIRECT_DB), opts.scale, steps)))
  if (fallback) await Promise.all(backends.map((b) => vacuumAnalyze(b, DIRECT_DB)))
  return { steps, direct, pgraid, fallback }
}
