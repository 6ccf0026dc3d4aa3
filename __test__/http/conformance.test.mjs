// The Durable Streams protocol's official conformance suite, run whole against selene-persist/http
// on 127.0.0.1 (a free port, its own data directory). `npm test` runs it with vitest.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runConformanceTests } from '@durable-streams/server-conformance-tests'
import { afterAll } from 'vitest'
import { serve } from '../../http.js'

const LONG_POLL_MS = 2000
const dir = mkdtempSync(join(tmpdir(), 'selene-http-conformance-'))
// Webhooks on: the suite's receivers listen on 127.0.0.1.
const server = await serve({ dir, port: 0, host: '127.0.0.1', longPollTimeoutMs: LONG_POLL_MS, webhooks: true })
afterAll(async () => {
  await server.close()
  rmSync(dir, { recursive: true, force: true })
})

runConformanceTests({ baseUrl: server.url, longPollTimeoutMs: LONG_POLL_MS, subscriptions: true })
