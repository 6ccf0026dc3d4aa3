/**
 * Snapshot upload: a shipping store's live snapshot goes to the bucket (`<node>.<sequence>`,
 * with its checkpoint watermark's HLC) once the stream holds the entries up to it, so a
 * restore can start there. Only a live snapshot goes: its checkpoint committed, unlike a
 * snapshot file left by a checkpoint that died before its MANIFEST commit. A checkpoint
 * superseded before the shipper reached it is skipped for the newer one. One upload runs at a
 * time, beside the shipments: entries never wait for it. A failure is reported and retried
 * with backoff (and after the next shipment), so a shipper with nothing left to ship still
 * uploads once the stream answers again; closing tries a failed upload once more.
 */
import type { ObjectStore } from '@nats-io/obj'

import * as native from '../../native'

import type { PersistError } from '../errors'
import type { Store } from '../store'
import { frameAt } from './fence'
import { Protocol, type Remote, backoffMs, remoteError, snapshots } from './remote'

/** The uploads of one shipper. */
export class SnapshotUploads {
  readonly #remote: Remote
  readonly #store: Store
  readonly #nodeId: number
  /** The last sequence the stream has acknowledged. */
  readonly #shipped: () => number
  readonly #onError: (error: PersistError) => void
  /** The live snapshot last uploaded (or found uploaded). */
  #uploaded = 0
  /** The HLCs (seconds, subseconds) of the checkpoint watermarks shipped, by sequence, until uploaded past. */
  readonly #watermarks = new Map<number, [number, number]>()
  #bucket: ObjectStore | null = null
  #uploading: Promise<void> | null = null
  /** The retry of a failed upload, waiting; and how many failed in a row. */
  #retry: ReturnType<typeof setTimeout> | null = null
  #failures = 0
  /** Closing or stopped: no retry is scheduled any more. */
  #ending = false

  constructor(remote: Remote, store: Store, nodeId: number, shipped: () => number, onError: (error: PersistError) => void) {
    this.#remote = remote
    this.#store = store
    this.#nodeId = nodeId
    this.#shipped = shipped
    this.#onError = onError
  }

  /** The upload running, if any. */
  get running(): Promise<void> | null {
    return this.#uploading
  }

  /** The stream acknowledged a shipment with these watermarks: (sequence, HLC seconds, subseconds) triples. */
  acknowledged(watermarks: number[]): void {
    for (let i = 0; i + 2 < watermarks.length; i += 3) {
      this.#watermarks.set(watermarks[i] ?? 0, [watermarks[i + 1] ?? 0, watermarks[i + 2] ?? 0])
    }
  }

  /** Start uploading the live snapshot if the stream holds the entries up to it and none runs. */
  start(): void {
    if (this.#retry) clearTimeout(this.#retry)
    this.#retry = null
    const live = this.#store.closed ? 0 : this.#store.snapshotSeq
    if (this.#uploading || live <= this.#uploaded || live > this.#shipped()) return
    this.#uploading = this.#upload(live).finally(() => {
      this.#uploading = null
      // A newer checkpoint may have gone live meanwhile; a failure waits for the next shipment.
      if (this.#uploaded >= live) this.start()
    })
  }

  async #upload(live: number): Promise<void> {
    try {
      this.#bucket ??= await snapshots(this.#remote)
      const name = Protocol.snapshotName(this.#nodeId, live)
      if ((await this.#bucket.info(name)) === null) {
        const bytes = await native.readSnapshotFile(this.#store.path, live)
        // Pruned since the look: a newer checkpoint is live, and goes next time.
        if (bytes === null) return
        const metadata: Record<string, string> = { node: String(this.#nodeId), sequence: String(live) }
        const hlc = this.#watermarks.get(live) ?? (await this.#watermarkAt(live))
        if (hlc) Object.assign(metadata, { hlcSeconds: String(hlc[0]), hlcSubseconds: String(hlc[1]) })
        await this.#bucket.putBlob({ name, metadata }, bytes)
      }
      this.#uploaded = live
      this.#failures = 0
      for (const sequence of this.#watermarks.keys()) if (sequence <= live) this.#watermarks.delete(sequence)
    } catch (error) {
      this.#onError(remoteError(error, `uploading node ${this.#nodeId}'s snapshot ${live}`))
      // The bucket may be what failed (gone, replaced, its leader lost): the retry opens it afresh.
      this.#bucket = null
      if (!this.#ending) {
        this.#retry = setTimeout(() => this.start(), backoffMs(this.#failures++))
        this.#retry.unref()
      }
    }
  }

  /** The shipper closes: a failed upload waiting for its retry is tried once more, now; no more retries after. */
  closing(): void {
    const waiting = this.#retry !== null
    this.#ending = true
    if (waiting) this.start()
  }

  /** The shipper stopped: no retry. */
  stop(): void {
    this.#ending = true
    if (this.#retry) clearTimeout(this.#retry)
    this.#retry = null
  }

  /**
   * The HLC (seconds, subseconds) of the checkpoint watermark at `sequence`, read from the log
   * while it still holds it: a shipper that starts after the live snapshot never ships that
   * watermark, and one that restarts forgets those it shipped. `undefined` once pruned.
   */
  async #watermarkAt(sequence: number): Promise<[number, number] | undefined> {
    const [at, seconds, subseconds] = (await frameAt(this.#store.path, this.#nodeId, sequence))?.watermarks ?? []
    return at === sequence && seconds !== undefined && subseconds !== undefined ? [seconds, subseconds] : undefined
  }
}
