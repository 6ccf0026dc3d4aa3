/** Snapshots: named sections of application state at a sequence. */
import * as native from '../native'

import { call, guarded, invalid } from './errors'
import { DEFAULTS, checkBytes, checkInteger, checkPath, compressOption } from './options'

/** One section of a snapshot. */
export interface SectionInfo {
  name: string
  /** Length once decompressed. */
  rawLen: number
  /** Length as stored. */
  storedLen: number
  compressed: boolean
}

/** A published snapshot file. */
export interface PublishedSnapshot {
  path: string
  sequence: number
  bytes: number
  /** False when an identical file was already in place. */
  created: boolean
}

/** An open snapshot: sections listed, read one at a time (checksum-verified), body verifiable. */
export class SnapshotReader {
  readonly #native: native.NativeSnapshotReader

  /** @internal */
  constructor(handle: native.NativeSnapshotReader) {
    this.#native = handle
  }

  /** Open the snapshot file at `path`; its header and section table are checked. */
  static async open(path: string): Promise<SnapshotReader> {
    return call(async () => new SnapshotReader(await native.NativeSnapshotReader.open(checkPath(path))))
  }

  /** The sequence the snapshot covers. */
  get sequence(): number {
    return guarded(() => this.#native.sequence())
  }

  /** The file's path. */
  get path(): string {
    return guarded(() => this.#native.path())
  }

  /** The sections, in the order they were added. */
  sections(): SectionInfo[] {
    return guarded(() => this.#native.sections())
  }

  /** The bytes of section `name`, checksum-verified and decompressed. */
  read(name: string): Promise<Buffer> {
    return call(() => {
      if (typeof name !== 'string') throw invalid('section name must be a string')
      return this.#native.read(name)
    })
  }

  /** Check the body hash over the whole file (BODY_HASH_MISMATCH if it fails). */
  verify(): Promise<void> {
    return call(() => this.#native.verify())
  }
}

/** Low level: collects sections, then publishes them as `snapshot.<sequence>.snap`. */
export class SnapshotBuilder {
  readonly #sections: native.NativeSection[] = []

  /**
   * Add a section (its bytes are copied now); `compress` (default true) stores it
   * zstd-compressed when that is smaller. A name given twice fails the publish with
   * `DUPLICATE_SECTION`.
   */
  add(name: string, data: Uint8Array, options: { compress?: boolean } = {}): this {
    return guarded(() => {
      if (typeof name !== 'string' || name.length === 0) throw invalid('section name must be a non-empty string')
      this.#sections.push({ name, data: checkBytes('data', data).slice(), compress: compressOption(options) ?? DEFAULTS.compressSnapshots })
      return this
    })
  }

  /**
   * Write the snapshot into `dir` (temp file, fdatasync, no-clobber link, directory fsync).
   * An identical file already there is accepted; a different one is ARTIFACT_CONFLICT.
   */
  publish(dir: string, sequence: number): Promise<PublishedSnapshot> {
    return call(() =>
      native.NativeSnapshotReader.publish(
        checkPath(dir),
        checkInteger('sequence', sequence, 0, Number.MAX_SAFE_INTEGER),
        this.#sections,
        DEFAULTS.compressionLevel,
      ),
    )
  }
}
