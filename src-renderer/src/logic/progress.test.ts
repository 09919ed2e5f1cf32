import { describe, expect, it } from 'vitest'
import { estimate, type RunShape } from './progress'

const shape = (over: Partial<RunShape>): RunShape => ({
  mode: 'exhaustive',
  policies: ['a', 'b'],
  executions: 100,
  maxStates: 1000,
  timeoutMs: 60_000,
  ...over,
})
const p = (policy: string, states: number, executions: number, done = false) => ({
  policy,
  states,
  steps: states,
  executions,
  done,
})

describe('progress estimate', () => {
  it('extrapolates random runs from executions', () => {
    const e = estimate(
      shape({ mode: 'random', timeoutMs: null }),
      [p('a', 0, 50), p('b', 0, 50)],
      1000,
      false,
    )
    expect(e.fraction).toBeCloseTo(0.5)
    expect(e.etaMs).toBeCloseTo(1000)
    expect(e.etaKind).toBe('estimate')
  })
  it('gives exhaustive runs only the timeout as a bound', () => {
    const e = estimate(shape({}), [p('a', 100, 1, true), p('b', 500, 1)], 10_000, false)
    expect(e.fraction).toBeCloseTo((1 + 0.5) / 2)
    expect(e).toMatchObject({ etaMs: 50_000, etaKind: 'bound' })
    expect(estimate(shape({ timeoutMs: null }), [], 5, false)).toEqual({
      fraction: 0,
      etaMs: null,
      etaKind: null,
    })
  })
  it('caps an unfinished exhaustive policy below its share', () => {
    expect(estimate(shape({ policies: ['a'] }), [p('a', 5000, 1)], 1, false).fraction).toBe(0.9)
  })
  it('is complete when finished', () => {
    expect(estimate(shape({}), [], 1, true)).toEqual({ fraction: 1, etaMs: 0, etaKind: null })
  })
})
