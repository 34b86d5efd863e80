// hba rules: parsing (every mistake says what to fix) and first-match semantics.
import t from 'tap'
import { matchHba, parseHbaRule } from '../../src/auth/hba.ts'
import { parseConfig } from '../../src/config/schema.ts'

const rules = ['hostssl all certuser all cert', 'host all blocked all reject', 'hostnossl sales,sameuser bob 10.0.0.0/8 md5', 'host all all 127.0.0.1 scram-sha-256', 'host all all ::1/128 trust'].map(
  parseHbaRule,
)

const conn = (over: Partial<{ user: string; database: string; address: string; tls: boolean }>) => ({ user: 'app', database: 'postgres', address: '127.0.0.1', tls: false, ...over })

t.test('first matching rule wins', async (t) => {
  t.equal(matchHba(rules, conn({ user: 'certuser', tls: true }))?.method, 'cert')
  t.equal(matchHba(rules, conn({ user: 'certuser', tls: false }))?.method, 'scram-sha-256', 'hostssl skipped without TLS')
  t.equal(matchHba(rules, conn({ user: 'blocked' }))?.method, 'reject')
  t.equal(matchHba(rules, conn({ user: 'bob', database: 'sales', address: '10.1.2.3' }))?.method, 'md5')
  t.equal(matchHba(rules, conn({ user: 'bob', database: 'bob', address: '10.1.2.3' }))?.method, 'md5', 'sameuser')
  t.equal(matchHba(rules, conn({ user: 'bob', database: 'other', address: '10.1.2.3' })), null, 'no rule: refused')
  t.equal(matchHba(rules, conn({ user: 'bob', database: 'sales', address: '10.1.2.3', tls: true })), null, 'hostnossl skipped with TLS')
  t.equal(matchHba(rules, conn({ address: '::ffff:127.0.0.1' }))?.method, 'scram-sha-256', 'IPv4-mapped IPv6 address')
  t.equal(matchHba(rules, conn({ address: '::1' }))?.method, 'trust')
  t.equal(matchHba(rules, conn({ address: '127.0.0.2' })), null, 'a bare address is a /32')
})

t.test('mistakes name what to fix', async (t) => {
  const bad: [string, RegExp][] = [
    ['host all all', /at least 5 fields/],
    ['local all all all trust', /connection type "local"/],
    ['host all all all password', /method "password"/],
    ['host all all 10.0.0.0/33 md5', /prefix length must be 0-32/],
    ['host all all 10.0.0/8 md5', /not "all" or an IP address/],
    ['host all all all cert', /cert needs a hostssl rule/],
    ['hostssl all all all md5 clientcert=1', /option "clientcert=1"/],
  ]
  for (const [line, re] of bad) t.throws(() => parseHbaRule(line), re, line)
  let message = ''
  try {
    parseConfig({ backends: [{ name: 'a', host: 'h', user: 'u' }], users: [{ name: 'u', auth: 'trust' }], hba: ['host all all 300.1.1.1 md5', 'hostssl all all all cert'] }, 'x.json')
  } catch (e) {
    message = (e as Error).message
  }
  t.match(message, /hba\[0\]: address "300\.1\.1\.1"/, 'config validation names the rule')
  t.match(message, /need listen\.tls\.ca/, 'cert rules need the client CA')
})
