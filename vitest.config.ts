import os from 'node:os'
import path from 'node:path'
import { defineConfig, type Plugin } from 'vitest/config'

/**
 * Vitest does not understand electron-vite's `?nodeWorker` imports (stack notes §5). Resolve
 * `./foo?nodeWorker` to a factory that starts a worker_threads Worker running foo.ts through tsx.
 * (`execArgv: ['--import', 'tsx']` does not work on Node 20, hence the eval'd require.)
 */
const nodeWorker: Plugin = {
  name: 'vitest-node-worker',
  enforce: 'pre',
  resolveId(id, importer) {
    if (!id.endsWith('?nodeWorker') || !importer) return null
    return '\0nodeWorker:' + path.resolve(path.dirname(importer), id.slice(0, -'?nodeWorker'.length))
  },
  load(id) {
    if (!id.startsWith('\0nodeWorker:')) return null
    const base = id.slice('\0nodeWorker:'.length)
    const file = base.endsWith('.ts') ? base : base + '.ts'
    const source = `require('tsx/cjs'); require(${JSON.stringify(file)})`
    return [
      `import { Worker } from 'node:worker_threads'`,
      `export default (options = {}) => new Worker(${JSON.stringify(source)}, { ...options, eval: true })`,
    ].join('\n')
  },
}

export default defineConfig({
  plugins: [nodeWorker],
  test: {
    environment: 'node',
    include: ['src-main/**/*.test.ts', 'tests/**/*.test.ts', 'src-renderer/src/**/*.test.ts'],
    testTimeout: 60_000,
    // Every core (vitest's default leaves one free, which on a 2-core machine runs the files one
    // by one): in two runs back to back, the suite took 547 s with one worker and 364 s with two.
    maxWorkers: os.availableParallelism(),
  },
})
