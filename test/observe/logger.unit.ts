// Logger: JSON lines with readable level names, level filtering, session bindings on child loggers,
// and passwords redacted wherever they sit in a logged config-like object.
import t from 'tap'
import { createLogger, sessionLogger } from '../../src/observe/logger.ts'

function capture() {
  const lines: Array<Record<string, unknown>> = []
  return { lines, stream: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } }
}

t.test('writes JSON lines at or above the level, with level names', async (t) => {
  const { lines, stream } = capture()
  const log = createLogger('info', stream)
  log.debug('hidden')
  log.warn({ backend: 'pg1' }, 'slow')
  t.equal(lines.length, 1)
  t.match(lines[0], { level: 'warn', name: 'pgraid', backend: 'pg1', msg: 'slow' })
  t.type(lines[0]!.time, 'string')
})

t.test('session loggers carry session, user, database and client', async (t) => {
  const { lines, stream } = capture()
  const s = sessionLogger(createLogger('debug', stream), { session: 7, user: 'app', database: 'db', client: '10.0.0.1:5555' })
  s.debug('query')
  t.match(lines[0], { session: 7, user: 'app', database: 'db', client: '10.0.0.1:5555', msg: 'query' })
})

t.test('passwords are redacted', async (t) => {
  const { lines, stream } = capture()
  createLogger('info', stream).info({ password: 'a', backend: { password: 'b' }, backends: [{ password: 'c' }], config: { users: [{ password: 'd' }] } }, 'cfg')
  const text = JSON.stringify(lines[0])
  for (const secret of ['"a"', '"b"', '"c"', '"d"']) t.notMatch(text, secret)
  t.match(text, '[redacted]')
})
