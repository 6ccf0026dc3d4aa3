/** Backing up a store from another process than its writer's. */
import { call } from './errors'
import { type OnProgress, progressOption, withProgress } from './examine'
import { checkPath } from './options'

/**
 * Back up the store in `dir` to `destination` (which must not exist), while its writer runs in
 * another process (or none does): a consistent copy holding the active WAL as far as its seal
 * records it durable, which opens as a normal store; a backup that dies leaves no store at
 * `destination`. Resolves with the last sequence the backup holds. In the writer's process,
 * `store.backup(destination)` copies every committed entry instead.
 */
export function backup(dir: string, destination: string, options: { onProgress?: OnProgress } = {}): Promise<number> {
  return call(() => {
    const [from, to] = [checkPath(dir), checkPath(destination)]
    return withProgress(progressOption(options), (progress) => progress.backup(from, to))
  })
}
