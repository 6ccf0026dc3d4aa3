/**
 * Node's `diagnostics_channel` events, for APM and OpenTelemetry users, who subscribe by name as
 * they do for undici or pg. Publishing costs nothing while nobody subscribes.
 *
 * The channels and their messages are documented once, in docs/api.md ("Diagnostics channels");
 * a contract test holds that table to `CHANNELS`.
 */
import { channel } from 'node:diagnostics_channel'

import * as native from '../native'

/** The channels, by event. */
export const CHANNELS = {
  commit: channel('selene-persist:commit'),
  checkpoint: channel('selene-persist:checkpoint'),
  prune: channel('selene-persist:prune'),
  tailRepair: channel('selene-persist:tail-repair'),
  poison: channel('selene-persist:poison'),
  warning: channel('selene-persist:warning'),
} as const

/** Publish `message()` on `event`'s channel if anyone listens (the message is built only then). */
export function publish(event: keyof typeof CHANNELS, message: () => object): void {
  const target = CHANNELS[event]
  if (target.hasSubscribers) target.publish(message())
}

/** The engine's warnings, from any thread, on the `warning` channel (kept for the life of the module). */
export const WARNINGS = native.listenWarnings((kind, path, detail) => publish('warning', () => ({ kind, path, detail })))

/** A writer's I/O totals, as its state reports them. */
type IoTotals = Pick<native.NativeWriterState, 'fdatasyncs' | 'writtenBytes' | 'writeUs' | 'fdatasyncUs'>

/**
 * What a writer's I/O cost between two readings of its totals: `bytes` written, `fdatasyncs`,
 * and the milliseconds in writes and in fdatasyncs (a span of the commit ends now and lasts
 * `writeMs + fdatasyncMs`).
 */
export function ioSince(before: IoTotals, now: IoTotals): { bytes: number; fdatasyncs: number; writeMs: number; fdatasyncMs: number } {
  return {
    bytes: now.writtenBytes - before.writtenBytes,
    fdatasyncs: now.fdatasyncs - before.fdatasyncs,
    writeMs: (now.writeUs - before.writeUs) / 1000,
    fdatasyncMs: (now.fdatasyncUs - before.fdatasyncUs) / 1000,
  }
}
