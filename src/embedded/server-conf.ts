// The per-server configuration files: pg_hba.conf and pgraid.conf (included from
// postgresql.conf), rewritten on every start so a reused data dir takes the current auth
// method, port and settings.
import fs from 'node:fs/promises'
import path from 'node:path'
import { chownToServerUser } from './binaries.ts'

export type BackendAuth = 'trust' | 'md5' | 'scram-sha-256'

export const CONF_FILE = 'pgraid.conf'
export const INCLUDE_LINE = `include '${CONF_FILE}'`

/** A postgresql.conf string literal. */
function quoteConf(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
}

export interface ServerConf {
  auth: BackendAuth
  // The server's current port and socket dir: a start retried after a lost bind race changes the port.
  port: number
  socketDir: string
  settings: Record<string, string>
  major: number
  tls: { cert: string; key: string } | null
  extraListen: { address: string; net: string }[]
}

/** Writes both files into the data dir, owned by the server user, and makes postgresql.conf include ours. */
export async function writeServerConfig(dataDir: string, c: ServerConf): Promise<void> {
  const { auth, settings, major, tls } = c
  const host = tls ? 'hostssl' : 'host'
  const hba = [
    '# written by pgraid: the unix socket is for the harness itself, TCP uses the configured method',
    'local all all trust',
    `${host} all all 127.0.0.1/32 ${auth}`,
    `${host} all all ::1/128 ${auth}`,
    ...c.extraListen.map((l) => `${host} all all ${l.net} ${auth}`),
    '',
  ].join('\n')
  const tlsConf: Record<string, string> = {}
  if (tls) {
    // The server refuses a key readable by others: a private copy owned by the server user, 0600.
    for (const [from, to] of [
      [tls.cert, 'server.crt'],
      [tls.key, 'server.key'],
    ] as const) {
      const dest = path.join(dataDir, to)
      await fs.copyFile(from, dest)
      await fs.chmod(dest, 0o600)
      await chownToServerUser(dest)
    }
    Object.assign(tlsConf, { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' })
  }
  const conf: Record<string, string> = {
    listen_addresses: ['127.0.0.1', ...c.extraListen.map((l) => l.address)].join(','),
    port: String(c.port),
    unix_socket_directories: c.socketDir,
    max_connections: '200',
    shared_buffers: '128MB',
    max_prepared_transactions: '0',
    // Stored password format must match the method: an md5 server needs an md5 hash.
    password_encryption: auth === 'md5' ? 'md5' : 'scram-sha-256',
    // Quiet log: stderr is redirected to server.log in the data dir by us, no collector.
    logging_collector: 'off',
    log_destination: 'stderr',
    log_checkpoints: 'off',
    // fsync and synchronous_commit stay at their defaults so benchmarks measure real
    // durability; tests may pass settings { fsync: 'off' } for speed.
    ...(major >= 18 ? { md5_password_warnings: 'off' } : {}),
    ...tlsConf,
    ...settings,
  }
  const text =
    '# written by pgraid (src/embedded/cluster.ts); rewritten on every startCluster\n' +
    Object.entries(conf)
      .map(([k, v]) => `${k} = ${quoteConf(v)}`)
      .join('\n') +
    '\n'
  await fs.writeFile(path.join(dataDir, 'pg_hba.conf'), hba)
  await fs.writeFile(path.join(dataDir, CONF_FILE), text)
  // Clusters not made from our template (reuse of a foreign dir) still need the include.
  const main = path.join(dataDir, 'postgresql.conf')
  const mainText = await fs.readFile(main, 'utf8')
  if (!mainText.split('\n').some((l) => l.trim() === INCLUDE_LINE)) await fs.appendFile(main, `\n${INCLUDE_LINE}\n`)
  for (const f of ['pg_hba.conf', CONF_FILE, 'postgresql.conf']) await chownToServerUser(path.join(dataDir, f))
}
