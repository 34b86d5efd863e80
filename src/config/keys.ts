// Walks a zod config schema to list its keys with their descriptions and defaults, so error messages
// can suggest the intended key for a typo, and docs.ts can generate the key table and the sample.
import { z } from 'zod'

export type Schema = z.core.$ZodType

/** One documented key: `path` is dotted, with `[]` for "every element of this list" (e.g. `backends[].port`). */
export interface ConfigKey {
  path: string
  description: string | undefined
  /** True when omitting the key is allowed (it has a default, or is optional/computed). */
  optional: boolean
  /** Present when the schema fills in a default value. */
  default?: unknown
  /** How to describe a default computed elsewhere (`.meta({ defaultText })`), e.g. writeQuorum's majority. */
  defaultText?: string
}

export interface Unwrapped {
  inner: Schema
  optional: boolean
  hasDefault: boolean
  default?: unknown
}

// Peels default/prefault/optional/nullable/pipe wrappers down to the object, array or leaf beneath.
export function unwrap(schema: Schema): Unwrapped {
  let inner = schema
  let optional = false
  let hasDefault = false
  let dflt: unknown
  for (;;) {
    const def = inner._zod.def as unknown as { type: string; innerType?: Schema; in?: Schema; defaultValue?: unknown }
    if ((def.type === 'default' || def.type === 'prefault') && def.innerType) {
      if (!hasDefault) dflt = def.defaultValue
      hasDefault = true
      optional = true
      inner = def.innerType
    } else if ((def.type === 'optional' || def.type === 'nullable') && def.innerType) {
      if (def.type === 'optional') optional = true
      inner = def.innerType
    } else if (def.type === 'pipe' && def.in) {
      inner = def.in
    } else {
      return hasDefault ? { inner, optional, hasDefault, default: dflt } : { inner, optional, hasDefault }
    }
  }
}

export function shapeOf(schema: Schema): Record<string, Schema> | undefined {
  const def = schema._zod.def as unknown as { type: string; shape?: Record<string, Schema> }
  return def.type === 'object' ? def.shape : undefined
}

export function elementOf(schema: Schema): Schema | undefined {
  const def = schema._zod.def as unknown as { type: string; element?: Schema }
  return def.type === 'array' ? def.element : undefined
}

export function descriptionOf(schema: Schema): string | undefined {
  return (schema as unknown as { description?: string }).description
}

// zod keeps .describe() and .meta() in its global registry; defaultText is our own meta key.
function defaultTextOf(schema: Schema): string | undefined {
  const meta = z.globalRegistry.get(schema as z.ZodType) as { defaultText?: unknown } | undefined
  return typeof meta?.defaultText === 'string' ? meta.defaultText : undefined
}

/** Keys the object at `path` (as in a zod issue path) accepts; [] when the path is not an object. */
export function objectKeysAt(root: Schema, path: readonly PropertyKey[]): string[] {
  let node: Schema | undefined = unwrap(root).inner
  for (const seg of path) {
    if (!node) return []
    const next: Schema | undefined = typeof seg === 'number' ? elementOf(node) : shapeOf(node)?.[String(seg)]
    node = next ? unwrap(next).inner : undefined
  }
  const shape = node ? shapeOf(node) : undefined
  return shape ? Object.keys(shape) : []
}

/** Every key in the schema, parents before children, in declaration order. */
export function listConfigKeys(root: Schema): ConfigKey[] {
  const out: ConfigKey[] = []
  const visit = (schema: Schema, prefix: string) => {
    let { inner } = unwrap(schema)
    // A list of objects documents its element's keys under `name[]`.
    const element = elementOf(inner)
    if (element) {
      inner = unwrap(element).inner
      prefix = `${prefix}[]`
    }
    const shape = shapeOf(inner)
    if (!shape) return
    for (const [key, child] of Object.entries(shape)) {
      const path = prefix === '' ? key : `${prefix}.${key}`
      const u = unwrap(child)
      const entry: ConfigKey = { path, description: descriptionOf(child), optional: u.optional }
      if (u.hasDefault) entry.default = u.default
      const defaultText = defaultTextOf(child)
      if (defaultText !== undefined) entry.defaultText = defaultText
      out.push(entry)
      visit(child, path)
    }
  }
  visit(root, '')
  return out
}
