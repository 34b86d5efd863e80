// TLS for client connections: the secure context built from listen.tls (read again on reload),
// and the certificate hash SCRAM-SHA-256-PLUS binds to.

import { readFile } from 'node:fs/promises'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import tls from 'node:tls'
import type { Config } from '../config/schema.ts'
import { ConfigError } from '../config/issues.ts'
import { tlsServerEndPoint } from '../auth/channel-binding.ts'

export interface ServerTls {
  /** What an SSLRequest gets: 'disable' answers N; 'allow' and 'require' answer S. */
  mode: 'disable' | 'allow' | 'require'
  context: tls.SecureContext | null
  /** Ask clients for a certificate (listen.tls.ca is set). */
  requestCert: boolean
  /** tls-server-end-point data of our certificate, for SCRAM-SHA-256-PLUS. */
  binding: Buffer | null
}

export const NO_TLS: ServerTls = { mode: 'disable', context: null, requestCert: false, binding: null }

async function readPem(file: string, key: string, source: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (e) {
    throw new ConfigError(source, [`${key}: cannot read "${file}" (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give a readable PEM file`])
  }
}

/** Builds the client-side TLS state; file and key problems are ConfigErrors naming the key. */
export async function loadServerTls(cfg: Config['listen']['tls'], source = 'configuration'): Promise<ServerTls> {
  if (cfg.mode === 'disable' || !cfg.cert || !cfg.key) return NO_TLS
  const cert = await readPem(cfg.cert, 'listen.tls.cert', source)
  const key = await readPem(cfg.key, 'listen.tls.key', source)
  const ca = cfg.ca ? await readPem(cfg.ca, 'listen.tls.ca', source) : undefined
  let context: tls.SecureContext
  let leaf: X509Certificate
  try {
    leaf = new X509Certificate(cert)
    context = tls.createSecureContext({ cert, key, ca, minVersion: cfg.minVersion })
  } catch (e) {
    throw new ConfigError(source, [`listen.tls: the certificate, key or CA file cannot be used (${(e as Error).message}); check that cert and key are a matching PEM pair`])
  }
  if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new ConfigError(source, ['listen.tls: the private key does not belong to the certificate'])
  return { mode: cfg.mode, context, requestCert: !!ca, binding: tlsServerEndPoint(leaf.raw) }
}
