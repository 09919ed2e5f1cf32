import { describe, expect, it } from 'vitest'
import type { StepRecord, TraceEvent } from '../engine'
import { diffTraces, stateDifferences } from './traceDiff'

function ev(thread: string, fn: string, text: string, kind: TraceEvent['kind'] = 'op'): TraceEvent {
  return { step: 0, thread, fn, kind, text, locks: [] }
}

function rec(step: number, thread: string, events: TraceEvent[], state: [string, string][] = []): StepRecord {
  return { step, thread, events, changes: [], state }
}

describe('diffTraces aligns two traces of one schedule', () => {
  it('pairs by schedule position, leaving a row with one side empty where a policy skipped the entry', () => {
    // Schedule C0 C1 C0: under policy b, C1 was blocked at entry 1 and skipped.
    const a = {
      records: [rec(0, 'C0', [ev('C0', 'f', 'x')]), rec(1, 'C1', [ev('C1', 'g', 'y')]), rec(2, 'C0', [])],
      positions: [0, 1, 2],
    }
    const b = { records: [rec(0, 'C0', [ev('C0', 'f', 'x')]), rec(1, 'C0', [])], positions: [0, 2] }
    const d = diffTraces(a, b)
    expect(d.rows.map((r) => [r.a, r.b])).toEqual([
      [0, 0],
      [1, null],
      [2, 1],
    ])
    expect(d.rows[1]!.kinds).toEqual(['missing'])
    expect(d.differing).toEqual([1])
    expect(d.rows[0]!.differs).toBe(false)
  })

  it('pairs records past the schedule in order, and without positions everything in order', () => {
    const a = { records: [rec(0, 'C0', []), rec(1, 'C0', []), rec(2, 'C1', [])], positions: [0, null, null] }
    const b = { records: [rec(0, 'C0', []), rec(1, 'C1', [])], positions: [0, null] }
    expect(diffTraces(a, b).rows.map((r) => [r.a, r.b, r.kinds])).toEqual([
      [0, 0, []],
      [1, 1, ['thread']],
      [2, null, ['missing']],
    ])
    const plain = diffTraces({ records: a.records }, { records: b.records })
    expect(plain.rows.map((r) => [r.a, r.b])).toEqual([
      [0, 0],
      [1, 1],
      [2, null],
    ])
  })

  it('tells an extra notifier call, a miss instead of a hit and a different value read apart from equal steps', () => {
    const hit = ev('D0', 'iommu_tlb_lookup', 'A hit pfn 2', 'access')
    const miss = ev('D0', 'iommu_tlb_lookup', 'A miss: walk', 'access')
    const a = [
      rec(0, 'C0', [ev('C0', 'ptep_clear_flush', 'PTE A cleared', 'pte')]),
      rec(1, 'C0', [ev('C0', 'mmu_notifier_invalidate_range', 'invalidate A', 'notifier')]),
      rec(2, 'D0', [hit]),
      rec(3, 'D0', [ev('D0', 'read', 'r0 = 1')]),
    ]
    const b = [
      rec(0, 'C0', [ev('C0', 'ptep_clear_flush', 'PTE A cleared', 'pte')]),
      rec(1, 'C0', []),
      rec(2, 'D0', [miss]),
      rec(3, 'D0', [ev('D0', 'read', 'r0 = 0')]),
    ]
    const d = diffTraces({ records: a }, { records: b })
    expect(d.differing).toEqual([1, 2, 3])
    expect(d.rows.map((r) => r.kinds)).toEqual([[], ['events'], ['events'], ['events']])
  })

  it('marks a state difference where the divergence changes, not on every later step', () => {
    const s = (tlb: string, r0: string): [string, string][] => [
      ['iommu TLB', tlb],
      ['r0', r0],
    ]
    const a = [
      rec(0, 'C0', [], s('empty', '0')),
      rec(1, 'D0', [], s('A -> pfn 1', '0')),
      rec(2, 'C0', [], s('A -> pfn 1', '0')),
    ]
    const b = [
      rec(0, 'C0', [], s('empty', '0')),
      rec(1, 'D0', [], s('empty', '0')),
      rec(2, 'C0', [], s('empty', '0')),
    ]
    const d = diffTraces({ records: a }, { records: b })
    expect(d.rows.map((r) => r.kinds)).toEqual([[], ['state'], []])
  })
})

describe('stateDifferences', () => {
  it('names the subjects whose values differ, including one only one side has', () => {
    const a = rec(
      0,
      'C0',
      [],
      [
        ['PTE A', 'pfn 1 RW'],
        ['r0', '0'],
      ],
    )
    const b = rec(
      0,
      'C0',
      [],
      [
        ['PTE A', 'pfn 2 RW'],
        ['r0', '0'],
        ['r1', '1'],
      ],
    )
    expect([...stateDifferences(a, b)].sort()).toEqual(['PTE A', 'r1'])
    expect(stateDifferences(a, null).size).toBe(0)
  })
})
