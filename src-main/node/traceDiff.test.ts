/** traceDiff on real replays (the api test is pure; this one reads a scenario file). */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { diffTraces, stateDifferences } from '../api/traceDiff'
import { makePolicy, runExecution, scheduleIndices, scriptedChooser } from '../engine'
import { loadScenarioText } from './scenarioFiles'

describe('diffTraces on the COW-ordering counterexample', () => {
  it('finds where start-end and arch-hook part on the COW counterexample, and nothing between a trace and itself', () => {
    const file = 'scenarios/cow-ordering.invalidate-range-needed.yaml'
    const sc = loadScenarioText(readFileSync(file, 'utf8'), file)
    const schedule = 'C0 C0 C0 C0 C1 C2 C2 D1 C0 C0 C1 C1 C1 C1 C1 C1 C2 C2 C2 D0 D0 C0'.split(' ')
    const run = (preset: 'start-end' | 'arch-hook') =>
      runExecution(sc, makePolicy(preset), scriptedChooser(scheduleIndices(sc, schedule)), {
        tracing: true,
        maxSteps: 1000,
      }).records
    const se = run('start-end')
    const ah = run('arch-hook')
    expect(diffTraces({ records: se }, { records: se }).differing).toEqual([])
    const d = diffTraces({ records: se }, { records: ah })
    expect(d.differing.length).toBeGreaterThan(0)
    const first = d.rows[d.differing[0]!]!
    // arch-hook calls the secondary's invalidate_range inside ptep_clear_flush: the first
    // difference is an event (the extra invalidation), not only a state row.
    expect(first.kinds).toContain('events')
    const differs = stateDifferences(se[first.a!]!, ah[first.b!]!)
    expect([...differs].some((s) => s.includes('TLB'))).toBe(true)
  })
})
