// `npm start`: three embedded PostgreSQL backends under ./.pgraid-demo (kept
// between runs; delete the folder to start afresh), pgraid in front of them on
// 127.0.0.1:6432, and the lines to paste to try it. Ctrl-C stops everything.

import path from 'node:path'
import { startStack } from '../embedded/stack.ts'

const baseDir = path.resolve(process.env.PGRAID_DEMO_DIR ?? '.pgraid-demo')
const port = Number(process.env.PGRAID_PORT ?? 6432)

const stack = await startStack({ baseDir, reuse: true, port, logLevel: 'info' })
const url = stack.url('postgres')
process.stdout.write(`
pgraid is running on 127.0.0.1:${stack.port} in front of ${stack.cluster.backends.length} PostgreSQL backends:
${stack.cluster.backends.map((b) => `  ${b.name}  127.0.0.1:${b.port}  data in ${b.dataDir}`).join('\n')}

Connect with psql:
  psql "${url}"

Run pgbench through pgraid:
  pgbench -i -s 10 "${url}" && pgbench -c 8 -j 2 -T 10 "${url}"

Users: app / app-secret (SCRAM-SHA-256), md5user / md5-secret (md5), trusted (trust).
Data lives in ${baseDir} and is reused next time. Press Ctrl-C to stop.
`)

let stopping = false
const stop = async (signal: string) => {
  if (stopping) {
    process.exit(130)
  }
  stopping = true
  process.stdout.write(`\n${signal}: stopping pgraid and the backends...\n`)
  await stack.stop()
  process.stdout.write('stopped.\n')
  process.exit(0)
}
process.on('SIGINT', () => void stop('SIGINT'))
process.on('SIGTERM', () => void stop('SIGTERM'))
