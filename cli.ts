#!/usr/bin/env node
/** The selene-persist command line: inspect, verify, dump, tail, backup, salvage, ship, replicate, restore, demo, bench. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { PersistError } from './index'
import { UsageError, printable, unknownName } from './src/cli/args'
import { BACKUP_USAGE, backupCommand } from './src/cli/backup'
import { BENCH_USAGE, benchCommand } from './src/cli/bench'
import { DEMO_USAGE, crashChild, demoCommand } from './src/cli/demo'
import { DUMP_USAGE, dumpCommand } from './src/cli/dump'
import { INSPECT_USAGE, VERIFY_USAGE, inspectCommand, verifyCommand } from './src/cli/examine'
import { AUDIT_USAGE, REPLICATE_USAGE, RESTORE_USAGE, SHIP_USAGE, auditCommand, replicateCommand, restoreCommand, shipCommand } from './src/cli/remote'
import { SALVAGE_USAGE, salvageCommand } from './src/cli/salvage'
import { TAIL_USAGE, tailCommand } from './src/cli/tail'
// Loaded for its effect on every command: a closed stdout pipe (EPIPE) is a quiet end.
import './src/cli/output'

const USAGE = `Usage: selene-persist <command> [options]   (selene-persist <command> --help for more)

Commands:
  inspect <dir|file>   what a store or file holds: MANIFEST, snapshots, archives, WAL range
  verify <dir|file>    check every checksum, hash and cross-file rule; exit 1 on errors
  dump <file|dir>      print entries with their headers (json, text or hex)
  tail <dir|wal> [-f]  print entries as they are appended, like tail -f; --consumer NAME
  backup <dir> <dest>  a consistent copy of a store while its writer runs
  salvage <wal> <out>  every entry that verifies, copied past damage into a new WAL
  ship <dir>           ship a store's log to a NATS JetStream stream (--server, --stream, --node)
  replicate <dir>      append a JetStream stream's shipments into a store, each entry once
  restore <dir>        a new store from a node's snapshot and shipments in JetStream
  audit <dir>          check that a JetStream stream still holds every entry it acknowledged
  demo <dir>           a sample event log: append, checkpoint, prune, crash, recover
  bench [--quick]      time this package's workloads on this machine
  help [command]       show this text, or a command's usage (also --help); --version prints the version

Exit codes: 0 ok; 1 problems found (any ERROR that inspect or verify reports, warnings too
with verify --strict) or the operation failed; 2 a wrong command line. A reader that closes
the pipe (| head) is a normal end: quiet, exit code 0.
`

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; usage: string }> = {
  inspect: { run: inspectCommand, usage: INSPECT_USAGE },
  verify: { run: verifyCommand, usage: VERIFY_USAGE },
  dump: { run: dumpCommand, usage: DUMP_USAGE },
  tail: { run: tailCommand, usage: TAIL_USAGE },
  backup: { run: backupCommand, usage: BACKUP_USAGE },
  salvage: { run: salvageCommand, usage: SALVAGE_USAGE },
  ship: { run: shipCommand, usage: SHIP_USAGE },
  replicate: { run: replicateCommand, usage: REPLICATE_USAGE },
  restore: { run: restoreCommand, usage: RESTORE_USAGE },
  audit: { run: auditCommand, usage: AUDIT_USAGE },
  demo: { run: demoCommand, usage: DEMO_USAGE },
  bench: { run: benchCommand, usage: BENCH_USAGE },
}

/** This package's version, from the package.json beside this file. */
const version = (): string => (JSON.parse(readFileSync(join(__dirname, 'package.json'), 'utf8')) as { version: string }).version

/** A wrong command line: one line for a mistyped name, else the message and `usage`; exit code 2. */
function usageError(prefix: string, error: UsageError, usage: string): number {
  process.stderr.write(`${prefix}: ${error.message}\n${error.withUsage ? `\n${usage}` : ''}`)
  return 2
}

async function main([command, ...rest]: string[]): Promise<number> {
  if (command === '__crash-child') return crashChild(rest[0] ?? '').then(() => 0)
  if (command === undefined) return process.stderr.write(USAGE), 2
  const help = command === 'help' || command === '--help' || command === '-h'
  // `help <command>` is that command's usage; past that, and after `--version`, an argument is a mistake, not ignored.
  if (help && rest.length === 1 && rest[0] !== undefined) {
    const entry = COMMANDS[rest[0]]
    if (entry) return process.stdout.write(entry.usage), 0
    return usageError('selene-persist', unknownName('command', rest[0], Object.keys(COMMANDS), 'selene-persist help lists the commands'), USAGE)
  }
  if ((help || command === '--version' || command === '-v') && rest.length > 0) {
    return usageError('selene-persist', new UsageError(`${command} takes ${help ? 'at most a command' : 'no arguments'} (given '${printable(rest.join(' '))}')`, false), USAGE)
  }
  if (help) return process.stdout.write(USAGE), 0
  if (command === '--version' || command === '-v') return process.stdout.write(`${version()}\n`), 0
  const entry = COMMANDS[command]
  if (!entry) {
    const error = command.startsWith('-')
      ? unknownName('option', command, ['--help', '--version'], 'the options before a command: --help, --version')
      : unknownName('command', command, [...Object.keys(COMMANDS), 'help'], 'selene-persist help lists the commands')
    return usageError('selene-persist', error, USAGE)
  }
  try {
    return await entry.run(rest)
  } catch (error) {
    if (error instanceof UsageError) return usageError(`selene-persist ${command}`, error, entry.usage)
    throw error
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    const code = error instanceof PersistError ? ` [${error.code}]` : ''
    process.stderr.write(`selene-persist: ${error instanceof Error ? error.message : String(error)}${code}\n`)
    process.exitCode = 1
  },
)
