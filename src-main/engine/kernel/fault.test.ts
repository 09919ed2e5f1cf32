/**
 * Page-fault sequences against the domain reference (§1.8, §2, §3.1, §3.2): wp_page_copy,
 * wp_page_reuse, the handle_pte_fault dirty update and the spurious-fault fixup, under each
 * notifier policy. Expectations come from the reference, not from the code.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset, type Variant } from '../policy'
import { first, kernelEvents, lines, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'fault.test.yaml')
const pol = (p: Preset, vs: Variant[] = []) => makePolicy(p, vs)

const MMAP_R = ['mmap_lock(r)']
const MMAP_R_PTL = ['mmap_lock(r)', 'ptl']

// ---- §3.1 COW write fault: wp_page_copy() ---------------------------------------------------

function cowScenario(arch: string) {
  return load(`
    title: COW write fault on a page shared with the fork child
    arch: ${arch}
    pages:
      P: { value: 5, prot: rw, cow: true }
    secondary:
      - { name: iommu, type: hw-walker, cached: [P] }
    cpus:
      C0: [cow_fault P]
  `)
}

/** do_wp_page(): folio_get + unlock; wp_page_copy() step 1: allocate and copy with no lock but mmap_lock. */
const COW_PROLOGUE = [
  'lock mmap_read_lock: take mmap_lock for read',
  'lock pte_offset_map_lock: take the page-table lock',
  'lock pte_unmap_unlock: release the page-table lock',
  'frame wp_page_copy (alloc + __wp_page_copy_user): allocate pfn 2 (gen 1)',
]

