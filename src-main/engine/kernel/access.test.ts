/**
 * Secondary MMUs seen from the kernel sequences, against the domain reference (§0, §1.4,
 * §1.5, §2, §4.1, §4.5, §4.8, §5.4): a sw-mirror (KVM-like) zaps at range_start and refuses
 * to install a translation whose sequence collided with an invalidation; a hw-walker with
 * BTM is invalidated by the CPU's broadcast TLBIs whatever the notifier policy; a start/end
 * hw-walker driver flushes where `flush_at` says. Expectations come from the reference.
 */
import { describe, expect, it } from 'vitest'
import { ScheduleError } from '../explore'
import { ScenarioLoadError } from '../../node/scenarioFiles'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import { allEvents, every, first, kernelEvents, lines, runUnder, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'access.test.yaml')
const pol = (p: Preset) => makePolicy(p)
const PRESETS = ['start-end', 'invalidate-range', 'arch-hook'] as const

describe('sw-mirror (KVM / interval notifier) at range_start and range_end', () => {
  const sc = () =>
    load(`
      title: munmap of a page mirrored by KVM
      arch: x86_64
      pages:
        P: { value: 4, prot: rw }
      secondary:
        - { name: kvm, type: sw-mirror, cached: [P] }
      cpus:
        C0: [munmap P]
    `)

  it('zaps in range_start, before any PTE changes, and only bumps the sequence at range_end; the same under every policy', () => {
    for (const p of PRESETS) {
      const ex = traced(sc(), pol(p))
      expect(ex.violations).toEqual([])
      expect(lines(ex)).toEqual([
        'lock mmap_write_lock: take mmap_lock for write',
        'lock mmap_write_downgrade: downgrade mmap_lock to read',
        'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP P',
        'sec-inval kvm_mmu_notifier_invalidate_range_start: kvm: invalidate_in_progress++, zap 1 shadow entry',
        'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
        'pte ptep_get_and_clear_full: PTE P := none',
        'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued for freeing',
        'lock pte_unmap_unlock: release the page-table lock',
        'notifier mmu_notifier_invalidate_range_end: P',
        'sec-inval kvm_mmu_notifier_invalidate_range_end: kvm: mmu_invalidate_seq++, invalidate_in_progress--',
        'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
        'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
        'frame tlb_batch_pages_flush: release 1 queued page',
        'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
        'lock mmap_read_unlock: release mmap_lock',
      ])
      // Start/end run with mmap_lock only, never under the PTL (§1.6).
      expect(first(ex, 'sec-inval kvm_mmu_notifier_invalidate_range_start').locks).toEqual(['mmap_lock(r)'])
      expect(ex.final.secs[0]).toMatchObject({ entries: [], seq: 1, inProg: [0] })
    }
  })

  describe('fault path: mmu_seq snapshot, GUP, then install under mmu_lock only if no invalidation collided', () => {
    const race = () =>
      load(`
        title: a KVM fault races with MADV_DONTNEED
        arch: x86_64
        pages:
          P: { value: 4, prot: rw }
        secondary:
          - { name: kvm, type: sw-mirror }
        cpus:
          C0: [madvise_dontneed P]
        devices:
          V: { via: kvm, ops: [read P -> r0] }
      `)
    const C0 = 0
    const V = 1

    it('with no invalidation in between, the snapshot installs', () => {
      const ex = traced(race(), pol('start-end'), [V, V, V, V])
      expect(ex.violations).toEqual([])
      expect(
        kernelEvents(ex, { thread: 'V', kinds: ['fault', 'fill'] }).map((e) => `${e.fn}: ${e.text}`),
      ).toEqual([
        'kvm_faultin_pfn: kvm: no shadow entry for P; mmu_seq = 0',
        'kvm_tdp_mmu_map: kvm shadow P -> pfn 1 RW',
      ])
      expect(ex.final.regs).toEqual([4])
    })

    it('a fault that snapshotted the sequence before a whole invalidation retries instead of installing the stale pfn', () => {
      // V: snapshot seq, resolve P -> pfn 1; C0: the whole madvise (start, zap, end, flush, free); V: install.
      const ex = traced(race(), pol('start-end'), [V, V, C0, C0, C0, C0, C0, C0])
      expect(ex.violations).toEqual([])
      const v = kernelEvents(ex, { thread: 'V', kinds: ['fault', 'fill', 'info'] }).map(
        (e) => `${e.fn}: ${e.text}`,
      )
      expect(v).toEqual([
        'kvm_faultin_pfn: kvm: no shadow entry for P; mmu_seq = 0',
        'hva_to_pfn: P -> pfn 1 RW',
        'is_page_fault_stale: kvm: mmu_invalidate_seq moved, retry the fault',
        'handle_mm_fault: read fault on P (FAULT_FLAG_REMOTE)',
        'hva_to_pfn: P -> pfn 0 RO',
        'kvm_tdp_mmu_map: kvm shadow P -> pfn 0 RO',
      ])
      // The retry comes after range_end (and here after the free of pfn 1).
      const evs = allEvents(ex)
      const end = evs.findIndex((e) => e.fn === 'mmu_notifier_invalidate_range_end')
      const retry = evs.findIndex((e) => e.fn === 'is_page_fault_stale')
      expect(retry).toBeGreaterThan(end)
      expect(every(ex, 'fill', { kinds: ['fill'] }).filter((e) => e.text.includes('pfn 1'))).toEqual([])
      expect(ex.final.regs).toEqual([0])
    })

    it('the install waits while the invalidation is in progress (between start and end)', () => {
      // V snapshots and resolves; C0 reaches range_start; V cannot install now.
      expect(() => traced(race(), pol('start-end'), [V, V, C0, C0, V])).toThrow(ScheduleError)
      expect(() => traced(race(), pol('start-end'), [V, V, C0, C0, V])).toThrow(/invalidation in progress/)
      // Still blocked with the PTE cleared but range_end not yet run.
      expect(() => traced(race(), pol('start-end'), [V, V, C0, C0, C0, C0, V])).toThrow(
        /invalidation in progress/,
      )
    })

    it('right after range_end (page not yet freed) the install still sees the moved sequence and retries', () => {
      // C0: mmap_read_lock, range_start, PTL, clear+unlock, range_end; then V.
      const ex = traced(race(), pol('start-end'), [V, V, C0, C0, C0, C0, C0, V])
      expect(ex.violations).toEqual([])
      const evs = allEvents(ex)
      const retry = evs.findIndex((e) => e.fn === 'is_page_fault_stale')
      const free = evs.findIndex((e) => e.kind === 'frame' && e.text.startsWith('free pfn 1'))
      expect(retry).toBeGreaterThan(-1)
      expect(free).toBeGreaterThan(retry)
      expect(ex.final.regs).toEqual([0])
    })
  })
})

