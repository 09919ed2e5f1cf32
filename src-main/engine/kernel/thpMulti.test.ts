/**
 * More than one huge page, and small pages beside one (issue 13). Each huge page is its own
 * 2 MiB PMD range: its own PTE table, PMD and pmd_lock. v6.6 mm/memory.c zap_pmd_range() and
 * mm/mprotect.c change_pmd_range() walk the range one PMD at a time, each huge PMD zapped,
 * changed or split under its own pmd_lock, inside the op's one notifier range and (for a zap)
 * its one mmu_gather; mm/huge_memory.c __split_huge_pmd() of one huge page takes only its own
 * pmd_lock and invalidates only its own 2 MiB; a small page beside faults through its own PTL
 * (mm/memory.c handle_pte_fault, pte_offset_map_lock). Expectations come from the kernel
 * source, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { every, first, lines, runUnder, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame']

/**
 * H = [A, B] and J = [C, D], both PMD-mapped, S a small page between them (tables: H 0, S 1,
 * J 2); the secondary caches A and C (one 2 MiB entry each).
 */
function two(cpus: string, opts: { devices?: string; sec?: string; s?: string } = {}) {
  return scenarioOf(
    `
      title: two huge pages
      arch: x86_64
      thp:
        H: [A, B]
        J: [C, D]
      pages:
        A: { value: 1 }
        B: { value: 2 }
        S: ${opts.s ?? '{ value: 5 }'}
        C: { value: 3 }
        D: { value: 4 }
      secondary:
        - ${opts.sec ?? '{ name: iommu, type: hw-walker, cached: [A, C] }'}
      cpus:
        ${cpus}
      ${opts.devices ?? ''}
    `,
    'thp-multi.test.yaml',
  )
}

describe('the loader: each huge page a table of its own', () => {
  it('H, S and J get tables 0, 1 and 2; thp lists the huge pages in address order', () => {
    const sc = two('C0: [thp_split J]')
    expect(sc.pages.map((p) => p.table ?? 0)).toEqual([0, 0, 1, 2, 2])
    expect(sc.thp.map((h) => [h.name, h.pages])).toEqual([
      ['H', [0, 1]],
      ['J', [3, 4]],
    ])
    expect(sc.threads[0]!.ops[0]).toEqual({ kind: 'thp_split', hp: 1 })
  })
})

