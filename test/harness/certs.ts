// Certificates made at test time with Debian's openssl: a test CA, a server certificate for
// localhost/127.0.0.1, client certificates, and a second ("rogue") CA whose certificates the
// first one does not vouch for. EC P-256 keys: fast to make.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

const run = promisify(execFile)

export interface TestCerts {
  dir: string
  ca: string
  serverCert: string
  serverKey: string
  /** A server certificate signed by the rogue CA (clients trusting `ca` must refuse it). */
  rogueServerCert: string
  rogueServerKey: string
  rogueCa: string
  /** Client certificate/key for a common name. */
  client(cn: string, opts?: { rogue?: boolean }): Promise<{ cert: string; key: string }>
  remove(): Promise<void>
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000 })
  } catch (e) {
    const err = e as Error & { code?: string; stderr?: string }
    if (err.code === 'ENOENT') throw new Error('openssl not found: install the Debian package openssl (.ci/run does)')
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr ?? err.message}`)
  }
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(['req', '-x509', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=pgraid test ${name}`], dir)
}

async function signed(dir: string, name: string, cn: string, ca: string, san: string | null): Promise<void> {
  const req = ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]
  if (san) req.push('-addext', `subjectAltName=${san}`)
  await openssl(req, dir)
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-copy_extensions', 'copy'], dir)
  await chmod(path.join(dir, `${name}.key`), 0o600)
}

export async function makeCerts(): Promise<TestCerts> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgraid-certs-'))
  await chmod(dir, 0o755) // the PostgreSQL servers (another OS user) read the server certificate
  await writeFile(path.join(dir, 'README'), 'test certificates made by test/harness/certs.ts\n')
  await Promise.all([makeCa(dir, 'ca'), makeCa(dir, 'rogue')])
  await Promise.all([signed(dir, 'server', 'localhost', 'ca', 'DNS:localhost,IP:127.0.0.1'), signed(dir, 'rogue-server', 'localhost', 'rogue', 'DNS:localhost,IP:127.0.0.1')])
  const p = (f: string) => path.join(dir, f)
  return {
    dir,
    ca: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    rogueServerCert: p('rogue-server.crt'),
    rogueServerKey: p('rogue-server.key'),
    rogueCa: p('rogue.crt'),
    async client(cn, opts = {}) {
      const name = `client-${cn}${opts.rogue ? '-rogue' : ''}`
      await signed(dir, name, cn, opts.rogue ? 'rogue' : 'ca', null)
      return { cert: p(`${name}.crt`), key: p(`${name}.key`) }
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  }
}
