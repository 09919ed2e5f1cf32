/**
 * A PMD-mapped anon huge page shared with a fork child (copy_huge_pmd), and the ops whose rmap
 * walk visits both mappings, v6.6: rmap_walk_anon() over the folio's anon_vma (the process's
 * VMA, then the child's, which anon_vma_clone() put after it) for try_to_unmap() (reclaim:
 * TTU_SPLIT_HUGE_PMD splits each mm's PMD before that VMA's range_start, a swap entry per
 * subpage in each, swap_duplicate), try_to_migrate() (set_pmd_migration_entry in each mm;
 * remove_migration_ptes() -> remove_migration_pmd() in each) and split_huge_page()'s
 * unmap_folio() / remap_page() (every mapping frozen into migration entries and restored). Each
 * VMA has its own range_start/end on its own mm and its own pmd_lock / PTL; a VMA of the tree
 * that no longer maps the folio still gets its range. The expectations come from the kernel
 * source (mm/rmap.c, mm/huge_memory.c, mm/migrate.c, mm/vmscan.c, mm/migrate_device.c).
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { SWAP_CACHE_REF } from '../state'
import { first, lines, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier', 'frame', 'info']

/** H = [A, B], PMD-mapped, cached by the process's IOMMU as one 2 MiB entry. */
function thp(threads: string, arch = 'x86_64') {
  return scenarioOf(
    `
      title: thp child test
      arch: ${arch}
      thp:
        H: [A, B]
      pages:
        A: { value: 1 }
        B: { value: 2 }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A] }
      ${threads}
    `,
    'thp-child.test.yaml',
  )
}

/** The events of one op (its `op` line on), of the given kinds. */
function opLines(ex: ReturnType<typeof traced>, op: string, kinds: readonly EventKind[] = KINDS): string[] {
  return lines(ex, { op, kinds })
}

describe('reclaim of a huge folio a fork child shares: try_to_unmap over both VMAs (v6.6)', () => {
  const sc = thp('cpus:\n        C0: [fork, reclaim A]')

  it('each VMA: split_huge_pmd_address, then its own range over the folio and the batched PTE walk; one flush of both mms', () => {
    const ex = traced(sc, pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'C0: reclaim A', ['pte', 'cpu-flush', 'notifier'])
    expect(ls).toEqual([
      // The process's VMA: __split_huge_pmd with its own MMU_NOTIFY_CLEAR range.
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B -> pfns 1,2 (same pages)',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      // try_to_unmap_one's range over the folio, the PTEs to swap entries, the flush batched.
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'pte ptep_get_and_clear: PTE A := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'pte set_pte_at (swap entry): PTE A := swap entry (slot 0)',
      'pte ptep_get_and_clear: PTE B := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'pte set_pte_at (swap entry): PTE B := swap entry (slot 1)',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      // The child's VMA, on the child's mm (no subscribers: no notifier lines), the same slots.
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B -> pfns 1,2 (same pages)',
      'pte ptep_get_and_clear: PTE A (child) := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'pte set_pte_at (swap entry): PTE A (child) := swap entry (slot 0)',
      'pte ptep_get_and_clear: PTE B (child) := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'pte set_pte_at (swap entry): PTE B (child) := swap entry (slot 1)',
      // try_to_unmap_flush_dirty(): the CPUs of both mms the batch added.
      'cpu-flush arch_tlbbatch_flush (try_to_unmap_flush_dirty): flush CPU TLBs: A,B',
      "cpu-flush arch_tlbbatch_flush (try_to_unmap_flush_dirty): the fork child's CPUs: flush CPU TLBs: A,B",
    ])
    // Each mm's PMD under its own pmd_lock, each PTE clear under that mm's PTL; the child's too.
    expect(first(ex, 'pte ptep_get_and_clear: PTE A (child)').locks).toEqual(['ptl(child)'])
    const splits = lines(ex, { op: 'C0: reclaim A', kinds: ['pte'] }).filter((l) =>
      l.startsWith('pte pmdp_invalidate'),
    )
    expect(splits).toHaveLength(2)
    // swap_duplicate per PTE: each slot is shared by the two swap PTEs; the folio is freed.
    const f = ex.final
    expect(f.mms[0]!.ptes.map((p) => p?.swp)).toEqual([0, 1])
    expect(f.mms[1]!.ptes.map((p) => p?.swp)).toEqual([0, 1])
    expect(f.swapMap.map((m) => m & (SWAP_CACHE_REF - 1))).toEqual([2, 2])
    expect(f.swap).toEqual([1, 2])
    expect(f.frames[1]).toMatchObject({ free: true, map: 0, ref: 0 })
    expect(f.frames[2]).toMatchObject({ free: true, map: 0, ref: 0 })
  })

  it('a child thread reclaims: the walk still starts at the process VMA, which no longer maps the folio, and notifies it', () => {
    // The process wrote both subpages after fork (split + wp_page_copy each): only the child
    // maps the old folio, through its huge PMD.
    const ex = traced(
      thp(
        'cpus:\n        C0: [fork, write A 7, write B 8, signal forked]\n        C1: { mm: child, ops: [wait forked, reclaim A] }',
      ),
      pol('start-end'),
    )
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'C1: reclaim A', ['notifier', 'info', 'pte'])
    expect(ls.slice(0, 8)).toEqual([
      'info shrink_folio_list: H is PMD-mapped: isolate and lock the huge folio (pfns 1,2)',
      'info add_to_swap: the huge folio stays whole (THP_SWAP): pfns 1,2 -> swap slots 0,1',
      'info try_to_unmap_one: TTU_SPLIT_HUGE_PMD: split_huge_pmd_address(H) first',
      // The process's VMA is in the anon_vma tree: __split_huge_pmd's range and try_to_unmap_one's.
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'info __split_huge_pmd: H is no longer a huge PMD (split or zapped meanwhile): nothing to do',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'info __split_huge_pmd: H split into PTEs; back in the caller',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
    ])
    expect(ls).toContain('info page_vma_mapped_walk: no PTE maps the folio of H any more')
    expect(ls).toContain('pte set_pte_at (swap entry): PTE A (child) := swap entry (slot 0)')
    // The process keeps its copies; the child's subpages are swapped (one swap PTE each).
    expect(ex.final.mms[0]!.ptes.map((p) => p?.pfn)).toEqual([3, 4])
    expect(ex.final.mms[1]!.ptes.map((p) => p?.swp)).toEqual([0, 1])
    expect(ex.final.swapMap.map((m) => m & (SWAP_CACHE_REF - 1))).toEqual([1, 1])
  })
})