describe('munmap over two huge pages: zap_pmd_range zaps each huge PMD in turn (v6.6)', () => {
  const sc = two('C0: [munmap A B S C D]')

  it('one MMU_NOTIFY_UNMAP range and one gather: zap_huge_pmd(H) under pmd_lock(H), S under its PTL, zap_huge_pmd(J) under pmd_lock(J), one flush, then the frees', () => {
    const ex = traced(sc, pol('start-end'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS })
    expect(ls.filter((l) => l.startsWith('notifier mmu_notifier_invalidate_range_start'))).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A,B,S,C,D',
    ])
    expect(ls.filter((l) => l.startsWith('notifier mmu_notifier_invalidate_range_end'))).toEqual([
      'notifier mmu_notifier_invalidate_range_end: A,B,S,C,D',
    ])
    // zap_pmd_range() in address order: H's PMD, S's PTE table, J's PMD.
    const order = [
      'lock zap_huge_pmd: __pmd_trans_huge_lock: take the PMD lock of H',
      'pte pmdp_huge_get_and_clear_full: PMD H := none (was huge page pfns 1,2)',
      'frame zap_deposited_table: pte_free: the PTE table deposited under H is freed',
      'lock spin_unlock (pmd_lock): release the PMD lock of H',
      'frame tlb_remove_page_size: the huge folio (pfns 1,2) is queued for freeing after the flush',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock ptl#1',
      'pte ptep_get_and_clear_full: PTE S := none',
      'lock pte_unmap_unlock: release the page-table lock ptl#1',
      'lock zap_huge_pmd: __pmd_trans_huge_lock: take the PMD lock of J',
      'pte pmdp_huge_get_and_clear_full: PMD J := none (was huge page pfns 4,5)',
      'frame zap_deposited_table: pte_free: the PTE table deposited under J is freed',
      'lock spin_unlock (pmd_lock): release the PMD lock of J',
      'frame tlb_remove_page_size: the huge folio (pfns 4,5) is queued for freeing after the flush',
      'notifier mmu_notifier_invalidate_range_end: A,B,S,C,D',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B,S,C,D',
      'frame tlb_batch_pages_flush: release 5 queued pages',
    ]
    let from = 0
    for (const want of order) {
      const i = ls.findIndex((l, k) => k >= from && l.startsWith(want))
      expect(i, `'${want}' after line ${from}:\n${ls.join('\n')}`).toBeGreaterThanOrEqual(from)
      from = i + 1
    }
    // One gather: a single CPU flush, after both PMDs are gone.
    expect(ls.filter((l) => l.startsWith('cpu-flush'))).toHaveLength(1)
    expect(first(ex, 'pte pmdp_huge_get_and_clear_full: PMD H').locks).toEqual([
      'mmap_lock(r)',
      'pmd_lock(H)',
    ])
    expect(first(ex, 'pte pmdp_huge_get_and_clear_full: PMD J').locks).toEqual([
      'mmap_lock(r)',
      'pmd_lock(J)',
    ])
    expect(first(ex, 'pte ptep_get_and_clear_full: PTE S').locks).toEqual(['mmap_lock(r)', 'ptl#1'])
    const m = ex.final.mms[0]!
    expect(m.ptes).toEqual([null, null, null, null, null])
    expect(m.pmdl).toEqual([-1, -1, -1])
    // Both deposited tables went with pte_free; S's PTE page with free_pgtables and the gather.
    expect(m.tbl).toEqual([null, null, null])
    expect(m.pt).toEqual([false, false, false])
  })

  it('a 2 MiB entry drops with its own huge page only: range_start drops both, one invalidation each', () => {
    const ex = traced(sc, pol('start-end'))
    expect(every(ex, 'sec-inval invalidate_range_start').map((e) => e.text)).toEqual([
      'iommu: invalidate A,B,S,C,D (4 entries dropped)',
    ])
  })

  it('arch-hook: the one gather flush hooks the secondary once, before the folios are freed', () => {
    const ls = lines(traced(sc, pol('arch-hook')), { kinds: KINDS })
    const hooks = ls.filter((l) => l.startsWith('notifier mmu_notifier_arch_invalidate_secondary_tlbs'))
    expect(hooks).toEqual(['notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B,S,C,D'])
    expect(ls.indexOf(hooks[0]!)).toBeLessThan(
      ls.findIndex((l) => l.startsWith('frame free_pages_and_swap_cache')),
    )
  })
})

describe('thp_split of one huge page leaves the other alone', () => {
  it("__split_huge_pmd(H): H's range, pmd_lock(H), H's flush; J's huge PMD and 2 MiB entries stay", () => {
    const ex = traced(two('C0: [thp_split H]'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS })
    expect(ls).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'lock pmd_lock: take the PMD lock of H',
      'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
      'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (2 entries dropped)',
      'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B -> pfns 1,2 (same pages)',
      'lock spin_unlock (pmd_lock): release the PMD lock of H',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    const m = ex.final.mms[0]!
    expect(m.ptes[3]).toEqual({ pfn: 4, present: true, write: true, dirty: true, huge: true })
    expect(m.ptes[4]).toEqual({ pfn: 5, present: true, write: true, dirty: true, huge: true })
    // H's table is linked now; J's is still deposited under its huge PMD.
    expect(m.pt).toEqual([true, true, false])
    expect(m.tbl[2]).not.toBeNull()
    expect(ex.final.secs[0]!.entries.map((e) => [e.page, e.huge === true])).toEqual([
      [3, true],
      [4, true],
    ])
  })

  it('two splits at once: each holds only its own pmd_lock, so neither waits for the other', () => {
    // C0 and C1 each run start, range_start, pmd_lock + pmdp_invalidate: both PMD locks held at once.
    const ex = traced(
      two('C0: [thp_split H]\n        C1: [thp_split J]'),
      pol('start-end'),
      [0, 0, 0, 1, 1, 1],
    )
    const inv = first(ex, 'pte pmdp_invalidate: PMD J', { thread: 'C1' })
    expect(inv.locks).toEqual(['mmap_lock(r)', 'pmd_lock(J)'])
    const evs = lines(ex, { kinds: ['pte'] })
    expect(evs.indexOf('pte pmdp_invalidate: PMD J := invalid (pmd_mkinvalid)')).toBeLessThan(
      evs.findIndex((l) => l.startsWith('pte pmd_populate: PMD H')),
    )
    expect(ex.violations).toEqual([])
  })
})

