/**
 * Each notification site (policy.ts SITES) on its own: the policy of that one site against the
 * empty policy, on a scenario whose kernel sequence reaches it. The site adds exactly its
 * notifier call and invalidations, at its kernel position (right after the anchor line named
 * for it: the clear, the CPU flush, the unlock), with the locks the kernel holds there.
 * Positions come from the kernel sources each site's doc cites.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { sitePolicy, SITE_NAMES, type Site } from '../policy'
import type { Scenario } from '../types'
import { kernelEvents, line, lines, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'sites.test.yaml')

const COW = load(`
  title: COW write fault
  arch: x86_64
  pages:
    P: { value: 5, prot: rw, cow: true }
  secondary:
    - { name: iommu, type: hw-walker, cached: [P] }
  cpus:
    C0: [cow_fault P]
`)
const MUNMAP = load(`
  title: munmap
  arch: x86_64
  pages:
    P: { value: 5, prot: rw }
  secondary:
    - { name: iommu, type: hw-walker, cached: [P] }
  cpus:
    C0: [munmap P]
`)
const RECLAIM = load(`
  title: reclaim to swap, x86 batched flush
  arch: x86_64
  pages:
    P: { value: 5, prot: rw }
  secondary:
    - { name: iommu, type: hw-walker, cached: [P] }
  cpus:
    kswapd: [reclaim P]
`)
const FORK = load(`
  title: fork write-protects the parent's PTE
  arch: x86_64
  pages:
    P: { value: 5, prot: rw }
  secondary:
    - { name: iommu, type: hw-walker, cached: [P] }
  cpus:
    C0: [fork]
`)
const upgrade = (mapped: 'ro' | 'clean') =>
  load(`
    title: write fault on an exclusive page
    arch: arm64
    pages:
      P: { value: 5, prot: rw, mapped: ${mapped} }
    secondary:
      - { name: smmu, type: hw-walker, cached: [P] }
    cpus:
      C0: [write_fault P]
  `)
const DEVICE_UPGRADE = load(`
  title: a device write through a cached read-only entry after the upgrade
  arch: arm64
  pages:
    P: { value: 0, prot: rw, mapped: ro }
  secondary:
    - { name: smmu, type: hw-walker, cached: [P] }
  cpus:
    C0: [write_fault P]
  devices:
    D0: { via: smmu, ops: [write P 7] }
`)
const vmalloc = (n: number) => {
  const names = Array.from({ length: n }, (_, i) => `K${i}`)
  return load(`
    title: a lazy purge of ${n} kernel pages
    arch: x86_64
    kernel_pages: { ${names.map((k) => `${k}: { value: 1 }`).join(', ')} }
    secondary:
      - { name: iommu, type: hw-walker, pasid: supervisor, cached: [K0] }
    cpus:
      C0: [${names.map((k) => `vfree ${k}`).join(', ')}, vmalloc K0]
  `)
}

const MMAP_R = ['mmap_lock(r)']
const MMAP_R_PTL = ['mmap_lock(r)', 'ptl']

interface Case {
  readonly site: Site
  readonly sc: Scenario
  /** The line the site's first event follows (its last occurrence). */
  readonly after: string
  /** What the site adds there, in order. */
  readonly adds: readonly string[]
  /** The locks the thread holds at the site. */
  readonly locks: readonly string[]
  /** Lines of the empty policy's trace the site renames (the v4.15 names of the calls). */
  readonly renames?: Readonly<Record<string, string>>
}

