// Type declarations for the ES module entry (http.mjs): the same API as the CommonJS build.
import cjs = require('./http.js')

export * from './http.js'
export default cjs
