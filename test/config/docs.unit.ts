// docs/configuration.md and fixtures/pgraid.example.jsonc are generated from the config schema
// (npm run config-docs); these tests fail when either is stale, when the sample misses a key or carries
// another description than the schema, and when the sample is not a valid config with the defaults.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { visit } from 'jsonc-parser'
import { configObjectSchema, loadConfig } from '../../src/config/schema.ts'
import { listConfigKeys } from '../../src/config/keys.ts'
import { defaultCell, extractKeyTable, renderKeyTable, renderSample } from '../../src/config/docs.ts'

const root = join(import.meta.dirname, '../..')
const regenerate = 'run `npm run config-docs` after changing src/config/schema.ts'
const normalize = (s: string) => s.replace(/\s+/g, ' ').trim()

t.test('docs/configuration.md holds the table generated from the schema', async (t) => {
  const doc = await readFile(join(root, 'docs/configuration.md'), 'utf8')
  const table = extractKeyTable(doc)
  t.ok(table, 'the generated-table markers are in docs/configuration.md')
  t.equal(table, renderKeyTable(configObjectSchema), `the key table is current (${regenerate})`)
})

t.test('the table has every key with its default and description, and no other key', async (t) => {
  // An independent reading of the table, so a generator bug cannot hide a missing or stale key.
  const doc = await readFile(join(root, 'docs/configuration.md'), 'utf8')
  const rows = new Map<string, [string, string]>()
  for (const m of (extractKeyTable(doc) ?? '').matchAll(/^\| `([^`]+)` \| ((?:[^|\\]|\\.)*) \| (.*) \|$/gm)) {
    rows.set(m[1]!, [m[2]!.trim(), m[3]!.replace(/\\\|/g, '|')])
  }
  const keys = listConfigKeys(configObjectSchema)
  t.ok(keys.length > 20, 'the schema walk found the keys')
  for (const key of keys) {
    t.ok(key.description, `${key.path} has a .describe()`)
    const row = rows.get(key.path)
    if (!row) {
      t.fail(`${key.path} is missing from docs/configuration.md (${regenerate})`)
      continue
    }
    t.equal(row[0], defaultCell(key), `${key.path}: default`)
    if ('default' in key && (key.default === null || typeof key.default !== 'object')) {
      t.equal(row[0], `\`${JSON.stringify(key.default)}\``, `${key.path}: the schema's literal default`)
    } else if (!key.optional) t.equal(row[0], 'required', `${key.path}: required`)
    t.equal(row[1], key.description, `${key.path}: description`)
  }
  const known = new Set(keys.map((k) => k.path))
  for (const documented of rows.keys()) t.ok(known.has(documented), `documented key ${documented} exists in the schema`)
})

t.test('fixtures/pgraid.example.jsonc is the generated sample', async (t) => {
  const sample = await readFile(join(root, 'fixtures/pgraid.example.jsonc'), 'utf8')
  const example: unknown = JSON.parse(await readFile(join(root, 'fixtures/pgraid.example.json'), 'utf8'))
  t.equal(sample, renderSample(configObjectSchema, example), `the sample is current (${regenerate})`)
})

t.test('the sample shows every key, each under a comment equal to its description', async (t) => {
  const sample = await readFile(join(root, 'fixtures/pgraid.example.jsonc'), 'utf8')
  // The comment block right above each property, keyed by its path with list indexes as [].
  const comments = new Map<number, string>() // line -> text of a whole-line // comment
  const lines = sample.split('\n')
  lines.forEach((line, i) => {
    const m = /^\s*\/\/ ?(.*)$/.exec(line)
    if (m) comments.set(i, m[1]!)
  })
  const found = new Map<string, string>()
  visit(sample, {
    onObjectProperty: (property, _offset, _length, startLine, _col, pathSupplier) => {
      const path = [...pathSupplier(), property]
        .map((seg, i) => (typeof seg === 'number' ? '[]' : i === 0 ? seg : `.${seg}`))
        .join('')
        .replace(/^\./, '')
      if (found.has(path)) return // later list entries carry no comments
      const block: string[] = []
      for (let l = startLine - 1; comments.has(l); l--) block.unshift(comments.get(l)!)
      found.set(path, normalize(block.join(' ')))
    },
  })
  for (const key of listConfigKeys(configObjectSchema)) {
    const comment = found.get(key.path)
    if (comment === undefined) t.fail(`${key.path} is missing from fixtures/pgraid.example.jsonc (${regenerate})`)
    else t.equal(comment, normalize(key.description ?? ''), `${key.path}: the comment above it is its description`)
  }
})

t.test('the sample is a valid config: the example values, everything else the defaults', async (t) => {
  const commented = await loadConfig(join(root, 'fixtures/pgraid.example.jsonc'))
  const plain = await loadConfig(join(root, 'fixtures/pgraid.example.json'))
  t.same(commented, plain, 'the values the sample writes out are the defaults')
})
