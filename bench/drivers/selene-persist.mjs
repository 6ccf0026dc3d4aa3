// selene-persist: the driver the CLI's `bench` uses too, from the built package (src/bench/).
export { open } from '../../src/bench/selene-persist.js'
