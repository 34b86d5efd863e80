// No import cycle in src/ (issue 19): every `import ... from` and
// `export ... from` between project files, type-only imports included (a
// cycle of types is still two modules that cannot be understood apart).
// Fails naming each cycle's files.

import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src')

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []))
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(/^(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/gms), ...text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)].map((m) => path.resolve(path.dirname(file), m[1]!))
}

/** Strongly connected components with more than one file (or a file importing itself): Tarjan's, iteratively. */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const out: string[][] = []
  for (const start of graph.keys()) {
    if (index.has(start)) continue
    const work: { v: string; i: number }[] = [{ v: start, i: 0 }]
    index.set(start, next)
    low.set(start, next++)
    stack.push(start)
    onStack.add(start)
    while (work.length) {
      const top = work[work.length - 1]!
      const deps = graph.get(top.v) ?? []
      if (top.i < deps.length) {
        const w = deps[top.i++]!
        if (!graph.has(w)) continue
        if (!index.has(w)) {
          index.set(w, next)
          low.set(w, next++)
          stack.push(w)
          onStack.add(w)
          work.push({ v: w, i: 0 })
        } else if (onStack.has(w)) low.set(top.v, Math.min(low.get(top.v)!, index.get(w)!))
        continue
      }
      work.pop()
      if (work.length) {
        const parent = work[work.length - 1]!.v
        low.set(parent, Math.min(low.get(parent)!, low.get(top.v)!))
      }
      if (low.get(top.v) === index.get(top.v)) {
        const scc: string[] = []
        let w: string
        do {
          w = stack.pop()!
          onStack.delete(w)
          scc.push(w)
        } while (w !== top.v)
        if (scc.length > 1 || deps.includes(top.v)) out.push(scc)
      }
    }
  }
  return out
}

t.test('the cycle finder finds a cycle, and none where there is none', async (t) => {
  t.same(
    cycles(
      new Map([
        ['a', ['b']],
        ['b', ['c']],
        ['c', []],
      ]),
    ),
    [],
  )
  t.same(
    cycles(
      new Map([
        ['a', ['b']],
        ['b', ['c']],
        ['c', ['a']],
        ['d', ['a']],
      ]),
    ).map((c) => c.sort()),
    [['a', 'b', 'c']],
  )
  t.same(cycles(new Map([['a', ['a']]])), [['a']])
})

t.test('no import cycle in src/', async (t) => {
  const files = sources(root)
  t.ok(files.length > 50, `${files.length} source files read`)
  const graph = new Map(files.map((f) => [f, importsOf(f)]))
  const edges = [...graph.values()].reduce((n, d) => n + d.length, 0)
  t.ok(edges > files.length, `${edges} imports between them`)
  const found = cycles(graph).map((c) => c.map((f) => path.relative(root, f)).join(' -> '))
  t.same(found, [], found.length ? `import cycles:\n${found.join('\n')}` : 'no cycle')
})
