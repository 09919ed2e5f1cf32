/**
 * fork(2) and the COW fault on a PMD-mapped anon huge page, v6.6: dup_mmap -> copy_page_range
 * (its MMU_NOTIFY_PROTECTION_PAGE range) -> copy_pmd_range -> copy_huge_pmd (mm/huge_memory.c:
 * pmd_lock of the child's PMD, spin_lock_nested of the parent's, page_try_dup_anon_rmap,
 * pgtable_trans_huge_deposit, pmdp_set_wrprotect, set_pmd_at of pmd_mkold(pmd_wrprotect(pmd)));
 * dup_mmap's flush_tlb_mm(oldmm) at the end. A write to the shared huge PMD is
 * do_huge_pmd_wp_page: not exclusive -> __split_huge_pmd, VM_FAULT_FALLBACK, then do_wp_page ->
 * wp_page_copy on the subpage; after the child unmapped its PMD (folio_ref_count 1) it reuses
 * the huge page with pmdp_set_access_flags and no notifier range. Expectations come from the
 * kernel source, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { runExecution, scriptedChooser } from '../explore'
import { blockedReason } from '../step'
import { first, lines, runUnder, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = [
  'lock',
  'pte',
  'cpu-flush',
  'notifier',
  'sec-inval',
  'frame',
  'info',
  'fault',
]

/** H = [A, B], PMD-mapped, cached by the IOMMU as one 2 MiB entry. */
function thp(threads: string, extra = '', sec = '{ name: iommu, type: hw-walker, cached: [A] }') {
  return scenarioOf(
    `
      title: thp fork test
      arch: x86_64
      thp:
        H: [A, B]
      pages:
        A: { value: 1 }
        B: { value: 2 }
      secondary:
        - ${sec}
      ${threads}
      ${extra}
    `,
    'thp-fork.test.yaml',
  )
}

const COPY_HUGE_PMD = [
  'lock copy_huge_pmd: pmd_lock (dst_mm): take the PMD lock',
  'lock copy_huge_pmd: spin_lock_nested (src_mm): take the PMD lock',
  'frame page_try_dup_anon_rmap: pfns 1,2 mapcount 2 (PageAnonExclusive cleared)',
  "info pgtable_trans_huge_deposit: deposit the child's new PTE table under its PMD H",
  'pte pmdp_set_wrprotect: PMD H := huge RO (no flush)',
  'pte set_pmd_at (child): PMD H (child) := huge page pfns 1,2 RO (pmd_mkold(pmd_wrprotect(pmd)))',
  'lock spin_unlock (src_ptl): release the PMD lock',
  'lock spin_unlock (dst_ptl): release the PMD lock',
]