describe('wp_page_copy (reference §3.1)', () => {
  it('start-end: RS -> PTL -> ptep_clear_flush (CPU flush under PTL) -> set_pte_at_notify -> unlock -> RE; the hw walker hears only start/end', () => {
    const ex = traced(cowScenario('x86_64'), pol('start-end'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...COW_PROLOGUE,
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'sec-inval invalidate_range_start: iommu: invalidate P (1 entry dropped)',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush: PTE P := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
      'pte set_pte_at_notify: PTE P := pfn 2 RW dirty',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: P',
      'sec-inval invalidate_range_end: iommu: invalidate P (0 entries dropped)',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    // §1.6: start/end are never called under the PTL; the clear and its flush are.
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_start').locks).toEqual(MMAP_R)
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_end').locks).toEqual(MMAP_R)
    expect(first(ex, 'pte ptep_clear_flush').locks).toEqual(MMAP_R_PTL)
    expect(first(ex, 'cpu-flush flush_tlb_page').locks).toEqual(MMAP_R_PTL)
    expect(first(ex, 'pte set_pte_at_notify').locks).toEqual(MMAP_R_PTL)
  })

  it('invalidate-range: ->invalidate_range under the PTL right after the clear (ptep_clear_flush_notify), then _only_end with no second one', () => {
    const ex = traced(cowScenario('x86_64'), pol('invalidate-range'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...COW_PROLOGUE,
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'lock pte_offset_map_lock: take the page-table lock',
      // v4.15 wp_page_copy: ptep_clear_flush_notify() (ptep_clear_flush, then the notifier).
      'pte ptep_clear_flush_notify: PTE P := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
      'notifier mmu_notifier_invalidate_range: ptep_clear_flush_notify: P',
      'sec-inval ->invalidate_range (ptep_clear_flush_notify): iommu: invalidate P (1 entry dropped)',
      'pte set_pte_at_notify: PTE P := pfn 2 RW dirty',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_only_end: P',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'notifier mmu_notifier_invalidate_range:').locks).toEqual(MMAP_R_PTL)
    expect(first(ex, 'sec-inval ->invalidate_range').locks).toEqual(MMAP_R_PTL)
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_only_end').locks).toEqual(MMAP_R)
  })

  it('arch-hook (x86): the hook runs inside flush_tlb_page under the PTL, for the one page; nothing at range_end', () => {
    const ex = traced(cowScenario('x86_64'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...COW_PROLOGUE,
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush: PTE P := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate P (1 entry dropped)',
      'pte set_pte_at_notify: PTE P := pfn 2 RW dirty',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: P',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs').locks).toEqual(MMAP_R_PTL)
    expect(first(ex, 'sec-inval arch_invalidate_secondary_tlbs').locks).toEqual(MMAP_R_PTL)
  })

  it('arch-hook (arm64): __flush_tlb_page_nosync passes one page, under the PTL', () => {
    const ex = traced(cowScenario('arm64'), pol('arch-hook'))
    const ls = lines(ex)
    const clear = ls.indexOf('pte ptep_clear_flush: PTE P := none')
    expect(ls.slice(clear, clear + 5)).toEqual([
      'pte ptep_clear_flush: PTE P := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate P (1 entry dropped)',
      'pte set_pte_at_notify: PTE P := pfn 2 RW dirty',
    ])
    expect(first(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs').locks).toEqual(MMAP_R_PTL)
  })

  it('step 9: both folio_put()s of the old page come after range_end; the fork child still maps it, so it is not freed', () => {
    for (const p of ['start-end', 'invalidate-range', 'arch-hook'] as const) {
      const ex = traced(cowScenario('x86_64'), pol(p))
      expect(kernelEvents(ex).filter((e) => e.kind === 'frame' && e.text.startsWith('free'))).toEqual([])
      const old = ex.final.frames[1]!
      // ref: 2 (parent + child PTE) + 1 (do_wp_page folio_get) - 2 (PTE ref, fault ref) = 1.
      expect(old).toMatchObject({ free: false, ref: 1, map: 1 })
      expect(ex.final.mms[1]!.ptes[0]).toMatchObject({ pfn: 1, write: false })
      expect(ex.final.mms[0]!.ptes[0]).toEqual({ pfn: 2, present: true, write: true, dirty: true })
    }
  })

  it('step 9: with no other reference left (the child unmapped meanwhile) the old page is freed right after range_end', () => {
    const sc = load(`
      title: the child unmaps the shared page while the parent is copying it
      arch: x86_64
      pages:
        P: { value: 5, prot: rw, cow: true }
      secondary:
        - { name: iommu, type: hw-walker, cached: [P] }
      cpus:
        C0: [cow_fault P]
        K: { mm: child, ops: [munmap P] }
    `)
    // C0: fault entry, do_wp_page (folio_get, unlock, copy); then K's whole munmap (7 steps,
    // free_pgtables separate from tlb_finish_mmu); then C0.
    const ex = traced(sc, pol('arch-hook'), [0, 0, 1, 1, 1, 1, 1, 1, 1])
    expect(ex.violations).toEqual([])
    const ls = lines(ex, { thread: 'C0' })
    expect(ls.slice(ls.indexOf('notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P'))).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush: PTE P := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate P (1 entry dropped)',
      'pte set_pte_at_notify: PTE P := pfn 2 RW dirty',
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: P',
      'frame folio_put: free pfn 1 (gen 1)',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'frame folio_put: free pfn 1').locks).toEqual(MMAP_R)
    expect(ex.final.frames[1]!.free).toBe(true)
  })

  it('zero-page COW takes the same path: ->invalidate_range under the PTL between clear and set (Glisse case B), only_end', () => {
    const sc = load(`
      title: write after a read fault mapped the zero page
      arch: arm64
      pages:
        Z: { value: 0, prot: rw, mapped: none }
      secondary:
        - { name: iommu, type: hw-walker }
      cpus:
        C0: [read Z -> r0, cow_fault Z]
    `)
    const ex = traced(sc, pol('invalidate-range'))
    expect(ex.violations).toEqual([])
    const f = { op: 'C0: cow_fault Z', kinds: ['lock', 'pte', 'cpu-flush', 'notifier', 'sec-inval'] } as const
    expect(lines(ex, f)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR Z',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush_notify: PTE Z := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: Z',
      'notifier mmu_notifier_invalidate_range: ptep_clear_flush_notify: Z',
      'sec-inval ->invalidate_range (ptep_clear_flush_notify): iommu: invalidate Z (0 entries dropped)',
      'pte set_pte_at_notify: PTE Z := pfn 1 RW dirty',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_only_end: Z',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'fault do_wp_page', { kinds: ['fault'] }).text).toBe('zero page: wp_page_copy')
  })
})

// ---- §3.2 wp_page_reuse() and the handle_pte_fault() dirty update ---------------------------

function upgradeScenario(arch: string, mapped: 'ro' | 'clean' | 'rw') {
  return load(`
    title: write fault on an exclusive present page
    arch: ${arch}
    pages:
      P: { value: 5, prot: rw, mapped: ${mapped} }
    secondary:
      - { name: smmu, type: hw-walker, cached: [P] }
    cpus:
      C0: [write_fault P]
  `)
}

const PRESETS = ['start-end', 'invalidate-range', 'arch-hook'] as const

describe('wp_page_reuse (reference §3.2)', () => {
  const ARM64_BASE = [
    'lock mmap_read_lock: take mmap_lock for read',
    'lock pte_offset_map_lock: take the page-table lock',
    'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
    'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
    'lock pte_unmap_unlock: release the page-table lock',
    'lock mmap_read_unlock: release mmap_lock',
  ]
  const X86 = [
    'lock mmap_read_lock: take mmap_lock for read',
    'lock pte_offset_map_lock: take the page-table lock',
    'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
    'lock pte_unmap_unlock: release the page-table lock',
    'lock mmap_read_unlock: release mmap_lock',
  ]

  it('takes the reuse path (exclusive page), not wp_page_copy', () => {
    const ex = traced(upgradeScenario('arm64', 'ro'), pol('arch-hook'))
    expect(kernelEvents(ex, { kinds: ['fault'] }).map((e) => `${e.fn}: ${e.text}`)).toEqual([
      'handle_mm_fault: write fault on P',
      'do_wp_page: page is exclusive: wp_page_reuse',
    ])
  })

  it('arm64 start-end and invalidate-range: ptep_set_access_flags flushes the CPU TLB (dirty=1) under the PTL, and no notifier at all', () => {
    for (const p of ['start-end', 'invalidate-range'] as const) {
      const ex = traced(upgradeScenario('arm64', 'ro'), pol(p))
      expect(lines(ex)).toEqual(ARM64_BASE)
      expect(first(ex, 'cpu-flush flush_tlb_page').locks).toEqual(MMAP_R_PTL)
      // The SMMU keeps its read-only entry: nothing told it.
      expect(ex.final.secs[0]!.entries).toEqual([expect.objectContaining({ page: 0, write: false })])
    }
  })

  it('arm64 arch-hook: the flush_tlb_page in ptep_set_access_flags invalidates the secondary, under the PTL', () => {
    const ex = traced(upgradeScenario('arm64', 'ro'), pol('arch-hook'))
    expect(lines(ex)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate P (1 entry dropped)',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs').locks).toEqual(MMAP_R_PTL)
    expect(ex.final.secs[0]!.entries).toEqual([])
  })

  it('x86: ptep_set_access_flags does not flush, so no arch hook either, under every preset', () => {
    for (const p of PRESETS) {
      const ex = traced(upgradeScenario('x86_64', 'ro'), pol(p))
      expect(lines(ex)).toEqual(X86)
    }
  })

  it('upgrade-notify (Popple v1) does not cover do_wp_page -> wp_page_reuse: the trace is unchanged', () => {
    for (const arch of ['arm64', 'x86_64']) {
      for (const p of PRESETS) {
        const base = lines(traced(upgradeScenario(arch, 'ro'), pol(p)))
        const ex = traced(upgradeScenario(arch, 'ro'), pol(p, ['upgrade-notify']))
        expect(lines(ex)).toEqual(base)
        expect(lines(ex).filter((l) => l.includes('invalidate_range_start'))).toEqual([])
      }
    }
  })

  it('access-flags-notify under invalidate-range: ->invalidate_range-class call under the PTL when the PTE changed', () => {
    const arm = traced(upgradeScenario('arm64', 'ro'), pol('invalidate-range', ['access-flags-notify']))
    expect(lines(arm)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
      'notifier ptep_set_access_flags_notify: P',
      'sec-inval ptep_set_access_flags_notify: smmu: invalidate P (1 entry dropped)',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(arm, 'notifier ptep_set_access_flags_notify').locks).toEqual(MMAP_R_PTL)
    expect(first(arm, 'sec-inval ptep_set_access_flags_notify').locks).toEqual(MMAP_R_PTL)

    const x86 = traced(upgradeScenario('x86_64', 'ro'), pol('invalidate-range', ['access-flags-notify']))
    expect(lines(x86)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'notifier ptep_set_access_flags_notify: P',
      'sec-inval ptep_set_access_flags_notify: smmu: invalidate P (1 entry dropped)',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })
})

describe('handle_pte_fault dirty update of a writable clean PTE (reference §3.2)', () => {
  it('arm64: ptep_set_access_flags(dirty) flushes and, under arch-hook, invalidates the secondary under the PTL; no range', () => {
    const ex = traced(upgradeScenario('arm64', 'clean'), pol('arch-hook'))
    expect(lines(ex)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate P (1 entry dropped)',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'cpu-flush flush_tlb_page').locks).toEqual(MMAP_R_PTL)
    expect(kernelEvents(ex, { kinds: ['fault'] }).map((e) => e.fn)).toEqual(['handle_mm_fault'])
  })

  it('arm64 start-end: the CPU flush alone, no notifier', () => {
    const ex = traced(upgradeScenario('arm64', 'clean'), pol('start-end'))
    expect(lines(ex)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('upgrade-notify: range_start/end(MMU_NOTIFY_PROTECTION_UPGRADE) after the PTL is released', () => {
    const ex = traced(upgradeScenario('arm64', 'clean'), pol('start-end', ['upgrade-notify']))
    expect(lines(ex)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_UPGRADE P',
      'sec-inval invalidate_range_start: smmu: invalidate P (1 entry dropped)',
      'notifier mmu_notifier_invalidate_range_end: P',
      'sec-inval invalidate_range_end: smmu: invalidate P (0 entries dropped)',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_start').locks).toEqual(MMAP_R)
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_end').locks).toEqual(MMAP_R)
  })

  it('upgrade-notify under arch-hook: the hook fires inside the flush under the PTL, then start/end after unlock (arch-hook drivers ignore start/end)', () => {
    const ex = traced(upgradeScenario('arm64', 'clean'), pol('arch-hook', ['upgrade-notify']))
    expect(lines(ex)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate P (1 entry dropped)',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_UPGRADE P',
      'notifier mmu_notifier_invalidate_range_end: P',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('x86: no flush and so no arch hook', () => {
    const ex = traced(upgradeScenario('x86_64', 'clean'), pol('arch-hook'))
    expect(lines(ex)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('a spurious write fault on an already RW+dirty PTE changes nothing: flush_tlb_fix_spurious_fault is a no-op on arm64, so no invalidation even under arch-hook', () => {
    const ex = traced(upgradeScenario('arm64', 'rw'), pol('arch-hook'))
    expect(lines(ex)).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })
})
