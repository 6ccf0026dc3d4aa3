// vitest runs only the Durable Streams conformance suite (its tests are written for vitest);
// every other test is ava's (__test__/**/*.spec.mjs).
import { defineConfig } from 'vitest/config'

export default defineConfig({ test: { include: ['__test__/http/*.test.mjs'], testTimeout: 30_000 } })
