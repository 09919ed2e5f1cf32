/**
 * Protection changes against the domain reference (§1.8, §2, §3.3, §3.6, §5.7): mprotect
 * (change_protection with an mmu_gather, pte_needs_flush) and fork (copy_page_range +
 * dup_mmap), per architecture and notifier policy. Expectations come from the reference,
 * not from the code.
 */
import { describe, expect, it } from 'vitest'
import { ScheduleError } from '../explore'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import { every, first, kernelEvents, lines, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'protect.test.yaml')
const pol = (p: Preset) => makePolicy(p)

const MMAP_W = ['mmap_lock(w)']
const MMAP_W_PTL = ['mmap_lock(w)', 'ptl']

function mprotectScenario(arch: string, from: 'rw' | 'ro', ops: string) {
  return load(`
    title: mprotect of a device-cached page
    arch: ${arch}
    pages:
      A: { value: 1, prot: ${from}, mapped: ${from} }
    secondary:
      - { name: iommu, type: hw-walker, cached: [A] }
    cpus:
      C0: [${ops}]
  `)
}

/** change_pmd_range: RS(PROTECTION_VMA) at the populated PMD; change_pte_range under the PTL. */
const change = (pte: string) => [
  'lock mmap_write_lock: take mmap_lock for write',
  'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A',
  'lock change_pte_range: pte_offset_map_lock: take the page-table lock',
  `pte ptep_modify_prot_commit: PTE A := ${pte}`,
  'lock pte_unmap_unlock: release the page-table lock',
  'notifier mmu_notifier_invalidate_range_end: A',
]

