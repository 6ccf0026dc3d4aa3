/** `dump`: the entries of a WAL or archive file, with their headers. */
import { statSync } from 'node:fs'
import { join } from 'node:path'

import * as native from '../../native'
import { call } from '../errors'
import { UsageError, integer, parse } from './args'

export const DUMP_USAGE = `Usage: selene-persist dump <file|dir> [--from N] [--to N] [--format json|hex|text]

Print the entries of a WAL or archive file (a store directory means its wal.log), with
their headers, checkpoint watermarks included.

  --from N     first sequence (default: the first)
  --to N       last sequence (default: the last)
  --format F   json: one JSON object per line, for jq (default)
               text: one readable line per entry
               hex:  headers and a hex dump of each payload
`

function isText(payload: Buffer): boolean {
  const text = payload.toString('utf8')
  return Buffer.from(text, 'utf8').equals(payload) && !/[\x00-\x08\x0e-\x1f\x7f]/.test(text)
}

function timestamp(seconds: number, subseconds: number): string {
  const ms = seconds * 1000 + Math.floor((subseconds / 2 ** 32) * 1000)
  return Number.isFinite(ms) && ms < 8.64e15 ? new Date(ms).toISOString() : `${seconds}s+${subseconds}`
}

function origin(e: native.NativeEntry): string {
  return e.sourceNodeId === undefined || e.sourceNodeId === null ? 'local' : `replicated from node ${e.sourceNodeId} seq ${e.sourceSeq}`
}

function json(e: native.NativeEntry): string {
  const text = isText(e.payload)
  return JSON.stringify({
    sequence: e.sequence,
    offset: e.offset,
    hlc: { seconds: e.hlcSeconds, subseconds: e.hlcSubseconds, iso: timestamp(e.hlcSeconds, e.hlcSubseconds) },
    origin: e.sourceNodeId === undefined || e.sourceNodeId === null ? { kind: 'local' } : { kind: 'replicated', sourceNodeId: e.sourceNodeId, sourceSeq: e.sourceSeq },
    principal: e.principal ? e.principal.toString('base64') : null,
    watermark: e.watermark,
    compressed: e.compressed,
    storedLength: e.storedLen,
    length: e.payload.length,
    encoding: text ? 'utf8' : 'base64',
    payload: e.payload.toString(text ? 'utf8' : 'base64'),
  })
}

function header(e: native.NativeEntry): string {
  const principal = e.principal ? ` principal=${isText(e.principal) ? e.principal.toString() : e.principal.toString('hex')}` : ''
  const kind = e.watermark ? ' checkpoint-watermark' : ''
  const stored = e.compressed ? ` (zstd, stored ${e.storedLen} B)` : ''
  return `#${e.sequence} @${e.offset} ${timestamp(e.hlcSeconds, e.hlcSubseconds)} ${origin(e)}${principal}${kind} ${e.payload.length} B${stored}`
}

function text(e: native.NativeEntry): string {
  const preview = isText(e.payload) ? JSON.stringify(e.payload.toString().slice(0, 120)) : `0x${e.payload.subarray(0, 48).toString('hex')}`
  return `${header(e)}${e.payload.length > 0 ? `: ${preview}` : ''}`
}

function hex(e: native.NativeEntry): string {
  const lines = [header(e)]
  for (let at = 0; at < e.payload.length; at += 16) {
    const row = e.payload.subarray(at, at + 16)
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('')
    lines.push(`  ${at.toString(16).padStart(8, '0')}  ${row.toString('hex').replace(/(..)/g, '$1 ').padEnd(48)} ${ascii}`)
  }
  return lines.join('\n')
}

const FORMATS = { json, text, hex } as const

export async function dumpCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(argv, { from: { type: 'string' }, to: { type: 'string' }, format: { type: 'string' } }, 1, 1)
  if (help) return process.stdout.write(DUMP_USAGE), 0
  const format = (values.format ?? 'json') as string
  if (!(format in FORMATS)) throw new UsageError(`--format must be json, hex or text, got ${format}`)
  const print = FORMATS[format as keyof typeof FORMATS]
  const from = integer('from', values.from) ?? 0
  const to = integer('to', values.to) ?? Number.MAX_SAFE_INTEGER
  let path = positionals[0] ?? ''
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) path = join(path, 'wal.log')
  const reader = await call(() => native.NativeReader.open(path))
  try {
    for (;;) {
      const batch = await call(() => reader.nextBatch(from, 1024, 4 << 20, true))
      if (batch.length === 0) break
      for (const entry of batch) {
        if (entry.sequence > to) return 0
        process.stdout.write(`${print(entry)}\n`)
      }
    }
    const torn = reader.tornTail()
    if (torn) process.stderr.write(`torn tail: ${torn.discardedBytes} bytes at offset ${torn.offset} (${torn.reason}); the next writer open cuts them\n`)
  } finally {
    reader.close()
  }
  return 0
}
