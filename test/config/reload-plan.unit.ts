// The reload rules (src/config/reload-plan.ts), without servers: what applies
// live, what is refused and why (naming the key), and the write-quorum rule.
import t, { type Test } from 'tap'
import { parseConfig, type Config } from '../../src/config/schema.ts'
import { planReload, ReloadRefused, type LiveBackends } from '../../src/config/reload-plan.ts'
import { BackendStates, type BackendStateName } from '../../src/cluster/states.ts'

const base = {
  listen: { host: '127.0.0.1', port: 6432 },
  backends: [
    { name: 'pg1', host: '127.0.0.1', port: 5001, user: 'postgres', password: 'a' },
    { name: 'pg2', host: '127.0.0.1', port: 5002, user: 'postgres', password: 'a' },
    { name: 'pg3', host: '127.0.0.1', port: 5003, user: 'postgres', password: 'a' },
  ],
  users: [
    { name: 'app', password: 'app-secret' },
    { name: 'ops', password: 'ops', admin: true },
  ],
}
type Raw = typeof base & Record<string, unknown>

function cfg(edit: (raw: Raw) => void = () => {}): Config {
  const raw = structuredClone(base) as Raw
  edit(raw)
  return parseConfig(raw, 'test.json')
}

/** The running side: the backends of `cur`, with states. */
function live(cur: Config, states: Partial<Record<string, BackendStateName>> = {}): LiveBackends {
  const st = new BackendStates(cur.backends.map((b) => b.name))
  for (const b of st.list) if (states[b.name]) st.restore(b.index, states[b.name]!, 'test')
  return {
    targets: cur.backends.map((b) => ({ name: b.name, host: b.host, port: b.port, user: b.user, password: b.password, database: b.database })),
    states: st.list,
    weights: cur.backends.map((b) => b.weight),
    writeQuorum: cur.writeQuorum,
  }
}

function refused(t: Test, fn: () => unknown, key: RegExp, what: string): void {
  try {
    fn()
    t.fail(`${what}: not refused`)
  } catch (e) {
    t.ok(e instanceof ReloadRefused, `${what}: ReloadRefused`)
    const problems = (e as ReloadRefused).problems
    t.ok(
      problems.some((p) => key.test(p)),
      `${what}: a problem names the key (${problems.join(' | ')})`,
    )
  }
}

t.test('live changes: users, timeouts, weights, log level, determinism, an added backend', async (t) => {
  const cur = cfg()
  const next = cfg((r) => {
    r.users.push({ name: 'app2', password: 'x' })
    r.users[0]!.password = 'changed'
    r.timeouts = { connectMs: 5000 }
    r.log = { level: 'debug' }
    r.determinism = { allowFunctions: ['random'] }
    ;(r.backends[1] as { weight?: number }).weight = 3
    r.backends[2]!.password = 'rotated'
    r.backends.push({ name: 'pg4', host: '127.0.0.1', port: 5004, user: 'postgres', password: 'a' })
  })
  const p = planReload(cur, next, live(cur), 'test.json')
  t.same(
    p.added.map((b) => b.name),
    ['pg4'],
    'pg4 added',
  )
  t.same(p.removed, [], 'nothing removed')
  t.same([...p.weights], [[1, 3]], 'pg2 weight by index')
  t.same([...p.passwords], [[2, 'rotated']], 'pg3 password by index')
  t.equal(p.writeQuorum, 3, 'majority of 4 configured backends')
  for (const c of ['users: app2 added', 'users[app].password: changed', 'timeouts.connectMs: 10000 -> 5000', 'log.level: "info" -> "debug"', 'backends[pg2].weight: 1 -> 3', 'writeQuorum: 2 -> 3'])
    t.ok(p.changes.includes(c), `change listed: ${c}`)
  t.ok(
    p.changes.some((c) => /pg4 added.*clone/.test(c)),
    'the added backend is to be cloned',
  )
  t.notOk(p.changes.join('\n').includes('rotated') || p.changes.join('\n').includes('changed"'), 'no password in the change list')
})

t.test('the same file again changes nothing, whatever the order of users and backends', async (t) => {
  const cur = cfg()
  const next = cfg((r) => {
    r.users.reverse()
    r.backends.reverse()
  })
  t.same(planReload(cur, next, live(cur), 'test.json').changes, [])
})

t.test('refused: listen, recovery.log, a moved backend, a reused name', async (t) => {
  const cur = cfg()
  refused(
    t,
    () =>
      planReload(
        cur,
        cfg((r) => (r.listen.port = 6433)),
        live(cur),
        'f',
      ),
    /^listen\.port: 6432 -> 6433: cannot change while pgraid runs/,
    'listen.port',
  )
  refused(
    t,
    () =>
      planReload(
        cur,
        cfg((r) => (r.recovery = { log: false })),
        live(cur),
        'f',
      ),
    /^recovery\.log/,
    'recovery.log',
  )
  refused(
    t,
    () =>
      planReload(
        cur,
        cfg((r) => (r.backends[1]!.port = 5009)),
        live(cur),
        'f',
      ),
    /^backends\[1\]\.port \(pg2\): 5002 -> 5009/,
    'a backend moved under the same name',
  )
  // A name removed earlier in this process is not reused.
  const l = live(cur, { pg3: 'removed' })
  refused(t, () => planReload(cur, cfg(), l, 'f'), /backends\[2\] \(pg3\): a backend of that name was removed/, 'a removed name re-added')
  // Every problem at once.
  try {
    planReload(
      cur,
      cfg((r) => ((r.listen.port = 1), (r.backends[0]!.host = 'x'))),
      live(cur),
      'f',
    )
  } catch (e) {
    t.equal((e as ReloadRefused).problems.length, 2, 'both problems reported')
  }
})

