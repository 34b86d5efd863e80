// Shared assertions for the statement-analysis tests: compact expectations
// ("schema.name" strings for tables) checked against analyze() output.
import type { Test } from 'tap'
import { analyze, type StatementInfo, type TableName } from '../../src/sql/analyze.ts'

type DeepPartial<T> = { [K in keyof T]?: NonNullable<T[K]> extends object ? DeepPartial<NonNullable<T[K]>> : T[K] }

export interface Expect extends DeepPartial<Omit<StatementInfo, 'reads' | 'writes' | 'functions' | 'sqlValueFunctions' | 'text'>> {
  reads?: string[]
  writes?: string[]
  functions?: string[]
  sqlValueFunctions?: string[]
}

export const fmt = (t: TableName): string => (t.schema === null ? t.name : `${t.schema}.${t.name}`)

/** Analyses `sql`, asserts it is exactly one statement, and checks `e` against it. */
export function check(t: Test, sql: string, e: Expect): StatementInfo | undefined {
  const a = analyze(sql)
  if (!a.ok) {
    t.fail(`parse error for ${sql}: ${a.error}`)
    return undefined
  }
  t.equal(a.statements.length, 1, 'one statement')
  const info = a.statements[0]!
  checkInfo(t, info, e)
  return info
}

export function checkInfo(t: Test, info: StatementInfo, e: Expect): void {
  const { reads, writes, functions, sqlValueFunctions, ...rest } = e
  // unless a case says otherwise, nothing was written or read
  t.same(info.reads.map(fmt).sort(), [...(reads ?? [])].sort(), 'reads')
  t.same(info.writes.map(fmt).sort(), [...(writes ?? [])].sort(), 'writes')
  if (functions) t.same([...info.functions].sort(), [...functions].sort(), 'functions')
  if (sqlValueFunctions) t.same([...info.sqlValueFunctions].sort(), [...sqlValueFunctions].sort(), 'sqlValueFunctions')
  // hasStrict: listed fields must be equal (t.match would accept substrings of strings)
  t.hasStrict(info, rest)
}
