/** `tail`: the entries of a store or WAL as they are appended, like `tail -f`. */
import * as native from '../../native'
import type { EntryBatch } from '../batch'
import { call } from '../errors'
import { type Waker, followBatches, followBatchesOf } from '../follow'
import { FORMATS } from './dump'
import { UsageError, integer, parse } from './args'

export const TAIL_USAGE = `Usage: selene-persist tail <dir|wal> [-f] [--from N] [--consumer NAME] [--format json|text|hex]

Print the entries of a store directory (its archives, then its active WAL) or of one WAL file,
in order, from the first after the live snapshot. Reads only, takes no lock: it can run beside
a writer in another process, whose unfinished bytes it waits for.

  -f, --follow      keep printing entries as they are appended, across checkpoints, until
                    Ctrl-C (exit code 0)
  --from N          first sequence
  --consumer NAME   start after the durable consumer NAME's position (registering it if
                    new) and acknowledge each entry once printed, as that consumer
  --format F        json (default), text or hex, as for dump
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
  const print = FORMATS[format as keyof typeof FORMATS]
  const path = positionals[0] ?? ''
  let from = integer('from', values.from)
  const name = values.consumer
  const consumers = typeof name === 'string' ? new native.NativeConsumers(path) : null
  if (consumers && typeof name === 'string') from = (await call(() => consumers.register(name, Math.max(0, (from ?? 1) - 1)))) + 1
  const abort = new AbortController()
  const stop = (): void => abort.abort()
  process.once('SIGINT', stop)
  try {
    const options = from === undefined ? { signal: abort.signal } : { from, signal: abort.signal }
    const batches: AsyncIterable<EntryBatch> = values.follow === true ? followBatches(path, options) : followBatchesOf(path, options, atEnd)
    for await (const batch of batches) {
      for (let i = 0; i < batch.length; i++) process.stdout.write(`${print(batch, i)}\n`)
      if (consumers && typeof name === 'string' && batch.length > 0) await call(() => consumers.ack(name, batch.sequence(batch.length - 1)))
    }
  } finally {
    process.off('SIGINT', stop)
  }
  return 0
}
