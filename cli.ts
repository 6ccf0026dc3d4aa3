#!/usr/bin/env node
/**
 * The selene-persist command line. `demo <dir>` shows the main job end to end: durable
 * appends from many concurrent producers, bulk ingest, a crash, repair and replay.
 */
import { spawn } from 'node:child_process'
import { appendFile, mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'

import { PersistError, WalReader, WalWriter } from './index'

const USAGE = `Usage: selene-persist <command> [options]

Commands:
  demo <dir>    Write a sample event log in <dir>, crash a writer with SIGKILL,
                recover and replay it, and print what happened and how fast.
  help          Show this text.
`

const rate = (count: number, ms: number): string => `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`

function event(seq: number): Buffer {
  return Buffer.from(JSON.stringify({ type: 'page_view', user: seq % 97, path: `/item/${seq % 1013}`, n: seq }))
}

/** Hidden helper for `demo`: appends durably until killed, printing each acknowledged sequence. */
async function crashChild(path: string): Promise<void> {
  const writer = await WalWriter.open(path, { sync: 'always' })
  for (;;) {
    const seq = await writer.append(event(writer.lastSequence + 1))
    process.stdout.write(`${seq}\n`)
  }
}

async function killAfter(path: string, acks: number): Promise<number> {
  const child = spawn(process.execPath, [__filename, '__crash-child', path], { stdio: ['ignore', 'pipe', 'inherit'] })
  let last = 0
  let seen = 0
  let buffered = ''
  await new Promise<void>((done, fail) => {
    child.on('error', fail)
    child.on('exit', () => done())
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) last = Math.max(last, Number(line))
      seen += lines.length
      if (seen >= acks) child.kill('SIGKILL')
    })
  })
  return last
}

async function demo(dirArg: string | undefined): Promise<void> {
  if (!dirArg) throw new PersistError('INVALID_ARGUMENT', 'demo needs a directory: selene-persist demo ./data')
  const dir = resolve(dirArg)
  await mkdir(dir, { recursive: true })
  const path = join(dir, 'wal.log')
  console.log(`selene-persist demo in ${dir}\n`)

  let writer = await WalWriter.open(path)
  if (writer.tailRepair) console.log(`  repaired a torn tail left by an earlier run: ${JSON.stringify(writer.tailRepair)}`)
  const start = writer.lastSequence

  const producers = 64
  const perProducer = 100
  let t0 = performance.now()
  await Promise.all(
    Array.from({ length: producers }, async () => {
      for (let i = 0; i < perProducer; i++) await writer.append(event(writer.lastSequence + 1))
    }),
  )
  let ms = performance.now() - t0
  const durable = producers * perProducer
  console.log(`1. ${durable} durable appends from ${producers} concurrent producers (sync 'always'): ${ms.toFixed(0)} ms, ${rate(durable, ms)}`)
  console.log(`   each resolved only after its group's fdatasync; sequences ${start + 1}..${writer.lastSequence}`)

  const bulk = 100_000
  t0 = performance.now()
  for (let i = 0; i < bulk; i += 1000) {
    await writer.appendBatch(Array.from({ length: 1000 }, (_, j) => event(start + durable + i + j + 1)))
  }
  ms = performance.now() - t0
  console.log(`2. ${bulk.toLocaleString('en-US')} events ingested in batches of 1000, each batch durable: ${ms.toFixed(0)} ms, ${rate(bulk, ms)}`)
  await writer.close()

  const lastAcked = await killAfter(path, 200)
  console.log(`3. a child process appended durably and was killed with SIGKILL after acknowledging sequence ${lastAcked}`)
  await appendFile(path, Buffer.from('half a frame that never finished'))
  console.log('   then 32 garbage bytes were appended to simulate a torn final write')

  t0 = performance.now()
  writer = await WalWriter.open(path)
  ms = performance.now() - t0
  const repair = writer.tailRepair
  console.log(`4. reopened in ${ms.toFixed(1)} ms; tail repair: ${repair ? `${repair.reason}, ${repair.discardedBytes} bytes cut at offset ${repair.offset}` : 'none'}`)
  console.log(`   last sequence ${writer.lastSequence} >= last acknowledged ${lastAcked}: ${writer.lastSequence >= lastAcked ? 'yes' : 'NO'}`)
  await writer.close()

  t0 = performance.now()
  let count = 0
  let expected = 1
  for await (const entry of (await WalReader.open(path)).entries()) {
    if (entry.sequence !== expected++) throw new Error(`gap before sequence ${entry.sequence}`)
    count++
  }
  ms = performance.now() - t0
  console.log(`5. replayed ${count.toLocaleString('en-US')} entries, every checksum verified, no gaps: ${ms.toFixed(0)} ms, ${rate(count, ms)}`)
  console.log(`\nThe log is in ${path}; run the demo again to append more.`)
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'demo':
      await demo(rest[0])
      return 0
    case '__crash-child':
      await crashChild(rest[0] ?? '')
      return 0
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE)
      return command === undefined ? 2 : 0
    default:
      process.stderr.write(`selene-persist: unknown command '${command}'\n\n${USAGE}`)
      return 2
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
