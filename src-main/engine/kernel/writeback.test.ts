/**
 * Writeback of MAP_SHARED file pages and the file-page zap against the domain reference
 * (§3.4, §5.3, §5.5, SC-8): folio_clear_dirty_for_io -> folio_mkclean -> page_vma_mkclean_one
 * (v6.6 mm/page-writeback.c, mm/rmap.c), wp_page_shared (mm/memory.c), and zap_pte_range in
 * the three eras of Linus's 2014 (1cf35d47712d) and 2022 (5df397dec7c4) fixes. Expectations
 * come from the kernel source and the reference, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import { first, kernelEvents, lines, runUnder, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'writeback.test.yaml')
const pol = (p: Preset) => makePolicy(p)

function writebackScenario(extra = '', mapped = 'rw') {
  return load(`
    title: writeback of a dirty shared page a device has cached
    arch: arm64
    pages:
      F: { value: 1, prot: rw, kind: file, mapped: ${mapped} }
    secondary:
      - { name: smmu, type: hw-walker, ${mapped === 'none' ? '' : 'cached: [F]'} }
    cpus:
      WB: [writeback F]
      ${extra}
  `)
}

const WB_LOCK = 'folio_lock(F)'
const MKCLEAN_PTE = [
  'lock page_vma_mapped_walk: take the page-table lock',
  'pte ptep_clear_flush: PTE F := none',
  'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: F',
]
const WB_TAIL = [
  "lock i_mmap_unlock_read: the mapping's i_mmap tree",
  'frame folio_clear_dirty_for_io: folio_mkclean() cleaned a PTE: F (pfn 1): PG_dirty (already set)',
  'frame folio_test_clear_dirty: F (pfn 1): PG_dirty was 1, now 0',
  'frame submit_bio (->writepage): disk(F) := 1 (contents of pfn 1)',
  'lock folio_unlock: unlock the page-cache folio of F',
]

describe('writeback: folio_clear_dirty_for_io -> folio_mkclean -> page_vma_mkclean_one (v6.6)', () => {
  const head = [
    'lock folio_lock: lock the page-cache folio of F',
    "lock i_mmap_lock_read: the mapping's i_mmap tree",
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE F',
  ]
  it('start-end: the driver flushes at range_start, before the PTE is write-protected', () => {
    const ex = traced(writebackScenario(), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { thread: 'WB' })).toEqual([
      ...head,
      'sec-inval invalidate_range_start: smmu: invalidate F (1 entry dropped)',
      ...MKCLEAN_PTE,
      'pte set_pte_at (pte_wrprotect + pte_mkclean): PTE F := pfn 1 RO clean',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: F',
      'sec-inval invalidate_range_end: smmu: invalidate F (0 entries dropped)',
      ...WB_TAIL,
    ])
    // The whole walk runs under the folio lock; the PTE change under the PTL as well.
    expect(first(ex, 'pte set_pte_at').locks).toEqual([WB_LOCK, 'i_mmap_rwsem(r)', 'ptl'])
    expect(first(ex, 'frame submit_bio').locks).toEqual([WB_LOCK])
  })

  it('invalidate-range: no _notify in page_mkclean_one since v4.15, so ->invalidate_range comes at range_end', () => {
    const ex = traced(writebackScenario(), pol('invalidate-range'))
    expect(lines(ex, { thread: 'WB' })).toEqual([
      ...head,
      ...MKCLEAN_PTE,
      'pte set_pte_at (pte_wrprotect + pte_mkclean): PTE F := pfn 1 RO clean',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: F',
      'sec-inval ->invalidate_range (from range_end): smmu: invalidate F (1 entry dropped)',
      ...WB_TAIL,
    ])
  })

  it('arch-hook: the hook fires inside ptep_clear_flush, under the PTL', () => {
    const ex = traced(writebackScenario(), pol('arch-hook'))
    expect(lines(ex, { thread: 'WB' })).toEqual([
      ...head,
      ...MKCLEAN_PTE,
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: F',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate F (1 entry dropped)',
      'pte set_pte_at (pte_wrprotect + pte_mkclean): PTE F := pfn 1 RO clean',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: F',
      ...WB_TAIL,
    ])
    expect(first(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs').locks).toContain('ptl')
  })

  it('folio_mkclean returns early for an unmapped folio: no notifier, no PTL, still written', () => {
    const ex = traced(writebackScenario('', 'none'), pol('arch-hook'))
    // mapped: none and not dirty: write_cache_pages finds nothing to do.
    expect(lines(ex, { thread: 'WB' })).toEqual([
      'lock folio_lock: lock the page-cache folio of F',
      'lock folio_unlock: unlock the page-cache folio of F',
    ])
    const dirtyUnmapped = load(`
      title: a dirtied page, unmapped again, written back
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file }
      cpus:
        C0: [write F 2, madvise_dontneed F, writeback F]
    `)
    const ex2 = traced(dirtyUnmapped, pol('arch-hook'))
    expect(ex2.violations).toEqual([])
    expect(lines(ex2, { op: 'C0: writeback F' })).toEqual([
      'lock folio_lock: lock the page-cache folio of F',
      'frame folio_test_clear_dirty: F (pfn 1): PG_dirty was 1, now 0',
      'frame submit_bio (->writepage): disk(F) := 2 (contents of pfn 1)',
      'lock folio_unlock: unlock the page-cache folio of F',
    ])
    expect(kernelEvents(ex2, { kinds: ['info'] }).map((e) => e.fn)).toContain('folio_mkclean')
  })

  it('a write after writeback faults through wp_page_shared: folio lock, PTE made writable, folio dirtied, no copy', () => {
    const ex = traced(writebackScenario('C0: [write F 5]'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const c0 = kernelEvents(ex, { thread: 'C0', kinds: ['lock', 'pte', 'frame', 'fault'] }).map(
      (e) => `${e.kind} ${e.fn}`,
    )
    expect(c0).toEqual([
      'fault exc_page_fault',
      'lock mmap_read_lock',
      'fault handle_mm_fault',
      'lock pte_offset_map_lock',
      'fault do_wp_page',
      'lock pte_unmap_unlock',
      'lock do_page_mkwrite: folio_lock',
      'lock finish_mkwrite_fault: pte_offset_map_lock',
      'fault wp_page_reuse',
      'pte ptep_set_access_flags',
      'lock pte_unmap_unlock',
      'frame fault_dirty_shared_page: folio_mark_dirty',
      'lock folio_unlock',
      'lock mmap_read_unlock',
    ])
    // The folio is dirty again while the folio lock is held, and no frame was allocated.
    expect(first(ex, 'frame fault_dirty_shared_page').locks).toEqual(['mmap_lock(r)', WB_LOCK])
    expect(kernelEvents(ex).some((e) => e.text.startsWith('allocate'))).toBe(false)
  })
})

function zapScenario(kernel: string) {
  return load(`
    title: munmap of a dirty shared file page
    arch: x86_64
    pages:
      F: { value: 1, prot: rw, kind: file }
    secondary:
      - { name: iommu, type: hw-walker, cached: [F] }
    cpus:
      C0: [munmap F]
    ${kernel}
  `)
}

const ZAP_HEAD = [
  'lock mmap_write_lock: take mmap_lock for write',
  'lock mmap_write_downgrade: downgrade mmap_lock to read',
  'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP F',
  'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
  'pte ptep_get_and_clear_full: PTE F := none',
  'frame zap_present_pte: folio_mark_dirty (pte_dirty): F (pfn 1): PG_dirty (already set)',
]

describe('zap_pte_range of a dirty shared file page in three eras (reference §3.4, §5.5)', () => {
  it('v6.6 (delay_rmap): flush and ->invalidate_range/hook under the PTL, then tlb_flush_rmaps, then unlock', () => {
    for (const [p, inval] of [
      [
        'invalidate-range',
        [
          'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: F',
          'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate F (1 entry dropped)',
        ],
      ],
      [
        'arch-hook',
        [
          'notifier mmu_notifier_arch_invalidate_secondary_tlbs: F',
          'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate F (1 entry dropped)',
        ],
      ],
    ] as const) {
      const ex = traced(zapScenario(''), pol(p))
      expect(ex.violations).toEqual([])
      const ls = lines(ex)
      expect(ls.slice(0, ZAP_HEAD.length + 7)).toEqual([
        ...ZAP_HEAD,
        'frame __tlb_remove_page (delay_rmap): pfn 1 queued, page_remove_rmap delayed until after the flush (mapcount stays 1); force_flush',
        'cpu-flush tlb_flush (zap_pte_range force_flush): flush CPU TLBs: F',
        ...inval,
        'frame tlb_flush_rmaps: page_remove_rmap: pfn 1 mapcount 0',
        'lock pte_unmap_unlock: release the page-table lock',
        'frame tlb_batch_pages_flush: release 1 queued page',
      ])
      expect(first(ex, 'frame tlb_flush_rmaps').locks).toEqual(['mmap_lock(r)', 'ptl'])
      // The page cache keeps its reference: the frame is never freed.
      expect(ls.some((l) => l.includes('free pfn'))).toBe(false)
    }
  })

  it('2014..v6.1 (delay_rmap: false): the mapcount drops in the loop, the flush still comes under the PTL', () => {
    const ex = traced(zapScenario('kernel: { delay_rmap: false }'), pol('arch-hook'))
    expect(lines(ex).slice(0, ZAP_HEAD.length + 5)).toEqual([
      ...ZAP_HEAD,
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued; force_flush (dirty shared PTE)',
      'cpu-flush tlb_flush (zap_pte_range force_flush): flush CPU TLBs: F',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: F',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate F (1 entry dropped)',
      'lock pte_unmap_unlock: release the page-table lock',
    ])
    // The rmap drop and the flush are separate steps: other threads can run in between.
    const rmap = first(ex, 'frame page_remove_rmap')
    const flush = first(ex, 'cpu-flush tlb_flush (zap_pte_range force_flush)')
    expect(flush.step).toBeGreaterThan(rmap.step)
    expect(flush.locks).toEqual(['mmap_lock(r)', 'ptl'])
  })

  it('before 2014 (dirty_flush_under_ptl: false): no forced flush; the flush waits for tlb_finish_mmu, after range_end', () => {
    const ex = traced(zapScenario('kernel: { dirty_flush_under_ptl: false }'), pol('arch-hook'))
    expect(lines(ex)).toEqual([
      ...ZAP_HEAD,
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: F',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: F',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: F',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate F (1 entry dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      'frame tlb_batch_pages_flush: release 1 queued page',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'cpu-flush tlb_flush').locks).toEqual(['mmap_lock(r)'])
  })

  it('a clean file PTE forces nothing: the gather flushes at tlb_finish_mmu as for anon pages', () => {
    const sc = load(`
      title: munmap of a clean shared page
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: ro }
      cpus:
        C0: [munmap F]
    `)
    const ls = lines(traced(sc, pol('arch-hook')))
    expect(ls.some((l) => l.includes('folio_mark_dirty'))).toBe(false)
    expect(ls).toContain('cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: F')
  })
})

describe('lost-dirty is found by exploration (reference §5.5, row 14)', () => {
  const cpuRace = (kernel: string) =>
    load(`
      title: a CPU stores through its TLB while another zaps and writeback runs
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file }
      cpus:
        C0: [write F 2, write F 3]
        C1: [madvise_dontneed F]
        WB: [writeback F]
      ${kernel}
    `)
  const verdict = (yaml: ReturnType<typeof load>, p: Preset) => runUnder(yaml, p)

  it('v6.6 holds; the 2014 and pre-2014 kernels lose the store under every preset', () => {
    expect(verdict(cpuRace(''), 'start-end').verdict).toBe('holds')
    for (const k of ['kernel: { delay_rmap: false }', 'kernel: { dirty_flush_under_ptl: false }']) {
      for (const p of ['start-end', 'invalidate-range', 'arch-hook'] as const) {
        const r = verdict(cpuRace(k), p)
        expect(r.invariants['lost-dirty']).toBe('violated')
        const cx = r.counterexamples.find((x) => x.invariant === 'lost-dirty')!
        expect(cx.why).toContain('folio_mkclean() saw the folio unmapped (mapcount 0)')
        expect(cx.why).toContain('C0')
      }
    }
  })

  it('disk(P) in forbid reads what writeback stored', () => {
    const sc = load(`
      title: the last store reaches disk only if writeback ran after it
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file }
      cpus:
        C0: [write F 2]
        WB: [writeback F]
      forbid: disk(F) == 2
    `)
    const r = verdict(sc, 'arch-hook')
    expect(r.invariants.forbid).toBe('violated')
    expect(r.invariants['lost-dirty']).toBe('holds')
    const never = load(`
      title: disk never holds a value nobody wrote
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file }
      cpus:
        C0: [write F 2]
        WB: [writeback F]
      forbid: disk(F) != 1 && disk(F) != 2
    `)
    expect(verdict(never, 'arch-hook').verdict).toBe('holds')
  })
})
