// `npm run config-docs`: regenerates the key table in docs/configuration.md and the commented sample
// fixtures/pgraid.example.jsonc from the config schema (src/config/docs.ts does the work).
// `--check` writes nothing and exits 1 when either file is stale.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { configObjectSchema } from '../src/config/schema.ts'
import { renderKeyTable, renderSample, replaceKeyTable } from '../src/config/docs.ts'

const root = join(import.meta.dirname, '..')
const docPath = join(root, 'docs/configuration.md')
const samplePath = join(root, 'fixtures/pgraid.example.jsonc')
const example: unknown = JSON.parse(readFileSync(join(root, 'fixtures/pgraid.example.json'), 'utf8'))

const outputs: Array<[string, string]> = [
  [docPath, replaceKeyTable(readFileSync(docPath, 'utf8'), renderKeyTable(configObjectSchema))],
  [samplePath, renderSample(configObjectSchema, example)],
]
const check = process.argv.includes('--check')
let stale = 0
for (const [path, text] of outputs) {
  let current = ''
  try {
    current = readFileSync(path, 'utf8')
  } catch {
    // missing: written below, or stale under --check
  }
  if (current === text) continue
  stale++
  if (check) console.error(`${path} is stale; run npm run config-docs`)
  else {
    writeFileSync(path, text)
    console.log(`wrote ${path}`)
  }
}
process.exitCode = check && stale > 0 ? 1 : 0