describe('mprotect over a whole huge page and part of another: change_pmd_range per PMD (v6.6)', () => {
  it("split_vma splits J (the end boundary); then one PROTECTION_VMA range: change_huge_pmd(H) under pmd_lock(H), S's and C's PTEs under their PTLs", () => {
    const ex = traced(two('C0: [mprotect A B S C ro]'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS })
    const order = [
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR C,D',
      'lock pmd_lock: take the PMD lock of J',
      'pte pmd_populate: PMD J := the withdrawn PTE table',
      'notifier mmu_notifier_invalidate_range_end: C,D',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A,B,S,C',
      'lock pmd_lock: take the PMD lock of H',
      'pte pmdp_invalidate_ad: PMD H := invalid (pmd_mkinvalid)',
      'pte set_pmd_at: PMD H := huge RO',
      'lock spin_unlock (pmd_lock): release the PMD lock of H',
      'lock change_pte_range: pte_offset_map_lock: take the page-table lock ptl#1',
      'pte ptep_modify_prot_commit: PTE S := pfn 3 RO dirty',
      'lock change_pte_range: pte_offset_map_lock: take the page-table lock ptl#2',
      'pte ptep_modify_prot_commit: PTE C := pfn 4 RO dirty',
      'notifier mmu_notifier_invalidate_range_end: A,B,S,C',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B,S,C',
    ]
    let from = 0
    for (const want of order) {
      const i = ls.findIndex((l, k) => k >= from && l.startsWith(want))
      expect(i, `'${want}' after line ${from}:\n${ls.join('\n')}`).toBeGreaterThanOrEqual(from)
      from = i + 1
    }
    // H was not split (the range covers it), so it has no split range of its own.
    expect(ls.filter((l) => l.includes('MMU_NOTIFY_CLEAR A,B'))).toEqual([])
    const m = ex.final.mms[0]!
    expect(m.ptes.map((p) => [p!.write, p!.huge === true])).toEqual([
      [false, true],
      [false, true],
      [false, false],
      [false, false],
      [true, false],
    ])
  })
})

describe('a small page beside a huge page', () => {
  it('faults through its own PTL (ptl#1), not the pmd_lock of the huge page', () => {
    const ex = traced(two('C0: [write_fault S]', { s: '{ value: 0, mapped: none }' }), pol('start-end'))
    const lock = first(ex, 'lock pte_offset_map_lock')
    expect(lock.text).toBe('take the page-table lock ptl#1')
    expect(first(ex, 'pte do_anonymous_page: PTE S').locks).toEqual(['mmap_lock(r)', 'ptl#1'])
    expect(lines(ex, { kinds: ['lock'] }).some((l) => l.includes('PMD lock'))).toBe(false)
  })

  it('faults while a split of H holds pmd_lock(H): the fault is not blocked', () => {
    // C0: start, range_start, pmd_lock + pmdp_invalidate; then C1's fault (two steps) runs to the end.
    const sc = two('C0: [thp_split H]\n        C1: [write_fault S]', { s: '{ value: 0, mapped: none }' })
    const ex = traced(sc, pol('start-end'), [0, 0, 0, 1, 1])
    const set = first(ex, 'pte do_anonymous_page: PTE S', { thread: 'C1' })
    expect(set.locks).toEqual(['mmap_lock(r)', 'ptl#1'])
    const ptes = lines(ex, { kinds: ['pte'] })
    expect(ptes.findIndex((l) => l.startsWith('pte do_anonymous_page: PTE S'))).toBeLessThan(
      ptes.findIndex((l) => l.startsWith('pte pmd_populate: PMD H')),
    )
  })

  it('a start-only driver: the device refills the small page after range_start and writes it after mprotect returned', () => {
    const sc = two('C0: [mprotect A B S ro]', {
      sec: '{ name: iommu, type: hw-walker, flush_at: start, cached: [A, S] }',
      devices: 'devices: { D0: { via: iommu, ops: [write S 7, write S 8] } }',
    })
    expect(runUnder(sc, 'start-end').invariants['stale-after-return']).toBe('violated')
    expect(runUnder(sc, 'arch-hook').verdict).toBe('holds')
  })
})

