import { describe, expect, it } from 'vitest'
import {
  canonicalPolicy,
  expandPolicies,
  formatSchedule,
  parsePolicyList,
  parseSchedule,
  sortPolicies,
  togglePolicy,
} from './policies'

const PRESETS = ['start-end', 'invalidate-range', 'arch-hook']
const VARIANTS = ['upgrade-notify', 'access-flags-notify', 'pri-flush']

describe('policy names', () => {
  it('canonicalises variant order', () => {
    expect(canonicalPolicy('start-end+pri-flush+upgrade-notify', PRESETS, VARIANTS)).toBe(
      'start-end+upgrade-notify+pri-flush',
    )
    expect(canonicalPolicy(' arch-hook ', PRESETS, VARIANTS)).toBe('arch-hook')
  })
  it('rejects unknown and repeated parts', () => {
    expect(canonicalPolicy('bogus', PRESETS, VARIANTS)).toEqual({ error: "unknown preset 'bogus'" })
    expect(canonicalPolicy('start-end+nope', PRESETS, VARIANTS)).toEqual({ error: "unknown variant 'nope'" })
    expect(typeof canonicalPolicy('start-end+pri-flush+pri-flush', PRESETS, VARIANTS)).toBe('object')
  })
  it('expands presets × variant combinations without duplicates', () => {
    expect(
      expandPolicies(
        ['start-end', 'arch-hook'],
        [[], ['pri-flush'], ['pri-flush', 'upgrade-notify']],
        VARIANTS,
      ),
    ).toEqual([
      'start-end',
      'start-end+pri-flush',
      'start-end+upgrade-notify+pri-flush',
      'arch-hook',
      'arch-hook+pri-flush',
      'arch-hook+upgrade-notify+pri-flush',
    ])
    expect(expandPolicies(['start-end'], [[], []], VARIANTS)).toEqual(['start-end'])
    expect(expandPolicies([], [[]], VARIANTS)).toEqual([])
  })
  it('parses lists, including all', () => {
    expect(parsePolicyList('all', PRESETS, VARIANTS)).toEqual({ policies: PRESETS, error: null })
    expect(parsePolicyList('arch-hook, start-end+pri-flush,arch-hook', PRESETS, VARIANTS)).toEqual({
      policies: ['arch-hook', 'start-end+pri-flush'],
      error: null,
    })
    expect(parsePolicyList('arch-hook,x', PRESETS, VARIANTS).error).toMatch(/unknown preset 'x'/)
    expect(parsePolicyList('  ', PRESETS, VARIANTS)).toEqual({ policies: [], error: null })
  })
  it('toggles and sorts', () => {
    expect(togglePolicy(['a'], 'b', true)).toEqual(['a', 'b'])
    expect(togglePolicy(['a', 'b'], 'a', false)).toEqual(['b'])
    expect(togglePolicy(['a'], 'a', true)).toEqual(['a'])
    expect(sortPolicies(['arch-hook', 'start-end+pri-flush', 'start-end'], PRESETS)).toEqual([
      'start-end',
      'start-end+pri-flush',
      'arch-hook',
    ])
  })
})

describe('site sets and names a scenario defines (issue 14)', () => {
  const SITES = ['invalidate_range_start', 'invalidate_range_end', 'flush_tlb_page', 'flush_tlb_range']
  const names = {
    sites: SITES,
    namedSites: { 'start-end': ['invalidate_range_start', 'invalidate_range_end'] },
    known: ['popple-v1'],
  }

  it("sites: in the engine's site order, or the preset whose exact set it is", () => {
    expect(canonicalPolicy('sites:flush_tlb_range,flush_tlb_page', PRESETS, VARIANTS, names)).toBe(
      'sites:flush_tlb_page+flush_tlb_range',
    )
    expect(
      canonicalPolicy('sites: invalidate_range_end + invalidate_range_start', PRESETS, VARIANTS, names),
    ).toBe('start-end')
    expect(canonicalPolicy('sites:flush_tlb_pgae', PRESETS, VARIANTS, names)).toEqual({
      error: "unknown site 'flush_tlb_pgae'",
    })
  })

  it('a name the scenario uses passes as it is; an unknown one is still an error', () => {
    expect(canonicalPolicy('popple-v1', PRESETS, VARIANTS, names)).toBe('popple-v1')
    expect(canonicalPolicy('popple-v2', PRESETS, VARIANTS, names)).toEqual({
      error: "unknown preset 'popple-v2'",
    })
  })

  it('in a list, sites: takes the site names after it', () => {
    expect(
      parsePolicyList('arch-hook, sites:flush_tlb_range,flush_tlb_page, popple-v1', PRESETS, VARIANTS, names),
    ).toEqual({
      policies: ['arch-hook', 'sites:flush_tlb_page+flush_tlb_range', 'popple-v1'],
      error: null,
    })
    // Without the engine's list, a site is what looks like one.
    expect(parsePolicyList('sites:a_b,c_d,start-end', PRESETS, VARIANTS).policies).toEqual([
      'sites:a_b+c_d',
      'start-end',
    ])
  })

  it('sorting puts a custom name after the presets, without failing', () => {
    expect(sortPolicies(['popple-v1', 'sites:flush_tlb_page', 'arch-hook'], PRESETS)).toEqual([
      'arch-hook',
      'popple-v1',
      'sites:flush_tlb_page',
    ])
  })
})

describe('schedules', () => {
  it('parses what users paste', () => {
    expect(parseSchedule('C0 C0, D0\n[D1]')).toEqual(['C0', 'C0', 'D0', 'D1'])
    expect(parseSchedule('["C0", "D0"]')).toEqual(['C0', 'D0'])
    expect(parseSchedule('')).toEqual([])
  })
  it('formats with a livelock cycle', () => {
    expect(formatSchedule(['C0', 'D0'])).toBe('C0 D0')
    expect(formatSchedule(['C0'], ['D0', 'D0'])).toBe('C0 | cycle: D0 D0')
  })
})
