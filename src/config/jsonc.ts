// Config file text to the raw document that schema.ts validates; apart from the schema because it is
// only about syntax.
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser'
import { ConfigError } from './issues.ts'

/**
 * Parses config text as JSONC (JSON plus comments and trailing commas, as in tsconfig.json), so the
 * sample config can explain every key in place. Every syntax error is reported with line and column.
 */
export function parseConfigText(text: string, source: string): unknown {
  const errors: ParseError[] = []
  const raw: unknown = parseJsonc(text, errors, { allowTrailingComma: true, disallowComments: false })
  if (errors.length > 0) {
    throw new ConfigError(
      source,
      errors.map((e) => `(top level): not valid JSON: ${describeSyntaxError(printParseErrorCode(e.error))} at ${lineColumn(text, e.offset)}`),
    )
  }
  return raw
}

// jsonc-parser names errors in PascalCase ("ValueExpected"); spell them as a sentence fragment.
function describeSyntaxError(code: string): string {
  return code.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()
}

function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset)
  const line = before.split('\n').length
  const column = before.length - before.lastIndexOf('\n')
  return `line ${line}, column ${column}`
}
