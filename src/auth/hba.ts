// Client authentication rules in pg_hba.conf syntax (config key `hba`), so a PgBouncer or
// PostgreSQL user writes what they already know:
//   "hostssl all app 10.0.0.0/8 scram-sha-256"
//   "host pgraid admin 127.0.0.1/32 md5"
//   "hostssl all all 0.0.0.0/0 cert"
//   "host all all all reject"
// The first rule whose connection type, database, user and address match decides the method;
// no match refuses the connection (28000), as PostgreSQL does.

import net from 'node:net'

export const HBA_METHODS = ['trust', 'reject', 'md5', 'scram-sha-256', 'cert'] as const
export type HbaMethod = (typeof HBA_METHODS)[number]

export interface HbaRule {
  line: string
  type: 'host' | 'hostssl' | 'hostnossl'
  databases: 'all' | { names: Set<string>; sameuser: boolean }
  users: 'all' | Set<string>
  address: 'all' | net.BlockList
  method: HbaMethod
  /** clientcert=verify-ca / verify-full on a password method: a valid client certificate is required too. */
  clientcert: 'verify-ca' | 'verify-full' | null
}

export interface HbaConnection {
  database: string
  user: string
  address: string
  tls: boolean
}

/** Parses one rule; throws an Error whose message says what to fix. */
export function parseHbaRule(line: string): HbaRule {
  const f = line.trim().split(/\s+/)
  if (f.length < 5) throw new Error('needs at least 5 fields: TYPE DATABASE USER ADDRESS METHOD [clientcert=verify-ca|verify-full]')
  const [type, db, user, addr, method, ...opts] = f as [string, string, string, string, string, ...string[]]
  if (type !== 'host' && type !== 'hostssl' && type !== 'hostnossl') throw new Error(`connection type "${type}" is not one of host, hostssl, hostnossl (pgraid listens on TCP only)`)
  if (!(HBA_METHODS as readonly string[]).includes(method)) throw new Error(`method "${method}" is not one of ${HBA_METHODS.join(', ')}`)
  let clientcert: HbaRule['clientcert'] = null
  for (const o of opts) {
    const m = /^clientcert=(verify-ca|verify-full)$/.exec(o)
    if (!m) throw new Error(`option "${o}" is not supported (only clientcert=verify-ca or clientcert=verify-full)`)
    clientcert = m[1] as 'verify-ca' | 'verify-full'
  }
  if (clientcert && type !== 'hostssl') throw new Error('clientcert needs a hostssl rule (a certificate comes only with TLS)')
  if (method === 'cert' && type !== 'hostssl') throw new Error('method cert needs a hostssl rule (a certificate comes only with TLS)')
  const dbNames = db.split(',').filter(Boolean)
  const userNames = user.split(',').filter(Boolean)
  if (!dbNames.length || !userNames.length) throw new Error('empty database or user list')
  return {
    line,
    type,
    databases: dbNames.includes('all') ? 'all' : { names: new Set(dbNames.filter((d) => d !== 'sameuser')), sameuser: dbNames.includes('sameuser') },
    users: userNames.includes('all') ? 'all' : new Set(userNames),
    address: addr === 'all' ? 'all' : parseAddress(addr),
    method: method as HbaMethod,
    clientcert,
  }
}

function parseAddress(addr: string): net.BlockList {
  const [ip, bits, extra] = addr.split('/')
  const family = net.isIP(ip ?? '')
  if (!family || extra !== undefined) throw new Error(`address "${addr}" is not "all" or an IP address with an optional /prefix (CIDR)`)
  const max = family === 4 ? 32 : 128
  const prefix = bits === undefined ? max : Number(bits)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) throw new Error(`address "${addr}": prefix length must be 0-${max}`)
  const list = new net.BlockList()
  list.addSubnet(ip!, prefix, family === 4 ? 'ipv4' : 'ipv6')
  return list
}

/** The first rule that matches, or null (the connection is refused). */
export function matchHba(rules: readonly HbaRule[], c: HbaConnection): HbaRule | null {
  const ip = c.address.startsWith('::ffff:') && net.isIPv4(c.address.slice(7)) ? c.address.slice(7) : c.address
  const family = net.isIPv4(ip) ? 'ipv4' : 'ipv6'
  for (const r of rules) {
    if (r.type === 'hostssl' && !c.tls) continue
    if (r.type === 'hostnossl' && c.tls) continue
    if (r.databases !== 'all' && !r.databases.names.has(c.database) && !(r.databases.sameuser && c.database === c.user)) continue
    if (r.users !== 'all' && !r.users.has(c.user)) continue
    if (r.address !== 'all' && !(net.isIP(ip) && r.address.check(ip, family))) continue
    return r
  }
  return null
}
