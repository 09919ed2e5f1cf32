/**
 * split_huge_page() of a PMD-mapped anon huge page before KSM merges a subpage and before
 * migrate_vma collects one, v6.6: mm/ksm.c try_to_merge_one_page (`if (PageTransCompound(page))
 * split_huge_page(page)`), mm/migrate_device.c migrate_vma_collect_pmd (get_page under pmd_lock,
 * then split_huge_page, inside the MMU_NOTIFY_MIGRATE range), mm/huge_memory.c
 * split_huge_page_to_list (anon_vma_lock_write, can_split_folio, unmap_folio ->
 * try_to_migrate(TTU_SPLIT_HUGE_PMD) -> split_huge_pmd_address(freeze) then its own range,
 * folio_ref_freeze, __split_huge_page, remap_page). Expectations come from the kernel source.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { first, lines, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame', 'info']

function thp(op: string, mapped = 'pmd') {
  return scenarioOf(
    `
      title: split_huge_page test
      arch: x86_64
      thp:
        H: { pages: [A, B], mapped: ${mapped} }
      pages:
        A: { value: 5 }
        B: { value: 6 }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A] }
      cpus:
        C0: [${op}]
    `,
    'thp-split-page.test.yaml',
  )
}

/** split_huge_page() of H under start-end (the IOMMU holds its 2 MiB entry at first). */
const SPLIT_HUGE_PAGE = [
  'lock anon_vma_lock_write: take the anon_vma lock for write',
  'info unmap_folio: try_to_migrate(H, TTU_SPLIT_HUGE_PMD | TTU_SYNC): split_huge_pmd_address(freeze) first',
  'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
  'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
  'lock pmd_lock: take the PMD lock',
  'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
  'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
  'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B := migration entries (pfns 1,2, freeze)',
  'frame page_remove_rmap: pfns 1,2 mapcount 0',
  'lock spin_unlock (pmd_lock): release the PMD lock',
  'notifier mmu_notifier_invalidate_range_end: A,B',
  'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
  'info __split_huge_pmd: H split into PTEs; back in the caller',
  'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
  'sec-inval invalidate_range_start: iommu: invalidate A,B (0 entries dropped)',
  'lock page_vma_mapped_walk (PVMW_SYNC): take the page-table lock',
  'info page_vma_mapped_walk: no present PTE maps the folio of H: nothing more to unmap',
  'lock pte_unmap_unlock: release the page-table lock',
  'notifier mmu_notifier_invalidate_range_end: A,B',
  'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
  'frame __split_huge_page: the folio of H (pfns 1,2) becomes 2 small folios',
  'lock remove_migration_ptes: remove_migration_pte: take the page-table lock',
  'pte set_pte_at (remove_migration_pte): PTE A := pfn 1 RW dirty',
  'pte set_pte_at (remove_migration_pte): PTE B := pfn 2 RW dirty',
  'lock pte_unmap_unlock: release the page-table lock',
  'lock anon_vma_unlock_write: release the anon_vma lock',
  'info split_huge_page: H split into small folios',
]

