/**
 * IOMMU walk caches without a huge page: the PTE page that munmap frees (reference §3.4, §5.8).
 * v6.6 mm/mmap.c unmap_region(): unmap_vmas() (range_start, zap_pte_range, range_end), then
 * free_pgtables() (free_pte_range: pmd_clear + pte_free_tlb, which sets tlb->freed_tables and
 * records the PMD's first address), then tlb_finish_mmu() (mm/mmu_gather.c): the flush
 * (x86 flush_tlb_mm_range(..., freed_tables) with the v6.6 arch hook, arch/x86/mm/tlb.c; v4.15
 * ->invalidate_range from tlb_flush_mmu_tlbonly), and only then tlb_table_flush() frees the
 * page. v6.6 SVA drivers invalidate non-leaf (arm-smmu-v3-sva.c leaf=false, intel/svm.c ih=0),
 * which drops the walk cache; a leaf-only driver keeps a pointer to the freed page.
 * madvise(MADV_DONTNEED) frees no page table. Expectations come from that kernel sequence.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { lines, runUnder, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const PRESETS: readonly Preset[] = ['start-end', 'invalidate-range', 'arch-hook']
const KINDS: readonly EventKind[] = ['pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame', 'info']
const NON_LEAF = '{ name: iommu, type: hw-walker, walk_cache: true }'
const LEAF_ONLY = '{ name: iommu, type: hw-walker, walk_cache: true, leaf_only: true }'
const C0 = 0
const D0 = 1

function scenario(opts: { sec?: string; arch?: string; op?: string; ops?: string } = {}) {
  return scenarioOf(
    `
      title: walk cache test
      arch: ${opts.arch ?? 'x86_64'}
      pages:
        P: { value: 5, prot: rw }
      secondary:
        - ${opts.sec ?? NON_LEAF}
      cpus:
        C0: [${opts.op ?? 'munmap P'}]
      devices:
        D0: { via: iommu, ops: ${opts.ops ?? '[read P, read P]'} }
    `,
    'walkcache.test.yaml',
  )
}

const UNLINK =
  'info free_pgtables: no VMA left: free_pte_range: pmd_clear, pte_free_tlb (the PTE page is unlinked and queued in the mmu_gather; freed_tables = 1)'
const FREE = 'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed'
const DROP = (fn: string) =>
  `sec-inval ${fn}: iommu: non-leaf invalidation: drop the walk-cache entry for the PTE table`
const KEEP = (fn: string) =>
  `sec-inval ${fn}: iommu: leaf-only invalidation: the walk cache keeps the PTE table`
const FILL = 'fill IOMMU page walk: iommu walk cache: PMD -> the PTE page'

/** D0 walks first (caching the PMD's pointer to the PTE page), then munmap runs to the end. */
const walkFirst = (sc: ReturnType<typeof scenario>, p: Preset) => traced(sc, pol(p), [D0])

