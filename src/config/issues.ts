// Turns zod validation issues into one-line, operator-facing problems ("<key path>: <what is wrong and
// what to put there>") and carries them in ConfigError, so a bad config file is fixed in one edit.
import type { z } from 'zod'

/** A configuration problem; `message` lists every problem, one per line, and names the file. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`
    super(`invalid configuration in ${source} (${count}):\n${problems.map((p) => `  ${p}`).join('\n')}`)
  }
}

/** `['backends', 1, 'port']` → `backends[1].port`; the empty path is the document itself. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? String(seg) : `.${String(seg)}`
  }
  return out === '' ? '(top level)' : out
}

/**
 * One problem line per issue (one per key for unknown keys). `allowedKeysAt` lists the keys the schema
 * accepts at an object path, used to suggest the key a typo was meant to be.
 */
export function describeIssues(issues: readonly z.core.$ZodIssue[], allowedKeysAt: (path: readonly PropertyKey[]) => readonly string[]): string[] {
  const problems: string[] = []
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(issue.path)
      for (const key of issue.keys) {
        const guess = closest(key, allowed)
        const hint = guess === undefined ? '' : ` (did you mean "${guess}"?)`
        problems.push(`${formatPath([...issue.path, key])}: unknown key${hint}; allowed here: ${allowed.join(', ')}`)
      }
      continue
    }
    // Our own cross-field checks (code "custom") already say what they saw.
    if (issue.code === 'custom') {
      problems.push(`${formatPath(issue.path)}: ${issue.message}`)
      continue
    }
    const input = (issue as { input?: unknown }).input
    const what = input === undefined ? `missing; ${issue.message}` : `${issue.message}, got ${show(input, issue.path)}`
    problems.push(`${formatPath(issue.path)}: ${what}`)
  }
  return problems
}

/** A short rendering of an offending value; secrets are described by type only, never echoed. */
export function show(value: unknown, path: readonly PropertyKey[] = []): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : `a list of ${value.length}`
  if (typeof value === 'object') return 'an object'
  if (path[path.length - 1] === 'password') return `a ${typeof value}`
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

/** The allowed key nearest to a typo, if it is plausibly the same word (small edit distance). */
function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  // Beyond a third of the word, a "suggestion" is noise rather than help.
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined
}

/** Optimal string alignment distance: Levenshtein plus adjacent transposition ("listne" → "listen" is 1). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}
