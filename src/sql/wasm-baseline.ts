// libpg-query's WASM parser runs on V8's baseline compiler (Liftoff) only. Tiering it up to TurboFan
// compiled its large functions on a background thread whose malloc arena then kept 15-25 MiB resident
// for good (pgraid with 200 idle sessions: 88-93 MiB with this, 101-114 MiB without), and parsing
// measured no faster with TurboFan (the time goes to the JS glue and JSON). The flag must be set before
// libpg-query compiles its module, which it starts when imported: every module importing libpg-query
// imports this one first. It is the only WASM pgraid runs.
import v8 from 'node:v8'

v8.setFlagsFromString('--liftoff-only')
