/**
 * flush_tlb_batched_pending() (3ea277194daa, v4.13; v6.6 mm/rmap.c with the arch split of
 * 43b3dfdd0455): change_pte_range and zap_pte_range call it right after taking the PTL, so a
 * PTE that reclaim cleared with a batched (deferred) flush cannot outlive mprotect, munmap or
 * MADV_DONTNEED in a CPU TLB. x86: flush_tlb_mm (and the arch hook's (0, -1)); arm64: dsb(ish).
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { ScheduleError, type Execution } from '../explore'
import { makePolicy, type Policy } from '../policy'
import type { Scenario } from '../types'
import { every, first, kernelEvents, line, lines, traced } from './traceTestkit'

const scOf = (arch: string, op: string) =>
  scenarioOf(
    `
      title: batched pending
      arch: ${arch}
      pages:
        P: { value: 5, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker, cached: [P] }
      cpus:
        C0: [read P -> r0, write P 9]
        kswapd: [reclaim P]
        C2: [${op}]
    `,
    'batched.test.yaml',
  )

// C0 caches P; kswapd unmaps P (isolate, range_start, unmap: the flush deferred); then C2
// runs to its end (as many steps as it has), then the reference schedule.
const SCHEDULE = [0, 1, 1, 1]

/** `prefix`, then thread `t` for as many steps as it can take. */
function runAlone(sc: Scenario, pol: Policy, prefix: readonly number[], t: number): Execution {
  for (let n = 30; n > 0; n--) {
    try {
      return traced(sc, pol, [...prefix, ...new Array<number>(n).fill(t)])
    } catch (e) {
      if (!(e instanceof ScheduleError)) throw e
    }
  }
  throw new Error('thread cannot run')
}

describe('flush_tlb_batched_pending after the PTL (x86_64)', () => {
  for (const [op, fn] of [
    ['mprotect P ro', 'change_pte_range'],
    ['madvise_dontneed P', 'zap_pte_range'],
    ['munmap P', 'zap_pte_range'],
  ] as const) {
    it(`${op}: ${fn} takes the PTL, then flush_tlb_mm while reclaim's flush is pending`, () => {
      const ex = runAlone(scOf('x86_64', op), makePolicy('arch-hook'), SCHEDULE, 2)
      const l = lines(ex, { thread: 'C2', kinds: ['lock', 'cpu-flush', 'notifier'] })
      const lock = l.findIndex((x) => x.includes(`${fn}: pte_offset_map_lock`))
      expect(lock).toBeGreaterThanOrEqual(0)
      expect(l[lock + 1]).toBe(
        `cpu-flush flush_tlb_mm (flush_tlb_batched_pending, ${fn}): flush CPU TLBs: whole mm`,
      )
      expect(l[lock + 2]).toBe(
        'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      )
      const f = first(ex, 'cpu-flush flush_tlb_mm (flush_tlb_batched_pending', { thread: 'C2' })
      expect(f.locks).toContain('ptl')
      // C0's write after the return faults (no stale RW entry): no violation on this schedule.
      expect(ex.final.tlbs[0]!.some((e) => e.page === 0 && e.pfn === 1)).toBe(false)
      expect(ex.violations).toEqual([])
    })
  }

  it('flushes once: flushed = pending, so a second walker finds nothing pending', () => {
    const ex = runAlone(scOf('x86_64', 'mprotect P ro'), makePolicy('start-end'), SCHEDULE, 2)
    expect(every(ex, 'cpu-flush flush_tlb_mm (flush_tlb_batched_pending')).toHaveLength(1)
    expect(ex.final.mms[0]!.tfb).toBeUndefined()
    // Not under start-end: no arch hook.
    expect(every(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs', { thread: 'C2' })).toEqual([])
  })

  it('nothing pending (no batched unmap yet): no flush, and the metrics do not count one', () => {
    const ex = runAlone(scOf('x86_64', 'mprotect P ro'), makePolicy('arch-hook'), [0], 2)
    expect(every(ex, 'cpu-flush flush_tlb_mm (flush_tlb_batched_pending')).toEqual([])
  })

  it('the flush and its (0, -1) invalidation are counted in the metrics', () => {
    const pol = makePolicy('arch-hook')
    const sc = scOf('x86_64', 'mprotect P ro')
    const with_ = runAlone(sc, pol, SCHEDULE, 2)
    const without = runAlone(sc, pol, [0], 2)
    const n = (ex: typeof with_, p: string) => kernelEvents(ex).filter((e) => line(e).startsWith(p)).length
    // Every cpu-flush event is a counted flush, except the deferral note of arch_tlbbatch_add_pending.
    const flushes = n(with_, 'cpu-flush') - n(with_, 'cpu-flush arch_tlbbatch_add_pending:')
    expect(with_.metrics.cpu_tlb_flushes).toBe(flushes)
    expect(n(with_, 'cpu-flush flush_tlb_mm (flush_tlb_batched_pending')).toBe(1)
    // Every notifier event is a counted call; C2's are the batched-pending hook and range_start/end.
    expect(with_.metrics.notifier_calls).toBe(n(with_, 'notifier '))
    expect(n(with_, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1)')).toBe(
      n(without, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1)') + 1,
    )
  })
})

describe('flush_tlb_batched_pending on arm64 (v6.6: arch_flush_tlb_batched_pending is dsb(ish))', () => {
  it('no flush: the TLBI went out at arch_tlbbatch_add_pending', () => {
    const ex = runAlone(scOf('arm64', 'mprotect P ro'), makePolicy('arch-hook'), SCHEDULE, 2)
    expect(
      first(ex, 'cpu-flush arch_tlbbatch_add_pending (__flush_tlb_page_nosync)', { thread: 'kswapd' }),
    ).toBeTruthy()
    const ev = ex.records.flatMap((r) => r.events).filter((e) => e.fn === 'flush_tlb_batched_pending')
    expect(ev.map((e) => e.text)).toEqual([
      'change_pte_range: arch_flush_tlb_batched_pending: dsb(ish), the batched TLBIs were issued at add time',
    ])
    expect(every(ex, 'cpu-flush flush_tlb_mm')).toEqual([])
    expect(ex.violations).toEqual([])
  })
})
