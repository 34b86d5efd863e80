// Ways to cut a byte stream into chunks, for tests of stream parsers (framer, scanner): a parser
// must give the same result however its input arrives.

/** The stream whole, split at every offset, at every pair of offsets, and in 1-byte chunks. */
export function splits(stream: Buffer): { name: string; chunks: Buffer[] }[] {
  const out: { name: string; chunks: Buffer[] }[] = [{ name: 'whole', chunks: [stream] }]
  for (let i = 0; i <= stream.length; i++) out.push({ name: `split at ${i}`, chunks: [stream.subarray(0, i), stream.subarray(i)] })
  for (let i = 1; i < stream.length; i++)
    for (let j = i + 1; j < stream.length; j++) out.push({ name: `split at ${i},${j}`, chunks: [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)] })
  out.push({ name: '1-byte chunks', chunks: [...stream].map((b) => Buffer.from([b])) })
  return out
}
