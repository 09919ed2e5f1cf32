import { describe, expect, it } from 'vitest'
import {
  expandSites,
  freshName,
  gridRows,
  placementNameProblem,
  sameAs,
  siteTitle,
  variantAdds,
} from './sites'

const ORDER = ['a1', 'a2', 'b1', 'c1', 'p1', 'x1']
const NAMED = {
  A: ['a1', 'a2'],
  'A+pv': ['a1', 'a2', 'p1'],
  'A+qv': ['a1', 'a2'],
  B: ['b1'],
  'B+pv': ['b1', 'p1'],
  'B+qv': ['b1', 'c1'],
}
const site = (name: string, group: string) => ({ name, group, kernel: 'k', doc: 'd' })

describe('site grid logic', () => {
  it('puts a group neither a preset nor a variant with the proposals, so no site is left out', () => {
    const rows = gridRows([site('a1', 'A'), site('x1', 'odd'), site('p1', 'pv')], ['A', 'B'], ['pv'])
    expect(rows.map((r) => (r.kind === 'site' ? r.site.name : r.kind === 'group' ? r.group : '--'))).toEqual([
      'A',
      'a1',
      '--',
      'pv',
      'p1',
      'odd',
      'x1',
    ])
    expect(gridRows([site('a1', 'A')], ['A'], []).some((r) => r.kind === 'proposals')).toBe(false)
  })

  it('tells the named set a placement equals', () => {
    expect(sameAs(['a2', 'a1'], NAMED)).toBe('A')
    expect(sameAs(['a1'], NAMED)).toBeNull()
    expect(sameAs([], NAMED)).toBeNull()
  })

  it("adds a variant's sites relative to the preset the placement holds whole, else any preset's", () => {
    expect(variantAdds(['a1', 'a2'], 'qv', ['A', 'B'], NAMED)).toEqual([])
    expect(variantAdds(['b1'], 'qv', ['A', 'B'], NAMED)).toEqual(['c1'])
    expect(variantAdds(['x1'], 'qv', ['A', 'B'], NAMED)).toEqual(['c1'])
    expect(variantAdds(['x1'], 'pv', ['A', 'B'], NAMED)).toEqual(['p1'])
  })

  it('expands presets (with variants) in a definition list, in the engine order', () => {
    expect(expandSites(['x1', 'A'], NAMED, ORDER)).toEqual(['a1', 'a2', 'x1'])
    expect(expandSites(['B+pv+qv'], NAMED, ORDER)).toEqual(['b1', 'c1', 'p1'])
    expect(expandSites(['nope'], NAMED, ORDER)).toEqual([])
  })

  it('checks placement names as the loader checks policies: names', () => {
    const p = (n: string, taken: string[] = []) => placementNameProblem(n, taken, ['A', 'B'], ORDER)
    expect(p('mine')).toBeNull()
    expect(p('v1.2_x-y')).toBeNull()
    expect(p('')).toMatch(/name/)
    expect(p('a b')).toMatch(/letters/)
    expect(p('-x')).toMatch(/letters/)
    expect(p('x'.repeat(65))).toMatch(/up to 64/)
    expect(p('all')).toMatch(/'all'/)
    expect(p('a1')).toMatch(/is a site/)
    expect(p('A')).toMatch(/built-in/)
    expect(p('mine', ['mine'])).toMatch(/already/)
  })

  it('makes fresh names and tooltips', () => {
    expect(freshName('mine', [])).toBe('mine')
    expect(freshName('mine', ['mine', 'mine-2'])).toBe('mine-3')
    expect(siteTitle({ name: 's', group: 'g', kernel: 'K', doc: 'D' })).toBe(
      's (g)\n\nKernel: K\n\nSecondary: D',
    )
  })
})
