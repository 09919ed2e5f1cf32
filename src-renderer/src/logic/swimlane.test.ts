import { describe, expect, it } from 'vitest'
import type { StepRecord } from '../../../src-main/engine/results'
import {
  actSpan,
  buildSwimlane,
  compactFn,
  compactLabel,
  fitLabels,
  compareThreads,
  eventLabel,
  knownStateAt,
  ROLE_LABEL,
  searchRows,
} from './swimlane'
import { TRACE, ev } from './fixtures'
import { formatCount, formatDuration, normaliseScenarioPath } from './format'

describe('compact cell labels', () => {
  it('keeps the words that tell the notifier hooks apart', () => {
    const hooks = [
      'mmu_notifier_invalidate_range_start',
      'mmu_notifier_invalidate_range_end',
      'mmu_notifier_arch_invalidate_secondary_tlbs',
    ]
    const short = hooks.map(compactFn)
    expect(short).toEqual(['…range_start', '…range_end', '…secondary_tlbs'])
    expect(new Set(short).size).toBe(hooks.length)
    for (const s of short) expect(s.length).toBeLessThan(16)
    // Short names stay whole.
    expect(compactFn('ptep_clear_flush')).toBe('ptep_clear_flush')
    expect(compactFn('flush_tlb_page')).toBe('flush_tlb_page')
  })
  it('drops MMU_NOTIFY_ from a notifier call and keeps its range', () => {
    const e = ev(2, 'C0', 'notifier', 'mmu_notifier_invalidate_range_start', 'MMU_NOTIFY_CLEAR A')
    expect(compactLabel(e)).toBe('…range_start(CLEAR A)')
    expect(eventLabel(e)).toBe('mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR A)')
  })
  it('fits a cell: full names when they fit, then shorter forms that still tell the hooks apart', () => {
    const start = [
      ev(2, 'C0', 'notifier', 'mmu_notifier_invalidate_range_start', 'MMU_NOTIFY_CLEAR A'),
      ev(2, 'C0', 'sec-inval', 'invalidate_range_start', 'iommu: invalidate A'),
    ]
    const end = [
      ev(9, 'C0', 'notifier', 'mmu_notifier_invalidate_range_end', 'A'),
      ev(9, 'C0', 'lock', 'mmap_read_unlock', 'release mmap_lock'),
    ]
    const arch = [
      ev(5, 'C0', 'pte', 'ptep_clear_flush', 'PTE A := none'),
      ev(5, 'C0', 'cpu-flush', 'flush_tlb_page', 'flush CPU TLBs: A'),
      ev(5, 'C0', 'notifier', 'mmu_notifier_arch_invalidate_secondary_tlbs', 'A'),
    ]
    const text = (es: typeof start, n: number): string =>
      fitLabels(es, n)
        .map((l) => l.text)
        .join(' · ')
    expect(text(start, 500)).toBe(
      'mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR A) · invalidate_range_start(iommu: invalidate A)',
    )
    for (const n of [40, 30, 20, 12, 8]) {
      const [a, b, c] = [text(start, n), text(end, n), text(arch, n)]
      // What is on screen (the first n characters) tells the three hooks apart.
      const seen = [a, b, c].map((t) => t.slice(0, n))
      expect(new Set(seen).size, `${n}: ${seen.join(' | ')}`).toBe(3)
      if (n >= 30) expect(a.length).toBeLessThanOrEqual(n)
    }
    expect(text(arch, 12)).toContain('…tlbs')
    // The op a step starts is kept down to the narrowest form.
    const fault = [
      ev(0, 'C0', 'op', 'cow_fault', 'C0: cow_fault A'),
      ev(0, 'C0', 'lock', 'mmap_read_lock', 'take mmap_lock for read'),
      ev(0, 'C0', 'fault', 'handle_mm_fault', 'write fault on A'),
    ]
    expect(text(fault, 30)).toBe('cow_fault A · handle_mm_fault')
    expect(text(fault, 15)).toMatch(/^cow_fault A/)
    expect(fitLabels(arch, 6).map((l) => l.kind)).toEqual(['notifier', 'pte'])
    expect(text(arch, 8).slice(0, 8)).toContain('tlbs')
  })
  it('lets the acting cell run over the idle lanes to its right, never over a lock holder', () => {
    const rows = buildSwimlane(TRACE, null, ['C1', 'D1']).rows
    // Lanes C0 C1 D0 D1. Step 2 is D0's: only D1 is to its right, idle.
    expect(rows[2]!.lanes[3]!.locks).toEqual([])
    expect(actSpan(rows[2]!)).toBe(2)
    // Step 0 is C0's: C1, D0, D1 hold nothing.
    expect(actSpan(rows[0]!)).toBe(4)
    const held = {
      ...rows[0]!,
      lanes: rows[0]!.lanes.map((l, i) => (i === 2 ? { ...l, locks: ['ptl'] } : l)),
    }
    expect(actSpan(held)).toBe(2)
  })
  it('labels a context culprit "context", never "cause"', () => {
    expect(ROLE_LABEL.context).toBe('context')
    expect(Object.values(ROLE_LABEL)).not.toContain('cause')
  })
})

