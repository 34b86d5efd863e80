// tls-server-end-point channel binding (RFC 5929 §4), as PostgreSQL computes it for
// SCRAM-SHA-256-PLUS: the hash of the server certificate (DER), with the hash function of the
// certificate's signature algorithm, SHA-256 when that is MD5 or SHA-1.

import { createHash } from 'node:crypto'

// Signature algorithm OIDs whose hash is not SHA-256 (everything else, including MD5/SHA-1, uses SHA-256).
const HASH_BY_OID: Record<string, string> = {
  '1.2.840.113549.1.1.12': 'sha384', // sha384WithRSAEncryption
  '1.2.840.113549.1.1.13': 'sha512', // sha512WithRSAEncryption
  '1.2.840.10045.4.3.3': 'sha384', // ecdsa-with-SHA384
  '1.2.840.10045.4.3.4': 'sha512', // ecdsa-with-SHA512
}

/** The channel-binding data for a DER certificate. */
export function tlsServerEndPoint(der: Buffer): Buffer {
  const oid = signatureAlgorithmOid(der)
  return createHash((oid && HASH_BY_OID[oid]) || 'sha256')
    .update(der)
    .digest()
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signature }. */
export function signatureAlgorithmOid(der: Buffer): string | null {
  try {
    const cert = tlv(der, 0)
    const tbs = tlv(der, cert.start)
    const alg = tlv(der, tbs.end)
    const oid = tlv(der, alg.start)
    if (oid.tag !== 0x06) return null
    return decodeOid(der.subarray(oid.start, oid.end))
  } catch {
    return null
  }
}

function tlv(buf: Buffer, off: number): { tag: number; start: number; end: number } {
  const tag = buf[off]!
  let len = buf[off + 1]!
  let start = off + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n < 1 || n > 4) throw new RangeError('bad DER length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!
    start += n
  }
  if (start + len > buf.length) throw new RangeError('truncated DER')
  return { tag, start, end: start + len }
}

function decodeOid(b: Buffer): string {
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40]
  let v = 0
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f)
    if (!(b[i]! & 0x80)) {
      parts.push(v)
      v = 0
    }
  }
  return parts.join('.')
}