describe('migration of a huge folio a fork child shares: a PMD migration entry in each mm (v6.6)', () => {
  it('try_to_migrate: set_pmd_migration_entry in the process, then the child; remove_migration_pmd in both', () => {
    const ex = traced(thp('cpus:\n        C0: [fork, migrate A sync_light]'), pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'C0: migrate A sync_light', ['pte', 'notifier', 'lock'])
    expect(ls).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'lock page_vma_mapped_walk: take the PMD lock',
      'pte pmdp_invalidate: PMD H := invalid (set_pmd_migration_entry: pmd_mkinvalid)',
      'pte set_pmd_at (PMD migration entry): PMD H := migration entry (pfns 1,2, read-only)',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock page_vma_mapped_walk: take the PMD lock',
      'pte pmdp_invalidate: PMD H := invalid (set_pmd_migration_entry: pmd_mkinvalid)',
      'pte set_pmd_at (PMD migration entry): PMD H := migration entry (pfns 1,2, read-only)',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'lock remove_migration_ptes: page_vma_mapped_walk: take the PMD lock',
      'pte set_pmd_at (remove_migration_pmd): PMD H := huge page pfns 3,4 RO',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'lock remove_migration_ptes: page_vma_mapped_walk: take the PMD lock',
      'pte set_pmd_at (remove_migration_pmd): PMD H := huge page pfns 3,4 RO',
      'lock spin_unlock (pmd_lock): release the PMD lock',
    ])
    const f = ex.final
    for (const mm of [0, 1])
      expect(f.mms[mm]!.ptes).toEqual([
        { pfn: 3, present: true, write: false, dirty: true, huge: true },
        { pfn: 4, present: true, write: false, dirty: true, huge: true },
      ])
    // The copy is mapped twice (a reference per mapping); the source is freed.
    expect(f.frames[3]).toMatchObject({ map: 2, ref: 2, v: 1 })
    expect(f.frames[4]).toMatchObject({ map: 2, ref: 2, v: 2 })
    expect(f.frames[1]).toMatchObject({ free: true })
  })

  it('a child thread migrates after splitting its own PMD: the folio stays large (PMD-mapped in the process), PTE walk in the child', () => {
    const ex = traced(
      thp(
        'cpus:\n        C0: [fork, signal forked]\n        C1: { mm: child, ops: [wait forked, thp_split H, migrate A] }',
      ),
      pol('start-end'),
    )
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'C1: migrate A', ['pte', 'info'])
    expect(ls[0]).toBe(
      'info migrate_pages: H is PTE-mapped here but still PMD-mapped in the other mm: isolate and lock the huge folio (pfns 1,2)',
    )
    expect(ls).toContain(
      'pte set_pmd_at (PMD migration entry): PMD H := migration entry (pfns 1,2, read-only)',
    )
    expect(ls).toContain(
      'pte set_pte_at (migration entry): PTE A (child) := migration entry (pfn 1, read-only)',
    )
    expect(ls).toContain(
      'pte set_pte_at (migration entry): PTE B (child) := migration entry (pfn 2, read-only)',
    )
    expect(first(ex, 'pte set_pte_at (migration entry): PTE A (child)').locks).toEqual(['ptl(child)'])
    expect(ex.final.mms[0]!.ptes.map((p) => [p?.pfn, p?.huge])).toEqual([
      [3, true],
      [4, true],
    ])
    expect(ex.final.mms[1]!.ptes.map((p) => [p?.pfn, p?.huge])).toEqual([
      [3, undefined],
      [4, undefined],
    ])
  })
})

