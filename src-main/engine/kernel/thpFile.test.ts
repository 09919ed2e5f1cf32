/**
 * The CPU ops on a PMD-mapped file (shmem) huge page (issue 13, `thp: { H: { kind: file } }`):
 * the subpages are a MAP_SHARED shmem file's page-cache pages, so the page cache holds its own
 * reference on the folio. v6.6 mm/huge_memory.c __split_huge_pmd_locked() for a VMA that is not
 * anonymous zaps the PMD (pmdp_huge_clear_flush, no deposited table on x86/arm64, the rmap and
 * the PMD's reference dropped, no PTE installed); zap_huge_pmd() skips zap_deposited_table for a
 * file PMD and frees nothing; change_huge_pmd() works on a file PMD (mm/mprotect.c);
 * __oom_reap_task_mm() skips a VM_SHARED VMA (mm/oom_kill.c). Expectations come from the kernel
 * source, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { lines, runUnder, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame', 'info']

/** H = [A, B], a PMD-mapped shmem huge page; the secondary caches A (one 2 MiB entry). */
function shmem(op: string, sec = '{ name: iommu, type: hw-walker, cached: [A] }', extra = '') {
  return scenarioOf(
    `
      title: file thp test
      arch: x86_64
      thp:
        H: { pages: [A, B], kind: file }
      pages:
        A: { value: 1 }
        B: { value: 2 }
      secondary:
        - ${sec}
      cpus:
        C0: [${op}]
      ${extra}
    `,
    'thp-file.test.yaml',
  )
}

/** __split_huge_pmd_locked() for a file PMD, all under pmd_lock (v6.6 / v4.15 names). */
const splitLocked = (clear: string, hook: readonly string[]) => [
  'lock pmd_lock: take the PMD lock',
  `pte ${clear}: PMD H := none (file THP: zapped, not split into PTEs; was huge page pfns 1,2)`,
  '__split_huge_pmd_locked: H is a file PMD: no deposited table (arch_needs_pgtable_deposit() is false on x86_64); the pages fault back in from the page cache',
  'cpu-flush flush_tlb_range (pmdp_huge_clear_flush): flush CPU TLBs: A,B',
  ...hook,
  'frame page_remove_rmap (compound): pfns 1,2 mapcount 0',
  "info put_page: the page cache still holds H's folio: nothing is freed",
  'lock spin_unlock (pmd_lock): release the PMD lock',
]
const ARCH_HOOK = [
  'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
  'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (2 entries dropped)',
]
const withInfo = (ls: readonly string[]) => ls.map((l) => (l.startsWith('__split') ? `info ${l}` : l))

