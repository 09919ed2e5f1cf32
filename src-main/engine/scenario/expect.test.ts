/**
 * `expect` matching: the exact-set form (`{ violated: [...] }`) against per-invariant verdicts,
 * what the mismatch says, and when an incomplete run is `not-proven` rather than a mismatch.
 */
import { describe, expect, it } from 'vitest'
import { expectStatus, type PolicyResult } from '../results'
import { expectationText, matchExpectation } from './expect'

const inv = (violated: string[], unknown: string[] = []) =>
  Object.fromEntries(
    ['use-after-free', 'stale-after-return', 'lost-write', 'lost-dirty', 'progress', 'forbid'].map((k) => [
      k,
      violated.includes(k) ? 'violated' : unknown.includes(k) ? 'unknown' : 'holds',
    ]),
  )
const SET = { violated: ['use-after-free', 'lost-write'] } as const

describe('matchExpectation', () => {
  it('an exact set matches only that set', () => {
    expect(matchExpectation(SET, 'violated', inv(['use-after-free', 'lost-write']))).toEqual({
      ok: true,
      note: null,
    })
    expect(matchExpectation(SET, 'violated', inv(['use-after-free']))).toEqual({
      ok: false,
      note: 'missing lost-write',
    })
    expect(matchExpectation(SET, 'violated', inv(['use-after-free', 'lost-write', 'progress']))).toEqual({
      ok: false,
      note: 'extra progress',
    })
    expect(matchExpectation(SET, 'violated', inv(['stale-after-return']))).toEqual({
      ok: false,
      note: 'missing use-after-free, lost-write; extra stale-after-return',
    })
    expect(matchExpectation(SET, 'unknown', inv(['use-after-free', 'lost-write'], ['progress']))).toEqual({
      ok: false,
      note: 'not explored to the end: progress unknown',
    })
  })

  it('the other forms keep their meaning', () => {
    expect(matchExpectation('holds', 'holds', inv([])).ok).toBe(true)
    expect(matchExpectation('violated', 'violated', inv(['progress'])).ok).toBe(true)
    expect(matchExpectation('lost-write', 'violated', inv(['lost-write', 'progress'])).ok).toBe(true)
    expect(matchExpectation('lost-write', 'violated', inv(['progress'])).ok).toBe(false)
    expect(expectationText(SET)).toBe('violated: [use-after-free, lost-write]')
    expect(expectationText('holds')).toBe('holds')
  })
})

describe('expectStatus of an exact set', () => {
  const result = (invariants: Record<string, string>, matches: boolean): PolicyResult =>
    ({
      policy: 'start-end',
      verdict: 'violated',
      invariants,
      expected: 'violated: [use-after-free, lost-write]',
      expectedSet: SET.violated,
      matches,
      metricChecks: [],
    }) as unknown as PolicyResult
  it('the set found, the others unknown: not proven, not a mismatch', () => {
    expect(expectStatus(result(inv(['use-after-free', 'lost-write'], ['progress']), false))).toBe(
      'not-proven',
    )
  })
  it('a listed invariant missing, or another one violated: mismatch', () => {
    expect(expectStatus(result(inv(['use-after-free'], ['lost-write']), false))).toBe('mismatch')
    expect(expectStatus(result(inv(['use-after-free', 'lost-write', 'progress']), false))).toBe('mismatch')
    expect(expectStatus(result(inv(['use-after-free', 'lost-write']), true))).toBe('ok')
  })
})
