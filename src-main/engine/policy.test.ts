/**
 * Policies as sets of call sites (policy.ts): the named sets of the presets and variants, the
 * canonical name of a set, and the parsers of `preset+variant`, `sites:a,b` and defined names.
 */
import { describe, expect, it } from 'vitest'
import {
  makePolicy,
  namedSites,
  parsePolicy,
  parsePolicyList,
  PRESET_SITES,
  PRESETS,
  SITE_NAMES,
  SITES,
  siteSetName,
  sitePolicy,
  VARIANTS,
  type Policy,
  type Site,
  type Variant,
} from './policy'

/** Every subset of the variants, in VARIANTS order. */
function variantSubsets(): Variant[][] {
  return Array.from({ length: 1 << VARIANTS.length }, (_, m) =>
    VARIANTS.filter((_, i) => (m & (1 << i)) !== 0),
  )
}

describe('sites', () => {
  it('every site has one docs entry with its kernel source and what a secondary does there', () => {
    expect(SITES.map((s) => s.name)).toEqual([...SITE_NAMES])
    for (const s of SITES) {
      expect(s.kernel).toMatch(/v4\.15|v6\.6|not merged|suggestion|2017/)
      expect(s.doc.length).toBeGreaterThan(20)
    }
  })

  it('the presets are disjoint sets; every site but wp_page_reuse is in some named set', () => {
    const all = PRESETS.flatMap((p) => PRESET_SITES[p])
    expect(new Set(all).size).toBe(all.length)
    const named = new Set(PRESETS.flatMap((p) => namedSites(p, VARIANTS)))
    expect(SITE_NAMES.filter((s) => !named.has(s))).toEqual(['wp_page_reuse'])
  })
})

describe('named sets and canonical names', () => {
  it("a preset's exact set prints as the preset's name, and every preset+variants set as its own name", () => {
    for (const p of PRESETS)
      for (const vs of variantSubsets()) {
        const pol = makePolicy(p, vs)
        // start-end's access-flags-notify adds no site (nobody implements ->invalidate_range).
        const shown = [p, ...vs.filter((v) => !(p === 'start-end' && v === 'access-flags-notify'))].join('+')
        expect(siteSetName(pol.sites)).toBe(shown)
        expect(sitePolicy(pol.sites).name).toBe(shown)
      }
  })

  it('a set no preset names prints as sites:, in SITE_NAMES order, and parses back to the same set', () => {
    const sites: Site[] = ['flush_tlb_range', 'ptep_clear_flush_notify']
    const p = sitePolicy(sites)
    expect(p.name).toBe('sites:ptep_clear_flush_notify+flush_tlb_range')
    expect(p.sites).toEqual(['ptep_clear_flush_notify', 'flush_tlb_range'])
    const back = parsePolicy(p.name) as Policy
    expect(back).toEqual(p)
    expect(sitePolicy([]).name).toBe('sites:')
    expect((parsePolicy('sites:') as Policy).sites).toEqual([])
    // One site short of arch-hook, or one more than it, is no longer arch-hook.
    expect(siteSetName(PRESET_SITES['arch-hook'].slice(1))).toMatch(/^sites:/)
    expect(siteSetName([...PRESET_SITES['arch-hook'], 'wp_page_reuse'])).toBe(
      'sites:flush_tlb_page+flush_tlb_range+flush_tlb_mm+arch_tlbbatch_add_pending+wp_page_reuse',
    )
    // Two presets' sets together are no preset.
    expect(siteSetName([...PRESET_SITES['start-end'], ...PRESET_SITES['arch-hook']])).toMatch(/^sites:/)
  })

  it('sites:a,b and sites:a+b are one set whatever the order; the set of a preset is that preset', () => {
    const a = parsePolicy('sites:flush_tlb_range,ptep_clear_flush_notify') as Policy
    const b = parsePolicy(' sites: ptep_clear_flush_notify + flush_tlb_range ') as Policy
    expect(a).toEqual(b)
    const ah = parsePolicy(`sites:${[...PRESET_SITES['arch-hook']].reverse().join(',')}`) as Policy
    expect(ah.name).toBe('arch-hook')
    expect(ah.mask).toBe(makePolicy('arch-hook').mask)
  })
})

describe('parsePolicy errors', () => {
  it('an unknown site, with a did-you-mean and the list of sites', () => {
    const e = parsePolicy('sites:flush_tlb_rang') as string
    expect(e).toMatch(
      /^unknown site 'flush_tlb_rang' \(did you mean 'flush_tlb_range'\?\); sites: invalidate_range_start, /,
    )
    expect(parsePolicy('sites:flush_tlb_mm,flush_tlb_mm')).toBe("site 'flush_tlb_mm' given twice")
  })

  it('an unknown policy, with a hint for a misspelt preset, a defined name, or a bare site', () => {
    expect(parsePolicy('arch-hok')).toMatch(/^unknown policy 'arch-hok' \(did you mean 'arch-hook'\?\)/)
    expect(parsePolicy('flush_tlb_page')).toMatch(/'flush_tlb_page' is a site: write sites:flush_tlb_page/)
    const defs = [sitePolicy(['flush_tlb_page'], 'mine')]
    expect(parsePolicy('mien', defs)).toMatch(/did you mean 'mine'.*a policy the file defines \(mine\)/)
    expect(parsePolicy('start-end+frob')).toMatch(/^unknown policy variant 'frob'/)
  })
})

describe('defined names and lists', () => {
  const defs = [
    sitePolicy(['invalidate_range_start', 'invalidate_range_end', 'handle_pte_fault'], 'popple-v1'),
  ]

  it('a defined name keeps its name and its sites', () => {
    const p = parsePolicy('popple-v1', defs) as Policy
    expect(p.name).toBe('popple-v1')
    expect(p.sites).toEqual(['invalidate_range_start', 'invalidate_range_end', 'handle_pte_fault'])
    // Without the definitions the name means nothing.
    expect(typeof parsePolicy('popple-v1')).toBe('string')
  })

  it('in a list, sites: takes the site names after it; anything else starts the next policy', () => {
    const ps = parsePolicyList(
      'arch-hook,sites:flush_tlb_range,ptep_clear_flush_notify,popple-v1,start-end',
      defs,
    )
    expect(typeof ps).not.toBe('string')
    expect((ps as Policy[]).map((p) => p.name)).toEqual([
      'arch-hook',
      'sites:ptep_clear_flush_notify+flush_tlb_range',
      'popple-v1',
      'start-end',
    ])
    expect((parsePolicyList('all') as Policy[]).map((p) => p.name)).toEqual([...PRESETS])
    expect(parsePolicyList('sites:flush_tlb_range,flush_tlb_rang')).toMatch(/did you mean 'flush_tlb_range'/)
  })
})
