/** `backup`: a consistent copy of a store while its writer runs. */
import { backup } from '../backup'
import { parse, withBar } from './args'

export const BACKUP_USAGE = `Usage: selene-persist backup <dir> <dest> [--json]

Copy the store in <dir> to <dest> (which must not exist) while its writer runs in another
process: snapshots and archives hard-linked where they can be, the active WAL copied as far
as it is durable, the MANIFEST written last, everything fsynced, and the copy renamed into
place at the end, so an interrupted backup leaves no store at <dest>. The copy opens as a
normal store. Exit code 0 with the last sequence it holds.

  --json   print { "destination", "sequence" } as JSON

A progress bar (of the active WAL's copy) is drawn on stderr when it is a terminal.
`

export async function backupCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(argv, { json: { type: 'boolean' } }, 2, 2)
  if (help) return process.stdout.write(BACKUP_USAGE), 0
  const [dir = '', destination = ''] = positionals
  const sequence = await withBar('backing up', (onProgress) => backup(dir, destination, { onProgress }))
  console.log(values.json ? JSON.stringify({ destination, sequence }) : `backed up ${dir} to ${destination}: every entry up to sequence ${sequence}`)
  return 0
}
