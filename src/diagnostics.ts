/**
 * Node's `diagnostics_channel` events, for APM and OpenTelemetry users, who subscribe by name as
 * they do for undici or pg. Publishing costs nothing while nobody subscribes.
 *
 * | channel | message |
 * |---|---|
 * | `selene-persist:commit` | `{ path, requests, failed, lastSequence }`: a group's replies arrived |
 * | `selene-persist:checkpoint` | `{ path, checkpoint }`: a checkpoint committed |
 * | `selene-persist:prune` | `{ path, result }`: retention ran |
 * | `selene-persist:tail-repair` | `{ path, repair }`: an open cut a torn tail |
 * | `selene-persist:poison` | `{ path, reason }`: the writer refuses writes from now on |
 */
import { channel } from 'node:diagnostics_channel'

/** The channels, by event. */
export const CHANNELS = {
  commit: channel('selene-persist:commit'),
  checkpoint: channel('selene-persist:checkpoint'),
  prune: channel('selene-persist:prune'),
  tailRepair: channel('selene-persist:tail-repair'),
  poison: channel('selene-persist:poison'),
} as const

/** Publish `message()` on `event`'s channel if anyone listens (the message is built only then). */
export function publish(event: keyof typeof CHANNELS, message: () => object): void {
  const target = CHANNELS[event]
  if (target.hasSubscribers) target.publish(message())
}
