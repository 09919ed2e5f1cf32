/**
 * More than one PTE table (`table: N`): each table is one PMD range with its own split
 * page-table lock (pte_lockptr), its own PMD entry and its own walk-cache entry in a hw-walker.
 * v6.6 walks a range one PMD at a time: zap_pmd_range -> zap_pte_range, change_pmd_range ->
 * change_pte_range and copy_pmd_range -> copy_pte_range each take one table's PTL
 * (pte_offset_map_lock) in turn and skip a none PMD; move_ptes takes the old table's PTL and,
 * for another table, spin_lock_nested(new_ptl); free_pgtables (mm/mmap.c) frees a table only
 * when no VMA is left over its PMD range, and pte_free_tlb records that table's first address,
 * so the freed_tables flush of tlb_finish_mmu (and the non-leaf invalidation it carries)
 * concerns that table only.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { ScheduleError } from '../explore'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { every, lines, runUnder, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame', 'info']

function sc(pages: string, cpus: string, extra = '') {
  return scenarioOf(
    `
      title: tables test
      arch: x86_64
      pages:
      ${pages}
      secondary:
        - { name: iommu, type: hw-walker }
      ${extra}
      cpus:
      ${cpus}
    `,
    'tables.test.yaml',
  )
}

/** A (table 0) and B (table `bTable`), C0 zaps B while C1 takes A's PTL in a write fault. */
const indep = (bTable: number) =>
  sc(
    `  A: { value: 1 }
        B: { value: 2, table: ${bTable} }`,
    `  C0: [madvise_dontneed B]
        C1: [write_fault A]`,
  )
const C0 = 0
const C1 = 1

describe('split PTLs: each table has a lock of its own', () => {
  // C0: madvise (mmap_read_lock), zap_page_range_single (range_start, zap_vma), zap_pte_range's
  // pte_offset_map_lock; then C1: handle_mm_fault (mmap_read_lock), handle_pte_fault's lock.
  const schedule = [C0, C0, C0, C1, C1]

  it('a fault takes table 0 while a zap holds table 1: both PTLs are held at once', () => {
    const ex = traced(indep(1), pol('start-end'), schedule)
    expect(ex.violations).toEqual([])
    const take1 = every(ex, 'lock zap_pte_range: pte_offset_map_lock: take the page-table lock ptl#1')
    const take0 = every(ex, 'lock pte_offset_map_lock: take the page-table lock ptl#0', { thread: 'C1' })
    const drop1 = every(ex, 'lock pte_unmap_unlock: release the page-table lock ptl#1', { thread: 'C0' })
    expect(take1).toHaveLength(1)
    expect(take0).toHaveLength(1)
    expect(take1[0]!.step).toBeLessThan(take0[0]!.step)
    expect(take0[0]!.step).toBeLessThan(drop1[0]!.step)
    expect(take0[0]!.locks).toEqual(['mmap_lock(r)', 'ptl#0'])
  })

  it("with both pages in one table the same schedule blocks the fault on the zap's PTL", () => {
    expect(() => traced(indep(0), pol('start-end'), schedule)).toThrow(ScheduleError)
    expect(() => traced(indep(0), pol('start-end'), schedule)).toThrow(
      /C1 cannot run at step 4: page-table lock held/,
    )
  })

  it('one table keeps the single-table names: ptl, the PTE page', () => {
    const ex = traced(indep(0), pol('start-end'))
    expect(every(ex, 'lock zap_pte_range: pte_offset_map_lock: take the page-table lock')[0]!.locks).toEqual([
      'mmap_lock(r)',
      'ptl',
    ])
  })
})