describe('fork of a PMD-mapped huge page: copy_huge_pmd (v6.6)', () => {
  it('start-end: the copy inside the PROTECTION_PAGE range, both PMD locks, then flush_tlb_mm', () => {
    const ex = traced(thp('cpus:\n        C0: [fork]'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'info dup_mmap: copy 1 VMA into the child',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE A,B',
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      ...COPY_HUGE_PMD,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      'cpu-flush flush_tlb_mm (dup_mmap): flush CPU TLBs: whole mm',
      'lock mmap_write_unlock: release mmap_lock',
    ])
    // The parent's PMD is write-protected and the child's is installed under both locks.
    expect(first(ex, 'pte pmdp_set_wrprotect').locks).toEqual(['mmap_lock(w)', 'pmd_lock', 'pmd_lock'])
    expect(first(ex, 'pte set_pmd_at (child)').locks).toEqual(['mmap_lock(w)', 'pmd_lock', 'pmd_lock'])
    const [parent, child] = [ex.final.mms[0]!, ex.final.mms[1]!]
    const ro = (pfn: number) => ({ pfn, present: true, write: false, dirty: true, huge: true })
    expect(parent.ptes).toEqual([ro(1), ro(2)])
    expect(child.ptes).toEqual([ro(1), ro(2)])
    expect(child.live).toBe(true)
    // Each has its deposited (empty) PTE table; neither PMD links one.
    expect(parent.tbl).toEqual([[null, null]])
    expect(child.tbl).toEqual([[null, null]])
    expect(child.pt).toEqual([false])
    expect(ex.final.frames[1]).toMatchObject({ map: 2, ref: 2 })
    expect(ex.final.frames[2]).toMatchObject({ map: 2, ref: 2 })
  })

  it('arch-hook: the secondary hears of it from flush_tlb_mm only (pmdp_set_wrprotect does not flush)', () => {
    const ls = lines(traced(thp('cpus:\n        C0: [fork]'), pol('arch-hook')), {
      kinds: ['notifier', 'pte'],
    })
    const wp = ls.indexOf('pte pmdp_set_wrprotect: PMD H := huge RO (no flush)')
    const hook = ls.indexOf(
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
    )
    expect(wp).toBeGreaterThan(0)
    expect(hook).toBeGreaterThan(wp)
    expect(ls.filter((l) => l.startsWith('notifier mmu_notifier_arch'))).toHaveLength(1)
  })

  it('a start-only driver: the device re-walks the writable huge PMD inside the range and writes after fork returned', () => {
    const s = thp(
      'cpus:\n        C0: [fork]\n      devices:\n        D0: { via: iommu, ops: [write A 9, write B 10] }',
      '',
      '{ name: iommu, type: hw-walker, flush_at: start, cached: [A] }',
    )
    expect(runUnder(s, 'start-end').invariants['stale-after-return']).toBe('violated')
    expect(runUnder(s, 'invalidate-range').verdict).toBe('holds')
    expect(runUnder(s, 'arch-hook').verdict).toBe('holds')
  })
})

