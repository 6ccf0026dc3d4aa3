// A 3-node JetStream cluster on loopback with R3 streams: kill -9 of the shipping process and
// of a server mid-ship, and the whole cluster stopped for a while.
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

import { jetstream } from '@nats-io/jetstream'
import { Objm } from '@nats-io/obj'
import { connect } from '@nats-io/transport-node'
import test from 'ava'

import { Store } from 'selene-persist'
import { restore, ship } from 'selene-persist/jetstream'

import { runUntilKilled } from './fixtures/kill.mjs'
import { contents, tempDir } from './helpers.mjs'
import { natsServer, startNats } from './nats.mjs'

const CHILD = fileURLToPath(new URL('./fixtures/ship-child.mjs', import.meta.url))
const run = natsServer ? test.serial : test.skip

let cluster
test.before(async () => {
  if (natsServer) cluster = await startNats(3)
})
test.after.always(() => cluster?.stop())

run('a 3-node cluster: kill -9 of the shipper (50 rounds) and of a server mid-ship; the restored log equals the origin', async (t) => {
  const dir = await tempDir(t)
  const origin = join(dir, 'origin')
  const urls = cluster.urls.join(',')
  let acknowledged = 0
  for (let round = 0; round < 50; round++) {
    if (round === 10) await cluster.servers[2].kill()
    const acked = await runUntilKilled(CHILD, [origin, urls, 'R3', '5'], 1 + (round % 7) * 5, Math.floor(Math.random() * 40))
    if (process.env.SELENE_DEBUG) console.error("round", round, acked)
    t.true(acked >= acknowledged, `round ${round}: the stream went back`)
    acknowledged = acked
  }
  await cluster.restart()
  // Ship the rest, then restore: the origin's whole log, no gap, no entry twice.
  const store = await Store.open(origin)
  // An upload's last step publishes the object's metadata: heard here as it is stored.
  const nc = await connect({ servers: cluster.urls })
  t.teardown(() => nc.close())
  const metadata = nc.subscribe('$O.R3-snapshots.M.>')
  await nc.flush()
  const shipper = await ship(store, { servers: cluster.urls, stream: 'R3', nodeId: 5 })
  await shipper.shipped(store.lastSequence)
  // The live snapshot must be in the bucket before the restore (a killed child may have died
  // before uploading it, and right after the restart the upload may need its retry): either a
  // child stored it already, or its metadata message comes. Each look is a JetStream request
  // with its own timeout, so the bounded loop waits on the cluster, not on a clock.
  const name = `5.${store.snapshotSeq}`
  // undefined: the look failed (a leader not elected yet); null: not stored yet.
  let stored
  for (let look = 0; look < 20 && stored === undefined; look++) {
    stored = await new Objm(jetstream(nc)).open('R3-snapshots').then((bucket) => bucket.info(name), () => undefined)
  }
  if (!stored) for await (const message of metadata) if (message.json().name === name) break
  metadata.unsubscribe()
  await shipper.close()
  await store.close()
  t.true(acknowledged > 50)
  const expected = await contents(origin)
  await restore({ servers: cluster.urls, stream: 'R3', nodeId: 5, dir: join(dir, 'restored') })
  const restored = await contents(join(dir, 'restored'))
  t.deepEqual(restored.entries, expected.entries)
  t.deepEqual(restored.sections, expected.sections)
})

run('with the whole cluster down, appends go on, the lag grows, and shipping catches up when it returns', async (t) => {
  // A cluster of its own: the kill -9 rounds leave the other one mid-recovery.
  const cluster = await startNats(3)
  t.teardown(() => cluster.stop())
  const dir = await tempDir(t)
  const store = await Store.open(dir)
  const failures = []
  const shipper = await ship(store, { servers: cluster.urls, stream: 'R3OUT', nodeId: 9, replicas: 3, onError: (e) => failures.push(e.code) && process.env.SELENE_DEBUG && console.error(e.message) })
  for (let i = 0; i < 20; i++) await store.append(Buffer.from(`up ${i}`))
  await shipper.shipped(20)
  await cluster.stop()
  for (let i = 0; i < 200; i++) await store.append(Buffer.from(`down ${i}`))
  t.true(shipper.lag.entries >= 200, `lag ${JSON.stringify(shipper.lag)}`)
  await cluster.restart()
  await shipper.shipped(store.lastSequence)
  t.is(shipper.lag.entries, 0)
  t.true(failures.every((code) => code === 'REMOTE_UNAVAILABLE'))
  await shipper.close()
  await store.close()
  const restored = await restore({ servers: cluster.urls, stream: 'R3OUT', nodeId: 9, dir: join(dir, '..', `${dir.split('/').pop()}-restored`) })
  t.is(restored.lastSequence, 220)
})

