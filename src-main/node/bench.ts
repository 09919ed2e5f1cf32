/** `npm run bench`: reported figures for the engine (never asserted in tests). */
import path from 'node:path'
import { defaultRunOptions, makePolicy, PRESETS, runPolicy } from '../engine'
import { table } from './format'
import { loadScenarioFile } from './scenarioFiles'

const BENCH_FILES = [
  'scenarios/cow-ordering.invalidate-range-needed.yaml',
  'scenarios/upgrade-loop.smmu-no-btm.yaml',
]

export function runBench(): number {
  const rows: string[][] = [['scenario', 'policy', 'verdict', 'states', 'steps', 'ms', 'states/s']]
  for (const f of BENCH_FILES) {
    const sc = loadScenarioFile(path.resolve(f))
    for (const p of PRESETS) {
      const t0 = process.hrtime.bigint()
      const r = runPolicy(sc, makePolicy(p), { ...defaultRunOptions(sc), mode: 'exhaustive' })
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
  }
  process.stdout.write(table(rows) + '\n')
  return 0
}
