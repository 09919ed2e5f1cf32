/**
 * The other CPU ops on a PMD-mapped huge page (issue 13): munmap and MADV_DONTNEED (v6.6
 * mm/memory.c zap_pmd_range, mm/huge_memory.c zap_huge_pmd / __split_huge_pmd, mm/mmap.c
 * do_vmi_align_munmap's split_vma), reclaim (mm/vmscan.c shrink_folio_list with
 * TTU_SPLIT_HUGE_PMD, mm/rmap.c try_to_unmap_one), migration (mm/rmap.c try_to_migrate_one,
 * mm/huge_memory.c set_pmd_migration_entry / remove_migration_pmd), and what the other paths do
 * with a PMD migration entry. Expectations come from the kernel source, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { every, first, lines, runUnder, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame', 'info']

/** H = [A, B], PMD-mapped; the secondary caches A (one 2 MiB entry covering B too). */
function thp(body: string, arch = 'x86_64') {
  return scenarioOf(
    `
      title: thp ops test
      arch: ${arch}
      thp:
        H: [A, B]
      pages:
        A: { value: 1 }
        B: { value: 2 }
      ${body}
    `,
    'thp-ops.test.yaml',
  )
}
const one = (op: string, extra = '', sec = '{ name: iommu, type: hw-walker, cached: [A] }', arch?: string) =>
  thp(`secondary:\n        - ${sec}\n      cpus:\n        C0: [${op}]\n      ${extra}`, arch)

/** Each line found after the one before it: the whole list appears in this order. */
function inOrder(ls: readonly string[], prefixes: readonly string[]): number[] {
  let from = 0
  return prefixes.map((p) => {
    const i = ls.findIndex((x, k) => k >= from && x.startsWith(p))
    if (i < 0) throw new Error(`'${p}' not found after line ${from}:\n${ls.join('\n')}`)
    from = i + 1
    return i
  })
}

const ZAP_HUGE_PMD = [
  'lock zap_huge_pmd: __pmd_trans_huge_lock: take the PMD lock',
  'pte pmdp_huge_get_and_clear_full: PMD H := none (was huge page pfns 1,2)',
  "info tlb_remove_pmd_tlb_entry: the gather's range covers H (2 MiB, cleared_pmds)",
  'frame page_remove_rmap (compound): pfns 1,2 mapcount 0',
  'frame zap_deposited_table: pte_free: the PTE table deposited under H is freed',
  'lock spin_unlock (pmd_lock): release the PMD lock',
  'frame tlb_remove_page_size: the huge folio (pfns 1,2) is queued for freeing after the flush',
]
const FREE = [
  'frame tlb_batch_pages_flush: release 2 queued pages',
  'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
  'frame free_pages_and_swap_cache: free pfn 2 (gen 1)',
]

