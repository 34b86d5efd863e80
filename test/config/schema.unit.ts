// Config validation: defaults for a minimal file, one precise message per kind of mistake, all
// problems reported together, file loading (JSONC). docs/configuration.md: config-docs.unit.ts.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, configObjectSchema, loadConfig, parseConfig, storedPasswordKind } from '../../src/config/schema.ts'
import { makeScramVerifier } from '../../src/auth/scram.ts'
import { md5PasswordHash } from '../../src/auth/md5.ts'

const backend = (name: string, port: number) => ({ name, host: '127.0.0.1', port, user: 'postgres' })
const minimal = () => ({
  backends: [backend('pg1', 5432), backend('pg2', 5433), backend('pg3', 5434)],
  users: [{ name: 'app', auth: 'trust' }],
})

/** The problem lines of the ConfigError that parsing `raw` must throw. */
function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(raw, 'test.json')
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('ConfigError names the file and lists every problem, one per line', async (t) => {
  const err = t.throws(() => parseConfig({ listne: 1 }, 'conf/pgraid.json')) as ConfigError
  t.type(err, ConfigError)
  t.equal(err.source, 'conf/pgraid.json')
  t.equal(err.problems.length, 3, 'unknown key, missing backends, missing users')
  t.equal(err.message, `invalid configuration in conf/pgraid.json (3 problems):\n${err.problems.map((p) => `  ${p}`).join('\n')}`)
})

t.test('a minimal config gets every default', async (t) => {
  const c = parseConfig(minimal(), 'test.json')
  t.same(c.listen, { host: '127.0.0.1', port: 6432, tls: { mode: 'allow', cert: null, key: null, ca: null, minVersion: 'TLSv1.2' } })
  t.same(c.hba, [], 'no hba rules: users[].auth from anywhere')
  t.same(c.authQuery.enabled, false)
  t.equal(c.writeQuorum, 2, 'majority of 3 backends')
  t.same(c.backends[0], { name: 'pg1', host: '127.0.0.1', port: 5432, database: null, user: 'postgres', weight: 1, tls: { mode: 'disable', ca: null, cert: null, key: null } })
  t.same(c.users[0], { name: 'app', auth: 'trust', admin: false })
  t.same(c.timeouts, { connectMs: 10000, authMs: 60000, stallMs: 60000, clientIdleInTransactionMs: 0, clientIdleMs: 0, shutdownMs: 10000 })
  t.same(c.limits, { maxMessageBytes: 1073741824, maxClients: 1000 })
  t.same(c.log, { level: 'info', slowMs: 0 })
  t.same(c.ha, { retryMs: 250, heartbeatMs: 500, heartbeatTimeoutMs: 2000, sessionTimeoutMs: 6000 })
  t.equal(parseConfig({ ...minimal(), backends: [backend('a', 1)] }, 'x').writeQuorum, 1, 'majority of 1')
  t.equal(parseConfig({ ...minimal(), backends: [backend('a', 1), backend('b', 2)] }, 'x').writeQuorum, 2)
  t.equal(parseConfig({ ...minimal(), writeQuorum: 3 }, 'x').writeQuorum, 3, 'explicit value kept')
  t.equal(parseConfig({ ...minimal(), listen: { port: 0 } }, 'x').listen.port, 0, 'port 0 = any free port')
  t.equal(parseConfig({ ...minimal(), users: [{ name: 'u', password: 'pw' }] }, 'x').users[0]!.auth, 'scram-sha-256')
})

t.test('the example fixture is valid', async (t) => {
  const c = await loadConfig(join(import.meta.dirname, '../../fixtures/pgraid.example.json'))
  t.equal(c.backends.length, 3)
  t.equal(c.users.length, 3)
})

