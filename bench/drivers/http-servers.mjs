// The Durable Streams servers the HTTP benchmark compares, each started in a process of its
// own by `node drivers/http-servers.mjs <name> <dir>`, which prints `listening <base URL>`.
import { pathToFileURL } from 'node:url'

export const SERVERS = {
  /** selene-persist/http: a store per stream, appends acknowledged after their fdatasync. */
  'selene-persist': async (dir) => {
    const { serve } = await import('../../http.js')
    return (await serve({ dir, port: 0 })).url
  },
  /** The protocol's Node reference server in its file-backed mode (LMDB and one log file a stream). */
  reference: async (dir) => {
    const { DurableStreamTestServer } = await import('@durable-streams/server')
    return new DurableStreamTestServer({ port: 0, host: '127.0.0.1', dataDir: dir, compression: false }).start()
  },
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`listening ${await SERVERS[process.argv[2]](process.argv[3])}\n`)
}