describe('swimlane rows', () => {
  it('marks the culprit steps with their roles, on the row of their step and thread only', () => {
    const s = buildSwimlane(TRACE, 2, [], null, [
      { step: 1, thread: 'C0', role: 'pte-change', text: 'ptep_clear_flush repointed A' },
      { step: 2, thread: 'D0', role: 'fill', text: 'the walk filled A' },
      { step: 2, thread: 'D0', role: 'stale-use', text: 'D0 read A' },
      { step: 3, thread: 'D0', role: 'context', text: 'not this row: step 3 is C0' },
    ])
    expect(s.rows.map((r) => r.culprits.map((c) => ROLE_LABEL[c.role]))).toEqual([
      [],
      ['PTE change'],
      ['fill', 'stale use'],
      [],
    ])
    expect(buildSwimlane(TRACE, 2).rows.every((r) => r.culprits.length === 0)).toBe(true)
  })
  it('finds rows by thread, function, event text or change, case-insensitively', () => {
    const rows = buildSwimlane(TRACE, null).rows
    expect(searchRows(rows, 'PTEP_CLEAR')).toEqual([1])
    expect(searchRows(rows, 'iommu tlb')).toEqual([2, 3])
    expect(searchRows(rows, 'D0')).toEqual([2])
    expect(searchRows(rows, 'r0 := 0')).toEqual([2])
    expect(searchRows(rows, '  ')).toEqual([])
    expect(searchRows(rows, 'no such thing')).toEqual([])
  })
  it('puts each step in its thread lane, in natural thread order', () => {
    const s = buildSwimlane(TRACE, 1)
    expect(s.lanes).toEqual(['C0', 'D0'])
    expect(s.rows.map((r) => [r.step, r.lane])).toEqual([
      [0, 0],
      [1, 0],
      [2, 1],
      [3, 0],
    ])
    expect(['D1', 'C10', 'C2'].sort(compareThreads)).toEqual(['C2', 'C10', 'D1'])
  })
  it('marks lock holds during a step and carries them in other lanes', () => {
    const s = buildSwimlane(TRACE, null)
    expect(s.rows[1].lanes[0]).toMatchObject({ holdsPtl: true, holdsMmap: true })
    // After step 1 C0 dropped the PTL but still holds mmap_lock while D0 runs.
    expect(s.rows[2].lanes[0]).toMatchObject({ holdsPtl: false, holdsMmap: true })
    expect(s.rows[2].lanes[1].locks).toEqual([])
  })
  it('flags notifier calls, secondary invalidations and the violating step', () => {
    const s = buildSwimlane(TRACE, 2)
    expect(s.rows[3]).toMatchObject({ notifier: true, secInval: true })
    expect(s.rows[0]).toMatchObject({ notifier: false, secInval: false })
    expect(s.violationRow).toBe(2)
    expect(s.rows.filter((r) => r.violation).map((r) => r.step)).toEqual([2])
  })
  it('puts a final-state violation on the last row', () => {
    expect(buildSwimlane(TRACE, 4).violationRow).toBe(3)
    expect(buildSwimlane([], 4).violationRow).toBeNull()
  })
  it('highlights the start of a livelock cycle', () => {
    const s = buildSwimlane(TRACE, -1, [], 2)
    expect(s.violationRow).toBe(2)
    expect(s.rows.map((r) => r.cycle)).toEqual([false, false, true, true])
    expect(buildSwimlane(TRACE, -1).violationRow).toBe(3)
  })
  it('handles 10,000 steps quickly', () => {
    const big: StepRecord[] = Array.from({ length: 10_000 }, (_, i) => ({
      step: i,
      thread: i % 3 === 0 ? 'D0' : 'C' + (i % 2),
      events: [ev(i, 'C0', 'lock', 'spin_lock', 'x', ['ptl'])],
      changes: [],
    }))
    const t0 = performance.now()
    const s = buildSwimlane(big, 9_999)
    expect(s.rows).toHaveLength(10_000)
    expect(s.rows[9_999].violation).toBe(true)
    expect(performance.now() - t0).toBeLessThan(500)
  })
  it('labels events compactly', () => {
    expect(eventLabel(ev(0, 'C0', 'op', 'cow_fault', 'C0: cow_fault A'))).toBe('cow_fault A')
    expect(eventLabel(ev(0, 'C0', 'notifier', 'mmu_notifier_invalidate_range_end', 'A'))).toBe(
      'mmu_notifier_invalidate_range_end(A)',
    )
    expect(eventLabel(ev(0, 'C0', 'pte', 'ptep_clear_flush', 'PTE A := none'))).toBe('ptep_clear_flush')
  })
})

describe('known state', () => {
  it('accumulates changes and TLB entry sets', () => {
    const at2 = knownStateAt(TRACE, 2)
    expect(at2.entries).toEqual([
      { subject: 'iommu TLB', value: 'A -> pfn 3 RW', changedHere: true },
      { subject: 'PTE A', value: 'none', changedHere: false },
      { subject: 'r0', value: '0', changedHere: true },
    ])
    const at3 = knownStateAt(TRACE, 3)
    expect(at3.entries.find((e) => e.subject === 'iommu TLB')?.value).toBe('(empty)')
  })
})

describe('format', () => {
  it('formats counts and durations', () => {
    expect(formatCount(950)).toBe('950')
    expect(formatCount(722_230)).toBe('722k')
    expect(formatCount(12_500)).toBe('12.5k')
    expect(formatDuration(420)).toBe('420 ms')
    expect(formatDuration(7_000)).toBe('7.0 s')
    expect(formatDuration(125_000)).toBe('2m05s')
  })
  it('normalises new scenario paths', () => {
    expect(normaliseScenarioPath('scenarios/my-race')).toBe('my-race.yaml')
    expect(normaliseScenarioPath('sub/x.yml')).toBe('sub/x.yml')
    expect(normaliseScenarioPath('../etc/passwd')).toEqual({ error: 'The path must stay inside scenarios/' })
    expect(normaliseScenarioPath(' ')).toMatchObject({ error: expect.any(String) })
  })
})
