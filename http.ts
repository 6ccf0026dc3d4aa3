/**
 * selene-persist/http: stores served over HTTP as Durable Streams (the protocol of
 * `@durable-streams/client` and its conformance suite). `createHandler` gives a
 * `(req, res)` handler for `node:http`, Express or Fastify; `serve` runs one on its own server.
 * Each stream is a store under one root directory; an append is acknowledged after the
 * fdatasync that covers it and the producer state it updates.
 */
import './src/addon'
export { createHandler, type HandlerOptions, type StreamHandler } from './src/http/handler'
export { type ServeOptions, type Serving, serve } from './src/http/serve'
