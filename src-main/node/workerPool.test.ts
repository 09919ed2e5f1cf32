import { Worker } from 'node:worker_threads'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { defaultRunOptions } from '../engine'
import { loadScenarioFile } from './scenarioFiles'
import { toWorkerOptions, tsxWorker, WorkerPool } from './workerPool'

const UPGRADE = path.join(__dirname, '../../scenarios/upgrade-loop.smmu-no-btm.yaml')

describe('WorkerPool', () => {
  it('runs policies in worker threads and returns the engine result', async () => {
    const sc = loadScenarioFile(UPGRADE)
    const pool = new WorkerPool(tsxWorker, 2)
    try {
      const opts = toWorkerOptions(defaultRunOptions(sc), null)
      const [s, a] = await Promise.all([pool.run(sc, 'start-end', opts), pool.run(sc, 'arch-hook', opts)])
      expect(s.verdict).toBe('violated')
      expect(s.invariants.progress).toBe('violated')
      expect(a.verdict).toBe('holds')
    } finally {
      await pool.close()
    }
  })

  it('a crashing worker fails its job with a message, and the pool keeps working', async () => {
    const sc = loadScenarioFile(UPGRADE)
    let made = 0
    const factory = (): Worker =>
      made++ === 0 ? new Worker("throw new Error('boom')", { eval: true }) : tsxWorker()
    const pool = new WorkerPool(factory, 1)
    try {
      const opts = toWorkerOptions(defaultRunOptions(sc), null)
      await expect(pool.run(sc, 'arch-hook', opts)).rejects.toThrow(/worker crashed: boom/)
      const r = await pool.run(sc, 'arch-hook', opts)
      expect(r.verdict).toBe('holds')
    } finally {
      await pool.close()
    }
  })

  it('close() cancels queued and running jobs', async () => {
    const sc = loadScenarioFile(UPGRADE)
    const pool = new WorkerPool(tsxWorker, 1)
    const opts = toWorkerOptions(defaultRunOptions(sc), null)
    // Handlers attached before close(), so the rejections are never unhandled.
    const a = pool.run(sc, 'start-end', opts).then(
      () => 'resolved',
      (e: Error) => e.message,
    )
    const b = pool.run(sc, 'arch-hook', opts).then(
      () => 'resolved',
      (e: Error) => e.message,
    )
    await pool.close()
    expect(await a).toBe('cancelled')
    expect(await b).toBe('cancelled')
  })

  it('an invalid policy name fails the job with the engine message', async () => {
    const sc = loadScenarioFile(UPGRADE)
    const pool = new WorkerPool(tsxWorker, 1)
    try {
      await expect(pool.run(sc, 'arch-hock', toWorkerOptions(defaultRunOptions(sc), null))).rejects.toThrow(
        /unknown policy 'arch-hock' \(did you mean 'arch-hook'\?\)/,
      )
    } finally {
      await pool.close()
    }
  })
})

describe('WorkerPool progress and cancellation', () => {
  it('reports progress while exploring, and cancel() stops a running job (latency: see npm run bench)', async () => {
    const sc = loadScenarioFile(
      path.join(__dirname, '../../scenarios/cow-ordering.invalidate-range-needed.yaml'),
    )
    const pool = new WorkerPool(tsxWorker, 1)
    try {
      const seen: number[] = []
      const h = pool.start(sc, 'arch-hook', toWorkerOptions(defaultRunOptions(sc), null), (p) => {
        seen.push(p.states)
        if (seen.length === 2) {
          h.cancel()
        }
      })
      const outcome = await h.result.then(
        () => 'finished',
        (e: Error) => e.message,
      )
      expect(outcome).toBe('cancelled')
      expect(seen[1]!).toBeGreaterThan(seen[0]!)
      // The pool replaces the terminated worker and keeps serving.
      const up = loadScenarioFile(UPGRADE)
      expect((await pool.run(up, 'arch-hook', toWorkerOptions(defaultRunOptions(up), null))).verdict).toBe(
        'holds',
      )
    } finally {
      await pool.close()
    }
  })
})
