/**
 * Reclaim (v6.6 shrink_folio_list / try_to_unmap_one; v4.15 explicit ->invalidate_range
 * under the PTL in the swap path) and swap-in (do_swap_page, with the swap cache).
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { allEvents, first, lines, traced } from './traceTestkit'

const sc = scenarioOf(
  `
    title: reclaim
    arch: x86_64
    pages:
      P: { value: 5, prot: rw }
    secondary:
      - { name: iommu, type: hw-walker, cached: [P] }
    cpus:
      kswapd: [reclaim P]
      C1: [write P 6]
  `,
  'reclaim.test.yaml',
)

describe('reclaim: try_to_unmap_one, pageout, free; do_swap_page', () => {
  it('invalidate-range (v4.15): ->invalidate_range under the PTL right after the clear, and again at range_end', () => {
    const ex = traced(sc, makePolicy('invalidate-range'), [0, 0, 0, 0, 0, 0])
    const l = lines(ex, { thread: 'kswapd', kinds: ['sec-inval'] })
    expect(l).toEqual([
      'sec-inval ->invalidate_range (try_to_unmap_one): iommu: invalidate P (1 entry dropped)',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate P (0 entries dropped)',
    ])
    expect(first(ex, 'sec-inval ->invalidate_range (try_to_unmap_one)').locks).toEqual([
      'folio_lock(P)',
      'anon_vma(r)',
      'ptl',
    ])
    expect(allEvents(ex).some((e) => e.text === 'free pfn 1 (gen 1)')).toBe(true)
  })

  it('a fault after the free reads the page back from its swap slot', () => {
    const ex = traced(sc, makePolicy('arch-hook'), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    // Alone on its slot (swap_map count 1, SWP_SYNCHRONOUS_IO): the folio skips the swap cache.
    expect(allEvents(ex).some((e) => e.fn === 'vma_alloc_folio + swap_readpage (skip the swap cache)')).toBe(
      true,
    )
    expect(ex.final.swapCache[0]).toBe(-1)
    expect(ex.final.swap[0]).toBe(null)
    const pte = ex.final.mms[0]!.ptes[0]!
    expect(ex.final.frames[pte.pfn]!.v).toBe(6)
  })

  it('a fault racing reclaim maps the swap-cache folio back, and reclaim keeps it', () => {
    // kswapd unmaps (3 steps); C1 faults on the swap entry and maps pfn 1 back; kswapd ends.
    const ex = traced(sc, makePolicy('arch-hook'), [0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    expect(
      allEvents(ex).some((e) => e.fn === 'do_swap_page' && e.text.includes('still in the swap cache')),
    ).toBe(true)
    expect(allEvents(ex).some((e) => e.fn === '__remove_mapping')).toBe(true)
    expect(ex.final.mms[0]!.ptes[0]!.pfn).toBe(1)
    expect(ex.final.frames[1]!.free).toBe(false)
    expect(ex.final.frames[1]!.v).toBe(6)
    expect(ex.violations).toEqual([])
    // The swap PTE was exclusive (no fork child): mapped writable at once. The count went to 0,
    // but should_try_to_free_swap() saw refcount 3 (reclaim's, the cache's, ours): the folio
    // stays in the swap cache, holding its slot (SWAP_HAS_CACHE), after reclaim gives it back.
    expect(ex.final.mms[0]!.ptes[0]).toMatchObject({ write: true, dirty: true })
    expect(ex.final.swapCache[0]).toBe(1)
    expect(ex.final.frames[1]).toMatchObject({ map: 1, ref: 2 })
  })
})

describe('v6.6.0 VT-d and the (0, -1) range of x86 batched reclaim (e7ad6c2a4b1a)', () => {
  const sc = (fix: boolean) =>
    scenarioOf(
      `
        title: batched reclaim with a VT-d SVA device
        arch: x86_64
        kernel: { vtd_full_range_fix: ${fix} }
        pages:
          P: { value: 5, prot: rw }
        secondary:
          - { name: iommu, type: hw-walker, iommu: vt-d, cached: [P] }
        cpus:
          kswapd: [reclaim P]
      `,
      'vtd.yaml',
    )
  it('v6.6.0: the arch hook fires with (0, -1) and the driver sends no command; fixed: a full invalidation', () => {
    const bug = traced(sc(false), makePolicy('arch-hook'))
    expect(lines(bug, { kinds: ['notifier', 'sec-inval'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval intel_arch_invalidate_secondary_tlbs: iommu: range (0, -1UL) overflows the page count: no IOTLB or ATC command (v6.6.0, before e7ad6c2a4b1a)',
      'notifier mmu_notifier_invalidate_range_end: P',
    ])
    expect(bug.final.secs[0]!.entries.map((e) => e.page)).toEqual([0])
    const fixed = traced(sc(true), makePolicy('arch-hook'))
    expect(lines(fixed, { kinds: ['sec-inval'] })).toEqual([
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entry dropped)',
    ])
  })
})