const CASES: readonly Case[] = [
  {
    site: 'invalidate_range_start',
    sc: COW,
    after: 'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
    adds: ['sec-inval invalidate_range_start: iommu: invalidate P (1 entry dropped)'],
    locks: MMAP_R,
  },
  {
    site: 'invalidate_range_end',
    sc: COW,
    after: 'notifier mmu_notifier_invalidate_range_end: P',
    adds: ['sec-inval invalidate_range_end: iommu: invalidate P (1 entry dropped)'],
    locks: MMAP_R,
  },
  {
    // munmap: do_vmi_align_munmap downgrades mmap_lock to read before unmap_region (v6.6).
    site: 'range_end',
    sc: MUNMAP,
    after: 'notifier mmu_notifier_invalidate_range_end: P',
    adds: ['sec-inval ->invalidate_range (from range_end): iommu: invalidate P (1 entry dropped)'],
    locks: MMAP_R,
  },
  {
    site: 'ptep_clear_flush_notify',
    sc: COW,
    after: 'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
    adds: [
      'notifier mmu_notifier_invalidate_range: ptep_clear_flush_notify: P',
      'sec-inval ->invalidate_range (ptep_clear_flush_notify): iommu: invalidate P (1 entry dropped)',
    ],
    locks: MMAP_R_PTL,
    renames: { 'pte ptep_clear_flush: PTE P := none': 'pte ptep_clear_flush_notify: PTE P := none' },
  },
  {
    site: 'tlb_flush_mmu_tlbonly',
    sc: MUNMAP,
    after: 'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
    adds: [
      'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: P',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate P (1 entry dropped)',
    ],
    locks: MMAP_R,
  },
  {
    site: 'try_to_unmap_one',
    sc: RECLAIM,
    after: 'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
    adds: [
      'notifier mmu_notifier_invalidate_range: try_to_unmap_one: P',
      'sec-inval ->invalidate_range (try_to_unmap_one): iommu: invalidate P (1 entry dropped)',
    ],
    // shrink_folio_list holds the folio lock across try_to_unmap.
    locks: ['folio_lock(P)', 'anon_vma(r)', 'ptl'],
  },
  {
    site: 'flush_tlb_page',
    sc: COW,
    after: 'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
    adds: [
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate P (1 entry dropped)',
    ],
    locks: MMAP_R_PTL,
  },
  {
    site: 'flush_tlb_range',
    sc: MUNMAP,
    after: 'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
    adds: [
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate P (1 entry dropped)',
    ],
    locks: MMAP_R,
  },
  {
    site: 'flush_tlb_mm',
    sc: FORK,
    after: 'cpu-flush flush_tlb_mm (dup_mmap): flush CPU TLBs: whole mm',
    adds: [
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entry dropped)',
    ],
    // dup_mmap: mmap_write_lock(oldmm) for the whole copy.
    locks: ['mmap_lock(w)'],
  },
  {
    site: 'arch_tlbbatch_add_pending',
    sc: RECLAIM,
    after: 'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
    adds: [
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entry dropped)',
    ],
    // shrink_folio_list holds the folio lock across try_to_unmap.
    locks: ['folio_lock(P)', 'anon_vma(r)', 'ptl'],
  },
  {
    site: 'ptep_set_access_flags',
    sc: upgrade('ro'),
    after: 'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
    adds: [
      'notifier ptep_set_access_flags_notify: P',
      'sec-inval ptep_set_access_flags_notify: smmu: invalidate P (1 entry dropped)',
    ],
    locks: MMAP_R_PTL,
  },
  {
    // Alone, the upgrade pair reaches no hw-walker: it flushes in start/end only at those sites.
    site: 'handle_pte_fault',
    sc: upgrade('clean'),
    after: 'lock pte_unmap_unlock: release the page-table lock',
    adds: [
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_UPGRADE P',
      'notifier mmu_notifier_invalidate_range_end: P',
    ],
    locks: MMAP_R,
  },
  {
    site: 'wp_page_reuse',
    sc: upgrade('ro'),
    after: 'lock pte_unmap_unlock: release the page-table lock',
    adds: [
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_UPGRADE P',
      'notifier mmu_notifier_invalidate_range_end: P',
    ],
    locks: MMAP_R,
  },
  {
    site: 'iommu_page_response',
    sc: DEVICE_UPGRADE,
    after: 'lock mmap_read_unlock: release mmap_lock',
    adds: [
      'sec-inval pri-flush: invalidate the faulting address before the response: smmu: invalidate P (1 entry dropped)',
    ],
    locks: [],
  },
  {
    site: 'flush_tlb_kernel_range',
    sc: vmalloc(1),
    after: "cpu-flush flush_tlb_kernel_range (__purge_vmap_area_lazy): flush every CPU's TLB: kernel K0",
    adds: [
      'notifier kernel_mmu_notifier: flush_tlb_kernel_range: K0',
      'sec-inval kernel MMU notifier (flush_tlb_kernel_range): iommu: invalidate K0 (1 entry dropped)',
    ],
    locks: [],
  },
  {
    site: 'flush_tlb_all',
    sc: vmalloc(34),
    after:
      "cpu-flush flush_tlb_all (flush_tlb_kernel_range (__purge_vmap_area_lazy)): flush every CPU's whole TLB",
    adds: [
      'notifier kernel_mmu_notifier: flush_tlb_all: all',
      'sec-inval kernel MMU notifier (flush_tlb_all): iommu: invalidate all (1 entry dropped)',
    ],
    locks: [],
  },
]

