// The admin console: a client that logs in to the reserved database
// `pgraid` (as PgBouncer's `pgbouncer`) with a user marked `admin` gets no
// backend connections but a small command language over the simple query
// protocol, answered as ordinary rows so psql, node-postgres or any driver
// can read them. `pgraid status` (src/cli/status.ts) uses it. This file is the
// session's side (protocol, rows, NOTICEs); the commands are in commands/table.ts.

import type net from 'node:net'
import { B, F } from '../protocol/codes.ts'
import { message, commandComplete, readyForQuery, parameterStatus, backendKeyData, errorResponse } from '../protocol/encode.ts'
import { queryText } from '../protocol/decode.ts'
import type { Frame } from '../protocol/framer.ts'
import { PgError, errors } from '../errors.ts'
import type { AdminConsoleSession, ServerContext } from '../server-context.ts'
import { runCommand } from './commands/table.ts'
import type { Progress, Result } from './commands/command.ts'

export class AdminConsole implements AdminConsoleSession {
  private skipping = false
  /** Aborted when the client goes away: a resync or clone it started stops (running it again resumes or restarts it). */
  private readonly aborter = new AbortController()

  abort(reason: string): void {
    this.aborter.abort(new Error(`the admin client went away (${reason})`))
  }

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: ServerContext,
    private readonly user: string,
    private readonly pid: number,
    private readonly secret: number,
  ) {}

  start(): void {
    for (const [k, v] of [
      ['server_version', '18.0 (pgraid admin console)'],
      ['server_encoding', 'UTF8'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['integer_datetimes', 'on'],
      ['standard_conforming_strings', 'on'],
    ])
      this.socket.write(parameterStatus(k!, v!))
    this.socket.write(backendKeyData(this.pid, this.secret))
    this.socket.write(readyForQuery('I'))
  }

  /** One client message; false when the client said goodbye. */
  async onFrame(f: Frame): Promise<boolean> {
    switch (f.type) {
      case F.Terminate:
        return false
      case F.Query: {
        const text = queryText(f.bytes.subarray(f.bodyOffset))
        try {
          for (const cmd of text
            .split(';')
            .map((c) => c.trim())
            .filter(Boolean))
            this.send(await runCommand(cmd, { ctx: this.ctx, user: this.user, signal: this.aborter.signal, notice: (m, p) => this.notice(m, p) }))
          if (!text.trim()) this.socket.write(message(B.EmptyQueryResponse))
        } catch (e) {
          const err = e instanceof PgError ? e : errors.adminCommandFailed((e as Error).message)
          this.socket.write(err.toMessage())
        }
        this.socket.write(readyForQuery('I'))
        return true
      }
      case F.Sync:
        this.skipping = false
        this.socket.write(readyForQuery('I'))
        return true
      default:
        // Extended protocol: one error, then skip to Sync as PostgreSQL does.
        if (!this.skipping) {
          this.skipping = true
          this.socket.write(errors.adminSimpleQueryOnly().toMessage())
        }
        return true
    }
  }

  /** A NOTICE; `progress` goes in its DETAIL as JSON so `pgraid` can draw a progress bar (psql shows it as text). */
  private notice(text: string, progress?: Progress): void {
    this.socket.write(errorResponse({ severity: 'NOTICE', code: '00000', message: text, detail: progress ? JSON.stringify({ progress }) : undefined }, B.NoticeResponse))
  }

  private send(r: Result): void {
    const parts: Buffer[] = [Buffer.alloc(2)]
    parts[0]!.writeInt16BE(r.columns.length)
    for (const c of r.columns) {
      const meta = Buffer.alloc(18)
      meta.writeInt32BE(0, 0) // table oid
      meta.writeInt16BE(0, 4) // column number
      meta.writeInt32BE(25, 6) // text
      meta.writeInt16BE(-1, 10)
      meta.writeInt32BE(-1, 12)
      meta.writeInt16BE(0, 16)
      parts.push(Buffer.from(c + '\0', 'utf8'), meta)
    }
    const out: Buffer[] = [message(B.RowDescription, Buffer.concat(parts))]
    for (const row of r.rows) {
      const fields: Buffer[] = [Buffer.alloc(2)]
      fields[0]!.writeInt16BE(row.length)
      for (const v of row) {
        const len = Buffer.alloc(4)
        if (v === null) {
          len.writeInt32BE(-1)
          fields.push(len)
        } else {
          const b = Buffer.from(String(v), 'utf8')
          len.writeInt32BE(b.length)
          fields.push(len, b)
        }
      }
      out.push(message(B.DataRow, Buffer.concat(fields)))
    }
    out.push(commandComplete(r.tag))
    this.socket.write(Buffer.concat(out))
  }
}