describe('split_huge_page of a huge folio a fork child shares: unmap_folio and remap_page over both VMAs (v6.6)', () => {
  it('ksm_merge: each PMD frozen (the process first), remap_page restores both, all under the anon_vma lock', () => {
    const ex = traced(thp('cpus:\n        C0: [fork, ksm_merge A]'), pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'C0: ksm_merge A', ['pte'])
    expect(ls.slice(0, 10)).toEqual([
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B := migration entries (pfns 1,2, freeze)',
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B := migration entries (pfns 1,2, freeze)',
      'pte set_pte_at (remove_migration_pte): PTE A := pfn 1 RO dirty',
      'pte set_pte_at (remove_migration_pte): PTE B := pfn 2 RO dirty',
      'pte set_pte_at (remove_migration_pte): PTE A (child) := pfn 1 RO dirty',
      'pte set_pte_at (remove_migration_pte): PTE B (child) := pfn 2 RO dirty',
      // Then KSM on the process's small page: write_protect_page and replace_page.
      'pte ptep_clear_flush: PTE A := none',
      'pte set_pte_at_notify (write-protect): PTE A := pfn 1 RO clean',
    ])
    expect(first(ex, 'pte set_pte_at (remove_migration_pte): PTE A (child)').locks).toEqual([
      'mmap_lock(r)',
      'folio_lock(A)',
      'anon_vma(w)',
      'ptl(child)',
    ])
    // The child keeps the old subpages; the process's A is the stable page.
    expect(ex.final.mms[1]!.ptes.map((p) => [p?.pfn, p?.huge])).toEqual([
      [1, undefined],
      [2, undefined],
    ])
    expect(ex.final.mms[0]!.ptes[0]!.pfn).toBe(3)
  })

  it("a subpage the child maps through a PTE (its COW fault split its PMD) is frozen by try_to_migrate_one's ptep_clear_flush (TTU_SYNC)", () => {
    const ex = traced(
      thp(
        'cpus:\n        C0: [fork, signal forked]\n        C1: { mm: child, ops: [wait forked, write A 7, signal cow] }\n        ksmd: [wait cow, ksm_merge B]',
      ),
      pol('start-end'),
    )
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'ksmd: ksm_merge B', ['pte', 'cpu-flush'])
    const clear = ls.indexOf('pte ptep_clear_flush: PTE B (child) := none')
    expect(clear).toBeGreaterThan(0)
    expect(ls.slice(clear, clear + 3)).toEqual([
      'pte ptep_clear_flush: PTE B (child) := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: B',
      'pte set_pte_at (migration entry): PTE B (child) := migration entry (pfn 2, read-only)',
    ])
    expect(first(ex, 'pte ptep_clear_flush: PTE B (child)').locks).toEqual([
      'mmap_lock(r)',
      'folio_lock(B)',
      'anon_vma(w)',
      'ptl(child)',
    ])
    expect(ls).toContain('pte set_pte_at (remove_migration_pte): PTE B (child) := pfn 2 RO dirty')
    // The child's own copy of A is not the folio's: untouched.
    expect(ls.some((l) => l.includes('PTE A (child)'))).toBe(false)
  })
})

