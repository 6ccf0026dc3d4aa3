/** Killing a writer mid-flight: shared by `demo`, the kill -9 tests and the soak script. */
import { spawn } from 'node:child_process'

/**
 * Run `node script ...args`, a child that prints `ack <n>` for each acknowledged entry; once it
 * has printed `minAcks` of them, wait `extraMs` and SIGKILL it. Resolves with the highest `n`
 * acknowledged; rejects if the child ends any other way.
 */
export function runUntilKilled(script: string, args: string[], minAcks: number, extraMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let highest = 0
    let acks = 0
    let buffered = ''
    let timer: NodeJS.Timeout | undefined
    child.on('error', reject)
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve(highest) : reject(new Error(`child exited with ${code}`))))
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        if (!line.startsWith('ack ')) continue
        highest = Math.max(highest, Number(line.slice(4)))
        acks++
      }
      if (acks >= minAcks && !timer) timer = setTimeout(() => child.kill('SIGKILL'), extraMs)
    })
  })
}