describe('munmap of the whole huge page: zap_huge_pmd (v6.6)', () => {
  const HEAD = [
    'lock mmap_write_lock: take mmap_lock for write',
    'info vma_iter_clear_gfp: detach VMA(s) for A,B',
    'lock mmap_write_downgrade: downgrade mmap_lock to read',
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A,B',
  ]
  it('start-end: range_start, zap_huge_pmd under pmd_lock, range_end, then the gather flushes and frees the folio', () => {
    const ex = traced(one('munmap A B'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...HEAD,
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      ...ZAP_HUGE_PMD,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      ...FREE,
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'pte pmdp_huge_get_and_clear_full').locks).toEqual(['mmap_lock(r)', 'pmd_lock'])
    expect(first(ex, 'frame zap_deposited_table').locks).toEqual(['mmap_lock(r)', 'pmd_lock'])
    const m = ex.final.mms[0]!
    expect(m.ptes).toEqual([null, null])
    // The deposited table went with pte_free; no PTE table was ever linked, none to free_pgtables.
    expect(m.tbl).toEqual([null])
    expect(m.pt).toEqual([false])
  })

  it('arch-hook: the secondary hears of it only from the gather flush in tlb_finish_mmu, before the free', () => {
    const ls = lines(traced(one('munmap A B'), pol('arch-hook')), { kinds: KINDS })
    const [clear, hook, free] = inOrder(ls, [
      'pte pmdp_huge_get_and_clear_full',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'frame free_pages_and_swap_cache: free pfn 1',
    ])
    expect(ls[hook! - 1]).toBe('cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B')
    expect(clear).toBeLessThan(hook!)
    expect(hook).toBeLessThan(free!)
    expect(ls.filter((l) => l.startsWith('notifier mmu_notifier_arch'))).toHaveLength(1)
  })

  it('invalidate-range (v4.15): ->invalidate_range from range_end and from tlb_flush_mmu_tlbonly', () => {
    const ls = lines(traced(one('munmap A B'), pol('invalidate-range')), { kinds: ['sec-inval'] })
    expect(ls).toEqual([
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (2 entries dropped)',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate A,B (0 entries dropped)',
    ])
  })

  it('a start-only driver: the device re-walks the huge PMD before zap_huge_pmd and uses the freed folio', () => {
    const s = one(
      'munmap A B',
      'devices: { D0: { via: iommu, ops: [write A 7, write B 8] } }',
      '{ name: iommu, type: hw-walker, flush_at: start, cached: [A] }',
    )
    expect(runUnder(s, 'start-end').invariants['use-after-free']).toBe('violated')
    expect(runUnder(s, 'invalidate-range').verdict).toBe('holds')
    expect(runUnder(s, 'arch-hook').verdict).toBe('holds')
  })

  it('arm64: tlb_end_vma flushes the PMD range before range_end (no MMU_GATHER_MERGE_VMAS)', () => {
    const ls = lines(traced(one('munmap A B', '', undefined, 'arm64'), pol('arch-hook')), { kinds: KINDS })
    const [endVma, re] = inOrder(ls, [
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A,B',
      'notifier mmu_notifier_invalidate_range_end: A,B',
    ])
    expect(endVma).toBeLessThan(re!)
    expect(ls[endVma! + 1]).toBe(
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
    )
  })

  it('exit_mmap zaps the huge PMD the same way, with no notifier (mmu_notifier_release came first)', () => {
    const ls = lines(traced(one('exit'), pol('start-end')), { kinds: KINDS })
    inOrder(ls, [
      'notifier mmu_notifier_release',
      ...ZAP_HUGE_PMD,
      'cpu-flush tlb_flush (tlb_finish_mmu, fullmm)',
    ])
    expect(ls.filter((l) => l.startsWith('notifier mmu_notifier_invalidate'))).toEqual([])
  })
})