t.test('each kind of mistake names its key path', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['missing backends', { users: minimal().users }, /^backends: missing; must be a list of backend objects/],
    ['empty backends', { ...minimal(), backends: [] }, /^backends: must list at least one backend.*got an empty list$/],
    ['no users', { backends: minimal().backends, users: [] }, /^users: must list at least one user/],
    ['duplicate backend name', { ...minimal(), backends: [backend('pg1', 1), backend('pg1', 2)] }, /^backends\[1\]\.name: duplicate backend name "pg1" \(also backends\[0\]\.name\)/],
    [
      'duplicate backend address',
      { ...minimal(), backends: [backend('a', 5432), { ...backend('b', 5432), port: undefined }] },
      /^backends\[1\]: same host and port as backends\[0\] \(127\.0\.0\.1:5432\)/,
    ],
    [
      'duplicate user name',
      {
        ...minimal(),
        users: [
          { name: 'u', auth: 'trust' },
          { name: 'u', auth: 'trust' },
        ],
      },
      /^users\[1\]\.name: duplicate user name "u"/,
    ],
    ['bad port type', { ...minimal(), backends: [backend('a', 1), { ...backend('b', 2), port: 'abc' }] }, /^backends\[1\]\.port: must be an integer 1-65535, got "abc"$/],
    ['port out of range', { ...minimal(), listen: { port: 70000 } }, /^listen\.port: must be an integer 0-65535.*got 70000$/],
    ['bad backend name', { ...minimal(), backends: [{ ...backend('pg 1', 1) }] }, /^backends\[0\]\.name: must be non-empty and use only letters, digits.*got "pg 1"$/],
    ['negative weight', { ...minimal(), backends: [{ ...backend('a', 1), weight: -1 }] }, /^backends\[0\]\.weight: must be a number >= 0/],
    ['no backend can read', { ...minimal(), backends: [{ ...backend('a', 1), weight: 0 }] }, /^backends: every backend has weight 0/],
    ['unknown top-level key', { ...minimal(), listne: { port: 1 } }, /^listne: unknown key \(did you mean "listen"\?\); allowed here: listen, backends, users/],
    ['unknown nested key', { ...minimal(), backends: [{ ...backend('a', 1), hots: 'x' }] }, /^backends\[0\]\.hots: unknown key \(did you mean "host"\?\)/],
    [
      'md5 user with a SCRAM verifier',
      { ...minimal(), users: [{ name: 'app', auth: 'md5', password: makeScramVerifier('pw') }] },
      /^users\[0\]\.password: auth "md5" cannot use a SCRAM-SHA-256 verifier \(md5 needs the plain password or an md5 hash\)/,
    ],
    ['scram user with an md5 hash', { ...minimal(), users: [{ name: 'app', password: md5PasswordHash('app', 'pw') }] }, /^users\[0\]\.password: auth "scram-sha-256" cannot use an md5 hash/],
    ['malformed SCRAM verifier', { ...minimal(), users: [{ name: 'app', password: 'SCRAM-SHA-256$4096:abc' }] }, /^users\[0\]\.password: looks like a SCRAM-SHA-256 verifier but is malformed/],
    ['password missing', { ...minimal(), users: [{ name: 'app', auth: 'md5' }] }, /^users\[0\]\.password: required for auth "md5"/],
    ['bad auth', { ...minimal(), users: [{ name: 'app', auth: 'plain' }] }, /^users\[0\]\.auth: must be one of "scram-sha-256", "md5", "trust", got "plain"$/],
    ['writeQuorum above backend count', { ...minimal(), writeQuorum: 4 }, /^writeQuorum: must be an integer 1-3 \(at most the number of backends; omit it for a majority, 2\), got 4$/],
    ['writeQuorum zero', { ...minimal(), writeQuorum: 0 }, /^writeQuorum: must be an integer from 1 to the number of backends, got 0$/],
    ['fractional timeout', { ...minimal(), timeouts: { stallMs: 1.5 } }, /^timeouts\.stallMs: must be an integer number of milliseconds/],
    ['timeout beyond timer range', { ...minimal(), timeouts: { connectMs: 2 ** 31 } }, /^timeouts\.connectMs: .*got 2147483648$/],
    ['tiny message limit', { ...minimal(), limits: { maxMessageBytes: 5 } }, /^limits\.maxMessageBytes: must be an integer 1024-1073741824, got 5$/],
    ['bad log level', { ...minimal(), log: { level: 'verbose' } }, /^log\.level: must be one of "fatal".*got "verbose"$/],
    ['not an object', [1, 2], /^\(top level\): must be a JSON object with at least "backends" and "users"/],
  ]
  for (const [name, raw, expected] of cases) {
    const problems = problemsOf(raw)
    t.equal(problems.length, 1, `${name}: exactly one problem`, { problems })
    t.match(problems[0] ?? '', expected, name)
  }
})

