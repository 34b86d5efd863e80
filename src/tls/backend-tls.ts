// TLS from pgraid to a backend, with libpq's sslmode meanings: the SSLRequest exchange on the
// data path, and the same settings as node-postgres options for control connections.

import net from 'node:net'
import tls from 'node:tls'
import { readFile } from 'node:fs/promises'
import type { ConnectionOptions } from 'node:tls'
import type { BackendConfig } from '../config/schema.ts'
import { ConfigError } from '../config/issues.ts'

export interface BackendTls {
  mode: 'require' | 'verify-ca' | 'verify-full'
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

/** Reads a backend's TLS files once (at start and reload); null when its mode is disable. */
export async function loadBackendTls(b: BackendConfig, source = 'configuration'): Promise<BackendTls | null> {
  const t = b.tls
  if (t.mode === 'disable') return null
  const read = async (file: string | null, key: string) => {
    if (!file) return undefined
    try {
      return await readFile(file)
    } catch (e) {
      throw new ConfigError(source, [`backends "${b.name}" tls.${key}: cannot read "${file}" (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`])
    }
  }
  const out: BackendTls = { mode: t.mode }
  const ca = await read(t.ca, 'ca')
  const cert = await read(t.cert, 'cert')
  const key = await read(t.key, 'key')
  if (ca) out.ca = ca
  if (cert) out.cert = cert
  if (key) out.key = key
  return out
}

/** Node TLS options for a backend at `host` under `t`'s sslmode. */
export function tlsOptions(host: string, t: BackendTls): ConnectionOptions {
  const o: ConnectionOptions = {
    ca: t.ca,
    cert: t.cert,
    key: t.key,
    // require: encrypted, certificate not checked (libpq's sslmode=require without a root file).
    rejectUnauthorized: t.mode !== 'require',
    checkServerIdentity: t.mode === 'verify-full' ? (_name, cert) => tls.checkServerIdentity(host, cert) : () => undefined,
  }
  if (!net.isIP(host)) o.servername = host // SNI carries names only
  return o
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])

/**
 * Asks the backend on `socket` for TLS and returns the encrypted socket. Refusal ('N') fails:
 * every mode but disable demands TLS.
 */
export function negotiateBackendTls(socket: net.Socket, host: string, t: BackendTls): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      socket.off('data', onData)
      socket.pause()
      if (chunk[0] === 0x4e /* N */) return reject(new Error(`the backend does not accept TLS (backends[].tls.mode is "${t.mode}")`))
      if (chunk[0] !== 0x53 /* S */ || chunk.length > 1) return reject(new Error('unexpected answer to SSLRequest from the backend'))
      const secure = tls.connect({ ...tlsOptions(host, t), socket })
      const fail = (e: Error) => reject(new Error(`TLS to the backend failed: ${e.message}`))
      secure.once('error', fail)
      secure.once('secureConnect', () => {
        secure.off('error', fail)
        resolve(secure)
      })
    }
    socket.on('data', onData)
    socket.write(SSL_REQUEST)
  })
}
