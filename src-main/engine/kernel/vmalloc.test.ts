/**
 * Kernel mappings against the domain reference (§1.8, §5.12, §5.14 row 17): vfree() clears the
 * PTE without a flush and frees the page at once; the area waits for __purge_vmap_area_lazy(),
 * which flushes every CPU (flush_tlb_kernel_range, or flush_tlb_all for a wide span) before the
 * address is handed out again (v6.6 mm/vmalloc.c, arch/x86/mm/tlb.c). No mmu_notifier and no
 * arch hook is called on these paths; only the 2017 kernel notifier (variant) reaches a device.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, PRESETS, type Preset } from '../policy'
import { defaultRunOptions, runPolicy } from '../run'
import { first, lines, runUnder, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'vmalloc.test.yaml')
const pol = (p: Preset, kernelNotifier = false) => makePolicy(p, kernelNotifier ? ['kernel-notifier'] : [])

const reuse = (extra = '') =>
  load(`
    title: vfree then vmalloc of the same address, a supervisor-PASID device
    arch: x86_64
    kernel_pages:
      K: { value: 1 }
    secondary:
      - { name: iommu, type: hw-walker, pasid: supervisor, cached: [K] }
    cpus:
      C0: [vfree K, vmalloc K 2, signal ring]
      ${extra}
    devices:
      D0: { via: iommu, ops: [wait ring, read K -> r0] }
  `)

describe('vfree and vmalloc (v6.6 mm/vmalloc.c)', () => {
  it('vfree clears the PTE without a flush and frees the page; vmalloc purges (flush_tlb_kernel_range), then maps a new page', () => {
    for (const p of PRESETS) {
      const ex = traced(reuse(), pol(p))
      expect(
        lines(ex, { thread: 'C0', kinds: ['pte', 'cpu-flush', 'notifier', 'sec-inval', 'frame', 'info'] }),
      ).toEqual([
        'pte vunmap_range_noflush: PTE K := none',
        'info free_vmap_area_noflush: the area of K waits on the lazy purge list; its TLB flush is deferred',
        'frame __free_page (vfree): free pfn 1 (gen 1)',
        "cpu-flush flush_tlb_kernel_range (__purge_vmap_area_lazy): flush every CPU's TLB: kernel K",
        'frame alloc_pages (__vmalloc_area_node): allocate pfn 1 (gen 2)',
        'pte vmap_pages_range: PTE K := pfn 1 RW dirty',
        'info signal: set ring',
      ])
      // No notifier of any kind: init_mm has no subscriptions and the arch hook takes an mm.
      expect(ex.violations.map((v) => v.invariant)).toContain('use-after-free')
    }
  })

  it('the kernel notifier (2017) invalidates the supervisor-PASID IOTLB from the purge flush, before the address is reused', () => {
    const ex = traced(reuse(), pol('arch-hook', true))
    expect(ex.violations).toEqual([])
    expect(lines(ex, { thread: 'C0', kinds: ['cpu-flush', 'notifier', 'sec-inval'] })).toEqual([
      "cpu-flush flush_tlb_kernel_range (__purge_vmap_area_lazy): flush every CPU's TLB: kernel K",
      'notifier kernel_mmu_notifier: flush_tlb_kernel_range: K',
      'sec-inval kernel MMU notifier (flush_tlb_kernel_range): iommu: invalidate K (1 entry dropped)',
    ])
    expect(first(ex, 'notifier kernel_mmu_notifier').step).toBeLessThan(
      first(ex, 'pte vmap_pages_range').step,
    )
  })

  it('verdicts: every preset shows the stale kernel translation; with the kernel notifier every preset holds', () => {
    const sc = reuse()
    for (const p of PRESETS) {
      const without = runUnder(sc, p)
      expect(without.invariants['use-after-free']).toBe('violated')
      expect(runPolicy(sc, pol(p, true), defaultRunOptions(sc)).verdict).toBe('holds')
    }
  })

  it('a purge over more than 33 pages is flush_tlb_all, which calls no arch hook either', () => {
    const names = Array.from({ length: 35 }, (_, i) => `K${i}`)
    const sc = load(`
      title: a wide lazy purge
      arch: x86_64
      pages:
        P: { value: 3, prot: rw }
      kernel_pages: { ${names.map((n) => `${n}: { value: 1 }`).join(', ')} }
      secondary:
        - { name: iommu, type: hw-walker, cached: [P] }
      cpus:
        C0: [read P, ${names.map((n) => `vfree ${n}`).join(', ')}, vmalloc K0]
    `)
    const ex = traced(sc, pol('arch-hook'))
    expect(lines(ex, { kinds: ['cpu-flush', 'notifier', 'sec-inval'] })).toEqual([
      "cpu-flush flush_tlb_all (flush_tlb_kernel_range (__purge_vmap_area_lazy)): flush every CPU's whole TLB",
    ])
    // flush_tlb_all drops user entries too, but the user-PASID IOTLB hears nothing.
    expect(ex.final.tlbs[0]).toEqual([])
    expect(ex.final.secs[0]!.entries.map((e) => e.page)).toEqual([0])
  })

  it('a CPU access to a vfree d address oopses instead of faulting a page in', () => {
    const sc = load(`
      title: use after vfree
      arch: x86_64
      kernel_pages:
        K: { value: 1 }
      cpus:
        C0: [vfree K, read K -> r0]
    `)
    const ex = traced(sc, pol('arch-hook'))
    expect(lines(ex, { kinds: ['fault'] })).toEqual([
      "fault page_fault_oops: read of kernel K: no PTE in init_mm (a use of a vfree'd or never vmalloc'ed address); oops, the access does not complete",
    ])
    expect(ex.final.regs).toEqual([null])
  })
})

describe('kernel pages in the scenario language', () => {
  const bad = (yaml: string) => () => load(yaml)
  it('refuses process-memory ops on kernel pages, vmalloc/vfree on process pages, and user-PASID devices', () => {
    expect(
      bad(`
        title: t
        arch: x86_64
        pages: { P: { value: 1 } }
        kernel_pages: { K: { value: 1 } }
        cpus:
          C0: [munmap K, vfree P]
      `),
    ).toThrow(
      /munmap works on process memory; 'K' is a kernel page[\s\S]*vfree maps or unmaps a kernel vmalloc address; 'P' is a process page/,
    )
    expect(
      bad(`
        title: t
        arch: x86_64
        kernel_pages: { K: { value: 1 } }
        secondary:
          - { name: iommu, type: hw-walker }
        devices:
          D0: { via: iommu, ops: [read K] }
      `),
    ).toThrow(/D0 reaches kernel page 'K' through iommu, which has pasid: user/)
    expect(
      bad(`
        title: t
        arch: x86_64
        kernel_pages: { K: { value: 1 } }
        secondary:
          - { name: iommu, type: hw-walker, cached: [K] }
        cpus:
          C0: [vfree K]
      `),
    ).toThrow(/kernel page 'K' can be cached only by a device with pasid: supervisor/)
  })

  it('vmalloc and vfree alternate from the initial state, one owner thread; waits need a signal; x86 only', () => {
    expect(
      bad(`
        title: t
        arch: x86_64
        kernel_pages: { K: { value: 1 } }
        cpus:
          C0: [vfree K, vfree K]
          C1: [vmalloc K]
      `),
    ).toThrow(/vfree K: it is not mapped at this point[\s\S]*one thread owns an allocation/)
    expect(
      bad(`
        title: t
        arch: x86_64
        kernel_pages: { K: { value: 1 } }
        cpus:
          C0: [vmalloc K, wait go]
      `),
    ).toThrow(/vmalloc K: the address is still in use[\s\S]*nothing signals 'go'/)
    expect(
      bad(`
        title: t
        arch: arm64
        kernel_pages: { K: { value: 1 } }
        cpus:
          C0: [vfree K]
      `),
    ).toThrow(/kernel mappings are modelled on x86_64/)
  })
})