describe('mprotect of the shared huge PMD after fork: change_huge_pmd (v6.6)', () => {
  it('can_change_pmd_writable: PROT_WRITE again does not make the shared PMD writable (not PageAnonExclusive)', () => {
    const ex = traced(thp('cpus:\n        C0: [fork, mprotect A B ro, mprotect A B rw]'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(ex.final.mms[0]!.ptes.map((p) => [p?.huge, p?.write])).toEqual([
      [true, false],
      [true, false],
    ])
  })
})

describe('a write to the shared huge PMD: do_huge_pmd_wp_page (v6.6)', () => {
  const SPLIT = [
    'lock do_huge_pmd_wp_page: pmd_lock: take the PMD lock',
    'fault do_huge_pmd_wp_page: H is shared (mapcount 2, refcount 2): split the PMD, VM_FAULT_FALLBACK',
    'lock spin_unlock (pmd_lock): release the PMD lock',
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
  ]
  it('the parent: split (its own CLEAR range, pmdp_invalidate flushes), then wp_page_copy of the subpage', () => {
    const ex = traced(thp('cpus:\n        C0: [fork, write_fault A]'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS, op: 'C0: write_fault A' })
    expect(ls).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'fault handle_mm_fault: write fault on A',
      ...SPLIT,
      'lock pmd_lock: take the PMD lock',
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (0 entries dropped)',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B -> pfns 1,2 (same pages)',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'info __split_huge_pmd: H split into PTEs; back in the caller',
      'fault handle_pte_fault: VM_FAULT_FALLBACK: A through the split PTE table',
      'lock pte_offset_map_lock: take the page-table lock',
      'fault do_wp_page: page shared (mapcount 2): wp_page_copy',
      'lock pte_unmap_unlock: release the page-table lock',
      'frame wp_page_copy (alloc + __wp_page_copy_user): allocate pfn 3 (gen 1)',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush: PTE A := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A (0 entries dropped)',
      'info set_pte_at_notify: ->change_pte: a no-op for every subscriber (inside start/end since 2012; removed ~v6.10)',
      'pte set_pte_at_notify: PTE A := pfn 3 RW dirty',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    const [parent, child] = [ex.final.mms[0]!, ex.final.mms[1]!]
    expect(parent.ptes).toEqual([
      { pfn: 3, present: true, write: true, dirty: true },
      { pfn: 2, present: true, write: false, dirty: true },
    ])
    // The child's huge PMD is untouched: it still maps the old pages.
    expect(child.ptes.map((p) => [p?.pfn, p?.huge])).toEqual([
      [1, true],
      [2, true],
    ])
  })

  it("the child: its own PMD is split and copied in the child's mm, which has no subscriber", () => {
    const ex = traced(
      thp('cpus:\n        C0: [fork, signal f]\n        C1: { mm: child, ops: [wait f, write A 5] }'),
      pol('start-end'),
    )
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS, thread: 'C1' })
    expect(ls.filter((l) => l.startsWith('sec-inval'))).toEqual([])
    expect(ls).toContain('pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)')
    expect(ls).toContain('pte set_pte_at_notify: PTE A (child) := pfn 3 RW dirty')
    const [parent, child] = [ex.final.mms[0]!, ex.final.mms[1]!]
    expect(parent.ptes.map((p) => [p?.pfn, p?.huge, p?.write])).toEqual([
      [1, true, false],
      [2, true, false],
    ])
    expect(child.ptes.map((p) => [p?.pfn, p?.huge === true, p?.write])).toEqual([
      [3, false, true],
      [2, false, false],
    ])
    expect(ex.final.frames[3]!.v).toBe(5)
    expect(ex.final.frames[1]!.v).toBe(1)
  })

  it('after the child unmapped its PMD, folio_ref_count is 1: reuse with pmdp_set_access_flags, no range', () => {
    const ex = traced(
      thp(
        'cpus:\n        C0: [fork, signal f, wait g, write_fault A]\n        C1: { mm: child, ops: [wait f, munmap A B, signal g] }',
      ),
      pol('start-end'),
    )
    expect(ex.violations).toEqual([])
    expect(lines(ex, { kinds: KINDS, op: 'C0: write_fault A' })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'fault handle_mm_fault: write fault on A',
      'lock do_huge_pmd_wp_page: pmd_lock: take the PMD lock',
      'pte pmdp_set_access_flags: PMD H := huge RW dirty (do_huge_pmd_wp_page: folio_ref_count 1, page_move_anon_rmap, reuse)',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it("pmd_lock is per mm: the parent's split holds its own; the child's fault goes on, a parent fault waits", () => {
    const s = thp(
      'cpus:\n        C0: [fork, signal f, write_fault A]\n        C1: { mm: child, ops: [wait f, write_fault A] }\n        C2: [wait f, write_fault B]',
    )
    const [C0, C1, C2] = [0, 1, 2]
    const sched: number[] = []
    const run = () =>
      runExecution(s, pol('start-end'), scriptedChooser(sched), { tracing: true, maxSteps: sched.length })
    /** Steps `t` until `done` holds for the state (at most 40 steps). */
    const advance = (t: number, done: (x: ReturnType<typeof run>) => boolean) => {
      for (let i = 0; i < 40; i++) {
        sched.push(t)
        if (done(run())) return
      }
      throw new Error(`thread ${t} did not get there`)
    }
    advance(C0, (x) => x.final.threads[C0]!.op === 2)
    advance(C1, (x) => x.final.threads[C1]!.op === 1)
    advance(C2, (x) => x.final.threads[C2]!.op === 1)
    // C1 and C2 have started their faults (mmap_read_lock, the lockless read of the huge PMD).
    advance(C1, (x) => lines(x, { thread: 'C1', kinds: ['fault'] }).length > 0)
    advance(C2, (x) => lines(x, { thread: 'C2', kinds: ['fault'] }).length > 0)
    // C0's fault takes the parent's pmd_lock in the split (pmdp_invalidate).
    advance(C0, (x) =>
      lines(x, { thread: 'C0', kinds: ['pte'] }).some((l) => l.startsWith('pte pmdp_invalidate')),
    )
    const cut = run()
    expect(cut.final.threads[C0]!.locks).toContain('pmd_lock')
    expect(blockedReason(s, pol('start-end'), cut.final, C2)).toBe('pmd_lock held (huge PMD being split)')
    expect(blockedReason(s, pol('start-end'), cut.final, C1)).toBeNull()
  })
})