describe('hw-walker with BTM (arm64): broadcast TLBIs reach the SMMU TLB under every policy', () => {
  function btmScenario(btm: boolean) {
    return load(`
      title: arm64 SMMU with or without broadcast TLB maintenance
      arch: arm64
      pages:
        P: { value: 5, prot: rw, mapped: ro }
        Q: { value: 6, prot: rw }
      secondary:
        - { name: smmu, type: hw-walker, btm: ${btm}, flush_at: start, cached: [P, Q] }
      cpus:
        C0: [write_fault P, munmap Q]
    `)
  }

  it('start-end: the reuse fault flush_tlb_page (under the PTL) and the munmap tlb_end_vma flush invalidate it, with no notifier', () => {
    const ex = traced(btmScenario(true), pol('start-end'))
    expect(lines(ex, { op: 'C0: write_fault P' })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_set_access_flags: PTE P := pfn 1 RW dirty',
      'cpu-flush flush_tlb_page (ptep_set_access_flags): flush CPU TLBs: P',
      'sec-inval BTM: snooped broadcast TLBI: smmu: invalidate P (1 entry dropped)',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(first(ex, 'sec-inval BTM').locks).toEqual(['mmap_lock(r)', 'ptl'])
    expect(lines(ex, { op: 'C0: munmap Q', kinds: ['cpu-flush', 'notifier', 'sec-inval'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP Q',
      'sec-inval invalidate_range_start: smmu: BTM: the IOTLB is left to snooped TLBIs; no ATC: no command',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: Q',
      'sec-inval BTM: snooped broadcast TLBI: smmu: invalidate Q (1 entry dropped)',
      'notifier mmu_notifier_invalidate_range_end: Q',
    ])
  })

  it('without BTM the same start-end run leaves the read-only SMMU entry of P in place (the §5.4 precondition)', () => {
    const ex = traced(btmScenario(false), pol('start-end'))
    expect(every(ex, 'sec-inval BTM')).toEqual([])
    expect(lines(ex, { op: 'C0: write_fault P', kinds: ['sec-inval', 'notifier'] })).toEqual([])
    expect(ex.final.secs[0]!.entries).toEqual([expect.objectContaining({ page: 0, write: false })])
  })

  it('the snoop happens inside the CPU flush of a COW ptep_clear_flush too, under the PTL', () => {
    const sc = load(`
      title: arm64 COW with a BTM SMMU and an end-only start/end driver
      arch: arm64
      pages:
        P: { value: 5, prot: rw, cow: true }
      secondary:
        - { name: smmu, type: hw-walker, btm: true, flush_at: end, cached: [P] }
      cpus:
        C0: [cow_fault P]
    `)
    const ex = traced(sc, pol('start-end'))
    expect(lines(ex, { kinds: ['pte', 'cpu-flush', 'notifier', 'sec-inval'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'pte ptep_clear_flush: PTE P := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
      'sec-inval BTM: snooped broadcast TLBI: smmu: invalidate P (1 entry dropped)',
      'pte set_pte_at_notify: PTE P := pfn 2 RW dirty',
      'notifier mmu_notifier_invalidate_range_end: P',
      'sec-inval invalidate_range_end: smmu: BTM: the IOTLB is left to snooped TLBIs; no ATC: no command',
    ])
    expect(first(ex, 'sec-inval BTM').locks).toEqual(['mmap_lock(r)', 'ptl'])
  })

  it('BTM exists only on arm64', () => {
    expect(() =>
      load(`
        title: x86 has no BTM
        arch: x86_64
        pages:
          P: { value: 1 }
        secondary:
          - { name: iommu, type: hw-walker, btm: true }
        cpus:
          C0: [read P]
      `),
    ).toThrow(ScenarioLoadError)
  })
})

describe('start/end-only hw-walker driver (policy S, reference §2, §3.1)', () => {
  it('flush_at: start -> the COW secondary sees only range_start, before the PTL is taken', () => {
    const sc = load(`
      title: x86 COW with a start-only driver
      arch: x86_64
      pages:
        P: { value: 5, prot: rw, cow: true }
      secondary:
        - { name: iommu, type: hw-walker, flush_at: start, cached: [P] }
      cpus:
        C0: [cow_fault P]
    `)
    const ex = traced(sc, pol('start-end'))
    expect(lines(ex, { kinds: ['lock', 'pte', 'notifier', 'sec-inval'] }).slice(3)).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'sec-inval invalidate_range_start: iommu: invalidate P (1 entry dropped)',
      'lock pte_offset_map_lock: take the page-table lock',
      'pte ptep_clear_flush: PTE P := none',
      'pte set_pte_at_notify: PTE P := pfn 2 RW dirty',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: P',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })

  it('invalidate-range and arch-hook drivers do not implement start/end: range_start reaches no hw walker', () => {
    for (const p of ['invalidate-range', 'arch-hook'] as const) {
      const sc = load(`
        title: x86 munmap
        arch: x86_64
        pages:
          P: { value: 5, prot: rw }
        secondary:
          - { name: iommu, type: hw-walker, cached: [P] }
        cpus:
          C0: [munmap P]
      `)
      const ex = traced(sc, pol(p))
      const ls = lines(ex, { kinds: ['notifier', 'sec-inval'] })
      expect(ls[0]).toBe('notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP P')
      expect(ls[1]).not.toMatch(/^sec-inval/)
    }
  })
})

describe('a two-level secondary: IOTLB plus device ATC (PCIe ATS), reference 4.1-4.2', () => {
  const atsScenario = (opts: string) =>
    load(`
      title: munmap of a page a device holds in its ATC
      arch: arm64
      pages:
        P: { value: 5, prot: rw }
      secondary:
        - { name: smmu, type: hw-walker, ats: true, ${opts} cached: [P] }
      cpus:
        C0: [munmap P]
      devices:
        D0: { via: smmu, ops: [read P] }
    `)

  it('a device access looks in the ATC first; a miss is a translation request answered from the IOTLB or a walk', () => {
    const sc = load(`
      title: ATS lookups
      arch: x86_64
      pages:
        P: { value: 5, prot: rw }
        Q: { value: 6, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker, ats: true, cached: [P] }
      devices:
        D0: { via: iommu, ops: [read P, read Q, read Q] }
    `)
    const ex = traced(sc, pol('arch-hook'))
    expect(lines(ex, { kinds: ['info', 'fill', 'access'] })).toEqual([
      'access load: read 5 from P (pfn 1) via iommu ATC',
      'info ATS translation request: iommu: ATC miss for Q; ask the IOMMU',
      'fill IOMMU page walk: iommu IOTLB Q -> pfn 2 RW',
      'fill ATS translation completion: iommu ATC Q -> pfn 2 RW',
      'access load: read 6 from Q (pfn 2) via iommu ATC',
      'access load: read 6 from Q (pfn 2) via iommu ATC',
    ])
    expect(ex.final.secs[0]!.atc.map((e) => e.page)).toEqual([0, 1])
  })

  it('v6.6 drivers invalidate the IOTLB, then the ATC, each with its own command', () => {
    const ex = traced(atsScenario(''), pol('arch-hook'))
    expect(lines(ex, { op: 'C0: munmap P', kinds: ['cpu-flush', 'notifier', 'sec-inval'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP P',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate IOTLB all (1 entry dropped)',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate ATC all (1 entry dropped)',
      'notifier mmu_notifier_invalidate_range_end: P',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate IOTLB all (0 entries dropped)',
      'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate ATC all (0 entries dropped)',
    ])
  })

  it('BTM covers the IOTLB but not the ATC: a start-only driver leaves the ATC entry of a freed page', () => {
    const text = (ats: boolean) => `
      title: munmap with BTM${ats ? ' and ATS' : ''}
      arch: arm64
      pages:
        P: { value: 5, prot: rw }
      secondary:
        - { name: smmu, type: hw-walker, ats: ${ats}, btm: true, flush_at: start, cached: [P] }
      cpus:
        C0: [munmap P]
      devices:
        D0: { via: smmu, ops: [read P, read P] }
    `
    const sc = load(text(true))
    const s = runUnder(sc, 'start-end')
    expect(s.invariants['use-after-free']).toBe('violated')
    const cx = s.counterexamples.find((c) => c.invariant === 'use-after-free')!
    expect(cx.violation.message).toMatch(/through the smmu ATC entry/)
    const events = cx.trace.flatMap((r) => r.events.map((e) => `${e.fn}: ${e.text}`))
    // The snoop emptied the IOTLB at the CPU flush; the ATC entry the device refilled survived it.
    expect(events).toContain('BTM: snooped broadcast TLBI: smmu: invalidate IOTLB P (1 entry dropped)')
    for (const p of ['invalidate-range', 'arch-hook'] as const) expect(runUnder(sc, p).verdict).toBe('holds')
    // Without ATS the snoop is enough, even for the start-only driver.
    const noAts = load(text(false))
    expect(runUnder(noAts, 'start-end').verdict).toBe('holds')
  })

  it('atc-first: the IOTLB command is a step of its own after the ATC command, so the device can refill in between', () => {
    const ex = traced(atsScenario('atc_order: atc-first,'), pol('arch-hook'))
    const atc = first(ex, 'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate ATC')
    const iotlb = first(ex, 'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate IOTLB')
    expect(iotlb.text).toBe(
      'smmu: invalidate IOTLB all (1 entry dropped), after the ATC (atc_order: atc-first)',
    )
    expect(iotlb.step).toBe(atc.step + 1)
    // The second command runs with the locks the notifier was called under.
    expect(iotlb.locks).toEqual(atc.locks)
    // The device, scheduled between the two commands, is answered from the stale IOTLB.
    const cut = traced(atsScenario('atc_order: atc-first,'), pol('arch-hook'), [
      ...Array(atc.step + 1).fill(0),
      1,
    ])
    expect(lines(cut, { kinds: ['fill'] })).toContain(
      'fill ATS translation completion: smmu ATC P -> pfn 1 RW',
    )
    // The stale answer is in the ATC when the IOTLB command runs (on arm64 the freed_tables
    // flush in tlb_finish_mmu invalidates both again, before the page is freed).
    const fill = first(cut, 'fill ATS translation completion', { kinds: ['fill'] })
    const second = first(cut, 'sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate IOTLB')
    expect(fill.step).toBeGreaterThan(atc.step)
    expect(fill.step).toBeLessThan(second.step)
  })

  it('atc_order needs ats, and ats is a boolean', () => {
    expect(() =>
      load(`
        title: t
        arch: arm64
        pages: { P: { value: 1, prot: rw } }
        secondary:
          - { name: smmu, type: hw-walker, atc_order: atc-first }
      `),
    ).toThrow(/atc_order .* needs ats: true/)
    expect(() =>
      load(`
        title: t
        arch: arm64
        pages: { P: { value: 1, prot: rw } }
        secondary:
          - { name: smmu, type: hw-walker, ats: yes please }
      `),
    ).toThrow(/ats/)
  })
})

describe('translate P: a PCIe ATS Translation Request without an access (prefetch)', () => {
  const sc = (cached: string, ops: string, cpu = 'signal x') =>
    load(`
      title: ATS prefetch
      arch: x86_64
      pages:
        P: { value: 5, prot: rw }
        Q: { value: 0, prot: rw, mapped: none }
      secondary:
        - { name: iommu, type: hw-walker, ats: true, cached: [${cached}] }
      cpus:
        C0: [${cpu}]
      devices:
        D0: { via: iommu, ops: [${ops}] }
    `)

  it('a miss walks, fills the IOTLB then the ATC, and accesses nothing; the read after it hits the ATC without a request', () => {
    const ex = traced(sc('', 'translate P, read P -> r0'), pol('start-end'), [1, 1])
    const l = lines(ex, { thread: 'D0', kinds: ['info', 'fill', 'access'] })
    expect(l).toEqual([
      'info ATS translation request: iommu: prefetch P (no access); ask the IOMMU',
      'fill IOMMU page walk: iommu IOTLB P -> pfn 1 RW',
      'fill ATS translation completion: iommu ATC P -> pfn 1 RW (prefetch)',
      'access load: read 5 from P (pfn 1) via iommu ATC -> r0',
    ])
    expect(ex.metrics.device_faults).toBe(0)
  })

  it('an ATC hit sends no request', () => {
    const ex = traced(sc('P', 'translate P'), pol('start-end'), [1])
    expect(lines(ex, { thread: 'D0', kinds: ['info', 'fill'] })).toEqual([
      'info ATS translation request: iommu: P already in the ATC; no request',
    ])
  })

  it('no PTE: the completion says R=W=0, nothing is cached and no page request is raised', () => {
    const ex = traced(sc('', 'translate Q'), pol('start-end'), [1])
    expect(lines(ex, { thread: 'D0', kinds: ['info', 'fill', 'fault'] })).toEqual([
      'info ATS translation request: iommu: prefetch Q (no access); ask the IOMMU',
      'info ATS translation completion: iommu: walk finds no present PTE for Q: R=W=0, nothing cached, no page request',
    ])
    expect(ex.metrics.device_faults).toBe(0)
    expect(ex.final.secs[0]!.atc).toEqual([])
  })

  it('translate needs a hw-walker with ats: true', () => {
    expect(() =>
      load(`
        title: no ATC
        arch: x86_64
        pages:
          P: { value: 5, prot: rw }
        secondary:
          - { name: iommu, type: hw-walker }
        cpus:
          C0: [signal x]
        devices:
          D0: { via: iommu, ops: [translate P] }
      `),
    ).toThrow(
      /translate is a PCIe ATS Translation Request: D0 must go through a hw-walker with ats: true \('iommu' has no ATC\)/,
    )
  })
})