describe('ksm_merge of a subpage: split_huge_page, then write_protect_page and replace_page (v6.6)', () => {
  it('start-end: the split (freeze range, then the empty try_to_migrate_one range), then the small-page merge', () => {
    const ex = traced(thp('ksm_merge A'), pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS })
    expect(ls.slice(0, 3)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'frame stable_tree_search (stable page of equal content): allocate pfn 3 (gen 1)',
      // try_to_merge_one_page: trylock_page before split_huge_page (which needs it locked).
      'lock try_to_merge_one_page: trylock_page: lock the folio pfn 1 (A)',
    ])
    expect(ls.slice(3, 3 + SPLIT_HUGE_PAGE.length)).toEqual(SPLIT_HUGE_PAGE)
    // Then write_protect_page on A's PTE, as for a small page.
    expect(ls.slice(3 + SPLIT_HUGE_PAGE.length, 3 + SPLIT_HUGE_PAGE.length + 4)).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'sec-inval invalidate_range_start: iommu: invalidate A (0 entries dropped)',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush: PTE A := none',
    ])
    // The frozen PTEs are written and restored under the locks the kernel holds.
    expect(first(ex, 'pte pmd_populate').locks).toEqual([
      'mmap_lock(r)',
      'folio_lock(A)',
      'anon_vma(w)',
      'pmd_lock',
    ])
    expect(first(ex, 'pte set_pte_at (remove_migration_pte)').locks).toEqual([
      'mmap_lock(r)',
      'folio_lock(A)',
      'anon_vma(w)',
      'ptl',
    ])
    const m = ex.final.mms[0]!
    expect(m.ptes).toEqual([
      { pfn: 3, present: true, write: false, dirty: false },
      { pfn: 2, present: true, write: true, dirty: true },
    ])
    // The old subpage A is freed; B keeps its page, mapped once.
    expect(ex.final.frames[1]!.free).toBe(true)
    expect(ex.final.frames[2]).toMatchObject({ map: 1, ref: 1, free: false })
  })

  it('arch-hook: the hooks come from pmdp_invalidate (split) and the two ptep_clear_flush (merge)', () => {
    const ls = lines(traced(thp('ksm_merge A'), pol('arch-hook')), { kinds: ['notifier'] })
    expect(ls.filter((l) => l.startsWith('notifier mmu_notifier_arch'))).toEqual([
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
    ])
  })

  it('a PTE-mapped huge page (mapped: pte) is treated as a small folio: no split', () => {
    const ls = lines(traced(thp('ksm_merge A', 'pte'), pol('start-end')), { kinds: KINDS })
    expect(ls.some((l) => l.includes('anon_vma_lock_write'))).toBe(false)
    expect(ls[2]).toBe('lock try_to_merge_one_page: trylock_page: lock the folio pfn 1 (A)')
    expect(ls[3]).toBe('notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A')
  })
})

describe('migrate_vma of a subpage: split_huge_page inside the MMU_NOTIFY_MIGRATE range (v6.6)', () => {
  it('start-end: range_start(MIGRATE), pmd_lock, the split nested in it, then the PTE collect of A', () => {
    const ex = traced(thp('migrate_vma A'), pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS })
    expect(ls.slice(0, 6)).toEqual([
      "frame alloc_page (the driver's destination): allocate pfn 3 (gen 1)",
      "lock lock_page (the driver's destination): lock the folio pfn 3 (A new)",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_MIGRATE A',
      'sec-inval invalidate_range_start: iommu: invalidate A (2 entries dropped)',
      'lock migrate_vma_collect_pmd: pmd_lock: take the PMD lock',
      'lock spin_unlock (pmd_lock): release the PMD lock',
    ])
    const split = SPLIT_HUGE_PAGE.map((l) =>
      l.startsWith('sec-inval invalidate_range_start: iommu: invalidate A,B (2')
        ? 'sec-inval invalidate_range_start: iommu: invalidate A,B (0 entries dropped)'
        : l,
    )
    expect(ls.slice(6, 6 + split.length)).toEqual(split)
    expect(ls.slice(6 + split.length, 6 + split.length + 4)).toEqual([
      'lock migrate_vma_collect_pmd: take the page-table lock',
      'lock migrate_vma_collect_pmd: trylock_page: lock the folio pfn 1 (A)',
      'pte ptep_get_and_clear: PTE A := none',
      'frame folio_mark_dirty: pfn 1',
    ])
    // The split's range is nested in the MIGRATE range: its range_end comes after the split's.
    const migEnd = ls.lastIndexOf('notifier mmu_notifier_invalidate_range_end: A')
    expect(migEnd).toBeGreaterThan(6 + split.length)
    const m = ex.final.mms[0]!
    expect(m.ptes).toEqual([
      { pfn: 3, present: true, write: true, dirty: true },
      { pfn: 2, present: true, write: true, dirty: true },
    ])
  })
})
