/**
 * Zap sequences with an mmu_gather against the domain reference (§1.8, §2, §3.4, §3.5):
 * munmap (unmap_region -> unmap_vmas -> zap_pte_range) and madvise(MADV_DONTNEED)
 * (zap_page_range_single), per architecture and notifier policy. Expectations come from the
 * reference, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import { every, first, kernelEvents, lines, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'unmap.test.yaml')
const pol = (p: Preset) => makePolicy(p)

const MMAP_R = ['mmap_lock(r)']
const MMAP_R_PTL = ['mmap_lock(r)', 'ptl']

function munmapScenario(arch: string, batch?: number) {
  return load(`
    title: munmap of two device-cached anon pages
    arch: ${arch}
    pages:
      A: { value: 1, prot: rw }
      B: { value: 2, prot: rw }
    secondary:
      - { name: iommu, type: hw-walker, cached: [A, B] }
    cpus:
      C0: [munmap A B]
    ${batch === undefined ? '' : `mmu_gather: { batch: ${batch} }`}
  `)
}

/** __vm_munmap: detach under mmap_write_lock, downgrade; unmap_vmas: RS(UNMAP) over the whole range. */
const MUNMAP_HEAD = [
  'lock mmap_write_lock: take mmap_lock for write',
  'lock mmap_write_downgrade: downgrade mmap_lock to read',
  'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A,B',
]
/** zap_pte_range() for the one VMA, no forced flush: clear each PTE, rmap drop, queue the page. */
const ZAP_AB = [
  'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
  'pte ptep_get_and_clear_full: PTE A := none',
  'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued for freeing',
  'pte ptep_get_and_clear_full: PTE B := none',
  'frame page_remove_rmap + __tlb_remove_page: pfn 2 mapcount 0, queued for freeing',
  'lock pte_unmap_unlock: release the page-table lock',
]
const FREE_AB = [
  'frame tlb_batch_pages_flush: release 2 queued pages',
  'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
  'frame free_pages_and_swap_cache: free pfn 2 (gen 1)',
]