t.test('passwords are never echoed in messages', async (t) => {
  const problems = problemsOf({ ...minimal(), backends: [{ ...backend('a', 1), password: 12345 }] })
  t.match(problems[0], /^backends\[0\]\.password: .*got a number$/)
  t.notMatch(problems.join('\n'), /12345/)
})

t.test('several problems are reported together', async (t) => {
  const problems = problemsOf({
    listne: {},
    backends: [backend('pg1', 5432), { ...backend('pg1', 5433), port: 'abc' }],
    users: [{ name: 'app', auth: 'md5', password: makeScramVerifier('pw') }],
    writeQuorum: 4,
    timeouts: { stallMs: 1.5 }, // a zod check that aborts refinements: cross-field rules must still run
  })
  t.equal(problems.length, 6, 'one line per problem', { problems })
  for (const key of ['listne: ', 'backends[1].port: ', 'backends[1].name: ', 'users[0].password: ', 'writeQuorum: ', 'timeouts.stallMs: ']) {
    t.ok(
      problems.some((p) => p.startsWith(key)),
      `reports ${key}`,
    )
  }
})

t.test('loadConfig names the file and reports unreadable or malformed files', async (t) => {
  const dir = t.testdir()
  const bad = join(dir, 'bad.json')
  await writeFile(bad, JSON.stringify({ ...minimal(), writeQuorum: 9 }))
  await t.rejects(loadConfig(bad), { name: 'ConfigError', source: bad, message: new RegExp(`in ${bad} .*\\n  writeQuorum: `) })
  const syntax = join(dir, 'syntax.json')
  await writeFile(syntax, '{ "backends": ')
  await t.rejects(loadConfig(syntax), { name: 'ConfigError', message: /\(top level\): not valid JSON: value expected at line 1, column 15/ })
  // Comments and trailing commas are allowed (JSONC); errors after a comment still name line and column.
  const jsonc = join(dir, 'commented.jsonc')
  await writeFile(jsonc, `// pgraid\n${JSON.stringify(minimal(), null, 2).replace('"backends"', '/* three */ "backends"')}`.replace(/\n}$/, ',\n}'))
  t.equal((await loadConfig(jsonc)).backends.length, 3, 'comments and a trailing comma are accepted')
  const broken = join(dir, 'broken.jsonc')
  await writeFile(broken, '{\n  // the listener\n  "listen": { "port": 6432 }\n  "backends": []\n}')
  await t.rejects(loadConfig(broken), { message: /not valid JSON: comma expected at line 4, column 3/ })
  await t.rejects(loadConfig(join(dir, 'missing.json')), { name: 'ConfigError', message: /\(file\): cannot read it \(ENOENT\)/ })
})

t.test('stored password classification', async (t) => {
  t.equal(storedPasswordKind(makeScramVerifier('pw')), 'scram-sha-256')
  t.equal(storedPasswordKind(md5PasswordHash('u', 'pw')), 'md5')
  t.equal(storedPasswordKind('hunter2'), 'plain')
  t.equal(storedPasswordKind('md5' + 'A'.repeat(32)), 'plain', 'uppercase hex is not a hash, as in PostgreSQL')
})
