// The pgraid executable end to end: spawns bin/pgraid.js and checks output streams and exit codes
// (0 ok, 2 usage/config error) for check-config, hash-password, start with a bad config, and usage errors.
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseScramVerifier } from '../../src/auth/scram.ts'
import { md5PasswordHash } from '../../src/auth/md5.ts'

const root = join(import.meta.dirname, '../..')
const bin = join(root, 'bin/pgraid.js')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function pgraid(args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin ?? '')
  })
}

t.test('check-config rejects a bad file with exit 2 and names each key', async (t) => {
  const file = join(t.testdir(), 'bad.json')
  await writeFile(
    file,
    JSON.stringify({
      listne: {},
      backends: [{ name: 'pg1', host: '127.0.0.1', port: 'abc', user: 'postgres' }],
      users: [{ name: 'app', auth: 'trust' }],
    }),
  )
  const r = await pgraid(['check-config', '-c', file])
  t.equal(r.code, 2)
  t.equal(r.stdout, '')
  t.match(r.stderr, `invalid configuration in ${file} (2 problems):`)
  t.match(r.stderr, 'backends[0].port: must be an integer 1-65535, got "abc"')
  t.match(r.stderr, 'listne: unknown key (did you mean "listen"?)')
})

t.test('check-config accepts a good file with exit 0', async (t) => {
  const r = await pgraid(['check-config', '-c', join(root, 'fixtures/pgraid.example.json')])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'ok\n')
})

t.test('check-config on a missing file is a config error', async (t) => {
  const r = await pgraid(['check-config', '-c', join(t.testdir(), 'nope.json')])
  t.equal(r.code, 2)
  t.match(r.stderr, 'cannot read it (ENOENT)')
})

t.test('start refuses a bad config and never listens', async (t) => {
  const file = join(t.testdir(), 'bad.json')
  await writeFile(file, JSON.stringify({ users: [{ name: 'app', auth: 'trust' }] }))
  const r = await pgraid(['start', '-c', file])
  t.equal(r.code, 2)
  t.equal(r.stdout, '')
  t.match(r.stderr, 'backends: missing')
})

t.test('hash-password prints a SCRAM-SHA-256 verifier', async (t) => {
  const r = await pgraid(['hash-password', 's3cret'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+\n$/)
  t.ok(parseScramVerifier(r.stdout.trim()), 'parses as a verifier')
})

t.test('hash-password reads the password from stdin with "-"', async (t) => {
  const r = await pgraid(['hash-password', '--method', 'md5', '--user', 'app', '-'], 's3cret\n')
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, `${md5PasswordHash('app', 's3cret')}\n`)
})

t.test('hash-password --method md5 needs --user', async (t) => {
  const r = await pgraid(['hash-password', '--method', 'md5', 's3cret'])
  t.equal(r.code, 2)
  t.match(r.stderr, '--user')
})

t.test('usage errors exit 2; --version prints the package version', async (t) => {
  const unknown = await pgraid(['frobnicate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, "unknown command 'frobnicate'")
  const noConfig = await pgraid(['check-config'])
  t.equal(noConfig.code, 2)
  t.match(noConfig.stderr, '--config')
  const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }
  const v = await pgraid(['--version'])
  t.equal(v.code, 0)
  t.equal(v.stdout, `${version}\n`)
})
