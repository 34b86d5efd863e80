// Key values: the bind parameter or literal a key column is compared with or
// inserted as, in the canonical text the lock manager compares (1.50 and 1.5
// are one key). Casts are seen through only when they cannot change the
// value; anything else is no key value, and the caller then proves nothing.
import type { A_Const, A_Expr, Node, TypeCast, TypeName } from '@pgsql/types'
import { activeTrace } from './key-trace.ts'
import type { KeyValue } from './types.ts'

type ConstType = Extract<KeyValue, { kind: 'const' }>['type']

/** The sval of each String node of a name list, or null if one is not a String. */
export function strings(list: Node[] | undefined): string[] | null {
  const out: string[] = []
  for (const n of list ?? []) {
    const s = (n as { String?: { sval?: string } }).String
    if (!s) return null
    out.push(s.sval ?? '')
  }
  return out
}

/** A bind parameter or a literal, possibly through a value-preserving cast or a sign. */
export function value(n: Node): KeyValue | null {
  const o = n as { ParamRef?: { number?: number }; A_Const?: A_Const; TypeCast?: TypeCast; A_Expr?: A_Expr }
  if (o.ParamRef) return param(o.ParamRef)
  if (o.A_Const) return constant(o.A_Const)
  if (o.TypeCast) return castValue(o.TypeCast)
  if (o.A_Expr) {
    // unary minus / plus of a numeric constant (the parser folds -5, but not -5::int)
    const e = o.A_Expr
    if (e.kind !== 'AEXPR_OP' || e.lexpr || !e.rexpr) return null
    const op = strings(e.name)
    if (!op || op.length !== 1 || (op[0] !== '-' && op[0] !== '+')) return null
    const v = value(e.rexpr)
    if (!v || v.kind !== 'const' || (v.type !== 'int' && v.type !== 'float')) return null
    if (op[0] === '+') return v
    const negated: KeyValue = { ...v, text: negate(v.text) }
    const trace = activeTrace()
    const src = trace?.sources.get(v)
    if (src) trace!.sources.set(negated, { at: src.at, neg: !src.neg })
    return negated
  }
  return null
}

function param(p: { number?: number }): KeyValue | null {
  const index = p.number ?? 0
  return Number.isInteger(index) && index > 0 ? { kind: 'param', index } : null
}

export function constant(c: A_Const): KeyValue | null {
  const v = constantValue(c)
  const trace = activeTrace()
  if (v && trace && typeof c.location === 'number') trace.sources.set(v, { at: c.location, neg: false })
  return v
}

function constantValue(c: A_Const): KeyValue | null {
  if (c.isnull) return con('NULL', 'null')
  // zero / false / '' come with the inner field omitted
  if (c.ival !== undefined) return con(String(c.ival.ival ?? 0), 'int')
  if (c.fval !== undefined) return numeric(c.fval.fval ?? '')
  if (c.boolval !== undefined) return con(c.boolval.boolval ? 'true' : 'false', 'bool')
  if (c.sval !== undefined) return con(c.sval.sval ?? '', 'string')
  // bit strings (B'...', X'...') and anything new: not a key value
  return null
}

function con(text: string, type: ConstType): KeyValue {
  return { kind: 'const', text, type }
}

export function negate(text: string): string {
  if (text === '0') return text
  return text.startsWith('-') ? text.slice(1) : `-${text}`
}

/**
 * A numeric literal the parser kept as text (too big for int4, or with a point
 * or exponent), in canonical decimal: integers (also 0x/0o/0b, with _
 * separators) as type int, the rest as type float without exponent, leading or
 * trailing zeros (1.50 -> 1.5, 1e3 -> 1000, 1.0 -> 1).
 */
export function numeric(raw: string): KeyValue | null {
  let t = raw.replace(/_/g, '')
  let neg = false
  if (t.startsWith('-') || t.startsWith('+')) {
    neg = t.startsWith('-')
    t = t.slice(1)
  }
  const sign = (s: string): string => (neg && s !== '0' ? `-${s}` : s)
  if (/^(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)$/.test(t)) return con(sign(BigInt(t).toString()), 'int')
  const m = /^([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$/.exec(t)
  if (!m || (m[1] === '' && !m[2])) return null
  const frac = m[2] ?? ''
  let exp = Number(m[3] ?? '0') - frac.length
  let digits = (m[1] + frac).replace(/^0+/, '')
  if (digits === '') return con('0', 'float')
  const trimmed = digits.replace(/0+$/, '')
  exp += digits.length - trimmed.length
  digits = trimmed
  // absurd exponents: no canonical text worth building
  if (!Number.isSafeInteger(exp) || Math.abs(exp) > 1000) return null
  let text: string
  if (exp >= 0) text = digits + '0'.repeat(exp)
  else {
    const point = digits.length + exp
    text = point > 0 ? `${digits.slice(0, point)}.${digits.slice(point)}` : `0.${'0'.repeat(-point)}${digits}`
  }
  return con(sign(text), 'float')
}

export type Family = 'int' | 'numeric' | 'text' | 'bool' | 'uuid'

// casts that give the literal's own value (or fail): no rounding, truncation or
// reinterpretation. float4/float8 round, char(n)/varchar(n)/numeric(p,s) cut,
// date/time types drop parts, domains may be anything: those are not seen through.
const FAMILIES: Record<string, Family> = {
  int2: 'int',
  int4: 'int',
  int8: 'int',
  numeric: 'numeric',
  text: 'text',
  varchar: 'text',
  bool: 'bool',
  uuid: 'uuid',
}

const KEEPS: Record<Family, ReadonlySet<ConstType>> = {
  int: new Set(['int', 'string', 'null']),
  numeric: new Set(['int', 'float', 'string', 'null']),
  // 1.50::text is '1.50' but the canonical float text is '1.5'
  text: new Set(['int', 'string', 'bool', 'null']),
  bool: new Set(['bool', 'string', 'null']),
  uuid: new Set(['string', 'null']),
}

export function castFamily(tn: TypeName | undefined, array = false): Family | null {
  if (!tn || tn.setof || tn.pct_type || tn.typmods?.length) return null
  if (!array && tn.arrayBounds?.length) return null
  const names = strings(tn.names)
  if (!names || names.length === 0 || names.length > 2) return null
  if (names.length === 2 && names[0] !== 'pg_catalog') return null
  return Object.hasOwn(FAMILIES, names[names.length - 1]!) ? FAMILIES[names[names.length - 1]!]! : null
}

export function castKeeps(family: Family, v: KeyValue): boolean {
  return v.kind === 'param' || KEEPS[family].has(v.type)
}

/** '5'::int, $1::bigint: the inner value, for one cast level to a value-preserving type. */
function castValue(tc: TypeCast): KeyValue | null {
  const family = castFamily(tc.typeName)
  if (!family || !tc.arg) return null
  const inner = tc.arg as { A_Const?: A_Const; ParamRef?: { number?: number } }
  const v = inner.A_Const ? constant(inner.A_Const) : inner.ParamRef ? param(inner.ParamRef) : null
  return v && castKeeps(family, v) ? v : null
}