const NOTIFY = ['notifier', 'sec-inval'] as const

describe('each site alone adds its call at its kernel position', () => {
  it('every site has a case', () => {
    expect(CASES.map((c) => c.site)).toEqual([...SITE_NAMES])
  })

  for (const c of CASES) {
    it(c.site, () => {
      const none = traced(c.sc, sitePolicy([]))
      const one = traced(c.sc, sitePolicy([c.site]))
      // The empty set notifies no hw-walker anywhere (a start/end pair is a notifier line only).
      expect(lines(none, { kinds: ['sec-inval'] })).toEqual([])
      const got = lines(one)
      const at = got.lastIndexOf(c.after)
      expect(at, `'${c.after}' in\n${got.join('\n')}`).toBeGreaterThanOrEqual(0)
      expect(got.slice(at + 1, at + 1 + c.adds.length)).toEqual(c.adds)
      // Nothing else changes: the empty policy's lines plus the site's, in the same order.
      const base = lines(none).map((l) => c.renames?.[l] ?? l)
      expect(got.filter((l, i) => !(i > at && i <= at + c.adds.length))).toEqual(base)
      const ev = kernelEvents(one, { kinds: [...NOTIFY] }).find((e) => line(e) === c.adds[0])!
      expect(ev.locks).toEqual(c.locks)
    })
  }
})

describe('sites that need another site to reach a hw-walker', () => {
  it('range_end is skipped by _only_end (wp_page_copy): the call is named so and invalidates nothing', () => {
    const ex = traced(COW, sitePolicy(['range_end']))
    expect(lines(ex, { kinds: [...NOTIFY] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'notifier mmu_notifier_invalidate_range_only_end: P',
    ])
  })

  it('wp_page_reuse with the start/end sites: the smmu is flushed after the unlock (mmap_lock only)', () => {
    const ex = traced(
      upgrade('ro'),
      sitePolicy(['invalidate_range_start', 'invalidate_range_end', 'wp_page_reuse']),
    )
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
    expect(ex.final.secs[0]!.entries).toEqual([])
  })

  it("wp_page_shared (a file page): the pair comes after wp_page_reuse's unlock, with the folio still locked, before fault_dirty_shared_page", () => {
    const sc = load(`
      title: write fault on a read-only shared file page
      arch: arm64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: ro }
      secondary:
        - { name: smmu, type: hw-walker, cached: [F] }
      cpus:
        C0: [write_fault F]
    `)
    const ex = traced(sc, sitePolicy(['invalidate_range_start', 'invalidate_range_end', 'wp_page_reuse']))
    const got = lines(ex, { kinds: ['lock', 'notifier', 'sec-inval', 'frame', 'fault'] })
    const unlock = got.lastIndexOf('lock pte_unmap_unlock: release the page-table lock')
    expect(got.slice(unlock, unlock + 6)).toEqual([
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_UPGRADE F',
      'sec-inval invalidate_range_start: smmu: invalidate F (1 entry dropped)',
      'notifier mmu_notifier_invalidate_range_end: F',
      'sec-inval invalidate_range_end: smmu: invalidate F (0 entries dropped)',
      expect.stringMatching(/^frame fault_dirty_shared_page: folio_mark_dirty/),
    ])
    const start = kernelEvents(ex).find((e) => e.fn === 'mmu_notifier_invalidate_range_start')!
    expect(start.locks).toEqual(['mmap_lock(r)', 'folio_lock(F)'])
  })
})
