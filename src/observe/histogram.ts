// A histogram the data path can feed for a few nanoseconds: counts in a typed
// array per label value, read by prom-client's registry only when scraped.
// prom-client's own Histogram hashes its labels on every observe() (a child
// from labels() too), which showed up at about 3% of pgraid's CPU per read.

/** One series of the histogram (a label value): observe() is all the data path calls. */
export class HistogramSeries {
  /** counts[i]: observations <= bounds[i] and > bounds[i - 1]; the last slot is +Inf. */
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe(v: number): void {
    const b = this.bounds
    let i = 0
    while (i < b.length && v > b[i]!) i++
    this.counts[i]!++
    this.sum += v
    this.count++
  }
}

interface Sample {
  metricName: string
  labels: Record<string, string | number>
  value: number
}

/**
 * A labelled histogram, registered with prom-client as a custom metric: the registry only calls get()
 * and formats what it returns (see metrics.ts, asMetric).
 */
export class FastHistogram<L extends string> {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly series = new Map<string, HistogramSeries>()

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly label: string,
    private readonly bounds: readonly number[],
  ) {}

  /** The series for one label value (look it up once, keep it). */
  labels(value: L): HistogramSeries {
    let s = this.series.get(value)
    if (!s) this.series.set(value, (s = new HistogramSeries(this.bounds)))
    return s
  }

  /** What the registry formats: cumulative buckets, sum and count per label value. */
  get(): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Sample[] } {
    const values: Sample[] = []
    for (const [value, s] of this.series) {
      let acc = 0
      this.bounds.forEach((le, i) => {
        acc += s.counts[i]!
        values.push({ metricName: `${this.name}_bucket`, labels: { le, [this.label]: value }, value: acc })
      })
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', [this.label]: value }, value: s.count })
      values.push({ metricName: `${this.name}_sum`, labels: { [this.label]: value }, value: s.sum })
      values.push({ metricName: `${this.name}_count`, labels: { [this.label]: value }, value: s.count })
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values }
  }
}
