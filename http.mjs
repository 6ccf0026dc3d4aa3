// ES module entry of selene-persist/http: the same functions as the CommonJS build (loaded with
// require for the reason jetstream.mjs gives).
import { createRequire } from 'node:module'

const cjs = createRequire(import.meta.url)('./http.js')

export const { createHandler, serve } = cjs
export default cjs
