/**
 * A secondary bound to the fork child's mm (`mm: child`, issue 13), v6.6. A driver subscribes to
 * one mm (drivers/iommu/iommu-sva.c iommu_sva_bind_device -> the SVA domain's
 * mmu_notifier_register; virt/kvm/kvm_main.c kvm_create_vm on current->mm); the child starts
 * with none (kernel/fork.c mm_init: mmu_notifier_subscriptions_init; dup_mmap copies none).
 * Every notifier call takes the mm it is for (mm/memory.c wp_page_copy: vma->vm_mm; mm/rmap.c
 * try_to_unmap_one: vma->vm_mm per VMA of the walk; mm/mmu_notifier.c
 * __mmu_notifier_invalidate_range_start walks mm->notifier_subscriptions), so the process's
 * calls reach the process's drivers and the child's the child's. Expectations come from the
 * kernel source.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { initialState } from '../state'
import { blockedReason } from '../step'
import { lines, runUnder, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'child-device.test.yaml')
const KINDS = ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame'] as const
const PRESETS = ['start-end', 'invalidate-range', 'arch-hook'] as const

/** pdev bound to the process, cdev to the fork child; A shared copy-on-write since a fork. */
const twoDevices = (cpus: string) =>
  load(`
    title: one device per mm
    arch: x86_64
    pages:
      A: { value: 5, prot: rw, cow: true }
    secondary:
      - { name: pdev, type: hw-walker, cached: [A] }
      - { name: cdev, type: hw-walker, mm: child, cached: [A] }
    cpus:
${cpus}
  `)

