/**
 * The optional peer packages `selene-persist/jetstream` needs (the @nats-io clients), loaded
 * first by jetstream.ts: when one is not installed, the import fails with an
 * `OPTIONAL_DEPENDENCY_MISSING` PersistError naming each missing package and the command that
 * installs them, instead of a raw MODULE_NOT_FOUND. Their names and versions are the package's
 * own `peerDependencies`.
 */
import { PersistError } from '../errors'

const { peerDependencies } = require('../../package.json') as { peerDependencies: Record<string, string> }

const failures = Object.keys(peerDependencies).flatMap((name) => {
  try {
    require(name)
    return []
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_MODULE_NOT_FOUND') throw error
    return [{ name, error }]
  }
})

if (failures.length > 0) {
  const missing = failures.map(({ name }) => name)
  const install = failures.map(({ name }) => `"${name}@${peerDependencies[name]}"`).join(' ')
  throw new PersistError(
    'OPTIONAL_DEPENDENCY_MISSING',
    `selene-persist/jetstream needs the optional NATS packages, and ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed: npm install ${install}`,
    { cause: failures[0]?.error },
  )
}