describe('MADV_DONTNEED of the huge page (zap_page_range_single -> zap_pmd_range)', () => {
  it('the whole of it: zap_huge_pmd inside the MMU_NOTIFY_CLEAR range; a full batch flushes and frees before range_end', () => {
    const ex = traced(one('madvise_dontneed A B', 'mmu_gather: { batch: 1 }'), pol('start-end'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      ...ZAP_HUGE_PMD,
      'info tlb_remove_page_size: mmu_gather batch full (1 page): tlb_flush_mmu',
      'cpu-flush tlb_flush (tlb_flush_mmu (tlb_remove_page_size: batch full)): flush CPU TLBs: A,B',
      ...FREE,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('part of it: zap_pmd_range splits the PMD (its own MMU_NOTIFY_CLEAR pair, nested) before zap_pte_range', () => {
    const ex = traced(one('madvise_dontneed A'), pol('start-end'))
    const ls = lines(ex, { kinds: KINDS })
    inOrder(ls, [
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'info zap_pmd_range: A is part of huge page H: __split_huge_pmd first',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B -> pfns 1,2 (same pages)',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
      'pte ptep_get_and_clear_full: PTE A := none',
      'notifier mmu_notifier_invalidate_range_end: A',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
    ])
    expect(first(ex, 'pte pmdp_invalidate').locks).toEqual(['mmap_lock(r)', 'pmd_lock'])
    expect(ex.final.mms[0]!.ptes).toEqual([null, { pfn: 2, present: true, write: true, dirty: true }])
  })

  it("part of it with a start-only driver: the 2 MiB entry the device re-walks inside the split's range maps A's freed subpage", () => {
    const s = one(
      'madvise_dontneed A',
      'devices: { D0: { via: iommu, ops: [write A 7, write A 8] } }',
      '{ name: iommu, type: hw-walker, flush_at: start, cached: [A] }',
    )
    expect(runUnder(s, 'start-end').invariants['use-after-free']).toBe('violated')
    // v4.15's split invalidates nothing (only_end), but the zap's ->invalidate_range drops the
    // whole 2 MiB entry; v6.6's hook fires in pmdp_invalidate and again at tlb_finish_mmu.
    expect(runUnder(s, 'invalidate-range').verdict).toBe('holds')
    expect(runUnder(s, 'arch-hook').verdict).toBe('holds')
  })
})

describe('munmap of part of the huge page: do_vmi_align_munmap -> __split_vma -> split_huge_pmd_address', () => {
  it('the split runs under mmap_write_lock before the VMA is detached, then the PTE of A is zapped', () => {
    const ex = traced(one('munmap A'), pol('arch-hook'))
    const ls = lines(ex, { kinds: KINDS })
    inOrder(ls, [
      'lock mmap_write_lock',
      'info split_vma: A is part of huge page H: vma_adjust_trans_huge -> split_huge_pmd_address',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'pte pmd_populate',
      'info vma_iter_clear_gfp: detach VMA(s) for A',
      'lock mmap_write_downgrade',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
      'pte ptep_get_and_clear_full: PTE A := none',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
    ])
    expect(first(ex, 'pte pmdp_invalidate').locks).toEqual(['mmap_lock(w)', 'pmd_lock'])
    // B keeps its VMA, so free_pgtables keeps the PTE table.
    expect(every(ex, 'info free_pgtables', { kinds: ['info'] })).toEqual([])
    expect(ex.final.mms[0]!.pt).toEqual([true])
  })
})

describe('reclaim of the huge page: shrink_folio_list with TTU_SPLIT_HUGE_PMD (v6.6)', () => {
  const HEAD = [
    'info shrink_folio_list: H is PMD-mapped: isolate and lock the huge folio (pfns 1,2)',
    'info add_to_swap: the huge folio stays whole (THP_SWAP): pfns 1,2 -> swap slots 0,1',
    'info try_to_unmap_one: TTU_SPLIT_HUGE_PMD: split_huge_pmd_address(H) first',
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
    'lock pmd_lock: take the PMD lock',
    'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
    'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
  ]
  const subpage = (p: string, pfn: number, slot: number, inval: readonly string[]) => [
    `pte ptep_get_and_clear: PTE ${p} := none`,
    'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
    ...inval,
    `frame folio_mark_dirty: pfn ${pfn}`,
    // No fork child: the subpage was PageAnonExclusive, the swap PTE carries SWP_EXCLUSIVE.
    `pte set_pte_at (swap entry): PTE ${p} := swap entry (slot ${slot}, exclusive)`,
    `frame page_remove_rmap: pfn ${pfn} mapcount 0`,
  ]
  const TAIL = [
    'cpu-flush arch_tlbbatch_flush (try_to_unmap_flush_dirty): flush CPU TLBs: A,B',
    'frame swap_writepage: pfns 1,2 -> swap slots 0,1',
    'frame free_unref_folios: free pfn 1 (gen 1)',
    'frame free_unref_folios: free pfn 2 (gen 1)',
  ]

  it('arch-hook (x86): the split hooks in pmdp_invalidate; every subpage added to the batch hooks (0, -1)', () => {
    const ex = traced(one('reclaim A'), pol('arch-hook'))
    const FULL = [
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (0 entries dropped)',
    ]
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...HEAD,
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (2 entries dropped)',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B -> pfns 1,2 (same pages)',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'info __split_huge_pmd: H split into PTEs; back in the caller',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'lock page_vma_mapped_walk: take the page-table lock',
      ...subpage('A', 1, 0, FULL),
      ...subpage('B', 2, 1, FULL),
      'lock page_vma_mapped_walk_done: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      ...TAIL,
    ])
    // kswapd holds no mmap_lock: the split under pmd_lock, the walk under the PTL only.
    expect(first(ex, 'pte pmdp_invalidate').locks).toEqual(['pmd_lock'])
    expect(first(ex, 'pte ptep_get_and_clear: PTE B').locks).toEqual(['ptl'])
    expect(ex.final.mms[0]!.ptes).toEqual([
      { pfn: -1, present: false, write: false, dirty: false, swp: 0, excl: true },
      { pfn: -1, present: false, write: false, dirty: false, swp: 1, excl: true },
    ])
  })

  it('invalidate-range (v4.15): the split is only_end; an explicit ->invalidate_range per subpage, then range_end', () => {
    const ls = lines(traced(one('reclaim A'), pol('invalidate-range')), { kinds: ['notifier', 'sec-inval'] })
    expect(ls).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'notifier mmu_notifier_invalidate_range_only_end: A,B',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'notifier mmu_notifier_invalidate_range: try_to_unmap_one: A',
      'sec-inval ->invalidate_range (try_to_unmap_one): iommu: invalidate A (2 entries dropped)',
      'notifier mmu_notifier_invalidate_range: try_to_unmap_one: B',
      'sec-inval ->invalidate_range (try_to_unmap_one): iommu: invalidate B (0 entries dropped)',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (0 entries dropped)',
    ])
  })

  it('a huge page split earlier is a small folio to the model: reclaim A takes the small-page path', () => {
    const s = thp(`secondary:
        - { name: iommu, type: hw-walker }
      cpus:
        C0: [thp_split H, reclaim A]`)
    const ls = lines(traced(s, pol('start-end')), { kinds: KINDS })
    inOrder(ls, [
      "info shrink_folio_list: A is not mapped by H's huge PMD: reclaimed as a small folio",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'pte set_pte_at (swap entry): PTE A := swap entry (slot 0, exclusive)',
    ])
    expect(ls.some((l) => l.includes('PTE B := swap entry'))).toBe(false)
  })
})

