#!/usr/bin/env node
// kill -9 soak: a child runs appends, checkpoints and prunes against one store and is SIGKILLed
// at random times; after each kill the store is recovered here and checked against what the
// child acknowledged. Usage: npm run soak -- [--rounds N] [--dir DIR]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { Store } from 'selene-persist'

import { Model, restore } from '../__test__/fixtures/app.mjs'
import { runUntilKilled } from '../__test__/fixtures/kill.mjs'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '100' }, dir: { type: 'string' } } })
const rounds = Number(values.rounds)
if (!Number.isSafeInteger(rounds) || rounds < 1) {
  console.error('--rounds takes a whole number of at least 1')
  process.exit(2)
}
const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'selene-persist-soak-')))
const child = new URL('../__test__/fixtures/store-child.mjs', import.meta.url).pathname


const started = performance.now()
let acknowledged = 0
for (let round = 1; round <= rounds; round++) {
  acknowledged = Math.max(acknowledged, await runUntilKilled(child, [dir], 1 + Math.floor(Math.random() * 200), Math.floor(Math.random() * 50)))
  const store = await Store.open(dir)
  const model = await restore(store)
  await store.close()
  const expected = Model.expected(model.count)
  if (model.count < acknowledged || JSON.stringify(model) !== JSON.stringify(expected)) {
    console.error(`round ${round}: acknowledged ${acknowledged}, recovered ${model.count}: state differs from events 1..${model.count}`)
    console.error(`store kept in ${dir}`)
    process.exit(1)
  }
  if (process.stderr.isTTY) process.stderr.write(`\rround ${round}/${rounds}: ${model.count} events recovered, ${acknowledged} acknowledged`)
}
if (process.stderr.isTTY) process.stderr.write('\n')
console.log(`soak: ${rounds} rounds of SIGKILL, ${acknowledged} events acknowledged, every one recovered exactly once, in ${((performance.now() - started) / 1000).toFixed(1)} s`)
if (!values.dir) await rm(dir, { recursive: true, force: true })
