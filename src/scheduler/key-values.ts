// Key locks: turns "this statement touches only the rows with these key
// values" (from the SQL analysis, with bind parameters filled in) into lock
// resource names. Values are canonicalised by the column's type, so that
// `WHERE id = 5`, `$1 = '5'` (text) and `$1 = 5` (binary int4) name the same
// key; a value that cannot be canonicalised makes the caller lock the table.

import { paramFormat, parseBind } from '../protocol/decode.ts'
import type { KeyValue } from '../sql/types.ts'

export interface BindParams {
  formats: number[]
  values: (Buffer | null)[]
}

type ColKind = 'int' | 'text' | 'bpchar' | 'uuid' | 'bool' | 'other'

function kindOf(typname: string): ColKind {
  switch (typname) {
    case 'int2':
    case 'int4':
    case 'int8':
    case 'oid':
      return 'int'
    case 'text':
    case 'varchar':
    case 'name':
    case 'citext':
      return typname === 'citext' ? 'other' : 'text'
    case 'bpchar':
      return 'bpchar'
    case 'uuid':
      return 'uuid'
    case 'bool':
      return 'bool'
    default:
      return 'other'
  }
}

function fromText(text: string, kind: ColKind): string | null {
  switch (kind) {
    case 'int':
      return /^\s*[+-]?\d+\s*$/.test(text) ? BigInt(text.trim()).toString() : null
    case 'text':
      return text
    case 'bpchar':
      return text.replace(/ +$/, '')
    case 'uuid': {
      const hex = text
        .trim()
        .replace(/^\{|\}$/g, '')
        .replace(/-/g, '')
        .toLowerCase()
      return /^[0-9a-f]{32}$/.test(hex) ? hex : null
    }
    case 'bool': {
      const v = text.trim().toLowerCase()
      if (['t', 'true', 'y', 'yes', 'on', '1'].includes(v)) return 't'
      if (['f', 'false', 'n', 'no', 'off', '0'].includes(v)) return 'f'
      return null
    }
    default:
      return null
  }
}

function fromBinary(b: Buffer, kind: ColKind): string | null {
  switch (kind) {
    case 'int':
      if (b.length === 2) return String(b.readInt16BE(0))
      if (b.length === 4) return String(b.readInt32BE(0))
      if (b.length === 8) return b.readBigInt64BE(0).toString()
      return null
    case 'text':
      return b.toString('utf8')
    case 'bpchar':
      return b.toString('utf8').replace(/ +$/, '')
    case 'uuid':
      return b.length === 16 ? b.toString('hex') : null
    case 'bool':
      return b.length === 1 ? (b[0] ? 't' : 'f') : null
    default:
      return null
  }
}

/** Canonical text of one key value for a column of type `typname`; null = unknown. */
export function canonical(v: KeyValue, typname: string, params: BindParams | null): string | null {
  const kind = kindOf(typname)
  if (kind === 'other') return null
  if (v.kind === 'const') {
    if (v.type === 'null' || v.type === 'float') return null
    if (v.type === 'bool') return kind === 'bool' ? fromText(v.text, 'bool') : null
    return fromText(v.text, kind)
  }
  if (!params) return null
  const raw = params.values[v.index - 1]
  if (raw === undefined || raw === null) return null
  const format = paramFormat(params.formats, v.index - 1)
  return format === 1 ? fromBinary(raw, kind) : fromText(raw.toString('utf8'), kind)
}

/** A Bind body's parameter formats and values (views, no copy), by the one Bind parser. */
export function bindParams(body: Buffer): BindParams {
  const { formats, values } = parseBind(body)
  return { formats, values }
}
