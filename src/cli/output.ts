/**
 * Standard output for the CLI. A reader that goes away (`| head`, EPIPE) is a normal end: quiet,
 * exit code 0, as for `cat | head`. A command that must know what was delivered (`tail
 * --consumer` acknowledges it) writes through {@link print} and waits until the lines are taken.
 */

let gone = false

// Installed once, at load: without a listener an EPIPE is an uncaught 'error' and a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') {
    gone = true
    return
  }
  process.stderr.write(`selene-persist: standard output: ${error.message}\n`)
  process.exitCode = 1
})

/** Whether the reader of standard output has gone (a closed pipe). */
export const stdoutGone = (): boolean => gone

/**
 * Write `text` to standard output and resolve once all of it was handed to the operating system
 * (written and drained): `true`, or `false` when the reader has gone, in which case nothing of
 * `text` counts as delivered. Other write errors reject.
 */
export function print(text: string): Promise<boolean> {
  if (gone) return Promise.resolve(false)
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (error) => {
      if (!error) resolve(true)
      else if (gone || (error as NodeJS.ErrnoException).code === 'EPIPE' || (error as NodeJS.ErrnoException).code === 'ERR_STREAM_DESTROYED') {
        gone = true
        resolve(false)
      } else reject(error)
    })
  })
}
