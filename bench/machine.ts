// What the benchmark ran on.
import { readFileSync } from 'node:fs'
import os from 'node:os'

export interface Machine {
  cpuModel: string
  cores: number
  ramGiB: number
  kernel: string
  node: string
  loadAvg: [number, number, number]
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m) return m[1]!.trim()
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown'
}

export function describeMachine(): Machine {
  const [a, b, c] = os.loadavg()
  return {
    cpuModel: cpuModel(),
    cores: os.availableParallelism?.() ?? os.cpus().length,
    ramGiB: os.totalmem() / 1024 ** 3,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAvg: [a ?? 0, b ?? 0, c ?? 0],
  }
}
