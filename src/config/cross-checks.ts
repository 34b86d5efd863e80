// The config rules that span fields (unique names and addresses, a password that suits its auth
// method, TLS files that go together, hba rules that parse, a write quorum within the backend count).
// parseConfig (schema.ts) runs them next to the zod schema, whose field checks they complement.
import { isMd5Hash } from '../auth/md5.ts'
import { parseScramVerifier } from '../auth/scram.ts'
import { parseHbaRule } from '../auth/hba.ts'
import { formatPath } from './issues.ts'

/** How a configured user password is stored, which decides the auth methods it can serve. */
export type StoredPasswordKind = 'plain' | 'md5' | 'scram-sha-256'

const SCRAM_PREFIX = 'SCRAM-SHA-256$'

/**
 * Classifies a users[].password the way PostgreSQL classifies rolpassword, using the auth code's own
 * parsers so that config validation and login agree on what counts as a verifier or hash.
 */
export function storedPasswordKind(password: string): StoredPasswordKind {
  if (parseScramVerifier(password) !== null) return 'scram-sha-256'
  if (isMd5Hash(password)) return 'md5'
  return 'plain'
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const records = (v: unknown): Array<Record<string, unknown> | undefined> => (Array.isArray(v) ? v.map((x) => (isRecord(x) ? x : undefined)) : [])

// Cross-field rules, checked on the raw document rather than as a zod refinement: zod skips refinements
// once a field fails certain checks (e.g. a non-integer for z.int()), and the first run of check-config
// should list everything. Hence every access is defensive; wrong types are the field schemas' business.
export function crossCheckProblems(raw: unknown): string[] {
  const problems: string[] = []
  if (!isRecord(raw)) return problems
  const problem = (path: PropertyKey[], message: string) => problems.push(`${formatPath(path)}: ${message}`)

  const seenName = new Map<string, number>()
  const seenAddr = new Map<string, number>()
  records(raw.backends).forEach((b, i) => {
    if (!b) return
    if (typeof b.name === 'string') {
      const first = seenName.get(b.name)
      if (first !== undefined) problem(['backends', i, 'name'], `duplicate backend name "${b.name}" (also backends[${first}].name); give each backend its own name`)
      else seenName.set(b.name, i)
    }
    if (typeof b.host === 'string') {
      const addr = `${b.host.toLowerCase()}:${String(b.port ?? 5432)}`
      const first = seenAddr.get(addr)
      if (first !== undefined) problem(['backends', i], `same host and port as backends[${first}] (${addr}); each backend must be a different server`)
      else seenAddr.set(addr, i)
    }
  })
  // Reads go only to backends with weight > 0; if there are none, every read would fail.
  const weights = records(raw.backends).map((b) => b?.weight ?? 1)
  if (weights.length > 0 && weights.every((w) => w === 0)) {
    problem(['backends'], 'every backend has weight 0, so no backend may serve reads; give at least one a weight > 0')
  }

  const seenUser = new Map<string, number>()
  records(raw.users).forEach((u, i) => {
    if (!u) return
    if (typeof u.name === 'string') {
      const first = seenUser.get(u.name)
      if (first !== undefined) problem(['users', i, 'name'], `duplicate user name "${u.name}" (also users[${first}].name); list each user once`)
      else seenUser.set(u.name, i)
    }
    checkUserPassword(u, (message) => problem(['users', i, 'password'], message))
  })

  if (Array.isArray(raw.hba)) {
    raw.hba.forEach((line, i) => {
      if (typeof line !== 'string') return
      try {
        parseHbaRule(line)
      } catch (e) {
        problem(['hba', i], `${(e as Error).message} (rule: ${JSON.stringify(line)})`)
      }
    })
  }
  const listenTls = isRecord(raw.listen) && isRecord(raw.listen.tls) ? raw.listen.tls : undefined
  if (Array.isArray(raw.hba) && raw.hba.some((l) => typeof l === 'string' && /\s(cert)(\s|$)|clientcert=/.test(l)) && listenTls?.ca == null)
    problem(['hba'], 'rules with method cert or clientcert=... need listen.tls.ca (the CAs client certificates are checked against)')
  if (listenTls) {
    if ((listenTls.cert == null) !== (listenTls.key == null)) problem(['listen', 'tls'], 'cert and key go together: set both (or neither)')
    if (listenTls.mode === 'require' && listenTls.cert == null) problem(['listen', 'tls', 'mode'], '"require" needs a certificate: set listen.tls.cert and listen.tls.key')
  }
  records(raw.backends).forEach((b, i) => {
    const t = b && isRecord(b.tls) ? b.tls : undefined
    if (!t) return
    if ((t.mode === 'verify-ca' || t.mode === 'verify-full') && t.ca == null)
      problem(['backends', i, 'tls', 'ca'], `required for mode "${String(t.mode)}": the PEM file of CAs the backend certificate must chain to`)
    if ((t.cert == null) !== (t.key == null)) problem(['backends', i, 'tls'], 'cert and key go together: set both (or neither)')
  })

  const wq = raw.writeQuorum
  const n = Array.isArray(raw.backends) ? raw.backends.length : 0
  if (typeof wq === 'number' && Number.isInteger(wq) && wq >= 1 && n >= 1 && wq > n) {
    problem(['writeQuorum'], `must be an integer 1-${n} (at most the number of backends; omit it for a majority, ${Math.floor(n / 2) + 1}), got ${wq}`)
  }
  return problems
}

function checkUserPassword(u: Record<string, unknown>, problem: (message: string) => void): void {
  const auth = u.auth === undefined ? 'scram-sha-256' : u.auth
  if (auth !== 'md5' && auth !== 'scram-sha-256') return // trust needs no password; a bad auth is reported by the enum
  const user = typeof u.name === 'string' ? u.name : '<user>'
  if (u.password === undefined) {
    problem(`required for auth "${auth}"; put the plain password or the output of \`pgraid hash-password\` (or set auth to "trust")`)
    return
  }
  if (typeof u.password !== 'string') return // wrong type is reported by the field schema
  if (u.password.startsWith(SCRAM_PREFIX) && parseScramVerifier(u.password) === null) {
    problem('looks like a SCRAM-SHA-256 verifier but is malformed; expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> ' + 'as printed by `pgraid hash-password`')
    return
  }
  const kind = storedPasswordKind(u.password)
  if (auth === 'md5' && kind === 'scram-sha-256') {
    problem(
      `auth "md5" cannot use a SCRAM-SHA-256 verifier (md5 needs the plain password or an md5 hash); put the plain ` +
        `password, or \`pgraid hash-password --method md5 --user ${user} <password>\`, or set auth to "scram-sha-256"`,
    )
  } else if (auth === 'scram-sha-256' && kind === 'md5') {
    problem(
      'auth "scram-sha-256" cannot use an md5 hash (SCRAM needs the plain password or a SCRAM-SHA-256$ verifier); put the ' +
        'plain password, or `pgraid hash-password <password>`, or set auth to "md5"',
    )
  }
}
