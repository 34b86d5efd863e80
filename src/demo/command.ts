// `npm run demo -- <verb> [backend]`: operate the running demo from another terminal (control.ts has
// the verbs). Finds the demo through demo.json in the demo folder (.pgraid-demo, or $PGRAID_DEMO_DIR).
// Exit codes: 0 done, 1 refused or failed (or, for status, the demo is not running), 2 usage.

import { configFile, demoDir, runningDemo } from './files.ts'
import { backendStatus, request, VERBS } from './control.ts'

const USAGE = `usage: npm run demo -- <verb> [backend]
  stop <backend>    fast shutdown of one PostgreSQL server (pg_ctl stop -m fast)
  kill <backend>    SIGKILL of its postmaster (a crash)
  start <backend>   start it again on its port (a fresh empty cluster if it was wiped)
  wipe <backend>    stop it, delete its data directory, start a fresh empty cluster (a replaced disk)
  status            the demo's servers: port, running or not, data directory
The demo is the one \`npm start\` runs on ${demoDir()} ($PGRAID_DEMO_DIR to choose another folder).
`

async function main(argv: string[]): Promise<number> {
  const [verb, name, ...rest] = argv
  if (!verb || verb === '-h' || verb === '--help' || verb === 'help') {
    process.stdout.write(USAGE)
    return verb ? 0 : 2
  }
  if (!(VERBS as readonly string[]).includes(verb) || rest.length || (verb === 'status' ? name !== undefined : name === undefined)) {
    process.stderr.write(USAGE)
    return 2
  }
  const dir = demoDir()
  const demo = await runningDemo(dir)
  if (!demo) {
    if (verb === 'status') {
      process.stdout.write(`no demo is running on ${dir} (npm start starts it)\n`)
      for (const n of ['pg1', 'pg2', 'pg3']) {
        const s = backendStatus({ name: n, port: 0, dataDir: `${dir}/${n}` })
        if (s.running) process.stdout.write(`  ${n}: a postmaster still runs (pid ${s.pid}); the next npm start stops it\n`)
      }
      return 1
    }
    process.stderr.write(`no demo is running on ${dir}: start it with npm start (in another terminal)${process.env.PGRAID_DEMO_DIR ? '' : ', or set PGRAID_DEMO_DIR to its folder'}\n`)
    return 1
  }
  let answer
  try {
    answer = await request(demo.socket, verb, name)
  } catch (e) {
    process.stderr.write(`could not reach the demo (pid ${demo.pid}) on ${demo.socket}: ${(e as Error).message}\n`)
    return 1
  }
  const ok = answer.status === 200
  ;(ok ? process.stdout : process.stderr).write(answer.text)
  if (verb === 'status' && ok) process.stdout.write(`pgraid: 127.0.0.1:${demo.port}, config ${configFile(dir)}\n`)
  return ok ? 0 : answer.status === 400 ? 2 : 1
}

process.exitCode = await main(process.argv.slice(2))