describe('migrate_vma of a subpage whose folio the other mm still maps with a huge PMD (v6.6 migrate_vma_check_page)', () => {
  it('PageCompound: the collected PTE is restored and the page is not migrated; the child keeps its huge PMD', () => {
    const ex = traced(thp('cpus:\n        C0: [fork, thp_split H, migrate_vma A]'), pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'C0: migrate_vma A', ['pte', 'info', 'op'])
    expect(ls).toContain(
      'info migrate_vma_check_page: pfn 1 is a subpage of H, still PMD-mapped in the other mm: PageCompound, not migrated',
    )
    expect(ls[ls.length - 1]).toBe(
      'pte set_pte_at (remove_migration_pte: the source back): PTE A := pfn 1 RO dirty',
    )
    expect(lines(ex, { kinds: ['op'] })).toContain('op migrate_vma: A: not migrated')
    expect(ex.final.mms[0]!.ptes[0]).toEqual({ pfn: 1, present: true, write: false, dirty: true })
    expect(ex.final.mms[1]!.ptes.every((p) => p?.huge === true && !p.mig)).toBe(true)
    expect(ex.final.frames[1]).toMatchObject({ map: 2, ref: 2 })
  })
})

describe("the child's threads on their own huge PMD", () => {
  it("mprotect and thp_split in the child change the child's PMD only; the process's IOMMU hears nothing", () => {
    const ex = traced(
      thp(
        'cpus:\n        C0: [fork, signal forked]\n        C1: { mm: child, ops: [wait forked, mprotect A B none, thp_split H] }',
        'arm64',
      ),
      pol('start-end'),
    )
    expect(ex.violations).toEqual([])
    for (const op of ['C1: mprotect A B none', 'C1: thp_split H']) {
      expect(opLines(ex, op, ['notifier', 'sec-inval'])).toEqual([])
      expect(opLines(ex, op, ['lock'])).toContain('lock pmd_lock: take the PMD lock')
    }
    expect(first(ex, 'pte set_pmd_at: PMD H := huge PROT_NONE').locks).toEqual(['mmap_lock(w)', 'pmd_lock'])
    expect(ex.final.mms[0]!.ptes.map((p) => [p?.present, p?.huge])).toEqual([
      [true, true],
      [true, true],
    ])
    expect(ex.final.mms[1]!.ptes.map((p) => [p?.present, p?.huge])).toEqual([
      [false, undefined],
      [false, undefined],
    ])
  })
})

describe('khugepaged with a fork child: max_ptes_shared (v6.6 mm/khugepaged.c)', () => {
  const collapse = (childOps: string) =>
    scenarioOf(
      `
        title: thp child collapse test
        arch: x86_64
        thp:
          H: { pages: [A, B], mapped: pte }
        pages:
          A: { value: 1 }
          B: { value: 2 }
        cpus:
          C0: [fork, signal forked]
          C1: { mm: child, ops: [wait forked, ${childOps}signal cow] }
          khugepaged: [wait cow, thp_collapse H]
      `,
      'thp-child-collapse.test.yaml',
    )

  it('every subpage shared: SCAN_EXCEED_SHARED_PTE under mmap_write_lock, no range, nothing changes', () => {
    const ex = traced(collapse(''), pol('start-end'))
    const ls = opLines(ex, 'khugepaged: thp_collapse H', ['info', 'notifier', 'lock'])
    expect(ls).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'info hpage_collapse_scan_pmd: A,B are mapped by the fork child too (page_mapcount > 1): 2 shared PTEs of 2, standing for 512 of 512; max_ptes_shared 256: SCAN_EXCEED_SHARED_PTE, no collapse',
      'lock mmap_write_unlock: release mmap_lock',
    ])
    expect(ex.final.mms[0]!.ptes.map((p) => p?.pfn)).toEqual([1, 2])
  })

  it("one of two shared: the collapse copies both; the child's page stays allocated, the other is freed", () => {
    const ex = traced(collapse('write A 7, '), pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = opLines(ex, 'khugepaged: thp_collapse H', ['info', 'frame', 'pte'])
    expect(ls).toContain(
      'info hpage_collapse_scan_pmd: B is mapped by the fork child too (page_mapcount > 1): 1 shared PTE of 2, standing for 256 of 512; max_ptes_shared 256',
    )
    expect(ls.slice(ls.indexOf('frame page_remove_rmap: pfn 1 mapcount 0'))).toEqual([
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'frame free_page_and_swap_cache: free pfn 1 (gen 1)',
      // release_pte_page (unlock, putback) of the shared page before its rmap goes.
      'frame release_pte_page: folio_putback_lru: pfn 2 back on the LRU',
      'frame page_remove_rmap: pfn 2 mapcount 1',
      'info free_page_and_swap_cache: pfn 2 is still mapped by the fork child: it stays',
      'info pgtable_trans_huge_deposit: deposit the emptied PTE table under the huge PMD',
      'pte set_pmd_at: PMD H := huge page pfns 4,5 RW dirty',
    ])
    expect(ex.final.frames[2]).toMatchObject({ free: false, map: 1, ref: 1, v: 2 })
    expect(ex.final.mms[1]!.ptes.map((p) => p?.pfn)).toEqual([3, 2])
  })
})
