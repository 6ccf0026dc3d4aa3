/** Typed errors: every failure is a PersistError with a stable `code`. */

/** Every error code this package raises. Codes are stable across releases. */
export type ErrorCode =
  | 'WRITER_LOCK_HELD'
  | 'PAYLOAD_TOO_LARGE'
  | 'PRINCIPAL_TOO_LARGE'
  | 'MID_LOG_CORRUPTION'
  | 'SEALED_CORRUPTION'
  | 'CHECKSUM_MISMATCH'
  | 'MAGIC_MISMATCH'
  | 'UNSUPPORTED_VERSION'
  | 'UNSUPPORTED_FRAME'
  | 'TRUNCATED_HEADER'
  | 'RESERVED_NON_ZERO'
  | 'NON_MONOTONIC_SEQUENCE'
  | 'SEQUENCE_GAP'
  | 'SEQUENCE_EXHAUSTED'
  | 'DECOMPRESSION_FAILED'
  | 'CLOSED'
  | 'POISONED'
  | 'INVALID_ARGUMENT'
  | 'ARTIFACT_CONFLICT'
  | 'SNAPSHOT_CORRUPT'
  | 'BODY_HASH_MISMATCH'
  | 'DUPLICATE_SECTION'
  | 'SECTION_NOT_FOUND'
  | 'SNAPSHOT_TOO_LARGE'
  | 'STORE_INCONSISTENT'
  | 'IO'
  | 'INTERNAL'

/** The one error class this package throws; switch on `code`. */
export class PersistError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PersistError'
    this.code = code
  }
}

const NATIVE_ERROR = /^\[selene:([A-Z_]+)\] ([\s\S]*)$/

/** Turn whatever the addon threw into a PersistError (unknown failures become INTERNAL). */
export function translate(error: unknown): PersistError {
  if (error instanceof PersistError) return error
  const message = error instanceof Error ? error.message : String(error)
  const match = NATIVE_ERROR.exec(message)
  if (match) return new PersistError(match[1] as ErrorCode, match[2] ?? '', { cause: error })
  // napi-rs argument conversion failures: the caller passed a wrong type.
  const code = /convert|expect|invalid/i.test(message) ? 'INVALID_ARGUMENT' : 'INTERNAL'
  return new PersistError(code, message, { cause: error })
}

/** The error behind a message the addon delivered as a string (`[selene:CODE] ...`). */
export function nativeError(message: string): PersistError {
  const match = NATIVE_ERROR.exec(message)
  return match ? new PersistError(match[1] as ErrorCode, match[2] ?? '') : new PersistError('INTERNAL', message)
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
