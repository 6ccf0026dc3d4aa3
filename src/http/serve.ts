/** `serve`: the handler on a `node:http` server of its own, on loopback unless told otherwise. */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

import { createHandler, type HandlerOptions } from './handler'

export interface ServeOptions extends HandlerOptions {
  /** Port to listen on (default 0: any free one). */
  port?: number
  /** Interface to listen on (default 127.0.0.1). Anything else exposes every stream to that network. */
  host?: string
}

export interface Serving {
  /** The base URL streams are under, e.g. `http://127.0.0.1:4437`. */
  url: string
  server: Server
  /** Stop accepting, end live reads, close every store. */
  close(): Promise<void>
}

export async function serve(options: ServeOptions): Promise<Serving> {
  const handler = await createHandler(options)
  const server = createServer(handler)
  const host = options.host ?? '127.0.0.1'
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (error) {
    await handler.close()
    throw error
  }
  const { port } = server.address() as AddressInfo
  const shown = host.includes(':') ? `[${host}]` : host
  return {
    url: `http://${shown}:${port}`,
    server,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      await handler.close()
      server.closeAllConnections()
      await closed
    },
  }
}