describe('munmap: free_pgtables unlinks the PTE page, tlb_finish_mmu flushes (freed_tables) and then frees it', () => {
  it('the device walk caches the PMD pointer', () => {
    const ex = walkFirst(scenario(), 'arch-hook')
    expect(lines(ex, { thread: 'D0', kinds: ['fill'] })[0]).toBe(FILL)
  })

  it('x86 arch-hook: the non-leaf hook fires in tlb_finish_mmu, after free_pgtables and before the free', () => {
    const ex = walkFirst(scenario(), 'arch-hook')
    expect(ex.violations).toEqual([])
    expect(lines(ex, { thread: 'C0', kinds: KINDS })).toEqual([
      'info vma_iter_clear_gfp: detach VMA(s) for P',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP P',
      'pte ptep_get_and_clear_full: PTE P := none',
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued for freeing',
      'notifier mmu_notifier_invalidate_range_end: P',
      UNLINK,
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      DROP('arch_invalidate_secondary_tlbs'),
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate P (1 entry dropped)',
      FREE,
      'frame tlb_batch_pages_flush: release 1 queued page',
      'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
    ])
    expect(ex.final.secs[0]!.wc).toBe(false)
    expect(ex.final.mms[0]!.pt).toBe(false)
    expect(ex.final.mms[0]!.tbl).toBeNull()
  })

  it('where each preset drops the walk cache: start-end at range_start, invalidate-range at range_end, arch-hook in tlb_finish_mmu', () => {
    const at = (p: Preset, arch = 'x86_64') => {
      const ls = lines(walkFirst(scenario({ arch }), p), { thread: 'C0', kinds: KINDS })
      const drop = ls.findIndex((l) => l.includes('non-leaf invalidation'))
      return { drop, unlink: ls.indexOf(UNLINK), free: ls.indexOf(FREE), line: ls[drop] }
    }
    const se = at('start-end')
    expect(se.line).toBe(DROP('invalidate_range_start'))
    expect(se.drop).toBeLessThan(se.unlink)
    const ir = at('invalidate-range')
    expect(ir.line).toBe(DROP('->invalidate_range (from range_end)'))
    expect(ir.drop).toBeLessThan(ir.unlink)
    const ah = at('arch-hook')
    expect(ah.unlink).toBeLessThan(ah.drop)
    expect(ah.drop).toBeLessThan(ah.free)
    // arm64: tlb_end_vma already flushed (and emptied the range) before range_end; pte_free_tlb's
    // range makes tlb_finish_mmu flush again, with freed_tables.
    const arm = lines(walkFirst(scenario({ arch: 'arm64' }), 'arch-hook'), { thread: 'C0', kinds: KINDS })
    expect(arm.slice(arm.indexOf(UNLINK))).toEqual([
      UNLINK,
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (0 entries dropped)',
      FREE,
      'frame tlb_batch_pages_flush: release 1 queued page',
      'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
    ])
  })

  it('invalidate-range: tlb_flush_mmu_tlbonly calls ->invalidate_range after free_pgtables, before the free', () => {
    const ls = lines(walkFirst(scenario(), 'invalidate-range'), { thread: 'C0', kinds: KINDS })
    const inv = ls.indexOf(
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate P (0 entries dropped)',
    )
    expect(ls.indexOf(UNLINK)).toBeLessThan(inv)
    expect(inv).toBeLessThan(ls.indexOf(FREE))
  })

  it('start-end: a walk between range_end and free_pgtables re-caches the PMD; nothing drops it before the free', () => {
    // C0: start, rs, zap start, pte, next_vma (range_end); D0 walks; C0: free_pgtables,
    // tlb_finish_mmu (flush, free); D0: page response, then the second read.
    const ex = traced(scenario(), pol('start-end'), [C0, C0, C0, C0, C0, D0, C0, C0, D0, D0, D0])
    expect(lines(ex, { thread: 'D0', kinds: ['fill'] })).toEqual([FILL])
    expect(ex.violations.map((v) => v.invariant)).toEqual(['use-after-free'])
    expect(ex.violations[0]!.message).toBe(
      "D0: iommu walks P through its walk-cache entry for the PTE page, but munmap's free_pgtables unlinked that page-table page and tlb_finish_mmu freed it (pte_free_tlb, freed_tables): the walk reads freed memory",
    )
    const same = traced(scenario(), pol('arch-hook'), [C0, C0, C0, C0, C0, D0, C0, C0, D0, D0, D0])
    expect(same.violations).toEqual([])
  })

  it('a walk through the cached pointer after free_pgtables and before the free reads the unlinked page (no PTE): no violation yet', () => {
    // D0 caches; C0 runs up to and including free_pgtables (range_start dropped the IOTLB entry,
    // leaf-only: the walk cache stays); D0 walks the unlinked page and faults.
    const ex = traced(scenario({ sec: LEAF_ONLY }), pol('start-end'), [D0, C0, C0, C0, C0, C0, C0, D0])
    expect(lines(ex, { thread: 'D0', kinds: ['info'] })).toContain(
      'info IOMMU walk cache: iommu: walk P through the cached PTE page, unlinked by free_pgtables and not yet freed (finds no PTE)',
    )
    expect(ex.violations.map((v) => v.step)).not.toContain(7)
  })
})

