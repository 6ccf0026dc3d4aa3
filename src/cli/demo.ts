/** `demo`: the main job end to end on a sample event log. */
import { appendFile, mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'

import { Store } from '../store'
import { parse } from './args'
import { runUntilKilled } from './kill'

export const DEMO_USAGE = `Usage: selene-persist demo <dir>

Keep a sample event log in the store directory <dir> (created if missing): durable appends
from 64 concurrent producers, bulk batches, a checkpoint and prune, a writer killed with
SIGKILL, a torn write, then recovery. Prints what happened and how fast. Run it again to
continue the same store.
`

const TYPES = ['page_view', 'click', 'signup', 'purchase'] as const

/** The demo's application state: how many events of each type. */
class Tally {
  count = 0
  byType: Record<string, number> = {}

  apply(payload: Buffer): void {
    const event = JSON.parse(payload.toString()) as { n: number; type: string }
    if (event.n !== this.count + 1) throw new Error(`event ${event.n} arrived after ${this.count}`)
    this.count = event.n
    this.byType[event.type] = (this.byType[event.type] ?? 0) + 1
  }

  sections(): Record<string, Buffer> {
    return { tally: Buffer.from(JSON.stringify({ count: this.count, byType: this.byType })) }
  }

  static event(n: number): Buffer {
    return Buffer.from(JSON.stringify({ n, type: TYPES[n % TYPES.length], at: 1_700_000_000 + n }))
  }
}

/** Open the store and rebuild the tally: snapshot, then replay. */
async function recover(dir: string): Promise<{ store: Store; tally: Tally; replayed: number }> {
  const store = await Store.open(dir)
  const tally = new Tally()
  if (store.snapshot) Object.assign(tally, JSON.parse((await store.snapshot.read('tally')).toString()))
  let replayed = 0
  for await (const entry of store.replay()) {
    tally.apply(entry.payload)
    replayed++
  }
  return { store, tally, replayed }
}

const rate = (count: number, ms: number): string => `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`
const since = (t0: number): number => performance.now() - t0

/** Hidden helper for `demo`: appends and checkpoints durably until killed. */
export async function crashChild(dir: string): Promise<void> {
  const { store, tally } = await recover(dir)
  for (;;) {
    const n = tally.count + 1
    await store.append(Tally.event(n))
    tally.apply(Tally.event(n))
    process.stdout.write(`ack ${n}\n`)
    if (n % 500 === 0) void store.checkpoint(() => tally.sections())
  }
}

async function demo(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  console.log(`selene-persist demo in ${dir}\n`)

  let t0 = performance.now()
  let { store, tally, replayed } = await recover(dir)
  console.log(`0. opened and recovered ${tally.count} earlier events (${replayed} replayed) in ${since(t0).toFixed(1)} ms`)

  const producers = 64
  const each = 100
  t0 = performance.now()
  await Promise.all(
    Array.from({ length: producers }, async () => {
      for (let i = 0; i < each; i++) {
        const event = Tally.event(tally.count + 1)
        tally.apply(event)
        await store.append(event)
      }
    }),
  )
  let ms = since(t0)
  console.log(`1. ${producers * each} durable appends from ${producers} concurrent producers (sync 'always'): ${ms.toFixed(0)} ms, ${rate(producers * each, ms)}`)
  console.log('   each resolved only after the fdatasync of the group it was committed in')

  const bulk = 100_000
  t0 = performance.now()
  for (let i = 0; i < bulk; i += 1000) {
    const batch = Array.from({ length: 1000 }, () => {
      const event = Tally.event(tally.count + 1)
      tally.apply(event)
      return event
    })
    await store.appendBatch(batch)
  }
  ms = since(t0)
  console.log(`2. ${bulk.toLocaleString('en-US')} events in durable batches of 1000: ${ms.toFixed(0)} ms, ${rate(bulk, ms)}`)

  t0 = performance.now()
  const checkpoint = await store.checkpoint(tally.sections())
  console.log(`3. checkpoint at sequence ${checkpoint.sequence}: snapshot of ${checkpoint.snapshotBytes} bytes, WAL sealed as ${checkpoint.archivePath.split('/').pop()}, ${since(t0).toFixed(1)} ms`)
  const pruned = await store.prune({ keepSnapshots: 2, keepArchives: 2 })
  console.log(`   prune kept snapshots [${pruned.retainedSnapshots.join(', ')}], archives [${pruned.retainedArchives.join(', ')}], freed ${pruned.bytesReclaimed.toLocaleString('en-US')} bytes`)
  await store.close()

  const acked = await runUntilKilled(join(__dirname, '..', '..', 'cli.js'), ['__crash-child', dir], 1200, 0)
  console.log(`4. a child process appended and checkpointed durably, and was SIGKILLed after acknowledging event ${acked}`)
  await appendFile(join(dir, 'wal.log'), Buffer.from('half a frame that never finished'))
  console.log('   then 32 garbage bytes were appended to wal.log to simulate a torn final write')

  t0 = performance.now()
  ;({ store, tally, replayed } = await recover(dir))
  ms = since(t0)
  const repair = store.tailRepair
  console.log(`5. recovered in ${ms.toFixed(1)} ms: snapshot ${store.recovery.snapshotSeq}, ${replayed.toLocaleString('en-US')} events replayed (${rate(replayed, ms)})`)
  console.log(`   torn tail: ${repair ? `${repair.reason}, ${repair.discardedBytes} bytes cut at offset ${repair.offset}` : 'none'}`)
  console.log(`   ${tally.count} events recovered, every acknowledged one (${acked}) included: ${tally.count >= acked ? 'yes' : 'NO'}`)
  console.log(`   by type: ${JSON.stringify(tally.byType)}`)
  await store.close()
  console.log(`\nThe store is in ${dir}; run the demo again to continue it.`)
  if (tally.count < acked) throw new Error(`recovered ${tally.count} events, fewer than the ${acked} acknowledged`)
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { positionals, help } = parse(argv, {}, 1, 1)
  if (help) return process.stdout.write(DEMO_USAGE), 0
  const dir = resolve(positionals[0] ?? '')
  await mkdir(dir, { recursive: true })
  await demo(dir)
  return 0
}
