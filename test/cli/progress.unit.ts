// The CLI's progress line and the write-rate meter, with injected clocks.
import t from 'tap'
import { progressLine, progressOf, ProgressPrinter } from '../../src/cli/progress.ts'
import { RateMeter } from '../../src/observe/rate.ts'

t.test('progress line: bar, percentage, rate and ETA', async (t) => {
  t.equal(progressLine({ done: 50, total: 100, unit: 'rows' }, 10, 10), '[#####-----]  50%  50/100 rows  10/s  ETA 5s')
  t.equal(progressLine({ done: 100, total: 100, unit: 'rows' }, 0, 4), '[####] 100%  100/100 rows  0.0/s  ETA 0s')
  t.match(progressLine({ done: 1, total: 10_000, unit: 'records' }, 2, 4), /ETA 1h23m$/)
  t.equal(progressOf('{"progress":{"done":1,"total":2,"unit":"x"}}')?.total, 2)
  t.equal(progressOf('not json'), null)
  t.equal(progressOf(undefined), null)
})

t.test('printer: plain lines at most once a second when not a terminal, rate per step', async (t) => {
  let now = 0
  const lines: string[] = []
  const out = { isTTY: false, columns: 80, write: (s: string) => lines.push(s) } as unknown as NodeJS.WriteStream
  const p = new ProgressPrinter(out, () => now)
  const detail = (done: number) => JSON.stringify({ progress: { done, total: 100, unit: 'rows', step: 'copy' } })
  p.notice('copying a', detail(0))
  now = 500
  p.notice('copying a', detail(10)) // within the second: not printed
  now = 1000
  p.notice('copying b', detail(20)) // same step: rate 20 rows in 1 s
  now = 1200
  p.notice('done', undefined)
  t.equal(lines.length, 3)
  t.match(lines[1]!, /copying b .* 20\/100 rows  20\/s  ETA 4s/)
  t.equal(lines[2], 'done\n')
})

t.test('rate meter: per second over whole past seconds, old seconds cleared', async (t) => {
  let now = 1_000_000
  const m = new RateMeter(60, () => now)
  m.mark(5)
  now += 1000
  m.mark(15)
  now += 1000
  t.equal(m.perSecond(2), 10, '20 events in the last 2 whole seconds')
  t.equal(m.total, 20)
  now += 120_000 // two minutes without events
  t.equal(m.perSecond(10), 0, 'nothing recent')
  m.mark(3)
  now += 1000
  t.equal(m.perSecond(1), 3)
})
