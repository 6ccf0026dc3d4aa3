// What a Node user writes in an afternoon instead of installing anything (issue 16): records
// `[u32 length][u32 crc32][payload]` packed into a 1 MiB Buffer, written with writeSync per MiB;
// the durable variant groups concurrent appends (one writev and one fdatasync per group, then
// the whole group resolves), starting a group's commit at once on the first append, so under
// W2 its groups alternate 1 and 63 (js-group.mjs is the same log with a stronger group commit);
// replay reads 1 MiB chunks, checks each crc32 with zlib.crc32 and takes a subarray of each
// payload. It has no blocking durable put (see src/bench/workloads.ts for the surface).
import { closeSync, fdatasync, fdatasyncSync, openSync, readSync, writeSync, writev } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'

const CHUNK = 1 << 20

/** A record's 8-byte header: `[u32 length][u32 crc32]`. */
export const header = (v) => {
  const h = Buffer.allocUnsafe(8)
  h.writeUInt32LE(v.length, 0)
  h.writeUInt32LE(crc32(v), 4)
  return h
}

export const open = (dir) => log(dir, eager)

/** Group commit started at once by the first append: queued appends wait for the group in flight. */
function eager(fd) {
  let queue = []
  let busy = false
  const commit = async () => {
    busy = true
    while (queue.length > 0) {
      const group = queue
      queue = []
      const bufs = group.flatMap(({ v }) => [header(v), v])
      await new Promise((resolve, reject) => writev(fd, bufs, (e) => (e ? reject(e) : resolve())))
      await new Promise((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())))
      for (const w of group) w.resolve()
    }
    busy = false
  }
  return (v) =>
    new Promise((resolve) => {
      queue.push({ v, resolve })
      if (!busy) void commit()
    })
}

/** The log in `dir`, its durable `put` made by `groupCommit(fd)` (which returns `put(value)`). */
export async function log(dir, groupCommit) {
  const path = join(dir, 'log.bin')
  const fd = openSync(path, 'a')
  let buffer = Buffer.allocUnsafe(CHUNK)
  let used = 0
  const pack = (v) => {
    if (used + 8 + v.length > CHUNK) {
      writeSync(fd, buffer, 0, used)
      used = 0
      if (8 + v.length > CHUNK) buffer = Buffer.allocUnsafe(8 + v.length)
    }
    buffer.writeUInt32LE(v.length, used)
    buffer.writeUInt32LE(crc32(v), used + 4)
    v.copy(buffer, used + 8)
    used += 8 + v.length
  }
  const writeOut = () => {
    if (used > 0) writeSync(fd, buffer, 0, used)
    used = 0
  }
  const durable = groupCommit(fd)
  return {
    put: (_i, v) => durable(v),
    putMany: async (start, vs) => vs.forEach(pack),
    flush: async () => {
      writeOut()
      fdatasyncSync(fd)
    },
    close: async () => closeSync(fd),
    scan: async () => scan(),
    // Learning the tail after a crash: every record read and checked (no seal to trust).
    reopen: async () => void scan(),
  }
  function scan() {
    const rfd = openSync(path, 'r')
    const chunk = Buffer.allocUnsafe(CHUNK)
    let carry = Buffer.alloc(0)
    let n = 0
    for (;;) {
      const got = readSync(rfd, chunk, 0, CHUNK, null)
      if (got === 0) break
      const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, got)]) : chunk.subarray(0, got)
      let at = 0
      while (at + 8 <= data.length) {
        const len = data.readUInt32LE(at)
        if (at + 8 + len > data.length) break
        const payload = data.subarray(at + 8, at + 8 + len)
        if (crc32(payload) !== data.readUInt32LE(at + 4)) throw new Error(`crc mismatch at record ${n}`)
        n += payload.length > 0 ? 1 : 0
        at += 8 + len
      }
      carry = Buffer.from(data.subarray(at))
    }
    closeSync(rfd)
    return n
  }
}
