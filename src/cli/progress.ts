// Progress of a long admin command (resync, clone, verify) on the terminal:
// pgraid sends NOTICEs whose DETAIL carries {"progress": {done, total, unit}};
// on a terminal they become one redrawn line with a bar, rate and ETA, in a
// pipe or log file plain lines (at most one a second, so logs stay short).

export interface Progress {
  done: number
  total: number
  unit: string
  /** Names the step the rate is measured over when the message text changes within it (clone names its tables). */
  step?: string
}

export function progressOf(detail: string | undefined): Progress | null {
  if (!detail?.startsWith('{')) return null
  try {
    const p = (JSON.parse(detail) as { progress?: Progress }).progress
    return p && Number.isFinite(p.done) && Number.isFinite(p.total) ? p : null
  } catch {
    return null
  }
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?'
  if (s < 60) return `${Math.ceil(s)}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** "[#####-----]  50%  500/1000 records  120/s  ETA 4s" */
export function progressLine(p: Progress, rate: number, width = 24): string {
  const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 0
  const filled = Math.round(frac * width)
  const eta = rate > 0 ? (p.total - p.done) / rate : Infinity
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}%  ${p.done}/${p.total} ${p.unit}  ${rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)}/s  ETA ${p.done >= p.total ? '0s' : duration(eta)}`
}

export class ProgressPrinter {
  private first = new Map<string, { at: number; done: number }>()
  private lastPlain = -Infinity
  private drawn = false

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly now: () => number = Date.now,
  ) {}

  notice(message: string, detail: string | undefined): void {
    const p = progressOf(detail)
    if (!p) {
      this.clear()
      this.out.write(`${message}\n`)
      return
    }
    // The rate is measured from the first report of this step on (a step that starts over starts afresh).
    const t = this.now()
    const key = `${p.step ?? message}\0${p.unit}`
    let start = this.first.get(key)
    if (!start || p.done < start.done) this.first.set(key, (start = { at: t, done: p.done }))
    const rate = (p.done - start.done) / Math.max(0.001, (t - start.at) / 1000)
    const line = `${message}  ${progressLine(p, rate)}`
    if (this.out.isTTY) {
      this.out.write(`\r\x1b[K${line.slice(0, (this.out.columns || 120) - 1)}`)
      this.drawn = true
    } else if (t - this.lastPlain >= 1000 || p.done >= p.total) {
      this.lastPlain = t
      this.out.write(`${line}\n`)
    }
  }

  /** Ends a redrawn line before other output. */
  clear(): void {
    if (this.drawn) this.out.write('\n')
    this.drawn = false
  }
}
