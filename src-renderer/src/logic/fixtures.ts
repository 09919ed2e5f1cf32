/** Small hand-written results for the view-logic tests. */
import type { PolicyResult, RunResult, StepRecord, TraceEvent } from '../../../src-main/engine/results'

export function ev(
  step: number,
  thread: string,
  kind: TraceEvent['kind'],
  fn: string,
  text: string,
  locks: string[] = [],
): TraceEvent {
  return { step, thread, kind, fn, text, locks }
}

export const TRACE: StepRecord[] = [
  {
    step: 0,
    thread: 'C0',
    events: [
      ev(0, 'C0', 'op', 'cow_fault', 'C0: cow_fault A'),
      ev(0, 'C0', 'lock', 'mmap_read_lock', 'take', ['mmap_lock(r)']),
    ],
    changes: [],
  },
  {
    step: 1,
    thread: 'C0',
    events: [
      ev(1, 'C0', 'lock', 'pte_offset_map_lock', 'take the page-table lock', ['mmap_lock(r)', 'ptl']),
      ev(1, 'C0', 'pte', 'ptep_clear_flush', 'PTE A := none', ['mmap_lock(r)', 'ptl']),
      ev(1, 'C0', 'lock', 'pte_unmap_unlock', 'release', ['mmap_lock(r)']),
    ],
    changes: ['PTE A: pfn 1 RO dirty -> none'],
  },
  {
    step: 2,
    thread: 'D0',
    events: [
      ev(2, 'D0', 'op', 'read', 'D0: read A -> r0'),
      ev(2, 'D0', 'fill', 'IOMMU page walk', 'iommu TLB A'),
    ],
    changes: ['iommu TLB: +A -> pfn 3 RW', 'r0 := 0'],
  },
  {
    step: 3,
    thread: 'C0',
    events: [
      ev(3, 'C0', 'notifier', 'mmu_notifier_invalidate_range_end', 'A', ['mmap_lock(r)']),
      ev(3, 'C0', 'sec-inval', 'invalidate_range_end', 'iommu: invalidate A', ['mmap_lock(r)']),
      ev(3, 'C0', 'lock', 'mmap_read_unlock', 'release mmap_lock', []),
    ],
    changes: ['iommu TLB: -A (pfn 3 RW)'],
  },
]

function policy(name: string, over: Partial<PolicyResult>): PolicyResult {
  return {
    policy: name,
    verdict: 'holds',
    invariants: {
      'use-after-free': 'holds',
      'stale-after-return': 'holds',
      'lost-write': 'holds',
      'lost-dirty': 'holds',
      progress: 'holds',
      forbid: 'holds',
    },
    counterexamples: [],
    stats: { executions: 10, states: 100, steps: 200, complete: true, cutReason: null },
    invalidations: { page: 2, range: 0, full: 0, atc: 0 },
    metrics: {
      notifier_calls: 4,
      secondary_invalidations: 2,
      device_faults: 0,
      mirror_zaps: 0,
      cpu_tlb_flushes: 2,
      sim_ns: 9600,
    },
    metricsSchedule: 'reference',
    costTable: 'v1',
    metricChecks: [],
    expected: null,
    matches: null,
    ...over,
  }
}

export const RUN: RunResult = {
  title: 'COW ordering',
  source: null,
  arch: 'x86_64',
  mode: 'exhaustive',
  seed: null,
  engineVersion: 'test',
  results: [
    policy('start-end', {
      verdict: 'violated',
      invariants: {
        'use-after-free': 'holds',
        'stale-after-return': 'holds',
        'lost-write': 'holds',
        'lost-dirty': 'holds',
        progress: 'holds',
        forbid: 'violated',
      },
      counterexamples: [
        {
          invariant: 'forbid',
          schedule: ['C0', 'C0', 'D0', 'C0'],
          cycle: null,
          violation: { invariant: 'forbid', step: 4, thread: '-', message: 'forbid holds' },
          why: 'the final state satisfies forbid',
          culprits: [],
          trace: TRACE,
        },
      ],
      expected: 'forbid',
      matches: true,
    }),
    policy('invalidate-range', { expected: 'holds', matches: true }),
    policy('arch-hook', {
      verdict: 'unknown',
      invariants: {
        'use-after-free': 'unknown',
        'stale-after-return': 'unknown',
        'lost-write': 'unknown',
        'lost-dirty': 'unknown',
        progress: 'unknown',
        forbid: 'holds',
      },
      stats: { executions: 1, states: 5, steps: 5, complete: false, cutReason: 'max states' },
      expected: 'holds',
      matches: false,
      metrics: {
        notifier_calls: 6,
        secondary_invalidations: 3,
        device_faults: 1,
        mirror_zaps: 0,
        cpu_tlb_flushes: 2,
        sim_ns: 12000,
      },
    }),
  ],
}
