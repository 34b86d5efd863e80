// Where a running pgraid is: `pgraid start -c FILE` (and the demo) write a small record naming the
// config file, the process and the address it listens on, and remove it when they stop. The console
// commands given the same config file ask that address rather than the one now in the file: an
// operator who edits listen.port and runs `pgraid reload` reaches the running pgraid (which then
// refuses the change: it needs a restart) instead of nothing.
//
// The record is `pgraid-<hash of the config file's real path>.json` in the runtime directory: the first
// of $PGRAID_RUNTIME_DIR, $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=, /run/pgraid in
// contrib/pgraid.service), /run/pgraid when it is writable, else <tmpdir>/pgraid-run-<uid>. The CLI
// looks in all of them (and in every <tmpdir>/pgraid-run-* it may read, for a pgraid run by another
// user). A record whose process is gone is ignored.

import { createHash } from 'node:crypto'
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export interface RunningRecord {
  pid: number
  /** The address pgraid listens on (as configured: 0.0.0.0 or :: mean every address). */
  host: string
  port: number
  /** The config file's real path. */
  config: string
  started: string
}

const SYSTEM_DIR = '/run/pgraid'

function uid(): string {
  return typeof process.getuid === 'function' ? String(process.getuid()) : 'user'
}

/** The record's file name for a config file (its real path when it exists). */
export function recordName(configPath: string): string {
  return `pgraid-${createHash('sha256').update(realPath(configPath)).digest('hex').slice(0, 16)}.json`
}

function realPath(p: string): string {
  try {
    return realpathSync(p)
  } catch {
    return path.resolve(p)
  }
}

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The directory a starting pgraid writes its record to (created if missing). */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.PGRAID_RUNTIME_DIR || env.RUNTIME_DIRECTORY?.split(':')[0]
  if (explicit) return explicit
  if (writable(SYSTEM_DIR)) return SYSTEM_DIR
  return path.join(os.tmpdir(), `pgraid-run-${uid()}`)
}

/** Every directory the CLI looks for records in, in order. */
export function searchDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = [env.PGRAID_RUNTIME_DIR, ...(env.RUNTIME_DIRECTORY?.split(':') ?? []), SYSTEM_DIR, path.join(os.tmpdir(), `pgraid-run-${uid()}`)]
  try {
    for (const e of readdirSync(os.tmpdir())) if (e.startsWith('pgraid-run-')) dirs.push(path.join(os.tmpdir(), e))
  } catch {
    // no readable tmpdir: the others only
  }
  return [...new Set(dirs.filter((d): d is string => !!d))]
}

/** Alive, or alive under another user (EPERM): a recycled pid is possible but harmless (the address is then tried and refused). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Writes the record for a pgraid running with `configPath`; returns the function that removes it (call it
 * at stop). Never throws: without a record the CLI falls back on the address in the file.
 */
export function writeRecord(configPath: string, host: string, port: number, env: NodeJS.ProcessEnv = process.env): () => void {
  try {
    const dir = runtimeDir(env)
    mkdirSync(dir, { recursive: true, mode: 0o755 })
    prune(dir)
    const file = path.join(dir, recordName(configPath))
    const record: RunningRecord = { pid: process.pid, host, port, config: realPath(configPath), started: new Date().toISOString() }
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify(record) + '\n', { mode: 0o644 })
    renameSync(tmp, file)
    return () => {
      try {
        const now = JSON.parse(readFileSync(file, 'utf8')) as RunningRecord
        if (now.pid === process.pid) rmSync(file, { force: true })
      } catch {
        // gone already
      }
    }
  } catch {
    return () => {}
  }
}

/** Removes the records of processes that are gone (a pgraid killed with -9 leaves its record). */
function prune(dir: string): void {
  for (const e of readdirSync(dir)) {
    if (!/^pgraid-[0-9a-f]{16}\.json$/.test(e)) continue
    try {
      const r = JSON.parse(readFileSync(path.join(dir, e), 'utf8')) as RunningRecord
      if (!alive(r.pid)) rmSync(path.join(dir, e), { force: true })
    } catch {
      // being written, or not ours to read: left alone
    }
  }
}

/** The record of a live pgraid started with `configPath`, if any. */
export function findRecord(configPath: string, env: NodeJS.ProcessEnv = process.env): RunningRecord | null {
  const name = recordName(configPath)
  for (const dir of searchDirs(env)) {
    try {
      const r = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as RunningRecord
      if (Number.isInteger(r.pid) && typeof r.host === 'string' && Number.isInteger(r.port) && r.config === realPath(configPath) && alive(r.pid)) return r
    } catch {
      // none here, or unreadable
    }
  }
  return null
}
