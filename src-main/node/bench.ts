/**
 * `npm run bench`: reported figures for the engine (never asserted in tests): per policy, the
 * single-thread exhaustive exploration of the two canonical scenarios, then the wall-clock
 * time of the whole `mnlab run` (all policies in the worker pool), then the GUI figures
 * (benchGui.ts: cold start to an interactive editor, run-to-result in the browser host).
 */
import path from 'node:path'
import { defaultRunOptions, makePolicy, PRESETS, runPolicy } from '../engine'
import { runGuiBench } from './benchGui'
import { table } from './format'
import { loadScenarioFile } from './scenarioFiles'
import { toWorkerOptions, WorkerPool } from './workerPool'

const BENCH_FILES = [
  'scenarios/cow-ordering.invalidate-range-needed.yaml',
  'scenarios/upgrade-loop.smmu-no-btm.yaml',
]

export async function runBench(pool: WorkerPool): Promise<number> {
  const rows: string[][] = [['scenario', 'policy', 'verdict', 'states', 'transitions', 'ms', 'states/s']]
  const wall: string[][] = [['scenario', 'policies', 'workers', 'wall ms']]
  for (const f of BENCH_FILES) {
    const sc = loadScenarioFile(path.resolve(f))
    const opts = { ...defaultRunOptions(sc), mode: 'exhaustive' as const }
    for (const p of PRESETS) {
      const t0 = process.hrtime.bigint()
      const r = runPolicy(sc, makePolicy(p), opts)
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      rows.push([
        path.basename(f),
        p,
        r.verdict,
        String(r.stats.states),
        String(r.stats.steps),
        ms.toFixed(0),
        String(Math.round((r.stats.states / ms) * 1000)),
      ])
    }
    const t0 = process.hrtime.bigint()
    await Promise.all(PRESETS.map((p) => pool.run(sc, p, toWorkerOptions(opts, null))))
    wall.push([
      path.basename(f),
      String(PRESETS.length),
      String(pool.size),
      (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0),
    ])
  }
  process.stdout.write(
    `engine, one thread, exhaustive:\n${table(rows)}\n\nmnlab run (worker pool, including worker start-up):\n${table(wall)}\n`,
  )
  return runGuiBench()
}