describe('mprotect RW -> RO (reference §3.6, §5.7)', () => {
  it('x86 arch-hook: deferred flush in tlb_finish_mmu, after range_end, before mmap_write_unlock (the syscall return)', () => {
    const ex = traced(mprotectScenario('x86_64', 'rw', 'mprotect A ro'), pol('arch-hook'))
    expect(ex.violations).toEqual([])
    expect(lines(ex)).toEqual([
      ...change('pfn 1 RO dirty'),
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A (1 entry dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
    expect(first(ex, 'pte ptep_modify_prot_commit').locks).toEqual(MMAP_W_PTL)
    expect(first(ex, 'notifier mmu_notifier_invalidate_range_start').locks).toEqual(MMAP_W)
    expect(first(ex, 'cpu-flush').locks).toEqual(MMAP_W)
  })

  it('x86 invalidate-range: ->invalidate_range fires at range_end (after the PTE change), and again from tlb_flush_mmu_tlbonly after the CPU flush', () => {
    const ex = traced(mprotectScenario('x86_64', 'rw', 'mprotect A ro'), pol('invalidate-range'))
    expect(lines(ex)).toEqual([
      ...change('pfn 1 RO dirty'),
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A (1 entry dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      // One rule for every mmu_gather (v4.15..v6.5 tlb_flush_mmu_tlbonly): mprotect's too.
      'notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: A',
      'sec-inval ->invalidate_range (tlb_flush_mmu_tlbonly): iommu: invalidate A (0 entries dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('arm64 invalidate-range: tlb_end_vma flushes the gather, and its tlb_flush_mmu_tlbonly calls ->invalidate_range', () => {
    const ex = traced(mprotectScenario('arm64', 'rw', 'mprotect A ro'), pol('invalidate-range'))
    const l = lines(ex, { kinds: ['cpu-flush', 'notifier', 'sec-inval'] })
    const flush = l.indexOf('cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A')
    expect(flush).toBeGreaterThan(0)
    expect(l[flush + 1]).toBe('notifier mmu_notifier_invalidate_range: tlb_flush_mmu_tlbonly: A')
  })

  it('x86 start-end: the walker hears start and end only; the CPU flush comes after range_end', () => {
    const ex = traced(mprotectScenario('x86_64', 'rw', 'mprotect A ro'), pol('start-end'))
    expect(lines(ex)).toEqual([
      'lock mmap_write_lock: take mmap_lock for write',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A',
      'sec-inval invalidate_range_start: iommu: invalidate A (1 entry dropped)',
      'lock change_pte_range: pte_offset_map_lock: take the page-table lock',
      'pte ptep_modify_prot_commit: PTE A := pfn 1 RO dirty',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval invalidate_range_end: iommu: invalidate A (0 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('arm64 arch-hook: flush + hook at tlb_end_vma, also after range_end; the range hook is invalidate-all in v6.6', () => {
    const ex = traced(mprotectScenario('arm64', 'rw', 'mprotect A ro'), pol('arch-hook'))
    expect(lines(ex)).toEqual([
      ...change('pfn 1 RO dirty'),
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entry dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('x86 with two VMAs: start/end per VMA, one flush for both at tlb_finish_mmu', () => {
    const sc = load(`
      title: mprotect across two VMAs
      arch: x86_64
      pages:
        A: { value: 1, prot: rw }
        B: { value: 2, prot: ro, mapped: ro }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A, B] }
      cpus:
        C0: [mprotect A B none]
    `)
    const ex = traced(sc, pol('arch-hook'))
    expect(lines(ex, { kinds: ['notifier', 'cpu-flush', 'pte'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A',
      'pte ptep_modify_prot_commit: PTE A := pfn 1 PROT_NONE',
      'notifier mmu_notifier_invalidate_range_end: A',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA B',
      'pte ptep_modify_prot_commit: PTE B := pfn 2 PROT_NONE',
      'notifier mmu_notifier_invalidate_range_end: B',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A,B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A,B',
    ])
  })

  it('arm64 with two VMAs: each VMA flushes at its tlb_end_vma, after its own range_end', () => {
    const sc = load(`
      title: mprotect across two VMAs
      arch: arm64
      pages:
        A: { value: 1, prot: rw }
        B: { value: 2, prot: ro, mapped: ro }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A, B] }
      cpus:
        C0: [mprotect A B none]
    `)
    const ex = traced(sc, pol('arch-hook'))
    expect(lines(ex, { kinds: ['notifier', 'cpu-flush'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA A',
      'notifier mmu_notifier_invalidate_range_end: A',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_VMA B',
      'notifier mmu_notifier_invalidate_range_end: B',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: B',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
    ])
  })
})

describe('mprotect upgrades and pte_needs_flush (reference §3.6, §5.7)', () => {
  it('x86 RO -> RW of an exclusive page: the PTE becomes writable and x86 still flushes (RW changed)', () => {
    const ex = traced(mprotectScenario('x86_64', 'ro', 'mprotect A rw'), pol('arch-hook'))
    expect(lines(ex)).toEqual([
      ...change('pfn 1 RW dirty'),
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: A',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate A (1 entry dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('x86 PROT_NONE -> RW: pte_needs_flush is false (old PTE not present), so no CPU flush and no hook; IR still fires at range_end', () => {
    const ops = 'mprotect A none, mprotect A rw'
    const op = 'C0: mprotect A rw'
    const ah = traced(mprotectScenario('x86_64', 'rw', ops), pol('arch-hook'))
    expect(lines(ah, { op })).toEqual([
      ...change('pfn 1 RW dirty'),
      'lock mmap_write_unlock: release mmap_lock',
    ])
    const ir = traced(mprotectScenario('x86_64', 'rw', ops), pol('invalidate-range'))
    expect(lines(ir, { op })).toEqual([
      ...change('pfn 1 RW dirty'),
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate A (0 entries dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('arm64 has no pte_needs_flush override in v6.6: RO -> RW and PROT_NONE -> RW both flush (and hook)', () => {
    const up = traced(mprotectScenario('arm64', 'ro', 'mprotect A rw'), pol('arch-hook'))
    expect(lines(up)).toEqual([
      ...change('pfn 1 RW dirty'),
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entry dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
    const none = traced(mprotectScenario('arm64', 'rw', 'mprotect A none, mprotect A rw'), pol('arch-hook'))
    expect(lines(none, { op: 'C0: mprotect A rw' })).toEqual([
      ...change('pfn 1 RW dirty'),
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: A',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (0 entries dropped)',
      'lock mmap_write_unlock: release mmap_lock',
    ])
  })

  it('x86 RW -> PROT_NONE flushes (PRESENT cleared)', () => {
    const ex = traced(mprotectScenario('x86_64', 'rw', 'mprotect A none'), pol('arch-hook'))
    expect(every(ex, 'cpu-flush').map((e) => e.fn)).toEqual(['tlb_flush (tlb_finish_mmu)'])
  })
})

describe('fork: copy_page_range + dup_mmap, parent side (reference §3.3)', () => {
  function forkScenario(arch: string, childFirst = false) {
    const child = '  K: { mm: child, ops: [read A -> r0] }'
    const parent = '  C0: [fork]'
    return load(`
      title: fork with device-cached pages
      arch: ${arch}
      pages:
        A: { value: 1, prot: rw }
        B: { value: 2, prot: ro, mapped: ro }
        C: { value: 3, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A, C] }
      cpus:
      ${childFirst ? child : parent}
      ${childFirst ? parent : child}
    `)
  }

  /**
   * The parent's side of the trace: writes to the child's page table are left out here (how
   * they are reported is not the point) and checked on the final state instead.
   */
  const parentLines = (ex: ReturnType<typeof traced>) =>
    lines(ex, { thread: 'C0' }).filter((l) => !/child PTE|\(child\)/.test(l))

  /** One COW VMA: RS(PROTECTION_PAGE) over it, wrprotect under the PTL (no flush), RE. */
  const vma = (page: string, pfn: number, writable: boolean, atStart: string[], atEnd: string[]) => [
    `notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE ${page}`,
    ...atStart,
    'lock copy_pte_range: pte_offset_map_lock: take the page-table lock',
    ...(writable ? [`pte ptep_set_wrprotect: PTE ${page} := pfn ${pfn} RO dirty`] : []),
    'lock pte_unmap_unlock: release the page-table lock',
    `notifier mmu_notifier_invalidate_range_end: ${page}`,
    ...atEnd,
  ]
  const HEAD = ['lock mmap_write_lock: take mmap_lock for write']
  const TAIL = ['lock mmap_write_unlock: release mmap_lock']

  it('arch-hook: parent PTEs write-protected with no flush; start/end per VMA; one flush_tlb_mm after all VMAs, whole-mm hook', () => {
    for (const arch of ['x86_64', 'arm64']) {
      const ex = traced(forkScenario(arch), pol('arch-hook'))
      expect(ex.violations).toEqual([])
      expect(parentLines(ex)).toEqual([
        ...HEAD,
        ...vma('A', 1, true, [], []),
        ...vma('B', 2, false, [], []),
        ...vma('C', 3, true, [], []),
        'cpu-flush flush_tlb_mm (dup_mmap): flush CPU TLBs: whole mm',
        'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
        'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (2 entries dropped)',
        ...TAIL,
      ])
      expect(first(ex, 'pte ptep_set_wrprotect').locks).toEqual(MMAP_W_PTL)
      expect(first(ex, 'cpu-flush flush_tlb_mm').locks).toEqual(MMAP_W)
      expect(first(ex, 'notifier mmu_notifier_arch_invalidate').locks).toEqual(MMAP_W)
    }
  })

  it('invalidate-range: ->invalidate_range at each range_end (not only_end); flush_tlb_mm has no hook', () => {
    const ex = traced(forkScenario('x86_64'), pol('invalidate-range'))
    const ir = (p: string, n: number) => [
      `sec-inval ->invalidate_range (from range_end): iommu: invalidate ${p} (${n} ${n === 1 ? 'entry' : 'entries'} dropped)`,
    ]
    expect(parentLines(ex)).toEqual([
      ...HEAD,
      ...vma('A', 1, true, [], ir('A', 1)),
      ...vma('B', 2, false, [], ir('B', 0)),
      ...vma('C', 3, true, [], ir('C', 1)),
      'cpu-flush flush_tlb_mm (dup_mmap): flush CPU TLBs: whole mm',
      ...TAIL,
    ])
  })

  it('start-end: the walker hears each VMA start and end; the flush comes after every range_end', () => {
    const ex = traced(forkScenario('arm64'), pol('start-end'))
    const s = (p: string, n: number) => [
      `sec-inval invalidate_range_start: iommu: invalidate ${p} (${n} ${n === 1 ? 'entry' : 'entries'} dropped)`,
    ]
    const e = (p: string) => [`sec-inval invalidate_range_end: iommu: invalidate ${p} (0 entries dropped)`]
    expect(parentLines(ex)).toEqual([
      ...HEAD,
      ...vma('A', 1, true, s('A', 1), e('A')),
      ...vma('B', 2, false, s('B', 0), e('B')),
      ...vma('C', 3, true, s('C', 1), e('C')),
      'cpu-flush flush_tlb_mm (dup_mmap): flush CPU TLBs: whole mm',
      ...TAIL,
    ])
  })

  it('the child thread is blocked until fork returns', () => {
    const sc = forkScenario('x86_64', true)
    expect(sc.threads.map((t) => t.name)).toEqual(['K', 'C0'])
    // Reference schedule prefers K (declared first) whenever it can run.
    const ex = traced(sc, pol('arch-hook'))
    expect(ex.violations).toEqual([])
    const evs = ex.records.flatMap((r) => r.events)
    const forkReturns = evs.findIndex(
      (e) => e.kind === 'op' && e.fn === 'fork' && e.text === 'returns the child pid',
    )
    const childFirst = evs.findIndex((e) => e.thread === 'K')
    expect(forkReturns).toBeGreaterThan(-1)
    expect(childFirst).toBeGreaterThan(forkReturns)
    expect(ex.final.regs).toEqual([1])
    // Forcing the child to run first is refused.
    expect(() => traced(sc, pol('arch-hook'), [0])).toThrow(ScheduleError)
    expect(() => traced(sc, pol('arch-hook'), [0])).toThrow(/waiting for fork to return/)
    // ... also in the middle of the fork (after the first VMA's range_start).
    expect(() => traced(sc, pol('arch-hook'), [1, 1, 0])).toThrow(/waiting for fork to return/)
  })

  it('after fork both mms map the pages read-only and shared (mapcount 2); the child PTE is written under the PTL', () => {
    const ex = traced(forkScenario('x86_64'), pol('arch-hook'))
    const child = kernelEvents(ex, { thread: 'C0', kinds: ['pte'] }).filter((e) =>
      /child PTE|\(child\)/.test(e.text + e.fn),
    )
    expect(child.length).toBeGreaterThan(0)
    for (const e of child) expect(e.locks).toEqual(MMAP_W_PTL)
    for (const page of [0, 1, 2]) {
      expect(ex.final.mms[0]!.ptes[page]).toMatchObject({ write: false })
      expect(ex.final.mms[1]!.ptes[page]).toMatchObject({ write: false, pfn: page + 1 })
      expect(ex.final.frames[page + 1]).toMatchObject({ map: 2, ref: 2, free: false })
    }
  })
})

describe('mprotect on non-present PTEs (v6.6 change_pte_range)', () => {
  const sc = load(`
    title: mprotect over a swap entry
    arch: x86_64
    pages:
      A: { value: 1, prot: rw }
    cpus:
      kswapd: [reclaim A]
      C0: [mprotect A ro]
  `)
  it('a plain swap entry is left untouched: no set_pte_at, no flush, no "changed the PTE" step', () => {
    // The reference schedule: kswapd runs to its end (A is a swap entry), then mprotect.
    const ex = traced(sc, pol('arch-hook'))
    const l = lines(ex, { op: 'C0: mprotect A ro', kinds: ['info', 'pte', 'cpu-flush'] })
    expect(l).toContain('info change_pte_range: A: swap entry, left unchanged')
    expect(l.filter((x) => x.startsWith('pte '))).toEqual([])
    // The only flush is flush_tlb_batched_pending's (reclaim's batch left the mm pending); the
    // gather recorded nothing, so tlb_finish_mmu flushes nothing.
    expect(l.filter((x) => x.startsWith('cpu-flush '))).toEqual([
      'cpu-flush flush_tlb_mm (flush_tlb_batched_pending, change_pte_range): flush CPU TLBs: whole mm',
    ])
    expect(ex.final.mms[0]!.ptes[0]!.swp).toBe(0)
  })
})

describe('mprotect on a migration entry (v6.6 change_pte_range)', () => {
  it('a writable migration entry becomes readable whatever the new prot ("just be safe and disable write")', () => {
    const sc = load(`
      title: mprotect over a migration entry
      arch: x86_64
      pages:
        A: { value: 1, prot: rw }
      cpus:
        mover: [migrate A]
        C0: [mprotect A rw]
    `)
    // mover: isolate, folio_trylock, range_start, unmap (A is a writable migration entry); then C0 alone.
    let ex: ReturnType<typeof traced> | null = null
    for (let n = 12; n > 0 && ex === null; n--) {
      try {
        ex = traced(sc, pol('arch-hook'), [0, 0, 0, 0, ...new Array<number>(n).fill(1)])
      } catch (e) {
        if (!(e instanceof ScheduleError)) throw e
      }
    }
    const l = lines(ex!, { op: 'C0: mprotect A rw', kinds: ['pte'] })
    expect(l).toEqual([
      'pte set_pte_at (readable migration entry): PTE A := migration entry (pfn 1, read-only)',
    ])
    // remove_migration_pte() then maps the new page read-only: a write faults and reuses it.
    expect(ex!.final.mms[0]!.ptes[0]).toMatchObject({ present: true, write: false })
  })
})
