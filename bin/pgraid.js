#!/usr/bin/env node
// The `pgraid` executable: registers tsx so the TypeScript sources run without a build step, then hands
// argv to the CLI, which chooses the exit code.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/control/cli.ts');
await runCli(process.argv);
