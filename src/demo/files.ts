// The demo folder (.pgraid-demo, or $PGRAID_DEMO_DIR) and what `npm start` keeps in it:
//
//   pgraid.jsonc   the config pgraid runs with, in the format `pgraid start -c` reads: written at the
//                  first start (backend ports chosen then, an admin user with a random password), read
//                  again at every later start, so ports and passwords stay the same; an operator may
//                  edit it and `pgraid reload` it
//   demo.json      while the demo runs: its pid and the control socket `npm run demo -- <verb>` talks to
//   pg1, pg2, ...  the backends' data directories
//
// Both `npm start` and `npm run demo` run from the package root (npm sets the cwd), so the default
// folder is the same for both.

import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { applyEdits, modify } from 'jsonc-parser'
import { pidAlive } from '../embedded/binaries.ts'

export const DEFAULT_DEMO_DIR = '.pgraid-demo'
export const ADMIN_USER = 'admin'

export function demoDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.PGRAID_DEMO_DIR || DEFAULT_DEMO_DIR)
}

export function configFile(dir: string): string {
  return path.join(dir, 'pgraid.jsonc')
}

export function stateFile(dir: string): string {
  return path.join(dir, 'demo.json')
}

/** What a running demo writes to demo.json. */
export interface DemoState {
  pid: number
  /** The control socket (HTTP over a unix socket). */
  socket: string
  /** pgraid's address. */
  host: string
  port: number
  started: string
}

/** The control socket's path: in the demo folder unless that path is too long for a unix socket. */
export function socketPath(dir: string): string {
  const p = path.join(dir, 'demo.sock')
  if (Buffer.byteLength(p) <= 100) return p
  return path.join(os.tmpdir(), `pgraid-demo-${Buffer.from(dir).toString('base64url').slice(-24)}.sock`)
}

/** The state of the demo running on `dir`, or null if none runs. */
export async function runningDemo(dir: string): Promise<DemoState | null> {
  try {
    const s = JSON.parse(await fs.readFile(stateFile(dir), 'utf8')) as DemoState
    return Number.isInteger(s.pid) && pidAlive(s.pid) ? s : null
  } catch {
    return null
  }
}

export function newPassword(): string {
  return randomBytes(9).toString('base64url')
}

/** The text of the demo's config file, with a comment on what is what. */
export function configText(raw: { listen: unknown; backends: unknown[]; users: unknown[]; log: unknown }): string {
  const line = (v: unknown) => `    ${flat(v)}`
  return `// pgraid's configuration for the demo, written by \`npm start\` (src/demo/main.ts) at its first start and
// read again at every start: the ports and passwords stay the same until the demo folder is deleted.
// It is an ordinary config file (docs/configuration.md): \`pgraid status -c\` and the other commands read
// it; edit it and \`pgraid reload -c <this file>\` (node bin/pgraid.js in the checkout) applies what can change live.
{
  "listen": ${flat(raw.listen)},
  // The demo's PostgreSQL servers (data in the folders of the same names beside this file).
  "backends": [
${raw.backends.map(line).join(',\n')}
  ],
  // Client users; "${ADMIN_USER}" may log in to the admin console (database pgraid) and is the one the
  // pgraid status / resync / clone / verify commands use.
  "users": [
${raw.users.map(line).join(',\n')}
  ],
  "log": ${flat(raw.log)}
}
`
}

/** A small object on one line, spaced as a person would write it: { "a": 1, "b": "x" }. */
function flat(v: unknown): string {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    return `{ ${Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => `${JSON.stringify(k)}: ${flat(x)}`)
      .join(', ')} }`
  }
  return JSON.stringify(v)
}

/** Sets listen.port in the config file, keeping its comments. */
export async function setListenPort(file: string, port: number): Promise<void> {
  const text = await fs.readFile(file, 'utf8')
  const edits = modify(text, ['listen', 'port'], port, { formattingOptions: { insertSpaces: true, tabSize: 2 } })
  await fs.writeFile(file, applyEdits(text, edits))
}

export function exists(file: string): boolean {
  return existsSync(file)
}
