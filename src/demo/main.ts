// `npm start`: three embedded PostgreSQL backends under ./.pgraid-demo (kept
// between runs; delete the folder to start afresh), pgraid in front of them on
// 127.0.0.1:6432 (PGRAID_PORT: elsewhere), and the lines to paste to try it and
// to operate it: the psql and pgbench lines, the admin console, `pgraid status`
// and `verify` against the demo's config file (files.ts), and `npm run demo --
// <verb> <backend>` (control.ts) to stop, kill, start or wipe a backend from
// another terminal. Ctrl-C stops everything; SIGHUP re-reads the config file.

import path from 'node:path'
import fs from 'node:fs/promises'
import { startStack, type GeneratedConfig } from '../embedded/stack.ts'
import { writeRecord } from '../cli/runtime.ts'
import { ADMIN_USER, configFile, configText, demoDir, DEFAULT_DEMO_DIR, exists, newPassword, runningDemo, setListenPort, socketPath, stateFile, type DemoState } from './files.ts'
import { startControl } from './control.ts'

const BACKENDS = 3

const baseDir = demoDir()
const cfgFile = configFile(baseDir)
const portOverride = process.env.PGRAID_PORT ? Number(process.env.PGRAID_PORT) : undefined
if (portOverride !== undefined && (!Number.isInteger(portOverride) || portOverride < 0 || portOverride > 65535)) {
  process.stderr.write(`PGRAID_PORT must be a port number, got "${process.env.PGRAID_PORT}"\n`)
  process.exit(2)
}

const already = await runningDemo(baseDir)
if (already) {
  process.stderr.write(`a demo already runs on ${baseDir} (pid ${already.pid}, pgraid on ${already.host}:${already.port}); stop it first (Ctrl-C in its terminal)\n`)
  process.exit(1)
}

/** Ports and the admin password of an earlier start, from the config file it wrote. */
interface Kept {
  ports: number[]
  listenPort: number
}

async function kept(): Promise<Kept | null> {
  if (!exists(cfgFile)) return null
  // Validated as pgraid will (the operator may have edited it); only the backends' ports are taken here.
  const { ConfigError, loadConfig } = await import('../config/schema.ts')
  try {
    const c = await loadConfig(cfgFile)
    const ports = Array.from({ length: BACKENDS }, (_, i) => c.backends.find((b) => b.name === `pg${i + 1}`)?.port)
    if (ports.some((p) => p === undefined)) throw new Error(`${cfgFile} does not name backends pg1..pg${BACKENDS}: put them back, or delete the file to have a new one written`)
    return { ports: ports as number[], listenPort: c.listen.port }
  } catch (e) {
    process.stderr.write(`${e instanceof ConfigError ? e.message : (e as Error).message}\n(the demo reads its ports from this file; fix it or delete it to have a new one written)\n`)
    process.exit(2)
  }
}

const before = await kept()
if (before && portOverride !== undefined && portOverride !== before.listenPort) {
  await setListenPort(cfgFile, portOverride)
  process.stdout.write(`PGRAID_PORT: listen.port set to ${portOverride} in ${cfgFile}\n`)
}

/** Writes the config file at the first start: the generated config (ports chosen now) and an admin user. */
async function writeConfig(generated: GeneratedConfig): Promise<string> {
  if (exists(cfgFile)) return cfgFile
  const raw = {
    listen: { host: '127.0.0.1', port: portOverride ?? 6432 },
    backends: generated.backends,
    users: [...generated.users, { name: ADMIN_USER, auth: 'scram-sha-256', password: newPassword(), admin: true }],
    log: generated.log,
  }
  await fs.writeFile(cfgFile, configText(raw), { mode: 0o600 })
  return cfgFile
}

const stack = await startStack({ baseDir, reuse: true, ports: before?.ports, logLevel: 'info', configFile: writeConfig }).catch((e: Error) => {
  process.stderr.write(`the demo could not start: ${e.message}\n`)
  if (/port \d+ in use/.test(e.message)) process.stderr.write(`(the demo keeps its ports in ${cfgFile}: free that port, or delete the file to have new ones chosen)\n`)
  process.exit(1)
})

