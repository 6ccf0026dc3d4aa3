/**
 * The Durable Streams protocol's vocabulary in one place: its header names, the offsets this
 * server hands out, cursors, and the content-type rules the protocol decides by.
 */
import type { ServerResponse } from 'node:http'

/** Protocol headers, as the protocol spells them (HTTP compares them case-insensitively). */
export const Headers = {
  nextOffset: 'Stream-Next-Offset',
  upToDate: 'Stream-Up-To-Date',
  cursor: 'Stream-Cursor',
  closed: 'Stream-Closed',
  ttl: 'Stream-TTL',
  expiresAt: 'Stream-Expires-At',
  seq: 'Stream-Seq',
  forkedFrom: 'Stream-Forked-From',
  forkOffset: 'Stream-Fork-Offset',
  forkSubOffset: 'Stream-Fork-Sub-Offset',
  producerId: 'Producer-Id',
  producerEpoch: 'Producer-Epoch',
  producerSeq: 'Producer-Seq',
  producerExpectedSeq: 'Producer-Expected-Seq',
  producerReceivedSeq: 'Producer-Received-Seq',
} as const

/** What a browser may send and read across origins. */
export const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, PUT, DELETE, HEAD, OPTIONS',
  'access-control-allow-headers': [
    'content-type',
    'authorization',
    'if-none-match',
    Headers.seq,
    Headers.ttl,
    Headers.expiresAt,
    Headers.closed,
    Headers.producerId,
    Headers.producerEpoch,
    Headers.producerSeq,
    Headers.forkedFrom,
    Headers.forkOffset,
    Headers.forkSubOffset,
  ].join(', '),
  'access-control-expose-headers': [
    Headers.nextOffset,
    Headers.cursor,
    Headers.upToDate,
    Headers.closed,
    Headers.producerEpoch,
    Headers.producerSeq,
    Headers.producerExpectedSeq,
    Headers.producerReceivedSeq,
    'etag',
    'content-type',
    'location',
  ].join(', '),
  'x-content-type-options': 'nosniff',
  'cross-origin-resource-policy': 'cross-origin',
} as const

/**
 * Answer with `headers` and the CORS and security headers, in one `writeHead` (headers set one
 * by one before it cost each request a validation and a copy more); a text body is
 * `text/plain` unless `headers` say otherwise.
 */
export function respond(res: ServerResponse, status: number, headers: Record<string, string> = {}, body?: string | Buffer): void {
  if (res.headersSent) {
    res.end()
    return
  }
  const all: Record<string, string> = { ...CORS, ...headers }
  if (typeof body === 'string' && all['content-type'] === undefined) all['content-type'] = 'text/plain'
  res.writeHead(status, all)
  res.end(body)
}

/**
 * A position in a stream: `entries` whole entries (appends) of it, then `part` units (bytes,
 * or JSON messages) of the next one. Only forks start at a nonzero `part`.
 */
export interface Position {
  entries: number
  part: number
}

const DIGITS = 16
const OFFSET = /^(\d{16})_(\d{16})$/

/**
 * An offset as the protocol wants it: opaque to clients, ordered as strings are (both fields
 * zero-padded to 16 digits), never `-1` or `now`.
 */
export function formatOffset(at: Position): string {
  return `${String(at.entries).padStart(DIGITS, '0')}_${String(at.part).padStart(DIGITS, '0')}`
}

/** An offset this server handed out, or `null` for anything else. */
export function parseOffset(text: string): Position | null {
  const m = OFFSET.exec(text)
  if (!m) return null
  const entries = Number(m[1])
  const part = Number(m[2])
  return Number.isSafeInteger(entries) && Number.isSafeInteger(part) ? { entries, part } : null
}

export function comparePositions(a: Position, b: Position): number {
  return a.entries - b.entries || a.part - b.part
}

/** Cursors count 20-second intervals from 2024-10-09T00:00:00Z (the protocol's defaults). */
const CURSOR_EPOCH_MS = Date.UTC(2024, 9, 9)
const CURSOR_INTERVAL_MS = 20_000

/**
 * The cursor for a live response: the current interval, or, when the client already holds
 * that one or a later one, a later one still (1 to 180 intervals on), so a cache key never
 * repeats.
 */
export function nextCursor(given: string | null, now = Date.now()): string {
  const current = Math.floor((now - CURSOR_EPOCH_MS) / CURSOR_INTERVAL_MS)
  const held = given !== null && /^\d{1,15}$/.test(given) ? Number(given) : -1
  if (held < current) return String(current)
  return String(held + 1 + Math.floor(Math.random() * 180))
}

/** The media type alone, lower-cased: what two content types are compared by. */
export function mediaType(contentType: string): string {
  return contentType.split(';', 1)[0].trim().toLowerCase()
}

export function isJson(contentType: string): boolean {
  return mediaType(contentType) === 'application/json'
}

/** SSE carries text as is; any other stream's data events carry base64. */
export function isText(contentType: string): boolean {
  const type = mediaType(contentType)
  return type.startsWith('text/') || type === 'application/json'
}

/** A syntactically valid `type/subtype`. */
export function validContentType(contentType: string): boolean {
  return /^[\w.+-]+\/[\w.+-]+$/.test(mediaType(contentType))
}

/** A decimal integer in 0..2^53-1 written without sign, leading zeros or exponent. */
export function parseCount(text: string): number | null {
  if (!/^(0|[1-9]\d{0,15})$/.test(text)) return null
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : null
}