t.test('metrics apply live: turned on, moved, turned off (the server reopens the endpoint)', async (t) => {
  const cur = cfg()
  const on = cfg((r) => (r.metrics = { port: 9187 }))
  t.same(planReload(cur, on, live(cur), 'f').changes, ['metrics.port: null -> 9187'], 'turned on')
  t.same(
    planReload(
      on,
      cfg((r) => (r.metrics = { port: 9188, host: '0.0.0.0' })),
      live(on),
      'f',
    ).changes,
    ['metrics.host: "127.0.0.1" -> "0.0.0.0"', 'metrics.port: 9187 -> 9188'],
    'moved',
  )
  t.same(planReload(on, cur, live(on), 'f').changes, ['metrics.port: 9187 -> null'], 'turned off')
  // With another change that needs a restart, nothing applies, metrics included.
  refused(
    t,
    () =>
      planReload(
        cur,
        cfg((r) => ((r.metrics = { port: 9187 }), (r.listen.port = 6433))),
        live(cur),
        'f',
      ),
    /^listen\.port/,
    'listen.port with metrics',
  )
})

t.test('a key reload does not know needs a restart', async (t) => {
  const cur = cfg()
  const next = { ...cfg(), tls: { mode: 'require' } } as unknown as Config
  refused(t, () => planReload(cur, next, live(cur), 'f'), /^tls\.mode: none -> "require": cannot change while pgraid runs \(pgraid reads it only at start\)/, 'an unknown section')
})

t.test('removing backends and the write quorum', async (t) => {
  const cur = cfg()
  const two = cfg((r) => r.backends.splice(2, 1))
  const p = planReload(cur, two, live(cur), 'f')
  t.same(p.removed, [2], 'pg3 removed (index 2)')
  t.equal(p.writeQuorum, 2, 'majority of 2 is 2')
  // pg2 is down: removing pg3 would leave pg1 alone against a quorum of 2.
  refused(t, () => planReload(cur, two, live(cur, { pg2: 'disabled' }), 'f'), /^writeQuorum: the reload would leave 1 backend\(s\) in service/, 'below quorum')
  // ... unless the quorum is set explicitly.
  const explicit = cfg((r) => (r.backends.splice(2, 1), (r.writeQuorum = 1)))
  t.same(planReload(cur, explicit, live(cur, { pg2: 'disabled' }), 'f').removed, [2], 'allowed with writeQuorum 1')
  // Adding two new backends (not in service until cloned) raises the majority beyond the three in service.
  const five = cfg((r) => r.backends.push({ name: 'pg4', host: 'h', port: 1, user: 'u', password: 'p' }, { name: 'pg5', host: 'h', port: 2, user: 'u', password: 'p' }))
  t.equal(planReload(cur, five, live(cur), 'f').writeQuorum, 3, 'five configured, three in service: quorum 3 holds')
  const six = cfg((r) => r.backends.push(...[4, 5, 6].map((n) => ({ name: `pg${n}`, host: 'h', port: n, user: 'u', password: 'p' }))))
  refused(t, () => planReload(cur, six, live(cur), 'f'), /^writeQuorum: .*quorum of 4/, 'six configured, three in service')
  // Already short of the quorum: a reload that does not make it worse is applied (e.g. a timeout).
  t.ok(
    planReload(
      cur,
      cfg((r) => (r.timeouts = { stallMs: 1000 })),
      live(cur, { pg2: 'disabled', pg3: 'disabled' }),
      'f',
    ),
    'not worse: applied',
  )
  // Never the last one in service.
  const onlyPg2 = cfg((r) => r.backends.splice(0, 1))
  refused(t, () => planReload(cur, onlyPg2, live(cur, { pg2: 'disabled', pg3: 'new' }), 'f'), /every backend in service \(pg1\)/, 'the last in service')
})

t.test('a backend busy with a clone or resync cannot be removed', async (t) => {
  const cur = cfg()
  const l = live(cur)
  ;(l.states[2] as { activity: string | null }).activity = 'cloning from pg1'
  refused(
    t,
    () =>
      planReload(
        cur,
        cfg((r) => r.backends.splice(2, 1)),
        l,
        'f',
      ),
    /pg3 removed while busy \(cloning from pg1\)/,
    'busy backend',
  )
})

t.test('TLS, hba and authQuery apply live (listen.tls files are read again by the server at reload)', async (t) => {
  const cur = cfg()
  const next = cfg((r) => {
    r.listen = { ...r.listen, tls: { minVersion: 'TLSv1.3' } } as typeof r.listen
    r.hba = ['host all all 0.0.0.0/0 scram-sha-256']
    r.authQuery = { enabled: true }
    ;(r.backends[0] as Record<string, unknown>).tls = { mode: 'require' }
  })
  const p = planReload(cur, next, live(cur), 'f')
  t.ok(p.changes.includes('listen.tls.minVersion: "TLSv1.2" -> "TLSv1.3"'), 'listen.tls is live')
  t.ok(
    p.changes.some((c) => c.startsWith('hba: [] -> ')),
    'hba is live',
  )
  t.ok(p.changes.includes('authQuery.enabled: false -> true'), 'authQuery is live')
  t.ok(
    p.changes.some((c) => /^backends\[pg1\]\.tls: .*"require"/.test(c)),
    'a backend tls change is listed',
  )
  refused(
    t,
    () =>
      planReload(
        cur,
        cfg((r) => (r.listen.host = '0.0.0.0')),
        live(cur),
        'f',
      ),
    /^listen\.host: "127\.0\.0\.1" -> "0\.0\.0\.0": cannot change/,
    'listen.host still needs a restart',
  )
})
