// libpg-query must compile on Liftoff only (src/sql/wasm-baseline.ts): the flag is set by a module
// that every importer of libpg-query imports before it. A new importer that forgets it brings back the
// 15-25 MiB a TurboFan tier-up keeps resident.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

t.test('every src module importing libpg-query imports src/sql/wasm-baseline.ts first', async (t) => {
  const src = join(import.meta.dirname, '../../src')
  const files = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'))
  const importers = files.filter((f) => /from 'libpg-query'/.test(readFileSync(join(src, f), 'utf8')))
  t.ok(importers.length >= 1, `${importers.length} importers`)
  for (const f of importers) {
    const text = readFileSync(join(src, f), 'utf8')
    const flags = text.search(/^import '(\.\/|(\.\.\/)+sql\/)wasm-baseline\.ts'/m)
    const lib = text.search(/^import .* from 'libpg-query'/m)
    t.ok(flags >= 0 && flags < lib, `${f}: the wasm-baseline import comes before libpg-query`)
  }
})
