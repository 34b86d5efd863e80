// Differential SQL cases (issue 17, item 7): each file in test/cases/sql is a
// list of blocks (separated by blank lines), each sent as one simple query by
// node-postgres, through pgraid and to a separate plain PostgreSQL server (the
// reference). The answers must be the same: column names and types, rows,
// command tags, and for errors the SQLSTATE and position. A block starting
// with `-- shape` compares columns, types and row counts only (values that
// differ by nature: clocks, randoms). Every fidelity bug lands here first.

import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { stackFor, client, assertIdentical } from '../harness/stack.ts'
import { startCluster } from '../../src/embedded/cluster.ts'

const dir = join(import.meta.dirname, 'sql')
const stack = await stackFor(t)
const reference = await startCluster({ count: 1, auth: 'trust', settings: { fsync: 'off', autovacuum: 'off' } })
t.teardown(() => reference.stop())

type Answer = { ok: true; results: { command: string; rowCount: number | null; fields: string[]; rows?: unknown[] }[] } | { ok: false; code?: string; position?: string }

async function answer(c: pg.Client, sql: string, shapeOnly: boolean): Promise<Answer> {
  try {
    const r = (await c.query(sql)) as pg.QueryResult | pg.QueryResult[]
    const list = Array.isArray(r) ? r : [r]
    return {
      ok: true,
      results: list.map((x) => ({
        command: x.command,
        rowCount: x.rowCount,
        fields: (x.fields ?? []).map((f) => `${f.name}:${f.dataTypeID}`),
        ...(shapeOnly ? {} : { rows: x.rows }),
      })),
    }
  } catch (e) {
    const err = e as { code?: string; position?: string }
    return { ok: false, code: err.code, position: err.position }
  }
}

for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.sql'))
  .sort()) {
  t.test(file, async (t) => {
    const blocks = readFileSync(join(dir, file), 'utf8')
      .split(/\n\s*\n/)
      .map((b) => b.trim())
      .filter((b) => b && !/^(--[^\n]*\n?)+$/.test(b))
    const ours = await client(stack)
    const ref = await reference.backends[0]!.client()
    try {
      for (const block of blocks) {
        const shapeOnly = block.startsWith('-- shape')
        const [a, b] = [await answer(ours, block, shapeOnly), await answer(ref, block, shapeOnly)]
        t.same(
          a,
          b,
          block
            .split('\n')
            .filter((l) => !l.startsWith('--'))
            .join(' ')
            .slice(0, 120),
        )
      }
    } finally {
      await ours.end()
      await ref.end()
    }
    await assertIdentical(t, stack)
  })
}
