/**
 * What an HTTP stream keeps beside each append, in the entry's principal: the idempotent
 * producer's stamp, the writer's `Stream-Seq`, and whether the append closed the stream. They
 * are written in the same frame, so the same fdatasync, as the data: after a crash the log
 * alone says which producer sequences landed and whether the stream is closed.
 */

/** An idempotent producer's stamp (`Producer-Id`, `Producer-Epoch`, `Producer-Seq`). */
export interface ProducerStamp {
  id: string
  epoch: number
  seq: number
}

export interface Mark {
  producer?: ProducerStamp
  /** The `Stream-Seq` the writer sent. */
  streamSeq?: string
  /** This append closed the stream (a close with no body is an entry with no payload). */
  closed?: boolean
}

/** Version tag at the start of every mark; a principal without it is not one of ours. */
const TAG = 'ds1'

export function encodeMark(mark: Mark): Buffer | undefined {
  const fields: Record<string, unknown> = {}
  if (mark.producer) fields.p = [mark.producer.id, mark.producer.epoch, mark.producer.seq]
  if (mark.streamSeq !== undefined) fields.q = mark.streamSeq
  if (mark.closed) fields.c = 1
  return Object.keys(fields).length === 0 ? undefined : Buffer.from(TAG + JSON.stringify(fields))
}

/** The mark in a principal, or an empty one for a principal that is not a mark. */
export function decodeMark(principal: Buffer | null): Mark {
  if (principal === null || principal.length < TAG.length || principal.toString('latin1', 0, TAG.length) !== TAG) return {}
  let fields: unknown
  try {
    fields = JSON.parse(principal.toString('utf8', TAG.length))
  } catch {
    return {}
  }
  if (typeof fields !== 'object' || fields === null) return {}
  const { p, q, c } = fields as { p?: unknown; q?: unknown; c?: unknown }
  const mark: Mark = {}
  if (Array.isArray(p) && p.length === 3 && typeof p[0] === 'string' && Number.isSafeInteger(p[1]) && Number.isSafeInteger(p[2])) {
    mark.producer = { id: p[0], epoch: p[1], seq: p[2] }
  }
  if (typeof q === 'string') mark.streamSeq = q
  if (c === 1) mark.closed = true
  return mark
}
