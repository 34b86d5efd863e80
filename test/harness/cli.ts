// Runs the real `pgraid` command (bin/pgraid.js, a child process) against a
// test stack, with a config file naming an admin user.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { bounded, type Stack } from './stack.ts'
import { exec, type Exit } from './proc.ts'

export type CliRun = Exit

export const ADMIN = { name: 'ops', auth: 'scram-sha-256', password: 'ops-secret', admin: true }

/** A config file for the CLI pointing at `stack`, removed after the test; returns a runner. */
export type Cli = ((args: string[], timeoutMs?: number) => Promise<CliRun>) & {
  /** Starts the command without waiting (to kill it half way); stderr piped. */
  spawn(args: string[]): ChildProcess
}

export async function cliFor(t: Test, stack: Pick<Stack, 'port' | 'config'>): Promise<Cli> {
  const dir = await mkdtemp(join(tmpdir(), 'pgraid-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'pgraid.json')
  await writeFile(file, JSON.stringify({ listen: { host: '127.0.0.1', port: stack.port }, backends: stack.config.backends, users: [{ name: ADMIN.name, password: ADMIN.password, admin: true }] }))
  const run = (args: string[], timeoutMs = 120_000) => exec(process.execPath, ['bin/pgraid.js', ...args, '-c', file], { timeoutMs, maxBuffer: 64 << 20 })
  return Object.assign(run, {
    spawn(args: string[]) {
      const child = spawn(process.execPath, ['bin/pgraid.js', ...args, '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] })
      t.teardown(() => void child.kill('SIGKILL'))
      return child
    },
  })
}

/** Kills the CLI with SIGKILL as soon as its stderr matches `when`; false if it ended first. */
export async function killWhen(child: ChildProcess, when: RegExp, ms = 120_000): Promise<boolean> {
  let text = ''
  return bounded(
    new Promise<boolean>((resolve) => {
      child.stderr!.on('data', (b: Buffer) => {
        text += b.toString()
        if (when.test(text) && child.exitCode === null) {
          child.kill('SIGKILL')
          resolve(true)
        }
      })
      child.on('exit', () => resolve(false))
    }),
    ms,
    `the CLI to print ${when}`,
  )
}
