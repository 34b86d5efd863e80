// contrib/pgraid.service: the settings docs/operations.md relies on (graceful SIGTERM with a stop timeout
// above timeouts.shutdownMs, SIGHUP reload, restart on failure, a dedicated user), and
// `systemd-analyze verify` (Debian package systemd, installed by .ci/run) finds nothing wrong beyond the pgraid binary not being installed here.
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseConfig } from '../../src/config/schema.ts'

const unitPath = join(import.meta.dirname, '../../contrib/pgraid.service')

t.test('the systemd unit stops gracefully, reloads with SIGHUP and runs as its own user', async (t) => {
  const text = await readFile(unitPath, 'utf8')
  const settings = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (m) settings.set(m[1]!, m[2]!)
  }
  const defaults = parseConfig({ backends: [{ name: 'a', host: 'h', user: 'u' }], users: [{ name: 'u', auth: 'trust' }] }, 'x')
  t.ok(Number(settings.get('TimeoutStopSec')) * 1000 > defaults.timeouts.shutdownMs, 'TimeoutStopSec exceeds the default timeouts.shutdownMs')
  t.equal(settings.get('KillSignal'), 'SIGTERM', 'SIGTERM is the graceful stop')
  t.equal(settings.get('ExecReload'), '/bin/kill -HUP $MAINPID', 'reload sends SIGHUP')
  t.equal(settings.get('Restart'), 'on-failure')
  t.match(settings.get('User') ?? '', /^(?!root$)\w+$/, 'a dedicated user, not root')
  t.match(settings.get('ExecStart') ?? '', / start -c \S+/, 'ExecStart runs pgraid start -c <config>')
  t.match(settings.get('ExecStartPre') ?? '', / check-config -c \S+/, 'the config is checked before each start')
  t.match(settings.get('Environment') ?? '', /^NODE_OPTIONS=.*--max-semi-space-size=\d+/, "V8's young generation is capped (the memory figure in docs/benchmarks.md relies on it)")
})

t.test('systemd-analyze verify accepts the unit', async (t) => {
  const out = await new Promise<{ missing: boolean; stderr: string }>((resolve) => {
    execFile('systemd-analyze', ['verify', unitPath], { timeout: 60_000 }, (err, _stdout, stderr) => {
      resolve({ missing: (err as NodeJS.ErrnoException | null)?.code === 'ENOENT', stderr })
    })
  })
  if (out.missing) {
    t.fail('systemd-analyze not found: install the Debian package systemd (.ci/run does)')
    return
  }
  // The pgraid binary path is where docs/operations.md installs it, absent on a test machine.
  const problems = out.stderr.split('\n').filter((l) => l.trim() !== '' && !l.includes('/opt/pgraid/node_modules/.bin/pgraid'))
  t.same(problems, [], 'no complaint other than the uninstalled binary')
})
