/** Inspecting and verifying a store directory or file, without changing it. */
import * as native from '../native'

import { type ErrorCode, call, invalid } from './errors'
import { checkObject, checkPath } from './options'

/** A WAL or archive file, as examined. */
export interface WalSummary {
  path: string
  fileBytes: number
  snapshotSeq: number
  firstSequence: number | null
  lastSequence: number | null
  entries: number
  watermarks: number
  compressedEntries: number
  storedPayloadBytes: number
  rawPayloadBytes: number
  tornTail: { reason: string; offset: number; discardedBytes: number } | null
}

/**
 * The codes of the problems that are not error codes (the engine's `inspect` module raises
 * them; the contract test holds this list to it): a torn tail, a file left by an unfinished
 * checkpoint or rotation, a stale temporary file.
 */
export const PROBLEM_CODES = ['TORN_TAIL', 'ORPHAN', 'STALE_TEMP_FILE', 'ROTATION_UNFINISHED'] as const

/** A problem's code: an {@link ErrorCode}, or one of {@link PROBLEM_CODES}. */
export type ProblemCode = ErrorCode | (typeof PROBLEM_CODES)[number]

/** One problem found, with its file and (where known) offset. */
export interface Problem {
  severity: 'error' | 'warning'
  file: string
  offset: number | null
  code: ProblemCode
  message: string
}

/** What an examination found (see crates/engine/src/inspect.rs). */
export interface Report {
  path: string
  kind: 'store' | 'wal' | 'snapshot' | 'manifest'
  manifest: { liveSnapshotSeq: number; activeWalSeq: number; archives: number[] } | null
  snapshots: { path: string; sequence: number; bytes: number; live: boolean; sections: { name: string; rawLen: number; storedLen: number; compressed: boolean }[] }[]
  archives: { sequence: number; tracked: boolean; wal: WalSummary }[]
  wal: WalSummary | null
  tempFiles: string[]
  /** The durable consumers: name, last acknowledged sequence, and sequences still to acknowledge. */
  consumers: { name: string; position: number; lagEntries: number }[]
  /** Torn tails an open cut and kept beside the WAL: `[file name, bytes]`. */
  tornFiles: [string, number][]
  problems: Problem[]
}

/** Told the bytes done so far and in all. */
export type OnProgress = (done: number, total: number) => void

/** How far a task goes between two calls of its `onProgress`: the rate is set by bytes, not by time. */
export const PROGRESS_STEP = 64 * 1024 * 1024

/**
 * Run `task` on a native progress counter, telling `onProgress` the bytes done and in all each
 * {@link PROGRESS_STEP} bytes of work (looked at every 20 ms) and once at the end.
 */
export async function withProgress<T>(onProgress: OnProgress | undefined, task: (progress: native.NativeProgress) => Promise<T>): Promise<T> {
  const progress = new native.NativeProgress()
  const running = task(progress)
  if (!onProgress) return running
  let told = 0
  const tell = (): void => {
    const [done = 0, total = 0] = progress.progress()
    if (done - told < PROGRESS_STEP && !(done === total && done > told)) return
    told = done
    onProgress(done, total)
  }
  const timer = setInterval(tell, 20)
  try {
    const result = await running
    tell()
    return result
  } finally {
    clearInterval(timer)
  }
}

/** The `onProgress` of an options object, checked (its only key). */
export function progressOption(options: unknown): OnProgress | undefined {
  const { onProgress } = checkObject('options', options, ['onProgress'])
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('onProgress must be a function')
  return onProgress as OnProgress | undefined
}

/** Options of {@link inspect} and {@link verify}. */
export interface ExamineOptions {
  /** Told the bytes examined so far and in all, every 64 MiB of them and at the end. */
  onProgress?: OnProgress
}

async function examine(path: string, deep: boolean, options: ExamineOptions): Promise<Report> {
  return call(async () => {
    const checked = checkPath(path)
    return JSON.parse(await withProgress(progressOption(options), (progress) => progress.examine(checked, deep))) as Report
  })
}

/**
 * What a store directory (or one WAL, archive, snapshot or MANIFEST file) holds: headers,
 * section tables and every frame checksum. Reads only.
 */
export function inspect(path: string, options: ExamineOptions = {}): Promise<Report> {
  return examine(path, false, options)
}

/**
 * Everything {@link inspect} checks, plus every payload decompressed, every snapshot body
 * hashed, and the MANIFEST checked against the files and the archive chain. Problems are in
 * `report.problems`; errors (severity `error`) mean damage, warnings are what the next open or
 * prune repairs. Reads only.
 */
export function verify(path: string, options: ExamineOptions = {}): Promise<Report> {
  return examine(path, true, options)
}

