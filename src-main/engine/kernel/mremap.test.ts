/**
 * mremap (v6.6 mm/mremap.c move_vma -> move_page_tables -> move_ptes) and the order before
 * eb66ae030829 (CVE-2018-18281).
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { allEvents, first, lines, traced } from './traceTestkit'

const sc = (kernel: string, mapped = 'rw') =>
  scenarioOf(
    `
      title: mremap
      arch: x86_64
      ${kernel}
      pages:
        A: { value: 1, prot: rw, mapped: ${mapped} }
        B: { mapped: none }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A] }
      cpus:
        C0: [mremap A B]
    `,
    'mremap.test.yaml',
  )

describe('mremap: move_page_tables -> move_ptes', () => {
  it('v6.6: range_start over the old range, the PTL, the move, flush_tlb_range of the old address before the unlock, range_end, then the old VMA goes', () => {
    const ex = traced(sc(''), makePolicy('start-end'))
    expect(lines(ex, { thread: 'C0' })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
      'sec-inval invalidate_range_start: iommu: invalidate A (1 entry dropped)',
      'lock move_ptes: pte_offset_map_lock (old); new_ptl == old_ptl: take the page-table lock',
      'pte move_ptes: ptep_get_and_clear: PTE A := none',
      'pte move_ptes: set_pte_at (new address): PTE B := pfn 1 RW dirty',
      'cpu-flush flush_tlb_range (move_ptes, before the PTL is dropped): flush CPU TLBs: A',
      'lock move_ptes: pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval invalidate_range_end: iommu: invalidate A (0 entries dropped)',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
      'sec-inval invalidate_range_start: iommu: invalidate A (0 entries dropped)',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval invalidate_range_end: iommu: invalidate A (0 entries dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
    expect(first(ex, 'cpu-flush flush_tlb_range').locks).toEqual(['mmap_lock(w)', 'ptl'])
    expect(ex.final.mms[0]!.vmas).toEqual([null, 'rw'])
    expect(ex.final.frames[1]!.map).toBe(1)
  })

  it('arch-hook: the flush under the PTL invalidates the secondary over the old address (the range flush passes (0, -1) only on arm64)', () => {
    const ex = traced(sc(''), makePolicy('arch-hook'))
    const l = lines(ex, { thread: 'C0', kinds: ['cpu-flush', 'notifier', 'lock'] })
    const flush = l.indexOf(
      'cpu-flush flush_tlb_range (move_ptes, before the PTL is dropped): flush CPU TLBs: A',
    )
    expect(l[flush + 1]).toBe('notifier mmu_notifier_arch_invalidate_secondary_tlbs: A')
    expect(l[flush + 2]).toBe('lock move_ptes: pte_unmap_unlock: release the page-table lock')
  })

  it('before eb66ae030829: a dirty PTE is still flushed under the PTL (5d1904204c99), a clean one only after the unlock', () => {
    const dirty = traced(sc('kernel: { mremap_flush_under_ptl: false }'), makePolicy('start-end'))
    expect(first(dirty, 'cpu-flush flush_tlb_range').locks).toEqual(['mmap_lock(w)', 'ptl'])
    const clean = traced(sc('kernel: { mremap_flush_under_ptl: false }', 'clean'), makePolicy('start-end'))
    const f = first(clean, 'cpu-flush flush_tlb_range')
    expect(f.fn).toBe('flush_tlb_range (move_page_tables, after the PTL: need_flush)')
    expect(f.locks).toEqual(['mmap_lock(w)'])
    const l = lines(clean, { thread: 'C0', kinds: ['cpu-flush', 'lock'] })
    expect(l.indexOf('lock move_ptes: pte_unmap_unlock: release the page-table lock')).toBeLessThan(
      l.indexOf('cpu-flush flush_tlb_range (move_page_tables, after the PTL: need_flush): flush CPU TLBs: A'),
    )
  })

  it('flush_tlb_batched_pending right after the PTL when reclaim left a batched flush pending (x86)', () => {
    const s = scenarioOf(
      `
        title: mremap after batched reclaim
        arch: x86_64
        pages:
          A: { value: 1, prot: rw }
          R: { value: 2, prot: rw }
          B: { mapped: none }
        cpus:
          K: [reclaim R]
          C0: [mremap A B]
      `,
      'mremap-batched.yaml',
    )
    // Let reclaim clear R's PTE with TTU_BATCH_FLUSH (the flush still pending), then mremap.
    let ex = null
    for (let k = 1; k <= 6 && ex === null; k++) {
      const t = traced(s, makePolicy('arch-hook'), [...new Array<number>(k).fill(0), 1, 1, 1])
      if (allEvents(t).some((e) => e.fn === 'flush_tlb_mm (flush_tlb_batched_pending, move_ptes)')) ex = t
    }
    expect(ex).not.toBeNull()
    const l = lines(ex!, { thread: 'C0', kinds: ['lock', 'cpu-flush'] })
    const lock = l.indexOf(
      'lock move_ptes: pte_offset_map_lock (old); new_ptl == old_ptl: take the page-table lock',
    )
    expect(l[lock + 1]).toBe(
      'cpu-flush flush_tlb_mm (flush_tlb_batched_pending, move_ptes): flush CPU TLBs: whole mm',
    )
  })
})

describe("mremap_to's do_munmap of the target (MREMAP_FIXED, v6.6 mm/mremap.c)", () => {
  const tsc = (target: string, cpus = '[mremap A B]') =>
    scenarioOf(
      `
        title: mremap target
        arch: x86_64
        pages:
          A: { value: 1 }
          B: ${target}
        secondary:
          - { name: iommu, type: hw-walker, cached: [A] }
        cpus:
          C0: ${cpus}
      `,
      'mremap-target.yaml',
    )

  it('a target with a VMA (a reservation, prot declared) gets its own MMU_NOTIFY_UNMAP range before copy_vma', () => {
    const ex = traced(tsc('{ prot: rw, mapped: none }'), makePolicy('start-end'))
    const l = lines(ex, { thread: 'C0', kinds: ['lock', 'notifier', 'info'] })
    expect(l.slice(0, 8)).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'info mremap_to: MREMAP_FIXED: do_munmap of the VMA at B',
      'info vma_iter_clear_gfp: detach VMA(s) for B',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP B',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: B',
      'info do_munmap: B unmapped',
    ])
    // The lock is held for write throughout: do_munmap neither downgrades nor drops it.
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP B').locks).toEqual([
      'mmap_lock(w)',
    ])
    expect(l[8]).toBe('info copy_vma: new VMA at B (rw); need_rmap_locks = false')
    expect(ex.final.mms[0]!.vmas).toEqual([null, 'rw'])
  })

  it("a mapped target's page is zapped, flushed and freed before the move; then B maps A's page", () => {
    const ex = traced(tsc('{ value: 9 }'), makePolicy('arch-hook'))
    const l = lines(ex, { thread: 'C0', kinds: ['pte', 'cpu-flush', 'frame', 'notifier'] })
    const clear = l.indexOf('pte ptep_get_and_clear_full: PTE B := none')
    const flush = l.indexOf('cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: B')
    const free = l.findIndex((x) => x.startsWith('frame free_pages_and_swap_cache: free pfn 2'))
    const move = l.indexOf('pte move_ptes: set_pte_at (new address): PTE B := pfn 1 RW dirty')
    expect(clear).toBeGreaterThanOrEqual(0)
    expect([clear < flush, flush < free, free < move]).toEqual([true, true, true])
    expect(ex.final.frames[2]!.free).toBe(true)
    expect(ex.final.frames[1]!.map).toBe(1)
  })

  it('a target declared mapped: none with no prot is a hole: no VMA before the move, so an access faults and do_munmap finds nothing', () => {
    const ex = traced(
      tsc('{ mapped: none }', '[write B 5, mremap A B, read B -> r]'),
      makePolicy('start-end'),
    )
    const l = lines(ex, { thread: 'C0', kinds: ['info', 'op', 'notifier'] })
    expect(l.some((x) => x.includes('do_munmap'))).toBe(false)
    expect(l.filter((x) => x.startsWith('notifier mmu_notifier_invalidate_range_start'))).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
    ])
    expect(ex.final.regs).toEqual([1])
  })
})
