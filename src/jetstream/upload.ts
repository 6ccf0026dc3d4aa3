/**
 * Snapshot upload: a shipping store's live snapshot goes to the bucket (`<node>.<sequence>`,
 * with its checkpoint watermark's HLC) once the stream holds the entries up to it, so a
 * restore can start there. Only a live snapshot goes: its checkpoint committed, unlike a
 * snapshot file left by a checkpoint that died before its MANIFEST commit. A checkpoint
 * superseded before the shipper reached it is skipped for the newer one. One upload runs at a
 * time, beside the shipments: entries never wait for it. A failure is reported and retried
 * after the next shipment.
 */
import type { ObjectStore } from '@nats-io/obj'

import * as native from '../../native'

import type { PersistError } from '../errors'
import type { Store } from '../store'
import { frameAt } from './fence'
import { Protocol, type Remote, remoteError, snapshots } from './remote'

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
      for (const sequence of this.#watermarks.keys()) if (sequence <= live) this.#watermarks.delete(sequence)
    } catch (error) {
      this.#onError(remoteError(error, `uploading node ${this.#nodeId}'s snapshot ${live}`))
    }
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
