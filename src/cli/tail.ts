/** `tail`: the entries of a store or WAL as they are appended, like `tail -f`. */
import * as native from '../../native'
import type { EntryBatch } from '../batch'
import { call } from '../errors'
import { POLL_MS, type Waker, followBatches, followBatchesOf, logAppeared, logPresent } from '../follow'
import { FORMATS } from './dump'
import { UsageError, integer, parse, printable } from './args'
import { print } from './output'

export const TAIL_USAGE = `Usage: selene-persist tail <dir|wal> [-f] [--from N] [--consumer NAME] [--format json|text|hex]

Print the entries of a store directory (its archives, then its active WAL) or of one WAL file,
in order, from the first after the live snapshot. Reads only, takes no lock: it can run beside
a writer in another process, whose unfinished bytes it waits for.

  -f, --follow      keep printing entries as they are appended, across checkpoints, until
                    Ctrl-C (exit code 0). A path that is not a store or WAL yet (missing,
                    or a directory without wal.log) is waited for, as tail -F does; without
                    -f it is an error (exit code 1)
  --from N          first sequence
  --consumer NAME   start after the durable consumer NAME's position (registering it if
                    new), print only entries that are fdatasynced, and acknowledge them as
                    that consumer once written to standard output and drained (at least
                    once: lines still in a pipe when its reader exits count as delivered)
  --format F        json (default), text or hex, as for dump

A reader that closes the pipe (| head) ends tail quietly with exit code 0 (tail -f at its
next write); a batch not wholly written is not acknowledged. Exit code 1 when the log
cannot be read, 2 for a wrong command line.
`

/** Once nothing more is there: the end, without waiting. */
const atEnd = (): Waker => ({ arm: () => Promise.resolve(false), close: () => undefined })

export async function tailCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(
    argv,
    { follow: { type: 'boolean', short: 'f' }, from: { type: 'string' }, consumer: { type: 'string' }, format: { type: 'string' } },
    1,
    1,
  )
  if (help) return process.stdout.write(TAIL_USAGE), 0
  const format = (values.format ?? 'json') as string
  if (!(format in FORMATS)) throw new UsageError(`--format must be json, hex or text, got ${format}`)
  const show = FORMATS[format as keyof typeof FORMATS]
  const path = positionals[0] ?? ''
  let from = integer('from', values.from)
  const name = values.consumer
  const abort = new AbortController()
  const stop = (): void => abort.abort()
  process.once('SIGINT', stop)
  try {
    if (values.follow === true && !logPresent(path)) {
      process.stderr.write(`selene-persist tail: waiting for ${printable(path)} to become a store or WAL\n`)
      if (!(await logAppeared(path, POLL_MS, abort.signal))) return 0
    }
    const consumers = typeof name === 'string' ? new native.NativeConsumers(path) : null
    if (consumers && typeof name === 'string') from = (await call(() => consumers.register(name, Math.max(0, (from ?? 1) - 1)))) + 1
    // A consumer acknowledges only entries that are fdatasynced: its position never passes the durable end.
    const options = { signal: abort.signal, durable: consumers !== null, ...(from === undefined ? {} : { from }) }
    const batches: AsyncIterable<EntryBatch> = values.follow === true ? followBatches(path, options) : followBatchesOf(path, options, atEnd)
    for await (const batch of batches) {
      const lines = []
      for (let i = 0; i < batch.length; i++) lines.push(`${show(batch, i)}\n`)
      // Delivered once written and drained; a reader gone means nothing of this batch was.
      if (!(await print(lines.join('')))) return 0
      if (consumers && typeof name === 'string' && batch.length > 0) await call(() => consumers.ack(name, batch.sequence(batch.length - 1)))
    }
  } finally {
    process.off('SIGINT', stop)
  }
  return 0
}
