/** `salvage`: get back every entry that verifies from a damaged WAL. */
import { type SalvageReport, salvage } from '../salvage'
import { parse, printable, withBar } from './args'

export const SALVAGE_USAGE = `Usage: selene-persist salvage <wal|dir> <out> [--json]

Copy every frame of a WAL (or archive) file that verifies into a new WAL <out> (which must
not exist), resynchronising past damage at the next frame whose checksums hold and whose
sequence fits: for a log a read refuses with MID_LOG_CORRUPTION or SEALED_CORRUPTION. The
source is never modified. Sequences lost in the damage are filled with checkpoint
watermarks, which replay skips, so every surviving entry keeps its sequence; the damaged
bytes are kept in <out>.damaged. A store directory is salvaged into a store <out> that opens:
its live snapshot (or, if that is damaged, the newest older one that verifies, the active WAL
rebuilt from the archives after it), each archive and the active WAL salvaged, consumer
positions, the MANIFEST last. Prints what was skipped and what is missing.

  --json   print the report as JSON

A progress bar is drawn on stderr when it is a terminal.
`

export async function salvageCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(argv, { json: { type: 'boolean' } }, 2, 2)
  if (help) return process.stdout.write(SALVAGE_USAGE), 0
  const [source = '', destination = ''] = positionals
  const report = await withBar('salvaging', (onProgress) => salvage(source, destination, { onProgress }))
  if (values.json) {
    console.log(JSON.stringify(report, null, 2))
    return 0
  }
  console.log(printable(`salvaged ${source} into ${destination}`))
  if (report.kind === 'wal') print('', report)
  else {
    if (report.damagedSnapshot !== null) console.log(`  the live snapshot ${report.damagedSnapshot} is damaged: rebuilt on snapshot ${report.snapshotSeq} and the archives after it`)
    else console.log(`  live snapshot ${report.snapshotSeq} carried over`)
    for (const [file, each] of report.files) print(`${file}: `, each)
  }
  return 0
}

function print(prefix: string, report: Omit<SalvageReport, 'kind'>): void {
  console.log(printable(`  ${prefix}${report.framesRecovered} frames, up to sequence ${report.lastSequence}`))
  if (report.headerReplaced) console.log('  the file header was damaged and replaced')
  for (const [offset, length] of report.skipped) console.log(`  skipped ${length} damaged bytes at offset ${offset}`)
  for (const [first, last] of report.missing) console.log(`  missing sequences ${first}..${last}`)
  if (report.damagedFile) console.log(printable(`  damaged bytes kept in ${report.damagedFile}`))
}
