// Plain Node fs (writeSync, then fdatasyncSync when durable): the driver the CLI's `bench` uses too.
export { open } from '../../src/bench/node-fs.js'
