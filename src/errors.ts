/** Typed errors: every failure is a PersistError with a stable `code`. */
import { getSystemErrorMap } from 'node:util'

/**
 * Every error code this package raises; codes are stable across releases. The engine defines
 * them (`Code` in crates/engine/src/error.rs); a test checks this list against the addon's.
 */
export const ERROR_CODES = [
  'WRITER_LOCK_HELD',
  'PAYLOAD_TOO_LARGE',
  'PRINCIPAL_TOO_LARGE',
  'MID_LOG_CORRUPTION',
  'SEALED_CORRUPTION',
  'CHECKSUM_MISMATCH',
  'MAGIC_MISMATCH',
  'UNSUPPORTED_VERSION',
  'UNSUPPORTED_FRAME',
  'TRUNCATED_HEADER',
  'RESERVED_NON_ZERO',
  'NON_MONOTONIC_SEQUENCE',
  'SEQUENCE_GAP',
  'SEQUENCE_EXHAUSTED',
  'DECOMPRESSION_FAILED',
  'CLOSED',
  'POISONED',
  'INVALID_ARGUMENT',
  'DISK_FULL',
  'IO',
  'ARTIFACT_CONFLICT',
  'SNAPSHOT_CORRUPT',
  'BODY_HASH_MISMATCH',
  'DUPLICATE_SECTION',
  'SECTION_NOT_FOUND',
  'SNAPSHOT_TOO_LARGE',
  'STORE_INCONSISTENT',
  'NOT_A_FILE',
  'NOT_A_DIRECTORY',
  'UNSAFE_LINK',
  'FILE_IN_STORE',
  'CONSUMER_BEHIND_RETENTION',
  'OWNER_LOST',
  'PRODUCER_FENCED',
  'PRODUCER_GAP',
  'INTERNAL',
  'REMOTE_UNAVAILABLE',
  'REMOTE_FENCED',
  'REMOTE_INCOMPLETE',
  'NATIVE_MISSING',
  'OPTIONAL_DEPENDENCY_MISSING',
] as const

/** A stable error code: one of {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[number]

/** Where an error happened, as the addon reports it: what Node's own file-system errors carry. */
export interface ErrorPlace {
  /** The file or directory it is about. */
  path?: string
  /** The operation that failed (`open`, `create`, `write`, `fdatasync`, `rename`, ...). */
  syscall?: string
  /** The OS error number, negative as in Node's errors (Unix). */
  errno?: number
  /** The OS error's name (`ENOENT`, `EACCES`, ...): what `code` is on Node's own errors. */
  osCode?: string
}

/**
 * The one error class this package throws; switch on `code`. An error about a file also has
 * its `path`; one the OS reported (`IO`, `DISK_FULL`) also `syscall`, `errno` and `osCode`,
 * and a `cause` shaped as Node's own error for it (`cause.code === 'ENOENT'`).
 */
export class PersistError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode
  // Declared only: set when present, so `'errno' in error` tells an OS failure.
  declare readonly path?: string
  declare readonly syscall?: string
  declare readonly errno?: number
  declare readonly osCode?: string

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown } & ErrorPlace) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'PersistError'
    this.code = code
    const place: ErrorPlace = {}
    if (options?.path !== undefined) place.path = options.path
    if (options?.syscall !== undefined) place.syscall = options.syscall
    if (options?.errno !== undefined) place.errno = options.errno
    if (options?.osCode !== undefined) place.osCode = options.osCode
    Object.assign(this, place)
  }
}

/**
 * The addon's error wire: `[selene:CODE] message`, then for an error about a path a NUL and a
 * JSON object of its {@link ErrorPlace} (`path`, `syscall`, `errno`). Read only here.
 */
const NATIVE_ERROR = /^\[selene:([A-Z_]+)\] ([^\0]*)(?:\0(.*))?$/s

/** The error the addon described in `message`, or `null` if it is not one of its. */
function fromWire(message: string): PersistError | null {
  const match = NATIVE_ERROR.exec(message)
  if (!match) return null
  const place = match[3] === undefined ? {} : (JSON.parse(match[3]) as ErrorPlace)
  if (place.errno === undefined) return new PersistError(match[1] as ErrorCode, match[2] ?? '', place)
  const [osCode, description] = systemError(place.errno)
  const cause = Object.assign(new Error(`${osCode}: ${description}, ${place.syscall} '${place.path}'`), { code: osCode, ...place })
  return new PersistError(match[1] as ErrorCode, match[2] ?? '', { ...place, osCode, cause })
}

/** The name and description of the OS error `errno` (negative), as Node names it. */
function systemError(errno: number): [string, string] {
  try {
    return getSystemErrorMap().get(errno) ?? [`E${-errno}`, 'unknown error']
  } catch {
    return [`E${-errno}`, 'unknown error']
  }
}

/**
 * `error` as a PersistError if it is one or the addon raised it (its code kept), else `null`:
 * for callers that treat the package's own failures apart from others (a NATS failure, say).
 */
export function ownError(error: unknown): PersistError | null {
  if (error instanceof PersistError) return error
  return error instanceof Error ? fromWire(error.message) : null
}

/** Turn whatever the addon threw into a PersistError (unknown failures become INTERNAL). */
export function translate(error: unknown): PersistError {
  const own = ownError(error)
  if (own) return own
  const message = error instanceof Error ? error.message : String(error)
  if (error instanceof TypeError && WRONG_THIS.test(message)) return wrongThis(message, error)
  // napi-rs argument conversion failures, and detached buffers: the caller passed a wrong value.
  const code = CALLER_MISTAKE.test(message) ? 'INVALID_ARGUMENT' : 'INTERNAL'
  return new PersistError(code, message, { cause: error })
}

/** V8's messages for a private member or method used on an object of another class. */
const WRONG_THIS = /private member|Receiver must be an instance/

/** The failure of a method called on an object that is not one of this package's handles. */
function wrongThis(detail: string, cause?: unknown): PersistError {
  return new PersistError('INVALID_ARGUMENT', `a method was called on an object that is not one of this package's handles (a wrong \`this\`): ${detail}`, { cause })
}

/**
 * `self` if it is a `cls`, else INVALID_ARGUMENT: the brand check of the public methods. A
 * method whose body runs under {@link guarded} or {@link call} and reaches a private member
 * first is checked by V8 (its TypeError is translated); every other one (a method delegating to
 * another public one, a class without private state, a hot accessor) starts with this.
 */
export function receiver<T extends object>(self: unknown, cls: Function & { prototype: T }): T {
  if (self instanceof cls) return self as T
  throw wrongThis(`${cls.name}'s methods need a ${cls.name}`)
}
const CALLER_MISTAKE = /convert|expect|invalid|detached/i

/** Run `run`, turning whatever it throws into a PersistError: for the synchronous methods and getters. */
export function guarded<T>(run: () => T): T {
  try {
    return run()
  } catch (error) {
    throw translate(error)
  }
}

/** The error behind a message the addon delivered as a string (`[selene:CODE] ...`). */
export function nativeError(message: string): PersistError {
  return fromWire(message) ?? new PersistError('INTERNAL', message)
}

export async function call<T>(run: () => Promise<T> | T): Promise<T> {
  try {
    return await run()
  } catch (error) {
    throw translate(error)
  }
}

export function invalid(message: string): PersistError {
  return new PersistError('INVALID_ARGUMENT', message)
}