describe('the split of a file huge PMD: __split_huge_pmd_locked zaps it (v6.6)', () => {
  it('arch-hook: range_start, pmd_lock, pmdp_huge_clear_flush and its hook, rmap and put_page, unlock, range_end', () => {
    const ex = traced(shmem('thp_split H'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      ...withInfo(splitLocked('pmdp_huge_clear_flush', ARCH_HOOK)),
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('v4.15: pmdp_huge_clear_flush_notify calls ->invalidate_range under pmd_lock, so _only_end is enough', () => {
    const ex = traced(shmem('thp_split H'), pol('invalidate-range'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      ...withInfo(
        splitLocked('pmdp_huge_clear_flush_notify', [
          'notifier mmu_notifier_invalidate_range: ptep_clear_flush_notify: A,B',
          'sec-inval ->invalidate_range (ptep_clear_flush_notify): iommu: invalidate A,B (2 entries dropped)',
        ]),
      ),
      'notifier mmu_notifier_invalidate_range_only_end: A,B',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('no PTE table is installed and nothing is freed: the page cache keeps the folio', () => {
    const ex = traced(shmem('thp_split H'), pol('arch-hook'))
    const m = ex.final.mms[0]!
    expect(m.ptes).toEqual([null, null])
    expect(m.pt).toEqual([false])
    expect(m.tbl).toEqual([null])
    expect(ex.final.frames.slice(1).map((f) => [f.ref, f.map, f.free])).toEqual([
      [1, 0, false],
      [1, 0, false],
    ])
    expect(ex.final.files.map((f) => f?.pfn)).toEqual([1, 2])
  })

  it('a later access with the VMA whole maps the large folio again: finish_fault -> do_set_pmd', () => {
    const ex = traced(shmem('thp_split H, read A'), pol('arch-hook'))
    expect(lines(ex, { kinds: ['lock', 'pte', 'frame'], op: 'C0: read A' })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock filemap_fault: folio_lock: lock the page-cache folio of A',
      'lock do_set_pmd: pmd_lock: take the PMD lock',
      'pte do_set_pmd: set_pmd_at: PMD H := huge page pfns 1,2 RO clean (the page-cache folio, whole)',
      'frame page_add_file_rmap (compound): pfns 1,2 mapcount 1',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'lock folio_unlock: unlock the page-cache folio of A',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(ex.final.mms[0]!.ptes.map((p) => p && [p.pfn, p.huge, p.write])).toEqual([
      [1, true, false],
      [2, true, false],
    ])
    expect(ex.final.mms[0]!.pt).toEqual([false])
    expect(ex.final.frames.slice(1).map((f) => [f.ref, f.map])).toEqual([
      [2, 1],
      [2, 1],
    ])
  })

  it('a write to the read-only file huge PMD: wp_huge_pmd splits it, and do_shared_fault maps it again RW', () => {
    const ex = traced(shmem('thp_split H, read A, write A 5'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { kinds: ['fault', 'pte', 'lock'], op: 'C0: write A 5' })
    expect(ls.filter((l) => !l.startsWith('lock'))).toEqual([
      'fault handle_mm_fault: write fault on A',
      'fault wp_huge_pmd: H is a file PMD: write-notify on pte level, __split_huge_pmd, VM_FAULT_FALLBACK',
      'pte pmdp_huge_clear_flush: PMD H := none (file THP: zapped, not split into PTEs; was huge page pfns 1,2)',
      'fault handle_pte_fault: VM_FAULT_FALLBACK: the file PMD of A is none: do_fault',
      'pte do_set_pmd: set_pmd_at: PMD H := huge page pfns 1,2 RW dirty (the page-cache folio, whole)',
    ])
    // No pmd_lock of wp_huge_pmd's own: the first lock after the fault is the split's.
    expect(ls.filter((l) => l.includes('pmd_lock')).slice(0, 1)).toEqual(['lock pmd_lock: take the PMD lock'])
    expect(ex.final.frames.slice(1).map((f) => [f.v, f.ref, f.map])).toEqual([
      [5, 2, 1],
      [2, 2, 1],
    ])
  })

  it('with the VMA split (transhuge_vma_suitable fails) the fault maps a PTE (do_read_fault: set_pte_at)', () => {
    const ex = traced(shmem('munmap A, read B'), pol('arch-hook'))
    expect(lines(ex, { kinds: ['lock', 'pte', 'frame'], op: 'C0: read B' })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock filemap_fault: folio_lock: lock the page-cache folio of B',
      'lock finish_fault: pte_offset_map_lock: take the page-table lock',
      'pte do_read_fault: set_pte_at: PTE B := pfn 2 RO clean',
      'frame folio_add_file_rmap: pfn 2 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock folio_unlock: unlock the page-cache folio of B',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(ex.final.mms[0]!.ptes[1]).toEqual({ pfn: 2, present: true, write: false, dirty: false })
    expect(ex.final.mms[0]!.pt).toEqual([true])
  })

  it('a small folio (mapped: pte, never collapsed) is never mapped by do_set_pmd', () => {
    const sc = scenarioOf(
      `
        title: file thp pte
        arch: x86_64
        thp:
          H: { pages: [A, B], mapped: pte, kind: file }
        pages:
          A: { value: 1 }
          B: { value: 2 }
        cpus:
          C0: [munmap A B, read A]
      `,
      'x.yaml',
    )
    const ex = traced(sc, pol('arch-hook'))
    expect(ex.final.mms[0]!.ptes).toEqual([null, null])
    const sc2 = scenarioOf(
      `
        title: file thp pte
        arch: x86_64
        thp:
          H: { pages: [A, B], mapped: pte, kind: file }
        pages:
          A: { value: 1 }
          B: { value: 2 }
        cpus:
          C0: [madvise_dontneed A B, read A]
      `,
      'x.yaml',
    )
    const ls = lines(traced(sc2, pol('arch-hook')), { kinds: ['pte'], op: 'C0: read A' })
    expect(ls).toEqual(['pte do_read_fault: set_pte_at: PTE A := pfn 1 RO clean'])
  })

  it("a hw-walker that refills between range_start and the clear loses the entry at the split's flush", () => {
    // C0: start, rs; D0 walks the still-huge PMD; C0: the locked split.
    const sc = shmem(
      'thp_split H',
      '{ name: iommu, type: hw-walker }',
      'devices: { D0: { via: iommu, ops: [read A] } }',
    )
    const ex = traced(sc, pol('arch-hook'), [0, 0, 1, 0])
    expect(lines(ex, { kinds: ['sec-inval', 'pte'] }).slice(0, 2)).toEqual([
      'pte pmdp_huge_clear_flush: PMD H := none (file THP: zapped, not split into PTEs; was huge page pfns 1,2)',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (2 entries dropped)',
    ])
  })
})

describe('zap_huge_pmd of a file PMD (v6.6): no deposited table, the folio is not freed', () => {
  const ZAP = [
    'lock zap_huge_pmd: __pmd_trans_huge_lock: take the PMD lock',
    'pte pmdp_huge_get_and_clear_full: PMD H := none (was huge page pfns 1,2)',
    "info tlb_remove_pmd_tlb_entry: the gather's range covers H (2 MiB, cleared_pmds)",
    'frame page_remove_rmap (compound): pfns 1,2 mapcount 0',
    'info zap_huge_pmd: H is a file PMD: no deposited table (arch_needs_pgtable_deposit() is false)',
    'lock spin_unlock (pmd_lock): release the PMD lock',
    "frame tlb_remove_page_size: the PMD's reference on the huge folio (pfns 1,2) is dropped after the flush; the page cache keeps the folio",
  ]
  it('munmap of the whole huge page: range_start, zap_huge_pmd, range_end, the gather drops its references', () => {
    const ex = traced(shmem('munmap A B'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'info vma_iter_clear_gfp: detach VMA(s) for A,B',
      'lock mmap_write_downgrade: downgrade mmap_lock to read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A,B',
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      ...ZAP,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      "info unlink_file_vma: A: VMA unlinked from the file's i_mmap tree",
      "info unlink_file_vma: B: VMA unlinked from the file's i_mmap tree",
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      'frame tlb_batch_pages_flush: release 2 queued pages',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(ex.final.frames.slice(1).map((f) => [f.ref, f.map, f.free])).toEqual([
      [1, 0, false],
      [1, 0, false],
    ])
  })

  it('exit_mmap zaps it the same way after mmu_notifier_release', () => {
    const ls = lines(traced(shmem('exit'), pol('arch-hook')), { kinds: KINDS })
    const at = ls.indexOf(ZAP[0]!)
    expect(at).toBeGreaterThan(
      ls.indexOf("notifier mmu_notifier_release: every subscriber's ->release, then unhook them all"),
    )
    expect(ls.slice(at, at + ZAP.length)).toEqual(ZAP)
    expect(ls.some((l) => l.includes('zap_deposited_table: pte_free'))).toBe(false)
  })

  it('munmap of one subpage: split_vma zaps the whole PMD, then zap_pmd_range finds pmd_none', () => {
    const ex = traced(shmem('munmap A'), pol('arch-hook'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'info split_vma: A is part of huge page H: vma_adjust_trans_huge -> split_huge_pmd_address',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      ...withInfo(splitLocked('pmdp_huge_clear_flush', ARCH_HOOK)),
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'info __split_huge_pmd: H zapped (file THP); back in the caller',
      'info vma_iter_clear_gfp: detach VMA(s) for A',
      'lock mmap_write_downgrade: downgrade mmap_lock to read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
      'info zap_pmd_range: pmd_none: no PTE table to zap',
      'notifier mmu_notifier_invalidate_range_end: A',
      "info unlink_file_vma: A: VMA unlinked from the file's i_mmap tree",
      'lock mmap_read_unlock: release mmap_lock',
    ])
    // B keeps its VMA but no PTE: it refaults from the page cache.
    expect(ex.final.mms[0]!.ptes).toEqual([null, null])
    expect(ex.final.mms[0]!.vmas).toEqual([null, 'rw'])
  })

  it("MADV_DONTNEED of one subpage: zap_pmd_range splits (zaps) the whole PMD under the zap's own range", () => {
    const ls = lines(traced(shmem('madvise_dontneed A'), pol('arch-hook')), { kinds: KINDS })
    const start = ls.indexOf('notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B')
    expect(start).toBeGreaterThan(
      ls.indexOf('notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A'),
    )
    expect(ls.slice(start + 1, start + 1 + 9)).toEqual(
      withInfo(splitLocked('pmdp_huge_clear_flush', ARCH_HOOK)),
    )
  })
})

describe('truncate below a file huge page (v6.6 mm/truncate.c truncate_pagecache)', () => {
  it('unmap_mapping_range zaps the whole PMD, then truncate_inode_folio drops every slot and frees the folio', () => {
    const sc = scenarioOf(
      `
        title: file thp truncate
        arch: x86_64
        thp:
          H: { pages: [A, B], kind: file }
        pages:
          A: { value: 1 }
          B: { value: 2 }
        secondary:
          - { name: iommu, type: hw-walker, cached: [A] }
        cpus:
          T: [truncate A]
      `,
      'x.yaml',
    )
    const ex = traced(sc, pol('arch-hook'))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'frame i_size_write: A is beyond the new end of file',
      'frame i_size_write: B is beyond the new end of file',
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'lock zap_huge_pmd: __pmd_trans_huge_lock: take the PMD lock',
      'pte pmdp_huge_get_and_clear_full: PMD H := none (was huge page pfns 1,2)',
      "info tlb_remove_pmd_tlb_entry: the gather's range covers H (2 MiB, cleared_pmds)",
      'frame page_remove_rmap (compound): pfns 1,2 mapcount 0',
      'info zap_huge_pmd: H is a file PMD: no deposited table (arch_needs_pgtable_deposit() is false)',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      "frame tlb_remove_page_size: the PMD's reference on the huge folio (pfns 1,2) is dropped after the flush; the page cache keeps the folio",
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      ...ARCH_HOOK,
      'frame tlb_batch_pages_flush: release 2 queued pages',
      "lock i_mmap_unlock_read: the mapping's i_mmap tree",
      'lock find_lock_entries: folio_lock: lock the page-cache folio of A',
      'frame filemap_remove_folio: A: pfn 1 leaves the page cache',
      'frame filemap_remove_folio: B: pfn 2 leaves the page cache',
      'lock folio_unlock: unlock the page-cache folio of A',
      'frame folio_batch_release (the page cache reference): free pfn 1 (gen 1)',
      'frame folio_batch_release (the page cache reference): free pfn 2 (gen 1)',
    ])
    expect(ex.final.frames.slice(1).every((f) => f.free)).toBe(true)
  })
})

describe('mprotect of a file huge page (v6.6 mm/mprotect.c)', () => {
  it('the whole huge page: change_huge_pmd on the file PMD (x86: no flush in pmdp_invalidate_ad)', () => {
    const ex = traced(shmem('mprotect A B ro'), pol('arch-hook'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'info mprotect_fixup: vm_flags of A,B := ro',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A,B',
      'lock pmd_lock: take the PMD lock',
      'pte pmdp_invalidate_ad: PMD H := invalid (pmd_mkinvalid)',
      'pte set_pmd_at: PMD H := huge RO',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      ...ARCH_HOOK,
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('part of it: split_vma zaps the PMD, and change_pmd_range then finds pmd_none (no second range)', () => {
    const ls = lines(traced(shmem('mprotect A ro'), pol('arch-hook')), { kinds: KINDS })
    expect(ls).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'info split_vma: A is part of huge page H: vma_adjust_trans_huge -> split_huge_pmd_address',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      ...withInfo(splitLocked('pmdp_huge_clear_flush', ARCH_HOOK)),
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'info __split_huge_pmd: H zapped (file THP); back in the caller',
      'info mprotect_fixup: vm_flags of A := ro',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('a start-only driver: the device refills inside the split and writes after mprotect returned', () => {
    const sc = shmem(
      'mprotect A ro',
      '{ name: iommu, type: hw-walker, flush_at: start, cached: [A] }',
      'devices: { D0: { via: iommu, ops: [write B 8, write A 7] } }',
    )
    expect(runUnder(sc, 'start-end').invariants['stale-after-return']).toBe('violated')
    for (const p of ['invalidate-range', 'arch-hook'] as const) expect(runUnder(sc, p).verdict).toBe('holds')
  })
})

describe('the OOM reaper skips a MAP_SHARED shmem VMA (v6.6 __oom_reap_task_mm)', () => {
  it('no notifier range, no zap: the huge PMD stays', () => {
    const sc = scenarioOf(
      `
        title: file thp oom
        arch: x86_64
        thp:
          H: { pages: [A, B], kind: file }
        pages:
          A: { value: 1 }
          B: { value: 2 }
        cpus:
          R: [oom_reap]
      `,
      'x.yaml',
    )
    const ex = traced(sc, pol('arch-hook'))
    const ls = lines(ex, { kinds: ['info', 'notifier', 'pte'] })
    expect(ls).toContain('info __oom_reap_task_mm: skip A (VM_SHARED), B (VM_SHARED)')
    expect(ls.filter((l) => !l.startsWith('info'))).toEqual([])
    expect(ex.final.mms[0]!.ptes.every((p) => p?.huge === true)).toBe(true)
  })
})

describe('file collapse on the page cache (collapse_file)', () => {
  it('the new huge page takes the page-cache slots; the old pages are freed, the new ones held by cache and PMD', () => {
    const sc = scenarioOf(
      `
        title: file collapse
        arch: x86_64
        thp:
          H: { pages: [A, B], mapped: pte, kind: file }
        pages:
          A: { value: 1 }
          B: { value: 2 }
        cpus:
          K: [thp_collapse H]
      `,
      'x.yaml',
    )
    const ex = traced(sc, pol('arch-hook'))
    expect(ex.final.files.map((f) => f?.pfn)).toEqual([3, 4])
    // The new folio is PMD-order: a later fault on a none PMD may map it whole (do_set_pmd).
    expect(ex.final.files.map((f) => f?.large)).toEqual([true, true])
    expect(ex.final.frames.slice(1).map((f) => [f.ref, f.map, f.free])).toEqual([
      [0, 0, true],
      [0, 0, true],
      [2, 1, false],
      [2, 1, false],
    ])
  })
})
