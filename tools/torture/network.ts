// The torture's network: pgraid runs in a network namespace of its own,
// reaching backend k through veth pair k (and the clients through veth pair
// 0), so the nemesis can cut one backend off from pgraid by taking the
// host end of its pair down: packets are dropped, not refused, as when a
// cable or a switch fails (the kernel has no netem to delay them). Made and
// removed by the harness; needs root and iproute2, else skipped with the
// reason. Addresses are in 10.X.k.0/24 with X from the process id, so
// concurrent runs do not meet; nothing outside this machine is touched.

import { execFileSync } from 'node:child_process'

export interface Network {
  /** The namespace pgraid runs in: prefix its command with `prefix`. */
  prefix: string[]
  /** Where clients reach pgraid (inside the namespace, through pair 0). */
  proxyHost: string
  /** Where pgraid reaches backend i (0-based; pair i+1), on which that backend must also listen. */
  backendHost(i: number): string
  /** The subnet of pair i+1, for the backend's pg_hba.conf. */
  backendNet(i: number): string
  cut(i: number): void
  heal(i: number): void
  remove(): void
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** The network for `count` backends, or the reason it cannot be made here. */
export function makeNetwork(count: number): Network | string {
  if (process.getuid?.() !== 0) return 'not root: network namespaces need root'
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' })
  } catch {
    return 'no `ip` command (package iproute2)'
  }
  removeStale()
  const tag = `pgt${process.pid}`
  const ns = tag
  const x = 100 + (process.pid % 100)
  const host = (k: number) => `${tag}h${k}`
  const inner = (k: number) => `${tag}n${k}`
  const made: number[] = []
  let routed = false
  const remove = () => {
    if (routed)
      try {
        ip('route', 'del', 'blackhole', `10.${x}.0.0/16`)
      } catch {
        // already gone
      }
    for (const k of made) {
      try {
        ip('link', 'del', host(k))
      } catch {
        // gone with the namespace
      }
    }
    try {
      ip('netns', 'del', ns)
    } catch {
      // not made
    }
  }
  try {
    // While a pair is down its /24 route is gone: this drops what would otherwise leave by the default route.
    ip('route', 'add', 'blackhole', `10.${x}.0.0/16`)
    routed = true
    ip('netns', 'add', ns)
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    for (let k = 0; k <= count; k++) {
      ip('link', 'add', host(k), 'type', 'veth', 'peer', 'name', inner(k))
      made.push(k)
      ip('link', 'set', inner(k), 'netns', ns)
      ip('addr', 'add', `10.${x}.${k}.1/24`, 'dev', host(k))
      ip('link', 'set', host(k), 'up')
      ip('-n', ns, 'addr', 'add', `10.${x}.${k}.2/24`, 'dev', inner(k))
      ip('-n', ns, 'link', 'set', inner(k), 'up')
    }
  } catch (e) {
    remove()
    return `could not make the namespace: ${(e as { stderr?: Buffer }).stderr?.toString().trim() ?? (e as Error).message}`
  }
  process.once('exit', remove)
  return {
    prefix: ['ip', 'netns', 'exec', ns],
    proxyHost: `10.${x}.0.2`,
    backendHost: (i) => `10.${x}.${i + 1}.1`,
    backendNet: (i) => `10.${x}.${i + 1}.0/24`,
    cut: (i) => ip('link', 'set', host(i + 1), 'down'),
    heal: (i) => ip('link', 'set', host(i + 1), 'up'),
    remove,
  }
}

/** Namespaces, links and routes left by a run that was killed (its process is gone). */
function removeStale(): void {
  const text = (() => {
    try {
      return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    } catch {
      return ''
    }
  })()
  for (const m of text.matchAll(/^pgt(\d+)/gm)) {
    const pid = Number(m[1])
    try {
      process.kill(pid, 0)
      continue // its run is still going
    } catch {
      // gone: clean up after it
    }
    const x = 100 + (pid % 100)
    for (const args of [['netns', 'del', `pgt${pid}`], ['route', 'del', 'blackhole', `10.${x}.0.0/16`], ...[0, 1, 2, 3, 4].map((k) => ['link', 'del', `pgt${pid}h${k}`])])
      try {
        ip(...args)
      } catch {
        // not there
      }
  }
}
