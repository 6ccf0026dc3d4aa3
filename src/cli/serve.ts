/** `serve`: the streams under a directory, over HTTP as Durable Streams, until Ctrl-C. */
import { serve } from '../http/serve'
import { UsageError, integer, parse } from './args'

export const SERVE_USAGE = `Usage: selene-persist serve <dir> [--port N] [--host H]

Serve the streams under <dir> (created if missing) over HTTP as Durable Streams: PUT creates a
stream, POST appends (acknowledged after its fdatasync), GET reads from an offset, live with
?live=long-poll or ?live=sse. Prints the base URL, then serves until Ctrl-C or SIGTERM.

  --port N   port to listen on (default 4437; 0 picks a free one)
  --host H   interface to listen on (default 127.0.0.1, this machine only). Another
             address serves every stream to that network without authentication:
             put a proxy that authenticates in front of it

Exit code 1 when the directory cannot be opened or the port is taken, 2 for a wrong
command line.
`

export async function serveCommand(argv: string[]): Promise<number> {
  const { positionals, values, help } = parse(argv, { port: { type: 'string' }, host: { type: 'string' } }, 1, 1)
  if (help) return process.stdout.write(SERVE_USAGE), 0
  const port = integer('port', values.port) ?? 4437
  if (port > 65535) throw new UsageError(`--port takes 0 to 65535, got ${port}`)
  const host = typeof values.host === 'string' ? values.host : '127.0.0.1'
  const server = await serve({ dir: positionals[0] ?? '', port, host })
  process.stdout.write(`serving ${positionals[0]} at ${server.url}\n`)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await server.close()
  return 0
}