const removeRecord = writeRecord(cfgFile, stack.proxy.host, stack.port)
const admin = stack.config.users.find((u) => u.admin && u.password && !/^(SCRAM-SHA-256\$|md5[0-9a-f]{32}$)/.test(u.password))

// How the lines below are run: from the package root (where npm start ran), with this demo's folder.
const cwd = process.cwd()
const shown = (p: string) => (path.relative(cwd, p).startsWith('..') || path.isAbsolute(path.relative(cwd, p)) ? p : path.relative(cwd, p))
const quote = (s: string) => (/^[\w./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)
const cfgArg = quote(shown(cfgFile))
// bin/pgraid.js rather than `npx pgraid` (the same program): npx adds ~0.6 s of npm start-up to every call.
const pgraidLine = (args: string) => `node bin/pgraid.js ${args} -c ${cfgArg}`
const demoEnv = path.resolve(DEFAULT_DEMO_DIR) === baseDir ? '' : `PGRAID_DEMO_DIR=${quote(baseDir)} `
const demoLine = (args: string) => `${demoEnv}npm run demo -- ${args}`

const socket = socketPath(baseDir)
const control = await startControl(socket, {
  backends: stack.cluster.backends,
  pgraid: pgraidLine,
  demo: demoLine,
  log: (line) => process.stdout.write(`[demo] ${line}\n`),
})
const state: DemoState = { pid: process.pid, socket, host: stack.proxy.host, port: stack.port, started: new Date().toISOString() }
await fs.writeFile(stateFile(baseDir), JSON.stringify(state, null, 2) + '\n')

const url = stack.url('postgres')
const consoleUrl = admin ? `postgresql://${encodeURIComponent(admin.name)}:${encodeURIComponent(admin.password!)}@127.0.0.1:${stack.port}/pgraid` : null
process.stdout.write(`
pgraid is running on 127.0.0.1:${stack.port} in front of ${stack.cluster.backends.length} PostgreSQL backends:
${stack.cluster.backends.map((b) => `  ${b.name}  127.0.0.1:${b.port}  data in ${b.dataDir}`).join('\n')}
Its config file: ${cfgFile} (the same ports at every start)

Connect with psql:
  psql "${url}"

Run pgbench through pgraid:
  pgbench -i -s 10 "${url}" && pgbench -c 8 -j 2 -T 10 "${url}"
${
  consoleUrl
    ? `
Admin console (user ${admin!.name}, password ${admin!.password}; SHOW HELP lists its commands):
  psql "${consoleUrl}" -c "SHOW BACKENDS"
`
    : `
(no admin user with a plain-text password in ${cfgFile}: the console and pgraid status need one)
`
}
Operate it from another terminal, in ${cwd} (docs/operations.md, "Rehearse it on the demo"):
  ${pgraidLine('status')}
  ${pgraidLine('verify')}
  ${demoLine('kill pg2')}
  ${demoLine('status')}
(npm run demo -- stop|kill|start|wipe <backend>: a fast shutdown, a crash, a start, a replaced disk.)

Users: app / app-secret (SCRAM-SHA-256), md5user / md5-secret (md5), trusted (trust)${admin ? `, ${admin.name} / ${admin.password} (admin console)` : ''}.
Data lives in ${baseDir} and is reused next time. Press Ctrl-C to stop.
`)

let stopping = false
const stop = async (signal: string) => {
  if (stopping) {
    process.exit(130)
  }
  stopping = true
  process.stdout.write(`\n${signal}: stopping pgraid and the backends...\n`)
  removeRecord()
  await control.close()
  await fs.rm(stateFile(baseDir), { force: true })
  await stack.stop()
  process.stdout.write('stopped.\n')
  process.exit(0)
}
process.on('SIGINT', () => void stop('SIGINT'))
process.on('SIGTERM', () => void stop('SIGTERM'))
// As `pgraid start`: SIGHUP re-reads the config file (RELOAD in the console and `pgraid reload` do too).
process.on('SIGHUP', () => void stack.proxy.reload().catch(() => {}))
process.on('exit', () => {
  removeRecord()
})
