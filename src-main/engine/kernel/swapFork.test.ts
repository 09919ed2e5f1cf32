/**
 * Anon reclaim and migrate_vma with a fork child, v6.6. Reclaim: shrink_folio_list ->
 * add_to_swap (one slot), try_to_unmap -> rmap_walk_anon -> try_to_unmap_one per VMA (the
 * process's, then the child's; swap_duplicate per swap PTE), try_to_unmap_flush_dirty over both
 * mms, pageout, free; do_swap_page (swap_free, the swap cache, the exclusive check), fork's
 * copy_nonpresent_pte of a swap entry, zap_pte_range's free_swap_and_cache (mm/vmscan.c,
 * mm/rmap.c, mm/memory.c, mm/swapfile.c). migrate_vma: migrate_vma_collect_pmd on the thread's
 * mm, migrate_device_unmap's try_to_migrate(folio, 0) on the other, migrate_vma_finalize's
 * remove_migration_ptes over both (mm/migrate_device.c). Expectations come from the kernel
 * source.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { SWAP_CACHE_REF } from '../state'
import { first, lines, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'swap-fork.test.yaml')
const archHook = makePolicy('arch-hook')
const KINDS = ['lock', 'pte', 'cpu-flush', 'notifier', 'frame'] as const

describe('reclaim of a page shared with a fork child: try_to_unmap walks both VMAs', () => {
  const sc = load(`
    title: reclaim of a COW-shared page
    arch: x86_64
    pages:
      A: { value: 5, prot: rw, cow: true }
    secondary:
      - { name: iommu, type: hw-walker, cached: [A] }
    cpus:
      kswapd: [reclaim A]
      C0: [write A 6, read A -> r0]
      K: { mm: child, ops: [read A -> k0] }
  `)

  it("the process's VMA (notifier range, its PTL), then the child's (its PTL, no notifier), one slot for both; the flush covers both mms before pageout", () => {
    const ex = traced(sc, archHook)
    expect(lines(ex, { thread: 'kswapd', kinds: KINDS })).toEqual([
      'frame isolate_lru_folios: pfn 1 off the LRU',
      'lock shrink_folio_list: folio_trylock: lock the folio pfn 1 (A)',
      'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_get_and_clear: PTE A := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (swap entry): PTE A := swap entry (slot 0)',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_get_and_clear: PTE A (child) := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (swap entry): PTE A (child) := swap entry (slot 0)',
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock rmap_walk_anon: anon_vma_unlock_read: release the anon_vma lock',
      'cpu-flush arch_tlbbatch_flush (try_to_unmap_flush_dirty): flush CPU TLBs: A',
      "cpu-flush arch_tlbbatch_flush (try_to_unmap_flush_dirty): the fork child's CPUs: flush CPU TLBs: A",
      'frame swap_writepage: pfn 1 -> swap slot 0',
      'lock shrink_folio_list: folio_unlock: unlock the folio pfn 1 (A)',
      'frame free_unref_folios: free pfn 1 (gen 1)',
    ])
    expect(first(ex, 'pte ptep_get_and_clear: PTE A :=').locks).toEqual([
      'folio_lock(A)',
      'anon_vma(r)',
      'ptl',
    ])
    expect(first(ex, 'pte set_pte_at (swap entry): PTE A (child)').locks).toEqual([
      'folio_lock(A)',
      'anon_vma(r)',
      'ptl(child)',
    ])
  })

  it('after both unmaps the slot counts 2 swap PTEs; pageout wrote it and the folio is freed', () => {
    const alone = load(`
      title: reclaim alone
      arch: x86_64
      pages:
        A: { value: 5, prot: rw, cow: true }
      cpus:
        kswapd: [reclaim A]
    `)
    const ex = traced(alone, archHook)
    expect(ex.final.mms.map((m) => m.ptes[0]?.swp)).toEqual([0, 0])
    expect(ex.final.swapMap[0]! & (SWAP_CACHE_REF - 1)).toBe(2)
    expect(ex.final.swap[0]).toBe(5)
    expect(ex.final.swapCache[0]).toBe(-1)
    expect(ex.final.frames[1]!.free).toBe(true)
  })

  it("the parent's swap-in of the shared slot joins the swap cache, maps read-only and calls do_wp_page under the same PTL, which copies; the child's read finds the folio there and leaves it in the swap cache", () => {
    const ex = traced(sc, archHook)
    const c0 = lines(ex, { thread: 'C0', kinds: ['pte', 'fault', 'info', 'frame'] })
    expect(c0.slice(0, 11)).toEqual([
      'fault exc_page_fault: write A: permission fault',
      'fault handle_mm_fault: write fault on A',
      'frame swapin_readahead (read from swap): allocate pfn 1 (gen 2)',
      'fault read_swap_cache_async: A: slot 0 has 2 swap PTEs: pfn 1 joins the swap cache',
      'info swap_free: slot 0: swap_map count 2 -> 1',
      // should_try_to_free_swap(): a write fault, refcount 2 (ours, the cache's), but the
      // child's swap PTE keeps the slot: folio_swapped().
      'info should_try_to_free_swap: write fault, refcount 2: folio_free_swap fails, 1 swap PTE still shares slot 0',
      'pte do_swap_page: PTE A := pfn 1 RO clean',
      // v6.6: `if (vmf->flags & FAULT_FLAG_WRITE) { ret |= do_wp_page(vmf); ...}`, no second fault.
      'fault do_swap_page: A: pfn 1 is not exclusive (no SWP_EXCLUSIVE, refcount 2): mapped read-only, FAULT_FLAG_WRITE: do_wp_page under the PTL',
      'fault do_wp_page: page shared (mapcount 1): wp_page_copy',
      'frame wp_page_copy (alloc + __wp_page_copy_user): allocate pfn 2 (gen 1)',
      'pte ptep_clear_flush: PTE A := none',
    ])
    expect(c0.filter((l) => l.startsWith('fault exc_page_fault'))).toHaveLength(1)
    // do_wp_page runs under do_swap_page's PTL: set_pte_at and the decision share one hold.
    const swapIn = first(ex, 'pte do_swap_page: PTE A := pfn 1 RO clean')
    const wp = first(ex, 'fault do_wp_page: page shared', { kinds: ['fault'] })
    expect(swapIn.locks).toContain('ptl')
    expect(wp.locks).toContain('ptl')
    expect(wp.step).toBe(swapIn.step)
    expect(lines(ex, { thread: 'K', kinds: ['pte', 'fault', 'info'] })).toContain(
      'fault do_swap_page: A: folio pfn 1 still in the swap cache',
    )
    expect(lines(ex, { thread: 'K', kinds: ['info'] })).toContain(
      'info swap_free: slot 0: swap_map count 1 -> 0',
    )
    // A read fault does not try folio_free_swap (should_try_to_free_swap: no FAULT_FLAG_WRITE,
    // no VM_LOCKED, swap not full): the folio stays in the swap cache with its reference, and
    // the slot stays allocated (SWAP_HAS_CACHE) with the contents.
    expect(ex.final.swap[0]).toBe(5)
    expect(ex.final.swapCache[0]).toBe(1)
    expect(ex.final.swapMap[0]).toBe(SWAP_CACHE_REF)
    expect(ex.final.frames[1]).toMatchObject({ free: false, map: 1, ref: 2, v: 5 })
    expect(ex.final.regs).toEqual([6, 5])
  })

  it("a swap-in while kswapd still holds the folio (the child's VMA not yet walked) leaves it in the swap cache; reclaim keeps it there for the child", () => {
    // kswapd: add_to_swap and the process's VMA (4 steps); C0's write fault maps the
    // swap-cache folio (3 steps); kswapd finishes (the child's VMA, the flush and pageout, the
    // free); then C0's copy and K's read.
    const ex = traced(sc, archHook, [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
    const all = lines(ex, { kinds: ['fault', 'info', 'pte'] })
    expect(all).toContain('fault do_swap_page: A: folio pfn 1 still in the swap cache')
    expect(all).toContain('info swap_free: slot 0: swap_map count 1 -> 0')
    expect(all).toContain('info folio_putback_lru: pfn 1 stays in the swap cache of slot 0')
    expect(all).toContain('pte set_pte_at (swap entry): PTE A (child) := swap entry (slot 0)')
    expect(
      all.filter((l) => l.startsWith('fault do_swap_page: A: folio pfn 1 still in the swap cache')),
    ).toHaveLength(2)
    expect(ex.violations).toEqual([])
    expect(ex.final.regs).toEqual([6, 5])
  })
})

describe('fork and munmap of a swap PTE: swap_duplicate and free_swap_and_cache', () => {
  it('fork copies the swap PTE into the child under the PTL (swap_duplicate: the slot counts 2)', () => {
    const sc = load(`
      title: fork after swap-out
      arch: x86_64
      pages:
        A: { value: 5, prot: rw }
      cpus:
        kswapd: [reclaim A]
        C0: [fork, write A 6]
        K: { mm: child, ops: [read A -> k0] }
    `)
    // kswapd runs to its end, then the fork.
    const ex = traced(sc, archHook, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    const copy = first(ex, 'pte copy_nonpresent_pte (child: swap_duplicate)')
    expect(copy.text).toBe('PTE A (child) := swap entry (slot 0)')
    expect(copy.locks).toEqual(['mmap_lock(w)', 'ptl'])
    expect(ex.final.regs).toEqual([5])
    expect(lines(ex, { thread: 'C0', kinds: ['info'] })).toContain(
      'info swap_free: slot 0: swap_map count 2 -> 1',
    )
  })

  it("the child's munmap drops its count; the parent's write fault is then alone on the slot and maps the page writable", () => {
    const sc = load(`
      title: the child unmaps its swap PTE
      arch: x86_64
      pages:
        A: { value: 5, prot: rw, cow: true }
      cpus:
        kswapd: [reclaim A]
        K: { mm: child, ops: [munmap A] }
        C0: [write A 6]
    `)
    const ex = traced(sc, archHook)
    const zap = first(ex, 'info free_swap_and_cache', { kinds: ['info'] })
    expect(zap.text).toBe('slot 0: swap_map count 2 -> 1')
    expect(zap.locks).toEqual(['mmap_lock(r)', 'ptl(child)'])
    expect(lines(ex, { thread: 'C0', kinds: ['pte', 'info'] })).toEqual([
      'info swap_free: slot 0: swap_map count 1 -> 0',
      'pte do_swap_page: PTE A := pfn 1 RW dirty',
    ])
    expect(ex.final.swap[0]).toBe(null)
    expect(ex.final.frames[1]).toMatchObject({ map: 1, ref: 1, v: 6 })
  })
})

describe('migrate_vma with a fork child: collect, then migrate_device_unmap -> try_to_migrate(folio, 0)', () => {
  const yaml = (thread: string) => `
    title: migrate_vma of a COW-shared page
    arch: x86_64
    pages:
      A: { value: 5, prot: rw, cow: true }
    secondary:
      - { name: iommu, type: hw-walker, cached: [A] }
    cpus:
      ${thread}
  `
  /** migrate_vma_finalize: remove_migration_ptes over both VMAs, then the source is freed. */
  const finalize = [
    'frame folio_migrate_copy: pfn 1 -> pfn 2',
    'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
    'lock remove_migration_pte: take the page-table lock',
    'pte set_pte_at (remove_migration_pte): PTE A := pfn 2 RO dirty',
    'frame page_add_anon_rmap: pfn 2 mapcount 1',
    'lock pte_unmap_unlock: release the page-table lock',
    'lock remove_migration_pte: take the page-table lock',
    'pte set_pte_at (remove_migration_pte): PTE A (child) := pfn 2 RO dirty',
    'frame page_add_anon_rmap: pfn 2 mapcount 2',
    'lock pte_unmap_unlock: release the page-table lock',
    'lock rmap_walk_anon: anon_vma_unlock_read: release the anon_vma lock',
    'lock migrate_folio_move: folio_unlock(dst): unlock the folio pfn 2 (A new)',
    'lock migrate_folio_move: folio_unlock(src): unlock the folio pfn 1 (A)',
    'frame migrate_folio_done (free the source): free pfn 1 (gen 1)',
  ]

  it("from the process: collect's readable migration entry and flush under the PTL; try_to_migrate gives the process's VMA a range pair, then clears the child's PTE with ptep_clear_flush under the child's PTL", () => {
    const ex = traced(load(yaml('C0: [migrate_vma A]')), archHook)
    expect(lines(ex, { kinds: KINDS })).toEqual([
      "frame alloc_page (the driver's destination): allocate pfn 2 (gen 1)",
      "lock lock_page (the driver's destination): lock the folio pfn 2 (A new)",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_MIGRATE A',
      'lock migrate_vma_collect_pmd: take the page-table lock',
      'lock migrate_vma_collect_pmd: trylock_page: lock the folio pfn 1 (A)',
      'pte ptep_get_and_clear: PTE A := none',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (migration entry): PTE A := migration entry (pfn 1, read-only)',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'cpu-flush flush_tlb_range (migrate_vma_collect_pmd, under the PTL): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'frame migrate_device_unmap: folio_isolate_lru: pfn 1 off the LRU',
      'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
      // rmap_walk_anon visits the process's VMA first: try_to_migrate_one's range_start comes
      // before page_vma_mapped_walk, which finds collect's migration entry (no match, no PTL).
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'notifier mmu_notifier_invalidate_range_end: A',
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_clear_flush: PTE A (child) := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: A',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (migration entry): PTE A (child) := migration entry (pfn 1, read-only)',
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock rmap_walk_anon: anon_vma_unlock_read: release the anon_vma lock',
      ...finalize,
    ])
    expect(first(ex, 'pte ptep_clear_flush: PTE A (child)').locks).toEqual([
      'folio_lock(A new)',
      'folio_lock(A)',
      'anon_vma(r)',
      'ptl(child)',
    ])
    expect(first(ex, 'cpu-flush flush_tlb_page (ptep_clear_flush)').locks).toEqual([
      'folio_lock(A new)',
      'folio_lock(A)',
      'anon_vma(r)',
      'ptl(child)',
    ])
    expect(ex.final.frames[2]).toMatchObject({ map: 2, ref: 2 })
    expect(ex.final.frames[1]!.free).toBe(true)
  })

  it("from the child: collect on the child's mm (no subscribers); try_to_migrate's MMU_NOTIFY_CLEAR range and ptep_clear_flush (the arch hook under the PTL) on the process's mm", () => {
    const ex = traced(load(yaml('K: { mm: child, ops: [migrate_vma A] }')), archHook)
    expect(lines(ex, { kinds: [...KINDS, 'sec-inval'] })).toEqual([
      "frame alloc_page (the driver's destination): allocate pfn 2 (gen 1)",
      "lock lock_page (the driver's destination): lock the folio pfn 2 (A new)",
      'lock migrate_vma_collect_pmd: take the page-table lock',
      'lock migrate_vma_collect_pmd: trylock_page: lock the folio pfn 1 (A)',
      'pte ptep_get_and_clear: PTE A (child) := none',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (migration entry): PTE A (child) := migration entry (pfn 1, read-only)',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'cpu-flush flush_tlb_range (migrate_vma_collect_pmd, under the PTL): flush CPU TLBs: A',
      'lock pte_unmap_unlock: release the page-table lock',
      'frame migrate_device_unmap: folio_isolate_lru: pfn 1 off the LRU',
      'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_clear_flush: PTE A := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A (1 entry dropped)',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (migration entry): PTE A := migration entry (pfn 1, read-only)',
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'lock rmap_walk_anon: anon_vma_unlock_read: release the anon_vma lock',
      ...finalize,
    ])
    expect(first(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A').locks).toEqual([
      'folio_lock(A new)',
      'folio_lock(A)',
      'anon_vma(r)',
      'ptl',
    ])
  })

  it("a child write before try_to_migrate reaches it breaks COW: the walk skips the child's PTE, the process gets the new page alone", () => {
    const sc = load(yaml('C0: [migrate_vma A]\n      K: { mm: child, ops: [write A 7] }'))
    // C0: setup, range_start, collect, range_end (+ collected); then K's write fault runs whole.
    const ex = traced(sc, archHook, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    expect(lines(ex, { thread: 'C0', kinds: ['pte'] })).toEqual([
      'pte ptep_get_and_clear: PTE A := none',
      'pte set_pte_at (migration entry): PTE A := migration entry (pfn 1, read-only)',
      'pte set_pte_at (remove_migration_pte): PTE A := pfn 2 RO dirty',
    ])
    expect(ex.final.mms[1]!.ptes[0]).toMatchObject({ present: true, write: true })
    expect(ex.violations).toEqual([])
  })

  it("a process write between remove_migration_ptes' two PTEs copies: the migration still holds the destination (folio_get per PTE, its own reference until the end)", () => {
    const sc = load(
      yaml('C0: [migrate_vma A]\n      C1: [write A 6]\n      K: { mm: child, ops: [read A -> k0] }'),
    )
    // C0 runs up to and including remove_migration_pte on the process's PTE; C1's write then
    // faults on the read-only PTE of the new page while the child's is still a migration entry.
    const ex = traced(sc, archHook, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    expect(
      lines(ex, { kinds: ['pte', 'fault'] }).filter((l) => /remove_migration_pte\)|do_wp_page/.test(l)),
    ).toEqual([
      'pte set_pte_at (remove_migration_pte): PTE A := pfn 2 RO dirty',
      'fault do_wp_page: page shared (mapcount 1): wp_page_copy',
      'pte set_pte_at (remove_migration_pte): PTE A (child) := pfn 2 RO dirty',
    ])
    expect(ex.final.regs).toEqual([5])
    expect(ex.final.frames[2]).toMatchObject({ map: 1, ref: 1, v: 5 })
  })
})
