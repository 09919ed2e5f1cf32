import { describe, expect, it } from 'vitest'
import { buildVerdictMatrix, expectedCell, matrixSummary } from './verdictMatrix'
import { RUN } from './fixtures'

const INV = ['use-after-free', 'stale-after-return', 'lost-write', 'progress', 'forbid']

describe('verdict matrix', () => {
  it('derives per-cell expectations from expect', () => {
    expect(expectedCell('holds', 'progress')).toBe('holds')
    expect(expectedCell('forbid', 'forbid')).toBe('violated')
    expect(expectedCell('forbid', 'progress')).toBeNull()
    expect(expectedCell('violated', 'forbid')).toBeNull()
    expect(expectedCell(null, 'forbid')).toBeNull()
  })
  it('an exact set constrains every cell: its invariants violated, the others holding', () => {
    const set = ['use-after-free', 'lost-write']
    const text = '{ violated: [use-after-free, lost-write] }'
    expect(expectedCell(text, 'use-after-free', set)).toBe('violated')
    expect(expectedCell(text, 'lost-write', set)).toBe('violated')
    expect(expectedCell(text, 'progress', set)).toBe('holds')
    const r0 = RUN.results[0]!
    const run = { ...RUN, results: [{ ...r0, expectedSet: ['forbid'] }, ...RUN.results.slice(1)] }
    const cells = buildVerdictMatrix(run, INV)[0]!.cells
    // start-end violates forbid only: the set {forbid} matches cell by cell.
    expect(cells.map((c) => c.expected)).toEqual(['holds', 'holds', 'holds', 'holds', 'violated'])
    expect(cells.every((c) => c.match === true)).toBe(true)
  })
  it('builds one row per policy with matches and counterexample links', () => {
    const rows = buildVerdictMatrix(RUN, INV)
    expect(rows.map((r) => r.policy)).toEqual(['start-end', 'invalidate-range', 'arch-hook'])
    const se = rows[0]
    expect(se.cells.map((c) => c.computed)).toEqual(['holds', 'holds', 'holds', 'holds', 'violated'])
    expect(se.cells[4]).toMatchObject({ expected: 'violated', match: true, counterexample: 0 })
    expect(se.cells[0]).toMatchObject({ expected: null, match: null, counterexample: null })
    const ah = rows[2]
    expect(ah.cells[0]).toMatchObject({ computed: 'unknown', expected: 'holds', match: false })
    expect(ah.complete).toBe(false)
    expect(ah.cutReason).toBe('max states')
  })
  it('treats unknown invariants as unknown', () => {
    const rows = buildVerdictMatrix(RUN, ['not-an-invariant'])
    expect(rows[0].cells[0].computed).toBe('unknown')
  })
  it('summarises', () => {
    expect(matrixSummary(buildVerdictMatrix(RUN, INV))).toBe('3 policies · 1 violated · 2/3 match expect')
  })
})
