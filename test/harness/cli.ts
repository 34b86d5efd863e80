// Runs the real `pgraid` command (bin/pgraid.js, a child process) against a
// test stack, with a config file naming an admin user.

import { execFile } from 'node:child_process'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { Stack } from './stack.ts'

export interface CliRun {
  code: number
  out: string
  err: string
}

export const ADMIN = { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true }

/** A config file for the CLI pointing at `stack`, removed after the test; returns a runner. */
export async function cliFor(t: Test, stack: Stack): Promise<(args: string[], timeoutMs?: number) => Promise<CliRun>> {
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'pgraid.json')
  await writeFile(file, JSON.stringify({ listen: { host: '127.0.0.1', port: stack.port }, backends: stack.config.backends, users: [{ name: ADMIN.name, password: ADMIN.password, admin: true }] }))
  return (args, timeoutMs = 120_000) =>
    new Promise((resolve) =>
      execFile(process.execPath, ['bin/pgraid.js', ...args, '-c', file], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (e, stdout, stderr) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr })),
    )
}
