// Type declarations for the ES module entry (index.mjs): the same API as the CommonJS build.
import cjs = require('./index.js')

export * from './index.js'
export default cjs
