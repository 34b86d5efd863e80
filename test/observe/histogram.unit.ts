// FastHistogram (src/observe/histogram.ts) must scrape exactly as prom-client's own Histogram does for
// the same observations: same bucket, sum and count lines (label order aside).

import t from 'tap'
import client from 'prom-client'
import { FastHistogram } from '../../src/observe/histogram.ts'

const BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const OBSERVED: [string, number][] = [
  ['read', 0.0001],
  ['read', 0.0005], // on a bound: counted in that bucket (le is inclusive)
  ['read', 0.0007],
  ['write', 0.003],
  ['read', 12], // beyond the last bound: +Inf only
  ['commit', 0.01],
  ['commit', 0.0099],
  ['write', 0],
]

/** The exposition lines, each line's labels sorted so the two label orders compare. */
function normalised(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.replace(/\{([^}]*)\}/, (_, inner: string) => `{${inner.split(',').sort().join(',')}}`))
    .sort()
}

t.test('scrapes like prom-client Histogram', async (t) => {
  const ours = new FastHistogram<'read' | 'write' | 'commit'>('h_seconds', 'help', 'kind', BOUNDS)
  const theirs = new client.Histogram({ name: 'h_seconds', help: 'help', labelNames: ['kind'], buckets: BOUNDS, registers: [] })
  for (const [k, v] of OBSERVED) {
    ours.labels(k as 'read').observe(v)
    theirs.labels(k).observe(v)
  }
  const r1 = new client.Registry()
  r1.registerMetric(ours as unknown as client.Metric)
  const r2 = new client.Registry()
  r2.registerMetric(theirs)
  const a = normalised(await r1.metrics())
  const b = normalised(await r2.metrics())
  t.equal(a.length, 3 * (BOUNDS.length + 3), 'three series of buckets, +Inf, sum and count')
  t.same(a, b, 'the same lines as prom-client')
  t.match(await r1.metrics(), /# TYPE h_seconds histogram/)
})
