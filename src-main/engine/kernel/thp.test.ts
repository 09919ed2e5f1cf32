/**
 * THP split and khugepaged collapse against the domain reference (§3.10, §3.12 rows THP
 * split/collapse, §5.8, rows 11-13, SC-10): v6.6 mm/huge_memory.c __split_huge_pmd /
 * __split_huge_pmd_locked / pmdp_invalidate, mm/khugepaged.c collapse_huge_page /
 * pmdp_collapse_flush / tlb_remove_table_sync_one, and the file/shmem collapse_and_free_pmd
 * before and after f268f6cf875f. Expectations come from the kernel source, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import type { EventKind } from '../results'
import { every, first, lines, runUnder, traced } from './traceTestkit'

const pol = (p: Preset) => makePolicy(p)
const KINDS: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame', 'info']

function scenario(opts: {
  mapped: 'pmd' | 'pte'
  kind?: 'anon' | 'file'
  arch?: string
  op: string
  sec?: string
  extra?: string
}) {
  return scenarioOf(
    `
      title: thp test
      arch: ${opts.arch ?? 'x86_64'}
      thp:
        H: { pages: [A, B], mapped: ${opts.mapped}, kind: ${opts.kind ?? 'anon'} }
      pages:
        A: { value: 1 }
        B: { value: 2 }
      secondary:
        - ${opts.sec ?? '{ name: iommu, type: hw-walker, cached: [A] }'}
      cpus:
        K: [${opts.op}]
      ${opts.extra ?? ''}
    `,
    'thp.test.yaml',
  )
}
const split = (extra = {}) => scenario({ mapped: 'pmd', op: 'thp_split H', ...extra })
const collapse = (extra = {}) => scenario({ mapped: 'pte', op: 'thp_collapse H', ...extra })

const SPLIT_HEAD = [
  'lock mmap_read_lock: take mmap_lock for read',
  'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
]
const INVALIDATE = [
  'lock pmd_lock: take the PMD lock',
  'pte pmdp_invalidate: PMD H := invalid (pmd_mkinvalid)',
  'cpu-flush flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
]
const POPULATE = [
  'pte pmd_populate: PMD H := the withdrawn PTE table, PTEs A,B -> pfns 1,2 (same pages)',
  'lock spin_unlock (pmd_lock): release the PMD lock',
]

describe('THP split: __split_huge_pmd -> pmdp_invalidate, same pages (v6.6; v4.15 only_end)', () => {
  it('start-end: the driver flushes at range_start and range_end; the 2 MiB entry goes at start', () => {
    const ex = traced(split(), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...SPLIT_HEAD,
      'sec-inval invalidate_range_start: iommu: invalidate A,B (2 entries dropped)',
      ...INVALIDATE,
      ...POPULATE,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('invalidate-range: v4.15 range_only_end and a non-_notify pmdp_invalidate: no invalidation at all', () => {
    const ex = traced(split(), pol('invalidate-range'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...SPLIT_HEAD,
      ...INVALIDATE,
      ...POPULATE,
      'notifier mmu_notifier_invalidate_range_only_end: A,B',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(every(ex, 'sec-inval')).toEqual([])
  })

  it('arch-hook: one invalidation, from the flush_tlb_range inside pmdp_invalidate, under pmd_lock', () => {
    const ex = traced(split(), pol('arch-hook'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...SPLIT_HEAD,
      ...INVALIDATE,
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (2 entries dropped)',
      ...POPULATE,
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'sec-inval arch_invalidate').locks).toEqual(['mmap_lock(r)', 'pmd_lock'])
    expect(first(ex, 'pte pmd_populate').locks).toEqual(['mmap_lock(r)', 'pmd_lock'])
  })

  it('arm64 arch-hook: the v6.6-v6.13 __flush_tlb_range empty range makes it an invalidate-all', () => {
    const ex = traced(split({ arch: 'arm64' }), pol('arch-hook'))
    expect(lines(ex, { kinds: ['notifier'] })).toContain(
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
    )
  })

  it('costs: invalidate-range < arch-hook < start-end, and KVM pays a zap and a refault', () => {
    const ns = (p: Preset) => runUnder(split(), p).metrics.sim_ns
    expect(ns('invalidate-range')).toBeLessThan(ns('arch-hook'))
    expect(ns('arch-hook')).toBeLessThan(ns('start-end'))
    const kvm = split({
      sec: '{ name: kvm, type: sw-mirror, cached: [A] }',
      extra: 'devices: { G0: { via: kvm, ops: [read B] } }',
    })
    for (const p of ['start-end', 'invalidate-range', 'arch-hook'] as const) {
      const r = runUnder(kvm, p)
      expect(r.verdict).toBe('holds')
      expect(r.metrics.mirror_zaps).toBe(2)
    }
  })

  it('a 2 MiB entry: a fill for A covers B, and a split keeps translating to the same pages', () => {
    const sc = split({ extra: 'devices: { D0: { via: iommu, ops: [read B] } }' })
    // D0 first: a hit on B through the entry cached for A.
    const ex = traced(sc, pol('invalidate-range'), [1])
    expect(every(ex, 'fill', { kinds: ['fill'] })).toEqual([])
    expect(ex.violations).toEqual([])
  })

  it('a walker that faults on the invalid PMD waits for pmd_lock, then retries', () => {
    const sc = split({
      sec: '{ name: iommu, type: hw-walker }',
      extra: 'devices: { D0: { via: iommu, ops: [read A] } }',
    })
    // K: start, rs, invalidate; then D0 walks the invalid PMD and faults.
    const ex = traced(sc, pol('arch-hook'), [0, 0, 0, 1, 1])
    expect(() => traced(sc, pol('arch-hook'), [0, 0, 0, 1, 1, 1])).toThrow(
      'D0 cannot run at step 5: pmd_lock held (huge PMD being split)',
    )
    expect(ex.violations).toEqual([])
    const evs = lines(ex, { thread: 'D0', kinds: ['fault', 'fill'] })
    expect(evs[0]).toBe('fault iopf (page request): read A: walk finds an invalid huge PMD')
    expect(evs).toContain('fault handle_mm_fault: A: the huge PMD changed (split or collapsed), retry')
    expect(evs[evs.length - 1]).toBe('fill IOMMU page walk: iommu TLB A -> pfn 1 RW')
  })
})

const COLLAPSE_HEAD = [
  'frame alloc_charge_hpage: allocate pfn 3 (gen 1)',
  'frame alloc_charge_hpage: allocate pfn 4 (gen 1)',
  'lock mmap_write_lock: take mmap_lock for write',
]
const COLLAPSE_FLUSH = [
  'lock pmd_lock: take the PMD lock',
  'pte pmdp_collapse_flush: PMD H := none (the PTE table is detached, its PTEs still map pfns 1,2)',
  'cpu-flush flush_tlb_range (pmdp_collapse_flush): flush CPU TLBs: A,B',
]
const ANON_TAIL = [
  'info tlb_remove_table_sync_one: IPI to all CPUs: no GUP-fast walk is in flight',
  'lock pte_offset_map_lock (the detached table): take the page-table lock',
  'info __collapse_huge_page_isolate: isolate the pages of H',
  // trylock_page and isolate_lru_page of each old page (held until the copy succeeded).
  'lock __collapse_huge_page_isolate: trylock_page: lock the folio pfn 1 (A)',
  'frame __collapse_huge_page_isolate: isolate_lru_page: pfn 1 off the LRU',
  'lock __collapse_huge_page_isolate: trylock_page: lock the folio pfn 2 (B)',
  'frame __collapse_huge_page_isolate: isolate_lru_page: pfn 2 off the LRU',
  'lock pte_unmap_unlock: release the page-table lock',
  'lock anon_vma_unlock_write: release the anon_vma lock',
  'frame __collapse_huge_page_copy: copy pfns 1,2 -> pfns 3,4',
  'lock __collapse_huge_page_copy_succeeded: spin_lock(ptl): take the page-table lock',
  "pte ptep_clear: the detached table's PTEs A,B := none",
  'lock pte_unmap_unlock: release the page-table lock',
  'lock release_pte_page: folio_unlock: unlock the folio pfn 1 (A)',
  'frame release_pte_page: folio_putback_lru: pfn 1 back on the LRU',
  'frame page_remove_rmap: pfn 1 mapcount 0',
  'frame free_page_and_swap_cache: free pfn 1 (gen 1)',
  'lock release_pte_page: folio_unlock: unlock the folio pfn 2 (B)',
  'frame release_pte_page: folio_putback_lru: pfn 2 back on the LRU',
  'frame page_remove_rmap: pfn 2 mapcount 0',
  'frame free_page_and_swap_cache: free pfn 2 (gen 1)',
  'lock pmd_lock: take the PMD lock',
  'info pgtable_trans_huge_deposit: deposit the emptied PTE table under the huge PMD',
  'pte set_pmd_at: PMD H := huge page pfns 3,4 RW dirty',
  'lock spin_unlock (pmd_lock): release the PMD lock',
  'lock mmap_write_unlock: release mmap_lock',
]

describe('anon collapse: collapse_huge_page (v6.6 mm/khugepaged.c)', () => {
  const head = [
    ...COLLAPSE_HEAD,
    'lock anon_vma_lock_write: take the anon_vma lock for write',
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
  ]
  it('start-end: range_start, pmdp_collapse_flush, range_end, the IPI, isolate, copy, free, set_pmd_at', () => {
    const ex = traced(collapse(), pol('start-end'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...head,
      'sec-inval invalidate_range_start: iommu: invalidate A,B (1 entry dropped)',
      ...COLLAPSE_FLUSH,
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval invalidate_range_end: iommu: invalidate A,B (0 entries dropped)',
      ...ANON_TAIL,
    ])
    expect(first(ex, 'pte pmdp_collapse_flush').locks).toEqual(['mmap_lock(w)', 'anon_vma(w)', 'pmd_lock'])
    expect(first(ex, 'pte ptep_clear').locks).toEqual([
      'mmap_lock(w)',
      'folio_lock(A)',
      'folio_lock(B)',
      'ptl',
    ])
    expect(first(ex, 'pte set_pmd_at').locks).toEqual(['mmap_lock(w)', 'pmd_lock'])
  })

  it('invalidate-range: ->invalidate_range at range_end, before the copy frees the old pages', () => {
    const ex = traced(collapse(), pol('invalidate-range'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...head,
      ...COLLAPSE_FLUSH,
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (1 entry dropped)',
      ...ANON_TAIL,
    ])
  })

  it('arch-hook: the hook inside pmdp_collapse_flush, under pmd_lock', () => {
    const ex = traced(collapse(), pol('arch-hook'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...head,
      ...COLLAPSE_FLUSH,
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A,B (1 entry dropped)',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      ...ANON_TAIL,
    ])
    expect(first(ex, 'sec-inval arch_invalidate').locks).toEqual(['mmap_lock(w)', 'anon_vma(w)', 'pmd_lock'])
  })

  it('gup_fast_ipi: false removes tlb_remove_table_sync_one', () => {
    const ex = traced(collapse({ extra: 'kernel: { gup_fast_ipi: false }' }), pol('arch-hook'))
    const ls = lines(ex, { kinds: ['info'] })
    expect(ls).toContain('info collapse: before 2ba99c5e0881: no tlb_remove_table_sync_one()')
    expect(ls.some((l) => l.startsWith('info tlb_remove_table_sync_one'))).toBe(false)
  })

  it('walk caches: a non-leaf invalidation drops the cached PTE table, a leaf-only one keeps it', () => {
    for (const [sec, kept] of [
      ['{ name: smmu, type: hw-walker, walk_cache: true }', false],
      ['{ name: smmu, type: hw-walker, walk_cache: true, leaf_only: true }', true],
    ] as const) {
      const sc = collapse({ arch: 'arm64', sec, extra: 'devices: { D0: { via: smmu, ops: [read A] } }' })
      // D0 walks first (and caches the table), then the collapse runs to the end.
      const ex = traced(sc, pol('arch-hook'), [1])
      expect(lines(ex, { thread: 'D0', kinds: ['fill'] })).toContain(
        'fill IOMMU page walk: smmu walk cache: PMD -> the PTE table of H',
      )
      const inv = lines(ex, { thread: 'K', kinds: ['sec-inval'] })
      expect(inv).toContain(
        kept
          ? 'sec-inval arch_invalidate_secondary_tlbs: smmu: leaf-only invalidation: the walk cache keeps the PTE table'
          : 'sec-inval arch_invalidate_secondary_tlbs: smmu: non-leaf invalidation: drop the walk-cache entry for the PTE table',
      )
      expect(ex.final.secs[0]!.wc).toEqual([kept])
    }
  })
})

describe('file/shmem collapse: collapse_and_free_pmd (v6.1) before and after f268f6cf875f', () => {
  const fixedMid = [
    'lock spin_unlock (pmd_lock): release the PMD lock',
    'info tlb_remove_table_sync_one: IPI to all CPUs: no GUP-fast walk is in flight',
    'notifier mmu_notifier_invalidate_range_end: A,B',
  ]
  const tail = [
    'frame pte_free: free the PTE page-table page of H',
    'frame __collapse_huge_page_copy: copy pfns 1,2 -> pfns 3,4',
    'frame page_remove_rmap: pfn 1 mapcount 0',
    'frame collapse_file: xas_store: A: the page cache slot moves from pfn 1 to pfn 3',
    'frame folio_put (old page-cache page): free pfn 1 (gen 1)',
    'frame page_remove_rmap: pfn 2 mapcount 0',
    'frame collapse_file: xas_store: B: the page cache slot moves from pfn 2 to pfn 4',
    'frame folio_put (old page-cache page): free pfn 2 (gen 1)',
    'lock pmd_lock: take the PMD lock',
    'pte do_set_pmd (next fault, condensed): PMD H := huge page pfns 3,4 RW dirty',
    'lock spin_unlock (pmd_lock): release the PMD lock',
    'lock mmap_write_unlock: release mmap_lock',
  ]
  it('with the fix: range_start, pmdp_collapse_flush, the IPI, range_end, then pte_free', () => {
    const ex = traced(collapse({ kind: 'file' }), pol('invalidate-range'))
    expect(lines(ex, { kinds: KINDS })).toEqual([
      ...COLLAPSE_HEAD,
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      ...COLLAPSE_FLUSH,
      ...fixedMid,
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A,B (1 entry dropped)',
      ...tail,
    ])
  })

  it('before the fix (collapse_notify: false): no notifier at all; only the arch hook in the CPU flush', () => {
    const sc = collapse({ kind: 'file', extra: 'kernel: { collapse_notify: false }' })
    for (const p of ['start-end', 'invalidate-range'] as const)
      expect(lines(traced(sc, pol(p)), { kinds: ['notifier', 'sec-inval'] })).toEqual([])
    expect(lines(traced(sc, pol('arch-hook')), { kinds: ['notifier'] })).toEqual([
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
    ])
  })

  it('the IPI waits for a GUP-fast walker between its PMD and PTE reads', () => {
    const sc = collapse({
      kind: 'file',
      sec: '{ name: kvm, type: sw-mirror }',
      extra: 'devices: { G0: { via: kvm, ops: [read A] } }',
    })
    // K: start, lock, rs; G0: mirror fault, GUP-fast's PMD read; K: pmdp_collapse_flush; then
    // the IPI cannot return until G0 leaves its IRQs-off section.
    const ex = traced(sc, pol('arch-hook'), [0, 0, 0, 1, 1, 0])
    expect(() => traced(sc, pol('arch-hook'), [0, 0, 0, 1, 1, 0, 0])).toThrow(
      'K cannot run at step 6: tlb_remove_table_sync_one: IPI waits for a GUP-fast walker (IRQs off)',
    )
    expect(ex.violations).toEqual([])
    const k = lines(ex, { kinds: ['info', 'frame'] })
    const gupPte = k.indexOf('info gup_pmd_range: A: PMD -> PTE table (IRQs off)')
    const ipi = k.indexOf('info tlb_remove_table_sync_one: IPI to all CPUs: no GUP-fast walk is in flight')
    const free = k.indexOf('frame pte_free: free the PTE page-table page of H')
    expect(gupPte).toBeGreaterThanOrEqual(0)
    expect(gupPte).toBeLessThan(ipi)
    expect(ipi).toBeLessThan(free)
  })
})

describe('mprotect of a huge page (v6.6 change_huge_pmd; split_vma -> split_huge_pmd_address)', () => {
  const mp = (op: string, dev = 'signal x', extra = '', arch = 'x86_64') =>
    scenarioOf(
      `
        title: thp mprotect
        arch: ${arch}
        thp:
          H: [A, B]
        pages:
          A: { value: 1 }
          B: { value: 2 }
        secondary:
          - { name: iommu, type: hw-walker, cached: [A]${extra} }
        cpus:
          C0: [${op}]
        devices:
          D0: { via: iommu, ops: [${dev}] }
      `,
      'thp-mprotect.test.yaml',
    )
  const K: readonly EventKind[] = ['lock', 'pte', 'cpu-flush', 'notifier']

  it('the whole huge page on x86: range_start, pmd_lock, pmdp_invalidate_ad (no flush: x86 overrides it), set_pmd_at, unlock, range_end, the gather flush', () => {
    const ex = traced(mp('mprotect A B ro'), pol('start-end'))
    expect(lines(ex, { thread: 'C0', kinds: K })).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A,B',
      'lock pmd_lock: take the PMD lock',
      'pte pmdp_invalidate_ad: PMD H := invalid (pmd_mkinvalid)',
      'pte set_pmd_at: PMD H := huge RO',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      'lock mmap_write_unlock: release mmap_lock',
    ])
    expect(ex.final.mms[0]!.ptes.map((p) => p && [p.huge, p.write])).toEqual([
      [true, false],
      [true, false],
    ])
  })

  it('arch-hook on arm64: the secondary hook fires inside the generic pmdp_invalidate_ad (flush_pmd_tlb_range), under the PMD lock', () => {
    const ex = traced(mp('mprotect A B ro', 'signal x', '', 'arm64'), pol('arch-hook'))
    const l = lines(ex, { thread: 'C0', kinds: ['lock', 'pte', 'cpu-flush', 'sec-inval'] })
    const inv = l.indexOf('pte pmdp_invalidate_ad: PMD H := invalid (pmd_mkinvalid)')
    expect(l[inv + 1]).toBe(
      'cpu-flush flush_tlb_range (pmdp_invalidate_ad -> flush_pmd_tlb_range): flush CPU TLBs: A,B',
    )
    expect(l[inv + 2]).toMatch(
      /^sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate .*\(2 entries dropped\)$/,
    )
    expect(l.indexOf('lock spin_unlock (pmd_lock): release the PMD lock')).toBeGreaterThan(inv + 2)
  })

  it('arch-hook on x86: no flush under the PMD lock (arch/x86/mm/pgtable.c pmdp_invalidate_ad: "No flush is necessary"); the hook fires at the gather flush', () => {
    const ex = traced(mp('mprotect A B ro'), pol('arch-hook'))
    const l = lines(ex, { thread: 'C0', kinds: ['lock', 'cpu-flush', 'sec-inval'] })
    expect(l.filter((x) => x.startsWith('cpu-flush'))).toEqual([
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
    ])
    const unlock = l.indexOf('lock spin_unlock (pmd_lock): release the PMD lock')
    const hook = l.findIndex((x) => x.startsWith('sec-inval arch_invalidate_secondary_tlbs'))
    expect(unlock).toBeGreaterThanOrEqual(0)
    expect(hook).toBeGreaterThan(unlock)
  })

  it('part of it: split_vma splits the PMD (its own MMU_NOTIFY_CLEAR pair) before vm_flags and the PROTECTION_VMA range', () => {
    const ex = traced(mp('mprotect A ro'), pol('start-end'))
    const l = lines(ex, { thread: 'C0', kinds: ['notifier', 'pte', 'info'] })
    // Each line found after the one before it: the whole list appears in this order.
    let from = 0
    const idx = (prefix: string) => {
      const i = l.findIndex((x, k) => k >= from && x.startsWith(prefix))
      from = i + 1
      return i
    }
    const order = [
      'info split_vma: A is part of huge page H',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A,B',
      'pte pmdp_invalidate: PMD H := invalid',
      'pte pmd_populate: PMD H := the withdrawn PTE table',
      'notifier mmu_notifier_invalidate_range_end: A,B',
      'info mprotect_fixup: vm_flags of A := ro',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A',
      'pte ptep_modify_prot_commit: PTE A := pfn 1 RO dirty',
      'notifier mmu_notifier_invalidate_range_end: A',
    ].map(idx)
    expect(order.every((x) => x >= 0)).toBe(true)
    expect(l[order[order.length - 1]!]).toBe('notifier mmu_notifier_invalidate_range_end: A')
    expect(ex.final.mms[0]!.ptes[1]).toMatchObject({ pfn: 2, present: true, write: true })
  })

  it('a start-only driver: the device refills before change_huge_pmd and writes after the return; the other presets hold', () => {
    const s = mp('mprotect A B ro', 'write A 7, write B 8', ', flush_at: start')
    expect(runUnder(s, 'start-end').invariants['stale-after-return']).toBe('violated')
    for (const p of ['invalidate-range', 'arch-hook'] as const) expect(runUnder(s, p).verdict).toBe('holds')
  })
})