describe('migration of the huge page: set_pmd_migration_entry / remove_migration_pmd (v6.6)', () => {
  const SET = [
    'lock page_vma_mapped_walk: take the PMD lock',
    'pte pmdp_invalidate: PMD H := invalid (set_pmd_migration_entry: pmd_mkinvalid)',
    'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
  ]
  const REST = [
    'frame folio_mark_dirty: the huge folio (pfns 1,2)',
    'pte set_pmd_at (PMD migration entry): PMD H := migration entry (pfns 1,2, writable)',
    'frame page_remove_rmap (compound): pfns 1,2 mapcount 0',
    'lock spin_unlock (pmd_lock): release the PMD lock',
    'notifier mmu_notifier_invalidate_range_end: A,B',
  ]
  const REMOVE = [
    'frame folio_migrate_copy: pfns 1,2 -> pfns 3,4',
    'lock remove_migration_ptes: page_vma_mapped_walk: take the PMD lock',
    'pte set_pmd_at (remove_migration_pmd): PMD H := huge page pfns 3,4 RW',
    'lock spin_unlock (pmd_lock): release the PMD lock',
    'frame migrate_folio_done (free the source): free pfn 1 (gen 1)',
    'frame migrate_folio_done (free the source): free pfn 2 (gen 1)',
  ]
  const HEAD = [
    'info migrate_pages: H is PMD-mapped: isolate and lock the huge folio (pfns 1,2)',
    'frame get_new_folio (huge destination): allocate pfn 3 (gen 1)',
    'frame get_new_folio (huge destination): allocate pfn 4 (gen 1)',
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
  ]

  it('arch-hook: the flush inside pmdp_invalidate hooks under pmd_lock; no batched flush even in MIGRATE_ASYNC', () => {
    const ex = traced(one('migrate A'), pol('arch-hook'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...HEAD,
      ...SET,
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (2 entries dropped)',
      ...REST,
      ...REMOVE,
    ])
    expect(first(ex, 'sec-inval arch_invalidate_secondary_tlbs').locks).toEqual(['pmd_lock'])
    expect(ex.final.mms[0]!.tfb).toBeUndefined()
    expect(ex.final.mms[0]!.ptes.map((p) => p && [p.pfn, p.huge])).toEqual([
      [3, true],
      [4, true],
    ])
  })

  it('invalidate-range (v4.15): ->invalidate_range from range_end, before the copy', () => {
    const ls = lines(traced(one('migrate A'), pol('invalidate-range')), { kinds: KINDS })
    expect(ls).toEqual([
      ...HEAD,
      ...SET,
      ...REST,
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (2 entries dropped)',
      ...REMOVE,
    ])
  })

  it('a start-only driver: the device re-walks the huge PMD before pmdp_invalidate and writes after the copy', () => {
    const s = one(
      'migrate A',
      'devices: { D0: { via: iommu, ops: [write A 7, write B 8] } }',
      '{ name: iommu, type: hw-walker, flush_at: start, cached: [A] }',
    )
    const r = runUnder(s, 'start-end')
    expect(r.invariants['use-after-free']).toBe('violated')
    expect(r.invariants['lost-write']).toBe('violated')
    expect(runUnder(s, 'invalidate-range').verdict).toBe('holds')
    expect(runUnder(s, 'arch-hook').verdict).toBe('holds')
  })

  const dev = (cpus: string) =>
    thp(`secondary:
        - { name: iommu, type: hw-walker }
      cpus:
${cpus}
      devices:
        D0: { via: iommu, ops: [read A -> r0] }`)

  it('a device fault on the PMD migration entry waits (pmd_migration_entry_wait), then maps the new huge page', () => {
    const s = dev('        C0: [migrate A]')
    // C0: isolate, range_start, the PMD migration entry; D0: the walk faults, handle_mm_fault.
    const sched = [0, 0, 0, 1, 1]
    expect(() => traced(s, pol('start-end'), [...sched, 1])).toThrow(
      'D0 cannot run at step 5: migration_entry_wait: page under migration',
    )
    const ex = traced(s, pol('start-end'), sched)
    expect(ex.violations).toEqual([])
    const d = lines(ex, { thread: 'D0', kinds: ['fault', 'fill'] })
    expect(d[0]).toBe('fault iopf (page request): read A: walk finds a PMD migration entry')
    expect(d).toContain('fault migration_entry_wait: A: the migration entry is gone, retry')
    expect(d[d.length - 1]).toBe('fill IOMMU page walk: iommu TLB A -> pfn 3 RW (2 MiB entry)')
  })

  it('MADV_DONTNEED zaps the PMD migration entry (no page reference, flush_needed = 0); the migration frees both folios', () => {
    const s = dev('        C1: [madvise_dontneed A B]\n        C0: [migrate A]')
    // C0 (thread 1) up to the PMD migration entry, then C1 runs to its end.
    const ex = traced(s, pol('start-end'), [1, 1, 1])
    const ls = lines(ex, { kinds: KINDS })
    inOrder(ls, [
      'pte set_pmd_at (PMD migration entry)',
      'pte pmdp_huge_get_and_clear_full: PMD H := none (was a PMD migration entry)',
      'info zap_huge_pmd: H: a PMD migration entry holds no page reference (flush_needed = 0); the migration finds it gone',
      'frame zap_deposited_table',
      'info remove_migration_ptes: the migration entries of H are gone (zapped meanwhile)',
      'frame migrate_folio_done (free the source): free pfn 1 (gen 1)',
      'frame folio_put (unused destination): free pfn 3 (gen 1)',
    ])
    expect(ls.some((l) => l.startsWith('frame tlb_remove_page_size'))).toBe(false)
    expect(ex.violations).toEqual([])
    expect(ex.final.frames.slice(1).every((f) => f.free)).toBe(true)
  })

  it('a split of the PMD migration entry: PTE migration entries without a flush, then remove_migration_pte per subpage', () => {
    const s = dev('        C1: [thp_split H]\n        C0: [migrate A]')
    const ex = traced(s, pol('arch-hook'), [1, 1, 1])
    const ls = lines(ex, { thread: 'C1', kinds: KINDS })
    expect(ls).toContain(
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B := migration entries (pfns 1,2): a PMD migration entry needs no flush',
    )
    expect(ls.some((l) => l.startsWith('cpu-flush') || l.startsWith('notifier mmu_notifier_arch'))).toBe(
      false,
    )
    inOrder(lines(ex, { thread: 'C0', kinds: KINDS }), [
      'lock remove_migration_ptes: remove_migration_pte: take the page-table lock',
      'pte set_pte_at (remove_migration_ptes: remove_migration_pte): PTE A := pfn 3 RW dirty',
      'pte set_pte_at (remove_migration_ptes: remove_migration_pte): PTE B := pfn 4 RW dirty',
    ])
    expect(ex.violations).toEqual([])
  })

  it('mprotect makes the PMD migration entry readable (change_huge_pmd); a later write reuses the huge page (do_huge_pmd_wp_page)', () => {
    const s = dev('        C1: [mprotect A B rw, write A 5]\n        C0: [migrate A]')
    const ex = traced(s, pol('start-end'), [1, 1, 1])
    const c1 = lines(ex, { thread: 'C1', kinds: KINDS })
    expect(c1).toContain(
      'pte set_pmd_at (readable PMD migration entry): PMD H := readable migration entry (is_swap_pmd: make_readable_exclusive_migration_entry)',
    )
    expect(c1.some((l) => l.startsWith('cpu-flush'))).toBe(false)
    expect(lines(ex, { thread: 'C0', kinds: ['pte'] })).toContain(
      'pte set_pmd_at (remove_migration_pmd): PMD H := huge page pfns 3,4 RO',
    )
    expect(first(ex, 'pte pmdp_set_access_flags').text).toBe(
      'PMD H := huge RW dirty (do_huge_pmd_wp_page: PageAnonExclusive, reuse)',
    )
    expect(first(ex, 'pte pmdp_set_access_flags').locks).toEqual(['mmap_lock(r)', 'pmd_lock'])
    expect(ex.violations).toEqual([])
    expect(ex.final.frames[3]!.v).toBe(5)
  })
})