describe('zap_pmd_range: a VMA over two tables is zapped one PTE table at a time', () => {
  const two = sc(
    `  A: { value: 1 }
        B: { value: 2, table: 1 }`,
    `  C0: [munmap A B]`,
  )

  it('ptl#0 for A, released before ptl#1 is taken for B; one range_start/end over both', () => {
    const ex = traced(two, pol('start-end'))
    expect(lines(ex, { thread: 'C0', kinds: ['lock', 'pte', 'notifier'] })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'lock mmap_write_downgrade: downgrade mmap_lock to read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A,B',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock ptl#0',
      'pte ptep_get_and_clear_full: PTE A := none',
      'lock pte_unmap_unlock: release the page-table lock ptl#0',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock ptl#1',
      'pte ptep_get_and_clear_full: PTE B := none',
      'lock pte_unmap_unlock: release the page-table lock ptl#1',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    // Both tables freed (no VMA left over either PMD range), each flushed at its first address.
    expect(every(ex, 'info free_pgtables', { thread: 'C0', kinds: KINDS })).toHaveLength(2)
    expect(ex.final.mms[0]!.pt).toEqual([false, false])
    expect(ex.final.mms[0]!.tbl).toEqual([null, null])
  })

  it('a none PMD is skipped: no lock for a table that has no PTE page', () => {
    const s = sc(
      `  A: { value: 1 }
        B: { mapped: none, table: 1 }`,
      `  C0: [madvise_dontneed A B]`,
    )
    const ex = traced(s, pol('start-end'))
    const locks = lines(ex, { thread: 'C0', kinds: ['lock'] })
    expect(locks.filter((l) => l.includes('ptl#1'))).toEqual([])
    expect(locks.filter((l) => l.includes('ptl#0'))).toHaveLength(2)
  })
})

describe('free_pgtables: only a table with no VMA left over its PMD range', () => {
  const partial = sc(
    `  A: { value: 1 }
        B: { value: 2, table: 1 }`,
    `  C0: [munmap B]`,
  )

  it("munmap of table 1's pages frees table 1 and leaves table 0; the freed_tables flush covers B only", () => {
    const ex = traced(partial, pol('start-end'))
    const ls = lines(ex, { thread: 'C0', kinds: KINDS })
    expect(ls).toContain(
      "info free_pgtables: no VMA left over table 1's PMD range: free_pte_range: pmd_clear, pte_free_tlb (the PTE page#1 is unlinked and queued in the mmu_gather; freed_tables = 1)",
    )
    expect(ls).toContain(
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page#1 unlinked by free_pgtables is freed',
    )
    expect(ls.filter((l) => l.includes('free_pgtables:') && l.includes('table 0'))).toEqual([])
    expect(ls).toContain('cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: B')
    expect(ex.final.mms[0]!.pt).toEqual([true, false])
    expect(ex.final.mms[0]!.vmas).toEqual(['rw', null])
  })

  it('a table keeps its PTE page while a VMA is left over it (A2 still mapped)', () => {
    const s = sc(
      `  A: { value: 1 }
        A2: { value: 3 }
        B: { value: 2, table: 1 }`,
      `  C0: [munmap A B]`,
    )
    const ex = traced(s, pol('start-end'))
    expect(every(ex, 'info free_pgtables', { thread: 'C0', kinds: KINDS }).map((e) => e.text)).toEqual([
      "no VMA left over table 1's PMD range: free_pte_range: pmd_clear, pte_free_tlb (the PTE page#1 is unlinked and queued in the mmu_gather; freed_tables = 1)",
    ])
    expect(ex.final.mms[0]!.pt).toEqual([true, false])
  })
})

describe('walk caches: one entry per PMD', () => {
  const walkCache = (
    ops: string,
    sec = '{ name: iommu, type: hw-walker, walk_cache: true }',
    dev = 'read A, read B, read B',
  ) =>
    scenarioOf(
      `
        title: walk cache per table
        arch: x86_64
        pages:
          A: { value: 1 }
          B: { value: 2, table: 1 }
        secondary:
          - ${sec}
        cpus:
          C0: [${ops}]
        devices:
          D0: { via: iommu, ops: [${dev}] }
      `,
      'tables.test.yaml',
    )
  const D0 = 1

  it("a walk of each page caches each table's PMD pointer", () => {
    const ex = traced(walkCache('madvise_dontneed B', undefined, 'read A, read B'), pol('start-end'), [
      D0,
      D0,
    ])
    expect(lines(ex, { thread: 'D0', kinds: ['fill'] })).toEqual([
      'fill IOMMU page walk: iommu walk cache: PMD -> the PTE page#0',
      'fill IOMMU page walk: iommu TLB A -> pfn 1 RW',
      'fill IOMMU page walk: iommu walk cache: PMD -> the PTE page#1',
      'fill IOMMU page walk: iommu TLB B -> pfn 2 RW',
    ])
  })

  it("a non-leaf invalidation of B drops table 1's entry and keeps table 0's", () => {
    const ex = traced(walkCache('madvise_dontneed B', undefined, 'read A, read B'), pol('start-end'), [
      D0,
      D0,
    ])
    expect(lines(ex, { thread: 'C0', kinds: ['sec-inval'] })).toContain(
      'sec-inval invalidate_range_start: iommu: non-leaf invalidation: drop the walk-cache entry for the PTE table#1',
    )
    expect(ex.final.secs[0]!.wc).toEqual([true, false])
  })

  it("munmap B under arch-hook: the freed_tables hook over B drops table 1's entry before the free, table 0's stays", () => {
    const ex = traced(walkCache('munmap B'), pol('arch-hook'), [D0, D0])
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { thread: 'C0', kinds: KINDS })
    const hook = ls.indexOf('notifier mmu_notifier_arch_invalidate_secondary_tlbs: B')
    expect(hook).toBeGreaterThan(
      ls.indexOf(
        "info free_pgtables: no VMA left over table 1's PMD range: free_pte_range: pmd_clear, pte_free_tlb (the PTE page#1 is unlinked and queued in the mmu_gather; freed_tables = 1)",
      ),
    )
    expect(ls[hook + 1]).toBe(
      'sec-inval arch_invalidate_secondary_tlbs: iommu: non-leaf invalidation: drop the walk-cache entry for the PTE table#1',
    )
    expect(
      ls.indexOf('frame tlb_finish_mmu: tlb_table_flush: the PTE page#1 unlinked by free_pgtables is freed'),
    ).toBeGreaterThan(hook)
    expect(ex.final.secs[0]!.wc).toEqual([true, false])
  })

  it("verdicts: start-end walks table 1's freed page, the flush-carried invalidations hold, leaf-only loses everywhere", () => {
    expect(runUnder(walkCache('munmap B'), 'start-end').verdict).toBe('violated')
    expect(runUnder(walkCache('munmap B'), 'invalidate-range').verdict).toBe('holds')
    expect(runUnder(walkCache('munmap B'), 'arch-hook').verdict).toBe('holds')
    const leaf = walkCache('munmap B', '{ name: iommu, type: hw-walker, walk_cache: true, leaf_only: true }')
    expect(runUnder(leaf, 'arch-hook').verdict).toBe('violated')
  })
})

