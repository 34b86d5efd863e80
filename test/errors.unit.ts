// docs/errors.md and the `errors` catalogue in src/errors.ts stay in step: every constructor is
// documented with its SQLSTATE and severity, and every documented name exists in the code.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PgError, errors } from '../src/errors.ts'
import { errorFields } from '../src/protocol/decode.ts'

const doc = await readFile(join(import.meta.dirname, '../docs/errors.md'), 'utf8')
// Table rows: | `name` | `SQLSTATE` | SEVERITY | when |
const rows = new Map<string, { code: string; severity: string; when: string }>()
for (const m of doc.matchAll(/^\| `([^`]+)` \| `([^`]*)` \| ([A-Z]+) \| (.*) \|$/gm)) rows.set(m[1]!, { code: m[2]!, severity: m[3]!, when: m[4]!.trim() })

/** Calls a constructor with placeholder arguments (one per declared parameter). */
function make(name: string): PgError {
  const ctor = errors[name as keyof typeof errors] as (...args: unknown[]) => PgError
  return ctor(...Array.from({ length: ctor.length }, (_, i) => `arg${i}`))
}

t.test('the catalogue is non-trivial and the table parses', async (t) => {
  t.ok(Object.keys(errors).length >= 10, 'errors has constructors')
  t.ok(rows.size >= 10, 'docs/errors.md has table rows')
})

t.test('every constructor is documented with its SQLSTATE and severity', async (t) => {
  for (const name of Object.keys(errors)) {
    const err = make(name)
    t.ok(err instanceof PgError, `${name}() returns a PgError`)
    t.match(err.code, /^[0-9A-Z]{5}$/, `${name}: SQLSTATE is 5 characters`)
    const row = rows.get(name)
    if (!row) {
      t.fail(`${name} is missing from docs/errors.md`)
      continue
    }
    t.equal(row.code, err.code, `${name}: documented SQLSTATE matches`)
    t.equal(row.severity, err.severity, `${name}: documented severity matches`)
    t.ok(row.when.length > 10, `${name}: says when it happens`)
  }
})

t.test('every documented name exists in the code', async (t) => {
  for (const name of rows.keys()) t.ok(Object.hasOwn(errors, name), `documented ${name} exists in src/errors.ts`)
})

t.test('each constructor serialises to an ErrorResponse with its fields', async (t) => {
  for (const name of Object.keys(errors)) {
    const err = make(name)
    const msg = err.toMessage()
    t.equal(msg[0], 0x45, `${name}: 'E'`)
    t.equal(msg.readInt32BE(1), msg.length - 1, `${name}: length`)
    const f = errorFields(msg.subarray(5))
    t.equal(f.C, err.code, `${name}: C`)
    t.equal(f.S, err.severity, `${name}: S`)
    t.equal(f.V, err.severity, `${name}: V`)
    t.equal(f.M, err.message, `${name}: M`)
    t.equal(f.D, err.detail, `${name}: D`)
    t.equal(f.H, err.hint, `${name}: H`)
  }
})