describe('leaf-only drivers keep the pointer to the freed PTE page', () => {
  it('every invalidation is leaf-only; the next walk reads freed memory', () => {
    for (const p of PRESETS) {
      const ex = walkFirst(scenario({ sec: LEAF_ONLY }), p)
      const inv = lines(ex, { thread: 'C0', kinds: ['sec-inval'] })
      expect(inv.some((l) => l.includes('non-leaf'))).toBe(false)
      expect(inv.some((l) => l.includes('leaf-only invalidation'))).toBe(true)
      expect(ex.violations.map((v) => v.invariant)).toEqual(['use-after-free'])
    }
    const ah = lines(walkFirst(scenario({ sec: LEAF_ONLY }), 'arch-hook'), { thread: 'C0', kinds: KINDS })
    expect(ah.indexOf(KEEP('arch_invalidate_secondary_tlbs'))).toBeGreaterThan(ah.indexOf(UNLINK))
  })
})

describe('verdicts per preset (exhaustive)', () => {
  const verdicts = (sec: string, arch: string, op = 'munmap P') =>
    PRESETS.map((p) => {
      const sc = scenario({ sec, arch, op })
      const r = runUnder(sc, p)
      return r.verdict === 'holds'
        ? 'holds'
        : [...new Set(r.counterexamples.map((c) => c.invariant))].join(',')
    })

  for (const arch of ['x86_64', 'arm64']) {
    it(`${arch} munmap, v6.6 non-leaf drivers: start-end fails (walk cache refilled after range_end), the others hold`, () => {
      expect(verdicts(NON_LEAF, arch)).toEqual(['use-after-free', 'holds', 'holds'])
    })
    it(`${arch} munmap, leaf-only drivers: use-after-free everywhere`, () => {
      expect(verdicts(LEAF_ONLY, arch)).toEqual(['use-after-free', 'use-after-free', 'use-after-free'])
    })
    it(`${arch} madvise_dontneed frees no page table: holds everywhere, even leaf-only`, () => {
      expect(verdicts(NON_LEAF, arch, 'madvise_dontneed P')).toEqual(['holds', 'holds', 'holds'])
      expect(verdicts(LEAF_ONLY, arch, 'madvise_dontneed P')).toEqual(['holds', 'holds', 'holds'])
    })
  }
})

describe('madvise(MADV_DONTNEED) keeps the PTE page', () => {
  it('no free_pgtables; a leaf-only walk cache still points at the live PTE page', () => {
    const ex = walkFirst(scenario({ sec: LEAF_ONLY, op: 'madvise_dontneed P' }), 'arch-hook')
    const ls = lines(ex, { thread: 'C0', kinds: KINDS })
    expect(ls.some((l) => l.includes('free_pgtables') || l.includes('tlb_table_flush'))).toBe(false)
    expect(ex.final.mms[0]!.pt).toBe(true)
    expect(ex.final.mms[0]!.tbl).toBeNull()
    expect(ex.final.secs[0]!.wc).toBe(true)
    expect(ex.violations).toEqual([])
  })
})

describe('scenarios without a walk cache run the same v6.6 munmap sequence', () => {
  it('free_pgtables unlinks the PTE page; tlb_finish_mmu flushes again (freed_tables) and then frees it', () => {
    const ex = traced(
      scenario({ sec: '{ name: iommu, type: hw-walker, cached: [P] }', arch: 'arm64' }),
      pol('arch-hook'),
    )
    const ls = lines(ex, { thread: 'C0', kinds: KINDS })
    expect(ls.some((l) => l.startsWith('info free_pgtables: no VMA left: free_pte_range'))).toBe(true)
    expect(ls).toContain(FREE)
    expect(ls.filter((l) => l.startsWith('cpu-flush'))).toEqual([
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: P',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
    ])
    expect(ls.indexOf(FREE)).toBeGreaterThan(
      ls.indexOf('cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P'),
    )
  })
})

describe('state diffs show the PTE page', () => {
  it('linked -> unlinked by free_pgtables -> freed', () => {
    const ex = walkFirst(scenario(), 'arch-hook')
    const diffs = ex.records.flatMap((r) => r.changes).filter((d) => d.startsWith('PTE page:'))
    expect(diffs).toEqual([
      'PTE page: linked in the PMD -> unlinked by free_pgtables, not yet freed',
      'PTE page: unlinked by free_pgtables, not yet freed -> none (freed)',
    ])
  })
})
