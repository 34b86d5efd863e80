#!/usr/bin/env node
// The `pgraid` executable: hands argv to the CLI, which chooses the exit code.
//
// Which code runs (docs/operations.md, "Which code runs"):
// - the installed package holds the compiled JavaScript (dist/, built by `npm run build`, which
//   `npm pack` runs as `prepack`) and no TypeScript sources: dist/ runs on plain node, no loader;
// - a repository checkout (src/ present) runs the TypeScript sources through tsx, so `npm start` and
//   `npm test` need no build step and never run a dist/ left over from an older build;
// - PGRAID_DIST=1 runs dist/ in a checkout too (what bench/rss.ts does, to measure what production runs).
import { existsSync } from 'node:fs'

const dist = new URL('../dist/cli/cli.js', import.meta.url)
const src = new URL('../src/cli/cli.ts', import.meta.url)
const wantDist = process.env.PGRAID_DIST === '1' || !existsSync(src)

let cli
if (wantDist) {
  if (!existsSync(dist)) {
    process.stderr.write(`pgraid: ${dist.pathname} is missing: run \`npm run build\` (or unset PGRAID_DIST)\n`)
    process.exit(1)
  }
  cli = await import(dist.href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  cli = await import(src.href)
}
await cli.runCli(process.argv)
