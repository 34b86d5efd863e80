// A libpq password file (~/.pgpass, or the file PGPASSFILE names) for the CLI's console login:
// lines `hostname:port:database:username:password`, the first matching line wins, `*` in the first
// four fields matches anything, `\:` and `\\` escape a colon and a backslash, `#` starts a comment
// line. As libpq does, a file that its group or others may read is ignored, with a warning.
// Read here rather than by node-postgres: its own pgpass support prints a deprecation warning.

import { readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

/** The password file libpq would read: PGPASSFILE, else ~/.pgpass. */
export function passFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PGPASSFILE || path.join(os.homedir(), '.pgpass')
}

/** The fields of one line, unescaped; null for a comment, a blank line or a line with fewer than 5 fields. */
export function parseLine(line: string): string[] | null {
  if (line.startsWith('#') || line.trim() === '') return null
  const fields: string[] = []
  let cur = ''
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!
    if (ch === '\\' && i + 1 < line.length) cur += line[++i]
    else if (ch === ':') {
      // As libpq: an unescaped colon ends the password too (the rest of the line is ignored).
      if (fields.length === 4) break
      fields.push(cur)
      cur = ''
    } else cur += ch
  }
  fields.push(cur)
  return fields.length === 5 ? fields : null
}

/** The password of the first line matching host, port, database and user; undefined if none. */
export function lookupPassword(text: string, want: { host: string; port: number; database: string; user: string }): string | undefined {
  const keys = [want.host, String(want.port), want.database, want.user]
  for (const line of text.split(/\r?\n/)) {
    const f = parseLine(line)
    if (f && keys.every((k, i) => f[i] === '*' || f[i] === k)) return f[4]
  }
  return undefined
}

/** Looks the login up in the password file; warns (stderr) and ignores a file others may read. */
export function passwordFromFile(
  want: { host: string; port: number; database: string; user: string },
  file = passFilePath(),
  warn: (m: string) => void = (m) => process.stderr.write(`${m}\n`),
): string | undefined {
  let text: string
  try {
    const st = statSync(file)
    if (!st.isFile()) return undefined
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      warn(`pgraid: WARNING: password file "${file}" has group or world access; permissions should be u=rw (0600) or less: ignored`)
      return undefined
    }
    text = readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
  return lookupPassword(text, want)
}
