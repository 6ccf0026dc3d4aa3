/** Salvage: every entry that verifies, copied past damage into a new log. */
import { call } from './errors'
import { type OnProgress, progressOption, withProgress } from './examine'
import { checkPath } from './options'

/** What the salvage of one WAL file found and did. */
export interface SalvageReport {
  kind: 'wal'
  /** Frames copied into the new log. */
  framesRecovered: number
  /** Byte ranges of the source skipped as damaged: `[offset, length]`, in order. */
  skipped: [number, number][]
  /** Sequence ranges lost in the damage, `[first, last]`: filled with checkpoint watermarks (which replay skips), so every surviving entry keeps its sequence. */
  missing: [number, number][]
  /** Whether the source's file header was damaged and replaced. */
  headerReplaced: boolean
  /** The last sequence of the new log. */
  lastSequence: number
  /** `<destination>.damaged`, holding the skipped bytes in order, or `null` when none were. */
  damagedFile: string | null
}

/** What the salvage of a store directory did: its live snapshot, and each WAL file's salvage. */
export interface StoreSalvageReport {
  kind: 'store'
  /** The snapshot carried over after it verified (0: none): the live one, or the newest older one when the live one is damaged. */
  snapshotSeq: number
  /** The live snapshot, when it was damaged: the active WAL was then rebuilt from the archives after `snapshotSeq` and the old active WAL. */
  damagedSnapshot: number | null
  /** `[file name, its report]` for each archive the MANIFEST lists, then the active WAL. */
  files: [string, Omit<SalvageReport, 'kind'>][]
}

/**
 * Copy every frame of `source` that verifies into a new log at `destination` (which must not
 * exist), resynchronising past damage at the next frame whose checksums hold and whose
 * sequence fits: for a log that `MID_LOG_CORRUPTION` or `SEALED_CORRUPTION` refuses. `source`
 * is a WAL file (the damaged bytes are kept in `<destination>.damaged`), or a store directory,
 * salvaged into a store that opens: its live snapshot (or, damaged, the newest older one that
 * verifies, with the active WAL rebuilt from the archives after it), each archive and the
 * active WAL salvaged, consumer positions, the MANIFEST last. The source is never modified.
 */
export function salvage(source: string, destination: string, options: { onProgress?: OnProgress } = {}): Promise<SalvageReport | StoreSalvageReport> {
  return call(async () => {
    const [from, to] = [checkPath(source), checkPath(destination)]
    const onProgress = progressOption(options)
    return JSON.parse(await withProgress(onProgress, (progress) => progress.salvage(from, to))) as SalvageReport | StoreSalvageReport
  })
}
