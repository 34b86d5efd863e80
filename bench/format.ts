// Number and table formatting for the report (bench/report.ts, bench/report-sections.ts).

export const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a')
export const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')
export const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')
export const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`

/** Microseconds: two decimals below 10, one below 100, none above. */
export const fus = (x: number) => (!Number.isFinite(x) ? 'n/a' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0))

export function table(head: string[], rows: string[][], align?: ('l' | 'r')[]): string {
  const sep = head.map((_, i) => ((align?.[i] ?? 'r') === 'l' ? '---' : '---:'))
  return [head, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n')
}
