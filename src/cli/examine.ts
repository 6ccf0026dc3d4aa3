/** `inspect` and `verify`: what is in a store or file, and whether it is all intact. */
import { type Problem, type Report, type WalSummary, inspect, verify } from '../examine'
import { bytes, parse, printable, withBar } from './args'

export const INSPECT_USAGE = `Usage: selene-persist inspect <dir|file> [--json]

Show what a store directory (or one WAL, archive, snapshot or MANIFEST file) holds: the
MANIFEST, snapshots and their sections, archives, the active WAL's sequence range, entry
counts and compression, torn tails, orphans and temp files. Reads only; changes nothing.
Exit code 0 when it found no errors (warnings, such as a torn tail the next open repairs,
are listed), 1 when it did (or the path cannot be read), 2 for a wrong command line; verify
checks more.

  --json   print the report as JSON
`

export const VERIFY_USAGE = `Usage: selene-persist verify <dir|file> [--json] [--strict]

Check every checksum and hash, decompress every payload, and check the MANIFEST against the
files and sequence continuity across archives. Prints each problem with its file and offset.
Exit code 0 when there are no errors (warnings, such as a torn tail the next open repairs,
are listed), 1 when there are, 2 for a wrong command line.

  --json     print the report as JSON
  --strict   fail on warnings too
`

/** Run an examination, drawing progress on a terminal. */
function examine(path: string, deep: boolean): Promise<Report> {
  return withBar(deep ? 'verifying' : 'reading', (onProgress) => (deep ? verify : inspect)(path, { onProgress }))
}

/** How many of the report's problems are errors (warnings are not). */
const errorsIn = (report: Report): number => report.problems.filter((p) => p.severity === 'error').length

const name = (path: string): string => path.split('/').pop() ?? path

function range(wal: WalSummary): string {
  return wal.firstSequence === null ? `empty (after ${wal.snapshotSeq})` : `sequences ${wal.firstSequence}..${wal.lastSequence}`
}

function walLine(wal: WalSummary): string {
  const ratio = wal.storedPayloadBytes > 0 ? ` compression ${(wal.rawPayloadBytes / wal.storedPayloadBytes).toFixed(2)}x` : ''
  const marks = wal.watermarks > 0 ? ` (${wal.watermarks} watermark${wal.watermarks > 1 ? 's' : ''})` : ''
  return `${name(wal.path)}  ${range(wal)}  ${wal.entries} entries${marks}  ${bytes(wal.fileBytes)}${ratio}`
}

function problemLine(p: Problem): string {
  return `  ${p.severity === 'error' ? 'ERROR  ' : 'warning'} ${p.file}${p.offset === null ? '' : `@${p.offset}`}  ${p.code}: ${p.message}`
}

/** The report as text, every line printable on a terminal whatever the files hold. */
export function render(report: Report): string {
  const lines = [`${report.kind} ${report.path}`]
  if (report.manifest) {
    const m = report.manifest
    lines.push(`MANIFEST      live snapshot ${m.liveSnapshotSeq}, active WAL after ${m.activeWalSeq}, archives [${m.archives.join(', ')}]`)
  } else if (report.kind === 'store') {
    lines.push('MANIFEST      none (no checkpoint yet)')
  }
  for (const s of report.snapshots) {
    const sections = s.sections.map((c) => `${c.name} ${bytes(c.rawLen)}${c.compressed ? ` (stored ${bytes(c.storedLen)})` : ''}`).join(', ')
    lines.push(`snapshot      ${name(s.path)}${s.live ? ' (live)' : ''}  ${bytes(s.bytes)}  sections: ${sections || 'none'}`)
  }
  for (const a of report.archives) lines.push(`archive       ${walLine(a.wal)}${a.tracked ? '' : '  (not in MANIFEST)'}`)
  if (report.wal) lines.push(`${report.kind === 'store' ? 'active WAL' : 'WAL'}    ${walLine(report.wal)}`)
  for (const c of report.consumers) lines.push(`consumer      ${c.name}  at ${c.position}, ${c.lagEntries} behind`)
  for (const [file, size] of report.tornFiles) lines.push(`torn bytes    ${file}  ${bytes(size)} (cut by a repair and kept; prune removes old ones)`)
  if (report.tempFiles.length > 0) lines.push(`temp files    ${report.tempFiles.join(', ')}`)
  const problems = report.problems
  lines.push(problems.length === 0 ? 'problems      none' : `problems      ${problems.length}`)
  lines.push(...problems.map(problemLine))
  return lines.map(printable).join('\n')
}

export async function inspectCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(argv, { json: { type: 'boolean' } }, 1, 1)
  if (help) return process.stdout.write(INSPECT_USAGE), 0
  const report = await examine(positionals[0] ?? '', false)
  console.log(values.json ? JSON.stringify(report, null, 2) : render(report))
  return errorsIn(report) > 0 ? 1 : 0
}

export async function verifyCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(argv, { json: { type: 'boolean' }, strict: { type: 'boolean' } }, 1, 1)
  if (help) return process.stdout.write(VERIFY_USAGE), 0
  const report = await examine(positionals[0] ?? '', true)
  const errors = errorsIn(report)
  const warnings = report.problems.length - errors
  if (values.json) console.log(JSON.stringify(report, null, 2))
  else {
    console.log(render(report))
    console.log(errors === 0 && warnings === 0 ? 'verified: no problems' : `verified: ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`)
  }
  return errors > 0 || (values.strict === true && warnings > 0) ? 1 : 0
}
