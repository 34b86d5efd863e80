// The unit tests (no servers, no child processes) in one process: each module registers its subtests on
// tap's root test. One node + tsx + tap start instead of nineteen saves ~40 s of CPU on a 2-core suite.
// Run one alone with `npx tap test/sql/keys.unit.ts`.
import './cli/progress.unit.ts'
import './cli/target.unit.ts'
import './auth/md5.unit.ts'
import './errors.unit.ts'
import './config/docs.unit.ts'
import './observe/logger.unit.ts'
import './observe/histogram.unit.ts'
import './config/schema.unit.ts'
import './config/reload-plan.unit.ts'
import './auth/hba.unit.ts'
import './cli/systemd-unit.unit.ts'
import './protocol/framer.unit.ts'
import './protocol/scanner.unit.ts'
import './auth/scram.unit.ts'
import './protocol/codec.unit.ts'
import './sql/shape-cache.unit.ts'
import './scheduler/catalog-reload.unit.ts'
import './scheduler/key-values.unit.ts'
import './scheduler/lock-manager.unit.ts'
import './sql/analyze.unit.ts'
import './sql/analyze-api.unit.ts'
import './sql/keys.unit.ts'
import './sql/wasm-baseline.unit.ts'
import './recovery/backend-states.unit.ts'

import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'

t.test('every test/**/*.unit.ts is imported above (a file left out would never run)', async (t) => {
  const here = import.meta.dirname
  const self = readFileSync(join(here, 'unit.test.ts'), 'utf8')
  const found = (readdirSync(here, { recursive: true }) as string[]).filter((f) => f.endsWith('.unit.ts')).map((f) => `./${relative(here, join(here, f))}`)
  t.ok(found.length >= 20, `${found.length} unit files found`)
  t.same(
    found.filter((f) => !self.includes(`import '${f}'`)),
    [],
    'none missing',
  )
})
import './torture/elle.unit.ts'
import './broadcast/vote.unit.ts'
import './structure/imports.unit.ts'