describe('page tables freed under a GUP-fast walker (MMU_GATHER_RCU_TABLE_FREE)', () => {
  it("munmap's tlb_finish_mmu waits for KVM's GUP-fast walk that read the PMD before free_pgtables", () => {
    const s = thp(`secondary:
        - { name: kvm, type: sw-mirror }
      cpus:
        C0: [thp_split H, munmap A B]
      devices:
        G0: { via: kvm, ops: [read B] }`)
    // C0 splits (5 steps); G0: the mirror fault, then GUP-fast reads the PMD (IRQs off); C0
    // then unmaps up to tlb_finish_mmu (7 steps, free_pgtables unlinked the table).
    const sched = [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    expect(() => traced(s, pol('start-end'), [...sched, 0])).toThrow(
      'C0 cannot run at step 14: tlb_remove_table: the RCU grace period waits for a GUP-fast walker (IRQs off)',
    )
    const ex = traced(s, pol('start-end'), [...sched, 1])
    expect(ex.violations).toEqual([])
    expect(lines(ex, { thread: 'G0', kinds: ['info'] })).toContain(
      'info hva_to_pfn_slow: B: GUP-fast fails (the PMD changed under it (found no PTE in the old table): back off); slow GUP',
    )
    // Every interleaving: the walker never reads a freed table.
    for (const p of ['start-end', 'invalidate-range', 'arch-hook'] as const)
      expect(runUnder(s, p).verdict).toBe('holds')
  })
})