describe('munmap on x86 (MMU_GATHER_MERGE_VMAS): CPU flush in tlb_finish_mmu, after range_end (reference §3.4)', () => {
  it('start-end: the walker hears start and end; the flush and the frees come after range_end', () => {
    const ex = traced(munmapScenario('x86_64'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      ...ZAP_AB,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      ...FREE_AB,
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_start').locks).toEqual(MMAP_R)
    expect(first(ex, 'pte ptep_get_and_clear_full').locks).toEqual(MMAP_R_PTL)
    expect(first(ex, 'cpu-flush tlb_flush').locks).toEqual(MMAP_R)
  })

  it('invalidate-range: ->invalidate_range at range_end (not only_end) and again from tlb_flush_mmu_tlbonly, before the pages are freed', () => {
    const ex = traced(munmapScenario('x86_64'), pol('invalidate-range'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      ...ZAP_AB,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (2 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: A,B',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate A,B (0 entries dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      ...FREE_AB,
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('arch-hook: the hook fires only inside the tlb_finish_mmu flush (no PTL), after range_end, before the frees', () => {
    const ex = traced(munmapScenario('x86_64'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      ...ZAP_AB,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (2 entries dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      ...FREE_AB,
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs').locks).toEqual(MMAP_R)
  })

  it('flush_tlb_mm_range: more than 33 pages widen the hook to (0, -1); 33 do not (§1.8)', () => {
    const scenarioOf = (n: number) => {
      const names = Array.from({ length: n }, (_, i) => `P${i}`)
      return load(`
        title: munmap of ${n} pages
        arch: x86_64
        pages:
        ${names.map((p) => `  ${p}: { value: 1 }`).join('\n        ')}
        secondary:
          - { name: iommu, type: hw-walker, cached: [P0] }
        cpus:
          C0: [munmap ${names.join(' ')}]
      `)
    }
    const hook33 = every(traced(scenarioOf(33), pol('arch-hook')), 'notifier mmu_notifier_arch_invalidate')
    expect(hook33).toHaveLength(1)
    expect(hook33[0]!.text.split(',')).toHaveLength(33)
    const ex34 = traced(scenarioOf(34), pol('arch-hook'))
    expect(every(ex34, 'cpu-flush').map((e) => e.text)).toEqual(['flush CPU TLBs: whole mm'])
    expect(every(ex34, 'notifier mmu_notifier_arch_invalidate').map((e) => e.text)).toEqual([
      'range (0, -1): whole address space',
    ])
  })
})

describe('munmap on arm64 (no MERGE_VMAS in v6.6): CPU flush at tlb_end_vma, before range_end (reference §3.4)', () => {
  it('start-end: flush at the VMA boundary, then range_end, then the frees', () => {
    const ex = traced(munmapScenario('arm64'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      ...ZAP_AB,
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A,B',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      ...FREE_AB,
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('invalidate-range: ->invalidate_range from tlb_flush_mmu_tlbonly at tlb_end_vma and again at range_end', () => {
    const ex = traced(munmapScenario('arm64'), pol('invalidate-range'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      ...ZAP_AB,
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A,B',
      'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: A,B',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate A,B (2 entries dropped)',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (0 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: A',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate A (0 entries dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      ...FREE_AB,
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('arch-hook: the hook inside the tlb_end_vma range flush, before range_end; __flush_tlb_range passes an empty range in v6.6 (invalidate-all)', () => {
    const ex = traced(munmapScenario('arm64'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      ...ZAP_AB,
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A,B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (2 entries dropped)',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (0 entries dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      ...FREE_AB,
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'cpu-flush tlb_flush (tlb_end_vma)').locks).toEqual(MMAP_R)
  })

  it('two VMAs: one flush per tlb_end_vma, both before the single range_end', () => {
    const sc = load(`
      title: munmap across two VMAs
      arch: arm64
      pages:
        A: { value: 1, prot: rw }
        B: { value: 2, prot: ro, mapped: ro }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A, B] }
      cpus:
        C0: [munmap A B]
    `)
    const ex = traced(sc, pol('arch-hook'))
    const ls = lines(ex, { kinds: ['cpu-flush', 'notifier', 'frame'] }).filter(
      (l) => !l.startsWith('frame page_'),
    )
    expect(ls).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A,B',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      ...FREE_AB,
    ])
  })
})

describe('munmap with a full mmu_gather batch: forced flush under the PTL (reference §3.4, §5.5)', () => {
  /** One zap_pte_range round per page: batch full after one page -> flush under PTL, unlock, free. */
  const forced = (page: string, pfn: number, hook: string[]) => [
    'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
    `pte ptep_get_and_clear_full: PTE ${page} := none`,
    `frame page_remove_rmap + __tlb_remove_page: pfn ${pfn} mapcount 0, queued for freeing`,
    `cpu-flush tlb_flush (zap_pte_range force_flush): flush CPU TLBs: ${page}`,
    ...hook,
    'lock pte_unmap_unlock: release the page-table lock',
    'frame tlb_batch_pages_flush: release 1 queued page',
    `frame free_pages_and_swap_cache: free pfn ${pfn} (gen 1)`,
  ]

  it('x86 invalidate-range: ->invalidate_range from tlb_flush_mmu_tlbonly under the PTL before each page is freed, and at range_end', () => {
    const ex = traced(munmapScenario('x86_64', 1), pol('invalidate-range'))
    expect(ex.violations).toEqual([])
    const ir = (p: string) => [
      `notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: ${p}`,
      `sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate ${p} (1 entry dropped)`,
    ]
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      ...forced('A', 1, ir('A')),
      ...forced('B', 2, ir('B')),
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (0 entries dropped)',
      // free_pgtables' pte_free_tlb sets freed_tables: tlb_finish_mmu flushes the PMD range again.
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: A',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate A (0 entries dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    for (const e of every(ex, 'cpu-flush tlb_flush (zap_pte_range force_flush)'))
      expect(e.locks).toEqual(MMAP_R_PTL)
    // The two forced flushes run under the PTL; tlb_finish_mmu's freed_tables flush does not.
    for (const e of every(ex, 'notifier mmu_notifier_invalidate_range:').slice(0, 2))
      expect(e.locks).toEqual(MMAP_R_PTL)
    for (const e of every(ex, 'frame free_pages_and_swap_cache')) expect(e.locks).toEqual(MMAP_R)
  })

  it('x86 arch-hook: the hook inside the forced flush under the PTL; tlb_finish_mmu flushes only the freed page table', () => {
    const ex = traced(munmapScenario('x86_64', 1), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const ah = (p: string) => [
      `notifier mmu_notifier_arch_invalidate_secondary_tlbs: ${p}`,
      `sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate ${p} (1 entry dropped)`,
    ]
    expect(lines(ex)).toEqual([
      ...MUNMAP_HEAD,
      ...forced('A', 1, ah('A')),
      ...forced('B', 2, ah('B')),
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A (0 entries dropped)',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    for (const e of every(ex, 'notifier mmu_notifier_arch_invalidate').slice(0, 2))
      expect(e.locks).toEqual(MMAP_R_PTL)
  })

  it('arm64 start-end: the forced CPU flush under the PTL precedes the first free; the walker hears only start/end', () => {
    const ex = traced(munmapScenario('arm64', 1), pol('start-end'))
    const ls = lines(ex)
    const firstFree = ls.findIndex((l) => l.startsWith('frame free_pages_and_swap_cache'))
    const firstFlush = ls.findIndex((l) => l.startsWith('cpu-flush'))
    expect(firstFlush).toBeGreaterThan(-1)
    expect(firstFlush).toBeLessThan(firstFree)
    expect(first(ex, 'cpu-flush').locks).toEqual(MMAP_R_PTL)
    expect(ls.filter((l) => l.startsWith('sec-inval'))).toEqual([
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
    ])
  })
})

describe('madvise(MADV_DONTNEED): zap_page_range_single (reference §3.5)', () => {
  function madvScenario(arch: string) {
    return load(`
      title: MADV_DONTNEED then a read
      arch: ${arch}
      pages:
        A: { value: 1, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A] }
      cpus:
        C0: [madvise_dontneed A, read A -> r0]
    `)
  }
  const op = 'C0: madvise_dontneed A'
  const ZAP_A = [
    'lock mmap_read_lock: take mmap_lock for read',
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
    'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
    'pte ptep_get_and_clear_full: PTE A := none',
    'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued for freeing',
    'lock pte_unmap_unlock: release the page-table lock',
  ]
  const FREE_A = [
    'frame tlb_batch_pages_flush: release 1 queued page',
    'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
    'lock mmap_read_unlock: release mmap_lock',
  ]

  it('x86 arch-hook: RS(CLEAR) -> zap -> RE -> tlb_finish_mmu flush + hook -> free', () => {
    const ex = traced(madvScenario('x86_64'), pol('arch-hook'))
    expect(lines(ex, { op })).toEqual([
      ...ZAP_A,
      'notifier mmu_notifier_invalidate_range_end: A',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A (1 entry dropped)',
      ...FREE_A,
    ])
  })

  it('x86 invalidate-range: ->invalidate_range at range_end and from tlb_flush_mmu_tlbonly', () => {
    const ex = traced(madvScenario('x86_64'), pol('invalidate-range'))
    expect(lines(ex, { op })).toEqual([
      ...ZAP_A,
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A (1 entry dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: A',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate A (0 entries dropped)',
      ...FREE_A,
    ])
  })

  it('arm64 arch-hook: flush + hook at tlb_end_vma, before RE; free at tlb_finish_mmu after RE', () => {
    const ex = traced(madvScenario('arm64'), pol('arch-hook'))
    expect(lines(ex, { op })).toEqual([
      ...ZAP_A,
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entry dropped)',
      'notifier mmu_notifier_invalidate_range_end: A',
      ...FREE_A,
    ])
  })

  it('the VMA stays: a later read faults in the zero page', () => {
    for (const arch of ['x86_64', 'arm64']) {
      const ex = traced(madvScenario(arch), pol('arch-hook'))
      expect(ex.violations).toEqual([])
      expect(ex.final.mms[0]!.vmas[0]).toBe('rw')
      expect(lines(ex, { op: 'C0: read A -> r0' })).toEqual([
        'lock mmap_read_lock: take mmap_lock for read',
        'lock pte_offset_map_lock: take the page-table lock',
        'pte do_anonymous_page (zero page): PTE A := pfn 0 RO clean (zero page)',
        'lock pte_unmap_unlock: release the page-table lock',
        'lock mmap_read_unlock: release mmap_lock',
      ])
      expect(ex.final.regs).toEqual([0])
      expect(kernelEvents(ex, { kinds: ['fault'] }).map((e) => e.fn)).toContain('exc_page_fault')
    }
  })

  it('munmap, by contrast, removes the VMA: the same read gets SIGSEGV', () => {
    const sc = load(`
      title: munmap then a read
      arch: x86_64
      pages:
        A: { value: 1, prot: rw }
      cpus:
        C0: [munmap A, read A -> r0]
    `)
    const ex = traced(sc, pol('arch-hook'))
    expect(ex.final.mms[0]!.vmas[0]).toBeNull()
    expect(kernelEvents(ex, { kinds: ['fault'] }).map((e) => e.fn)).toContain('force_sig_fault')
    expect(ex.final.regs).toEqual([null])
  })
})