describe("each huge PMD's entries and walk-cache entry are its own", () => {
  it('KVM maps a huge page with one 2 MiB SPTE that covers its own subpages only', () => {
    const sc = two('C0: [thp_split H]', {
      sec: '{ name: kvm, type: sw-mirror }',
      devices: 'devices: { D0: { via: kvm, ops: [read D] } }',
    })
    const ex = traced(sc, pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(ex.final.secs[0]!.entries.map((e) => [e.page, e.pfn, e.huge === true])).toEqual([
      [3, 4, true],
      [4, 5, true],
    ])
  })

  it("a walk cache keeps one entry per table; a collapse of J drops only J's (v6.6 non-leaf invalidation)", () => {
    const sc = scenarioOf(
      `
        title: walk cache per table
        arch: x86_64
        thp:
          H: { pages: [A, B], mapped: pte }
          J: { pages: [C, D], mapped: pte }
        pages:
          A: { value: 1 }
          B: { value: 2 }
          C: { value: 3 }
          D: { value: 4 }
        secondary:
          - { name: iommu, type: hw-walker, walk_cache: true }
        cpus:
          C0: [thp_collapse J]
        devices:
          D0: { via: iommu, ops: [read A, read C] }
      `,
      'thp-multi-wc.test.yaml',
    )
    expect(sc.pages.map((p) => p.table ?? 0)).toEqual([0, 0, 1, 1])
    // The device walks A and C first (two walk-cache entries), then the collapse runs.
    const ex = traced(sc, pol('arch-hook'), [1, 1])
    expect(ex.violations).toEqual([])
    expect(ex.final.secs[0]!.wc).toEqual([true, false])
    expect(ex.final.mms[0]!.ptes.map((p) => p?.huge === true)).toEqual([false, false, true, true])
  })
})

describe('fork, COW and split_huge_page with two huge pages (v6.6 copy_pmd_range, do_huge_pmd_wp_page)', () => {
  it('fork: one PROTECTION_PAGE range; copy_huge_pmd(H) under both pmd_locks of H, S under its PTL, copy_huge_pmd(J)', () => {
    const ex = traced(two('C0: [fork]'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: KINDS })
    expect(ls.filter((l) => l.startsWith('notifier mmu_notifier_invalidate_range_start'))).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE A,B,S,C,D',
    ])
    const order = [
      'lock copy_huge_pmd: pmd_lock (dst_mm): take the PMD lock of H',
      'pte pmdp_set_wrprotect: PMD H := huge RO (no flush)',
      'lock spin_unlock (dst_ptl): release the PMD lock of H',
      'lock copy_pte_range: pte_offset_map_lock: take the page-table lock ptl#1',
      'pte ptep_set_wrprotect: PTE S := pfn 3 RO dirty',
      'lock copy_huge_pmd: pmd_lock (dst_mm): take the PMD lock of J',
      'pte pmdp_set_wrprotect: PMD J := huge RO (no flush)',
      'lock spin_unlock (dst_ptl): release the PMD lock of J',
      'notifier mmu_notifier_invalidate_range_end: A,B,S,C,D',
    ]
    let from = 0
    for (const want of order) {
      const i = ls.findIndex((l, k) => k >= from && l.startsWith(want))
      expect(i, `'${want}' after line ${from}:\n${ls.join('\n')}`).toBeGreaterThanOrEqual(from)
      from = i + 1
    }
    const child = ex.final.mms[1]!
    expect(child.ptes.map((p) => [p!.write, p!.huge === true])).toEqual([
      [false, true],
      [false, true],
      [false, false],
      [false, true],
      [false, true],
    ])
  })

  it("the child's write to J splits only the child's J (do_huge_pmd_wp_page fallback); H stays huge in both", () => {
    const ex = traced(two('C0: [fork]\n        C1: { mm: child, ops: [write C 7] }'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const splits = every(ex, 'pte pmdp_invalidate')
    expect(splits.map((e) => [e.thread, e.text])).toEqual([['C1', 'PMD J := invalid (pmd_mkinvalid)']])
    const [parent, child] = [ex.final.mms[0]!, ex.final.mms[1]!]
    expect(parent.ptes.map((p) => p!.huge === true)).toEqual([true, true, false, true, true])
    expect(child.ptes.map((p) => p!.huge === true)).toEqual([true, true, false, false, false])
  })

  it('ksm_merge of C splits J (split_huge_page) and leaves H huge', () => {
    const ex = traced(two('C0: [ksm_merge C]'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(every(ex, 'notifier mmu_notifier_invalidate_range_start').map((e) => e.text)).toEqual(
      expect.arrayContaining(['MMU_NOTIFY_CLEAR C,D']),
    )
    expect(lines(ex, { kinds: ['notifier'] }).some((l) => l.includes('A,B'))).toBe(false)
    expect(ex.final.mms[0]!.ptes.map((p) => p!.huge === true)).toEqual([true, true, false, false, false])
  })
})