describe("COW faults notify the faulting mm's devices only", () => {
  it("the parent's wp_page_copy (range on the process's mm) reaches pdev under every preset, never cdev; the child then reuses the old page", () => {
    const sc = twoDevices('      C0: [write A 7]')
    const byPreset = Object.fromEntries(
      PRESETS.map((p) => [p, lines(traced(sc, makePolicy(p)), { kinds: ['sec-inval'] })]),
    )
    expect(byPreset).toEqual({
      'start-end': [
        'sec-inval invalidate_range_start: pdev: invalidate A (1 entry dropped)',
        'sec-inval invalidate_range_end: pdev: invalidate A (0 entries dropped)',
      ],
      'invalidate-range': [
        'sec-inval ->invalidate_range (ptep_clear_flush_notify): pdev: invalidate A (1 entry dropped)',
      ],
      'arch-hook': ['sec-inval arch_invalidate_secondary_tlbs: pdev: invalidate A (1 entry dropped)'],
    })
    // The whole sequence under arch-hook: the hook in flush_tlb_page is on the process's mm.
    expect(lines(traced(sc, makePolicy('arch-hook')), { kinds: KINDS })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'lock pte_unmap_unlock: release the page-table lock',
      'frame wp_page_copy (alloc + __wp_page_copy_user): allocate pfn 2 (gen 1)',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush: PTE A := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: pdev: invalidate A (1 entry dropped)',
      'pte set_pte_at_notify: PTE A := pfn 2 RW dirty',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it("the child's wp_page_copy (range on the child's mm) reaches cdev, never pdev; the child's PTE is the one cleared", () => {
    const sc = twoDevices('      K: { mm: child, ops: [write A 1] }')
    expect(lines(traced(sc, makePolicy('start-end')), { kinds: ['notifier', 'sec-inval', 'pte'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'sec-inval invalidate_range_start: cdev: invalidate A (1 entry dropped)',
      'pte ptep_clear_flush: PTE A (child) := none',
      'pte set_pte_at_notify: PTE A (child) := pfn 2 RW dirty',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval invalidate_range_end: cdev: invalidate A (0 entries dropped)',
    ])
    expect(
      lines(traced(sc, makePolicy('arch-hook')), { kinds: ['notifier', 'sec-inval', 'cpu-flush'] }),
    ).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: cdev: invalidate A (1 entry dropped)',
      'notifier mmu_notifier_invalidate_range_end: A',
    ])
    expect(lines(traced(sc, makePolicy('invalidate-range')), { kinds: ['sec-inval'] })).toEqual([
      'sec-inval ->invalidate_range (ptep_clear_flush_notify): cdev: invalidate A (1 entry dropped)',
    ])
  })
})

describe('reclaim of the shared page: try_to_unmap_one notifies each mm in its own range', () => {
  it("the process's VMA (pdev in its range, under its PTL), then the child's (cdev in its range); the free comes after both", () => {
    const sc = twoDevices('      kswapd: [reclaim A]')
    expect(lines(traced(sc, makePolicy('start-end')), { kinds: KINDS })).toEqual([
      // isolate_lru_folios, folio_trylock; rmap_walk_anon's anon_vma_lock_read over both VMAs.
      'frame isolate_lru_folios: pfn 1 off the LRU',
      'lock shrink_folio_list: folio_trylock: lock the folio pfn 1 (A)',
      'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'sec-inval invalidate_range_start: pdev: invalidate A (1 entry dropped)',
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_get_and_clear: PTE A := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (swap entry): PTE A := swap entry (slot 0)',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval invalidate_range_end: pdev: invalidate A (0 entries dropped)',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'sec-inval invalidate_range_start: cdev: invalidate A (1 entry dropped)',
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_get_and_clear: PTE A (child) := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (swap entry): PTE A (child) := swap entry (slot 0)',
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval invalidate_range_end: cdev: invalidate A (0 entries dropped)',
      'lock rmap_walk_anon: anon_vma_unlock_read: release the anon_vma lock',
      'cpu-flush arch_tlbbatch_flush (try_to_unmap_flush_dirty): flush CPU TLBs: A',
      "cpu-flush arch_tlbbatch_flush (try_to_unmap_flush_dirty): the fork child's CPUs: flush CPU TLBs: A",
      'frame swap_writepage: pfn 1 -> swap slot 0',
      'lock shrink_folio_list: folio_unlock: unlock the folio pfn 1 (A)',
      'frame free_unref_folios: free pfn 1 (gen 1)',
    ])
  })

  it("x86 arch-hook: the (0, -1) hook in arch_tlbbatch_add_pending is on each VMA's mm, under its PTL", () => {
    const sc = twoDevices('      kswapd: [reclaim A]')
    expect(
      lines(traced(sc, makePolicy('arch-hook')), { kinds: ['pte', 'notifier', 'sec-inval'] }).slice(0, 8),
    ).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'pte ptep_get_and_clear: PTE A := none',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: pdev: invalidate all (1 entry dropped)',
      'pte set_pte_at (swap entry): PTE A := swap entry (slot 0)',
      'notifier mmu_notifier_invalidate_range_end: A',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'pte ptep_get_and_clear: PTE A (child) := none',
    ])
    expect(lines(traced(sc, makePolicy('arch-hook')), { kinds: ['sec-inval'] })).toEqual([
      'sec-inval arch_invalidate_secondary_tlbs: pdev: invalidate all (1 entry dropped)',
      'sec-inval arch_invalidate_secondary_tlbs: cdev: invalidate all (1 entry dropped)',
    ])
  })
})

describe('a device bound after a fork op', () => {
  const sc = load(`
    title: fork, then a device in the child
    arch: x86_64
    pages:
      A: { value: 5, prot: rw }
    secondary:
      - { name: pdev, type: hw-walker, cached: [A] }
      - { name: cdev, type: hw-walker, mm: child }
    cpus:
      C0: [fork, exit]
    devices:
      D1: { via: cdev, ops: [write A 9, read A -> d] }
  `)

  it('its thread waits for fork to return (the child mm does not exist before dup_mmap returns)', () => {
    const D1 = sc.threads.findIndex((t) => t.name === 'D1')
    expect(blockedReason(sc, makePolicy('arch-hook'), initialState(sc), D1)).toBe(
      'waiting for fork to return',
    )
  })

  it("dup_mmap's range and flush_tlb_mm are on the process's mm (pdev only); the process's exit releases pdev only; cdev's page request faults in the child's mm and reuses the page the exit left to the child", () => {
    const ex = traced(sc, makePolicy('arch-hook'))
    expect(ex.records.map((r) => r.thread)).toEqual([...Array(14).fill('C0'), ...Array(5).fill('D1')])
    expect(lines(ex, { kinds: ['notifier', 'sec-inval', 'fault', 'access'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE A',
      'notifier mmu_notifier_invalidate_range_end: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: pdev: invalidate all (1 entry dropped)',
      "notifier mmu_notifier_release: every subscriber's ->release, then unhook them all",
      "sec-inval intel_mm_release: intel_pasid_tear_down_entry: pdev: the PASID's entry is cleared: later DMA aborts",
      'sec-inval intel_mm_release: intel_pasid_tear_down_entry: pdev: invalidate all (0 entries dropped)',
      'fault iopf (page request): write A: walk finds a read-only PTE',
      'fault handle_mm_fault: write fault on A (FAULT_FLAG_REMOTE)',
      'fault do_wp_page: page is exclusive: wp_page_reuse',
      'fault iommu_page_response: IOMMU_PAGE_RESP_SUCCESS: cdev retries',
      'access store: write 9 to A (pfn 1) via cdev TLB',
      'access load: read 9 from A (pfn 1) via cdev TLB -> d',
    ])
    expect(lines(ex, { kinds: ['pte'], thread: 'D1' })).toEqual([
      'pte ptep_set_access_flags: PTE A (child) := pfn 1 RW dirty',
    ])
  })
})

describe("a KVM mirror of the child: its fault resolves the child's PTE", () => {
  it("hva_to_pfn faults in the child's mm (COW copy there); the child's range zaps the mirror, the process's never does", () => {
    const sc = load(`
      title: kvm in the child
      arch: x86_64
      pages:
        A: { value: 5, prot: rw, cow: true }
      secondary:
        - { name: kvm, type: sw-mirror, mm: child }
      cpus:
        C0: [wait v, write A 7]
      devices:
        D0: { via: kvm, ops: [write A 9, signal v] }
    `)
    // The vCPU first (its write COW-copies in the child), then the process (reuses the old page).
    const ex = traced(sc, makePolicy('start-end'))
    expect(lines(ex, { kinds: ['pte', 'notifier', 'sec-inval'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'sec-inval kvm_mmu_notifier_invalidate_range_start: kvm: invalidate_in_progress++, zap 0 shadow entries',
      'pte ptep_clear_flush: PTE A (child) := none',
      'pte set_pte_at_notify: PTE A (child) := pfn 2 RW dirty',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval kvm_mmu_notifier_invalidate_range_end: kvm: mmu_invalidate_seq++, invalidate_in_progress--',
      'pte ptep_set_access_flags: PTE A := pfn 1 RW dirty',
    ])
    expect(lines(ex, { kinds: ['fill', 'access'], thread: 'D0' })).toEqual([
      'fill kvm_tdp_mmu_map: kvm shadow A -> pfn 2 RW',
      'access store: write 9 to A (pfn 2) via kvm shadow table',
    ])
  })
})

describe('arm64 BTM: an SMMU snoops the TLBIs of the mm its device is bound to (the ASID SVA shares)', () => {
  it("the parent's COW flush is snooped by psmmu, the child's flush (wp_page_reuse's ptep_set_access_flags) by csmmu", () => {
    const sc = load(`
      title: btm per mm
      arch: arm64
      pages:
        A: { value: 5, prot: rw, cow: true }
      secondary:
        - { name: psmmu, type: hw-walker, btm: true, cached: [A] }
        - { name: csmmu, type: hw-walker, btm: true, mm: child, cached: [A] }
      cpus:
        C0: [write A 7, signal w]
        K: { mm: child, ops: [wait w, write A 1] }
    `)
    expect(lines(traced(sc, makePolicy('start-end')), { kinds: ['cpu-flush', 'sec-inval'] })).toEqual([
      'sec-inval invalidate_range_start: psmmu: BTM: the IOTLB is left to snooped TLBIs; no ATC: no command',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: A',
      'sec-inval BTM: snooped broadcast TLBI: psmmu: invalidate A (1 entry dropped)',
      'sec-inval invalidate_range_end: psmmu: BTM: the IOTLB is left to snooped TLBIs; no ATC: no command',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: A',
      'sec-inval BTM: snooped broadcast TLBI: csmmu: invalidate A (1 entry dropped)',
    ])
  })
})

describe("walk caches: a device bound to the child caches the child's PMD pointers", () => {
  it("the child's munmap frees the child's PTE page; the arch hook in tlb_finish_mmu on the child's mm drops cdev's walk-cache entry (non-leaf) before the free, and pdev's entry for the process's table stays", () => {
    const sc = load(`
      title: walk caches per mm
      arch: x86_64
      pages:
        P: { value: 5, prot: rw, cow: true }
      secondary:
        - { name: pdev, type: hw-walker, walk_cache: true }
        - { name: cdev, type: hw-walker, mm: child, walk_cache: true }
      cpus:
        K: { mm: child, ops: [wait w, munmap P] }
      devices:
        D0: { via: pdev, ops: [read P] }
        D1: { via: cdev, ops: [read P, signal w] }
    `)
    expect(
      lines(traced(sc, makePolicy('arch-hook')), {
        kinds: ['fill', 'notifier', 'sec-inval', 'cpu-flush', 'frame', 'pte'],
      }),
    ).toEqual([
      'fill IOMMU page walk: pdev walk cache: PMD -> the PTE page',
      'fill IOMMU page walk: pdev TLB P -> pfn 1 RO',
      'fill IOMMU page walk: cdev walk cache: PMD -> the PTE page',
      'fill IOMMU page walk: cdev TLB P -> pfn 1 RO',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP P',
      'pte ptep_get_and_clear_full: PTE P (child) := none',
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 1, queued for freeing',
      'notifier mmu_notifier_invalidate_range_end: P',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: cdev: non-leaf invalidation: drop the walk-cache entry for the PTE table',
      'sec-inval arch_invalidate_secondary_tlbs: cdev: invalidate P (1 entry dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      'frame tlb_batch_pages_flush: release 1 queued page',
    ])
  })
})

describe('a range on the child mm that straddles the bind', () => {
  it("writeback's walk of the child's file VMA while dup_mmap runs: the model binds the mirror at fork's return and delivers the walk's whole range pair to it (v6.6's bind takes mm_take_all_locks and would wait for the walk), so its in-progress count stays balanced and its vCPU never waits forever", () => {
    const sc = load(`
      title: a walk of the child VMA across fork's return
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: rw }
      secondary:
        - { name: kvm, type: sw-mirror, mm: child }
      cpus:
        C0: [fork]
        W: [writeback F]
      devices:
        D0: { via: kvm, ops: [write F 5, read F -> d] }
    `)
    for (const p of PRESETS) expect(runUnder(sc, p).verdict, p).toBe('holds')
  })
})
