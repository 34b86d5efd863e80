// How the console commands find pgraid and log in (src/cli/target.ts, pgpass.ts, runtime.ts), the exit
// code of a dry run, and status --json's typing: without servers (test/cli/cli-console.test.ts runs
// the same against a running pgraid).
import t from 'tap'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { lookupPassword, parseLine, passwordFromFile } from '../../src/cli/pgpass.ts'
import { configPathFor, consoleKeys, resolveTarget } from '../../src/cli/target.ts'
import { findRecord, recordName, writeRecord } from '../../src/cli/runtime.ts'
import { dryRunExit } from '../../src/cli/console-run.ts'
import { typed } from '../../src/cli/status.ts'
import { CLI_LOG_LEVELS } from '../../src/cli/cli.ts'
import { LOG_LEVELS } from '../../src/config/schema.ts'

const scratch = mkdtempSync(path.join(os.tmpdir(), 'pgraid-target-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))

t.test('pgpass lines: fields, escapes, wildcards, comments', async (t) => {
  t.same(parseLine('h:1:db:u:pw'), ['h', '1', 'db', 'u', 'pw'])
  t.same(parseLine('h\\:x:1:db:u:p\\:w\\\\'), ['h:x', '1', 'db', 'u', 'p:w\\'])
  t.same(parseLine('h:1:db:u:pw:rest'), ['h', '1', 'db', 'u', 'pw'], 'an unescaped colon ends the password, as in libpq')
  t.equal(parseLine('# h:1:db:u:pw'), null)
  t.equal(parseLine('h:1:db'), null, 'too few fields')
  const text = ['# pgraid', '10.0.0.1:6432:pgraid:ops:first', '*:6432:pgraid:ops:second', '127.0.0.1:*:*:*:any'].join('\n')
  t.equal(lookupPassword(text, { host: '10.0.0.1', port: 6432, database: 'pgraid', user: 'ops' }), 'first', 'the first matching line wins')
  t.equal(lookupPassword(text, { host: 'db.example', port: 6432, database: 'pgraid', user: 'ops' }), 'second')
  t.equal(lookupPassword(text, { host: '127.0.0.1', port: 7000, database: 'x', user: 'y' }), 'any')
  t.equal(lookupPassword(text, { host: 'db.example', port: 7000, database: 'pgraid', user: 'ops' }), undefined)
})

t.test('a password file others may read is ignored with a warning (as libpq)', async (t) => {
  const file = path.join(scratch, 'pgpass')
  writeFileSync(file, '*:*:pgraid:ops:s3cret\n')
  chmodSync(file, 0o600)
  const want = { host: '127.0.0.1', port: 6432, database: 'pgraid', user: 'ops' }
  t.equal(
    passwordFromFile(want, file, () => t.fail('no warning for 0600')),
    's3cret',
  )
  chmodSync(file, 0o644)
  const warnings: string[] = []
  t.equal(
    passwordFromFile(want, file, (m) => warnings.push(m)),
    undefined,
  )
  t.match(warnings[0], /group or world access/)
  t.equal(
    passwordFromFile(want, path.join(scratch, 'none'), () => t.fail('no warning for a missing file')),
    undefined,
  )
})

t.test('the console keys of a config file, strictly or tolerantly', async (t) => {
  const text = '// c\n{ "listen": { "port": 7001, }, "users": [{ "name": "app" }, { "name": "ops", "password": "pw", "admin": true }], "unknown": 1 }'
  const k = consoleKeys(text, 'f.jsonc', false)
  t.equal(k.port, 7001)
  t.equal(k.host, undefined)
  t.same(
    k.users.map((u) => u.name),
    ['app', 'ops'],
  )
  t.throws(() => consoleKeys('{ "listen": { "port": 7001 ', 'f.jsonc', false), /f.jsonc: not valid JSON: close brace expected at line 1/)
  t.equal(consoleKeys('{ "listen": { "port": 7001 }, "users": [{ "name": "ops", "admin": true }] oops', 'f.jsonc', true).port, 7001, 'tolerant: what it can')
})

t.test('resolveTarget: -h/-p/-U, PGRAID_CONFIG, PGRAID_PASSWORD, the password file', async (t) => {
  const cfg = path.join(scratch, 'a.jsonc')
  writeFileSync(
    cfg,
    JSON.stringify({
      listen: { host: '0.0.0.0', port: 7002 },
      users: [
        { name: 'ops', password: 'SCRAM-SHA-256$4096:x$y:z', admin: true },
        { name: 'plain', password: 'plain-pw', admin: true },
      ],
    }),
  )
  const pgpass = path.join(scratch, 'pgpass2')
  writeFileSync(pgpass, '127.0.0.1:7002:pgraid:ops:from-file\n', { mode: 0o600 })
  chmodSync(pgpass, 0o600)
  const env = { PGRAID_CONFIG: cfg, PGPASSFILE: pgpass, PGRAID_RUNTIME_DIR: path.join(scratch, 'run') }

  const a = resolveTarget({}, false, env)
  t.same([a.host, a.port, a.user, a.password, a.configPath], ['127.0.0.1', 7002, 'ops', 'from-file', cfg], 'PGRAID_CONFIG; 0.0.0.0 asked on 127.0.0.1; a verifier is no password: the file gives it')
  t.equal(resolveTarget({}, false, { ...env, PGRAID_PASSWORD: 'env-pw' }).password, 'env-pw', 'PGRAID_PASSWORD first')
  t.equal(resolveTarget({ user: 'plain' }, false, env).password, 'plain-pw', "the config's plain password")
  const d = resolveTarget({ host: '10.1.1.1', port: '7100', user: 'x' }, false, { PGPASSFILE: pgpass })
  t.same([d.host, d.port, d.user, d.password, d.configPath], ['10.1.1.1', 7100, 'x', undefined, null], '-h/-p/-U need no config file')
  t.throws(() => resolveTarget({ host: 'h', port: 'abc', user: 'x' }, false, {}), /-p\/--port: must be an integer/)
  t.throws(() => resolveTarget({ host: 'h' }, false, {}), /no admin user: name one with -U/)
  t.equal(configPathFor('x.jsonc', true, env), 'x.jsonc', '-c wins over PGRAID_CONFIG')
  t.equal(configPathFor(undefined, false, {}), null, 'no defaults looked at when -h/-p are given')
})

t.test("the running pgraid's record wins over an edited listen.port", async (t) => {
  const cfg = path.join(scratch, 'b.jsonc')
  writeFileSync(cfg, JSON.stringify({ listen: { port: 7003 }, users: [{ name: 'ops', password: 'pw', admin: true }] }))
  const env = { PGRAID_CONFIG: cfg, PGRAID_RUNTIME_DIR: path.join(scratch, 'run2') }
  t.equal(findRecord(cfg, env), null)
  const remove = writeRecord(cfg, '127.0.0.1', 7004, env)
  t.equal(findRecord(cfg, env)?.port, 7004)
  const r = resolveTarget({}, false, env)
  t.equal(r.port, 7004, "the recorded address, not the file's")
  t.match(r.addressFrom, /record/)
  t.equal(resolveTarget({ port: '7005' }, false, env).port, 7005, '-p still wins')
  remove()
  t.equal(findRecord(cfg, env), null, 'removed at stop')
  t.equal(resolveTarget({}, false, env).port, 7003)
  // A record left by a process that is gone (kill -9) is ignored.
  writeFileSync(path.join(scratch, 'run2', recordName(cfg)), JSON.stringify({ pid: 2 ** 22 + 12345, host: '127.0.0.1', port: 7009, config: cfg, started: '' }))
  t.equal(resolveTarget({}, false, env).port, 7003, "a dead process's record is ignored")
})

t.test('a dry run that would be refused exits 1, as the command would', async (t) => {
  t.equal(dryRunExit([{ name: 'pg2', dry_run: 'would refuse: pg2 is inconsistent: clone it' }]), 1)
  t.equal(dryRunExit([{ name: 'pg2', dry_run: 'has every record: would enable it' }]), 0)
  t.equal(dryRunExit([{ name: 'pg2', dry_run: 'would enable it by force although it is behind' }]), 0)
})

t.test('status --json: numbers, booleans and nulls typed', async (t) => {
  t.same(typed({ name: 'pg1', port: '5432', weight: '1.5', reads_in_flight: '0', cause: null, commits_held: 'false', max_lsn: null, since: '2026-01-01T00:00:00.000Z' }), {
    name: 'pg1',
    port: 5432,
    weight: 1.5,
    reads_in_flight: 0,
    cause: null,
    commits_held: false,
    max_lsn: null,
    since: '2026-01-01T00:00:00.000Z',
  })
  t.same(typed({ commits_held: 'true', term: '3' }), { commits_held: true, term: 3 })
})

t.test("the CLI's log levels are the config's", async (t) => {
  t.same([...CLI_LOG_LEVELS], [...LOG_LEVELS])
})
