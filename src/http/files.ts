/**
 * The HTTP server's own small files (a stream's `meta.json`, subscriptions, the signing key),
 * written so that a crash leaves each whole or absent.
 */
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { dirname } from 'node:path'

/** Create `path` (it must not exist) holding `text`, owner-only, fdatasynced before it returns. */
export async function writeSynced(path: string, text: string): Promise<void> {
  const handle = await fs.open(path, 'wx', 0o600)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** fsync a directory: the names created, renamed or removed in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Replace `file` with `text` whole: a synced temp file renamed over it, then its directory synced. */
export async function publish(file: string, text: string): Promise<void> {
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`
  await writeSynced(temp, text)
  await fs.rename(temp, file)
  await fsyncDir(dirname(file))
}
