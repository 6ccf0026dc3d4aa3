// Type declarations for the ES module entry (jetstream.mjs): the same API as the CommonJS build.
import cjs = require('./jetstream.js')

export * from './jetstream.js'
export default cjs