describe("change_pmd_range: range_start at the first populated PMD, then each table's PTL", () => {
  it('both tables populated: one range over A and B, ptl#0 then ptl#1', () => {
    const s = sc(
      `  A: { value: 1 }
        B: { value: 2, table: 1 }`,
      `  C0: [mprotect A B ro]`,
    )
    const ex = traced(s, pol('start-end'))
    expect(lines(ex, { thread: 'C0', kinds: ['lock', 'pte', 'notifier'] })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A,B',
      'lock change_pte_range: pte_offset_map_lock: take the page-table lock ptl#0',
      'pte ptep_modify_prot_commit: PTE A := pfn 1 RO dirty',
      'lock pte_unmap_unlock: release the page-table lock ptl#0',
      'lock change_pte_range: pte_offset_map_lock: take the page-table lock ptl#1',
      'pte ptep_modify_prot_commit: PTE B := pfn 2 RO dirty',
      'lock pte_unmap_unlock: release the page-table lock ptl#1',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('table 0 has no PTE page: the range starts at table 1 and only ptl#1 is taken', () => {
    const s = sc(
      `  A: { mapped: none }
        B: { value: 2, table: 1 }`,
      `  C0: [mprotect A B ro]`,
    )
    const ex = traced(s, pol('start-end'))
    expect(lines(ex, { thread: 'C0', kinds: ['lock', 'notifier'] })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA B',
      'lock change_pte_range: pte_offset_map_lock: take the page-table lock ptl#1',
      'lock pte_unmap_unlock: release the page-table lock ptl#1',
      'notifier mmu_notifier_invalidate_range_end: B',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })
})

describe('move_ptes across two tables: the new PTL nested inside the old', () => {
  const move = sc(
    `  A: { value: 1 }
        B: { mapped: none, table: 1 }`,
    `  C0: [mremap A B]`,
  )

  it('old PTL, spin_lock_nested(new_ptl), the move and the flush under both, new then old released', () => {
    const ex = traced(move, pol('start-end'))
    const ls = lines(ex, { thread: 'C0', kinds: ['lock', 'pte', 'cpu-flush'] })
    expect(ls.slice(1, 8)).toEqual([
      'lock move_ptes: pte_offset_map_lock (old): take the page-table lock ptl#0',
      'lock move_ptes: spin_lock_nested (new_ptl, SINGLE_DEPTH_NESTING): take the page-table lock ptl#1',
      'pte move_ptes: ptep_get_and_clear: PTE A := none',
      'pte move_ptes: set_pte_at (new address): PTE B := pfn 1 RW dirty',
      'cpu-flush flush_tlb_range (move_ptes, before the PTL is dropped): flush CPU TLBs: A',
      'lock move_ptes: spin_unlock (new_ptl): release the page-table lock ptl#1',
      'lock move_ptes: pte_unmap_unlock: release the page-table lock ptl#0',
    ])
    expect(every(ex, 'cpu-flush flush_tlb_range (move_ptes')[0]!.locks).toEqual([
      'mmap_lock(w)',
      'ptl#0',
      'ptl#1',
    ])
  })

  it('the old table has no VMA left: do_vmi_munmap frees it after range_end, flushed first', () => {
    const ex = traced(move, pol('start-end'))
    const ls = lines(ex, { thread: 'C0', kinds: KINDS })
    const end = ls.lastIndexOf('notifier mmu_notifier_invalidate_range_end: A')
    expect(ls[end + 1]).toBe('sec-inval invalidate_range_end: iommu: invalidate A (0 entries dropped)')
    expect(ls.slice(end + 2, end + 5)).toEqual([
      "info free_pgtables: no VMA left over table 0's PMD range: free_pte_range: pmd_clear, pte_free_tlb (the PTE page#0 is unlinked and queued in the mmu_gather; freed_tables = 1)",
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page#0 unlinked by free_pgtables is freed',
    ])
    expect(ex.final.mms[0]!.pt).toEqual([false, true])
  })

  it("spin_lock_nested waits while another thread holds the new table's PTL (here a reclaim under it)", () => {
    // An atc-first driver's IOTLB command is owed after the ATC one: reclaim's unmap step ends
    // there, still holding ptl#1 (ctx.ts owed), so mremap can hold ptl#0 and find ptl#1 taken.
    const s = scenarioOf(
      `
        title: nested PTL wait
        arch: x86_64
        pages:
          A: { value: 1 }
          B: { mapped: none, table: 1 }
          Q: { value: 3, table: 1 }
        secondary:
          - { name: iommu, type: hw-walker, ats: true, atc_order: atc-first, cached: [Q] }
        cpus:
          C0: [mremap A B]
          C1: [reclaim Q]
      `,
      'tables.test.yaml',
    )
    // C0: mmap_write_lock, copy_vma, range_start, the old PTL; C1: isolate, range_start, the
    // unmap under ptl#1 up to the owed IOTLB command; then C0's spin_lock_nested.
    const prefix = [C0, C0, C0, C0, C1, C1, C1]
    const ex = traced(s, pol('arch-hook'), prefix)
    const l0 = every(ex, 'lock move_ptes: pte_offset_map_lock (old)')[0]!
    const l1 = every(ex, 'lock page_vma_mapped_walk: take the page-table lock ptl#1', { thread: 'C1' })[0]!
    const nested = every(ex, 'lock move_ptes: spin_lock_nested')[0]!
    const drop1 = every(ex, 'lock pte_unmap_unlock: release the page-table lock ptl#1', { thread: 'C1' })[0]!
    expect(l0.step).toBeLessThan(l1.step)
    expect(drop1.step).toBeLessThan(nested.step)
    expect(() => traced(s, pol('arch-hook'), [...prefix, C0])).toThrow(
      /C0 cannot run at step 7: page-table lock held \(new_ptl\)/,
    )
  })
})

describe('copy_pmd_range and exit_mmap over two tables', () => {
  const two = (cpus: string) =>
    sc(
      `  A: { value: 1 }
        B: { value: 2, table: 1 }`,
      cpus,
    )

  it("fork: copy_pte_range takes the parent table's PTL per PMD, inside one range_start/end", () => {
    const ex = traced(two('  C0: [fork]'), pol('start-end'))
    expect(lines(ex, { thread: 'C0', kinds: ['lock', 'notifier'] })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE A,B',
      'lock copy_pte_range: pte_offset_map_lock: take the page-table lock ptl#0',
      'lock pte_unmap_unlock: release the page-table lock ptl#0',
      'lock copy_pte_range: pte_offset_map_lock: take the page-table lock ptl#1',
      'lock pte_unmap_unlock: release the page-table lock ptl#1',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('exit: free_pgtables over the whole address space frees every table', () => {
    const ex = traced(two('  C0: [exit]'), pol('start-end'))
    expect(every(ex, 'info free_pgtables', { thread: 'C0', kinds: KINDS })).toHaveLength(2)
    expect(ex.final.mms[0]!.pt).toEqual([false, false])
    expect(ex.final.mms[0]!.tbl).toEqual([null, null])
  })
})
