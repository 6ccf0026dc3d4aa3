// The W3 floor (issue 29), a reference rather than a peer, for W3 alone: the ingest loop of
// src/bench/workloads.ts takes each record's payload view as it does for every peer, and this
// driver's `putMany` only counts the bytes the JS framed log (js-log.mjs) would write for it,
// payload + 8, writing one prebuilt 1 MiB buffer with writeSync for every MiB counted; `flush`
// writes the rest and calls fdatasync once. What any peer pays for the same records and bytes,
// with no framing or copy. (crates/engine/examples/write_floor.rs is the floor with no JS at
// all: the kernel and the disk writing a given byte count.)
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'

const CHUNK = 1 << 20
const W3_ONLY = () => Promise.reject(new Error('the W3 floor runs W3 only'))

export async function open(dir) {
  const fd = openSync(join(dir, 'floor.bin'), 'a')
  const chunk = Buffer.alloc(CHUNK, 7)
  let pending = 0
  return {
    putMany: async (_start, values) => {
      for (const v of values) {
        pending += v.length + 8
        if (pending >= CHUNK) {
          writeSync(fd, chunk)
          pending -= CHUNK
        }
      }
    },
    flush: async () => {
      if (pending > 0) writeSync(fd, chunk, 0, pending)
      pending = 0
      fdatasyncSync(fd)
    },
    close: async () => closeSync(fd),
    put: W3_ONLY,
    scan: W3_ONLY,
    reopen: W3_ONLY,
  }
}
