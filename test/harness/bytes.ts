// Byte builders for hand-made protocol messages in tests (from the spec).

export const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}
export const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2)
  b.writeInt16BE(n)
  return b
}
export const uint16 = (n: number): Buffer => {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
export const cstr = (s: string): Buffer => Buffer.from(s + '\0', 'utf8')
/** Byte1(type) Int32(length incl. itself) body. */
export const typed = (type: string, ...body: Buffer[]): Buffer => {
  const b = Buffer.concat(body)
  return Buffer.concat([Buffer.from(type), int32(4 + b.length), b])
}
