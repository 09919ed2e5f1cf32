/** Result types: plain JSON data, the same for the CLI, the workers and the GUI. */
import type { Site } from './policy'
import type { InvariantName, Verdict } from './types'
import { count, plural } from './plural'

export interface Metrics {
  /** mmu_notifier_* calls that reached the mm's subscriber list (start, end, invalidate_range, arch hook). */
  notifier_calls: number
  /** Invalidation commands a secondary executed (IOTLB flush, or a sw-mirror zap pass). */
  secondary_invalidations: number
  /** Device page requests (IOPF/PRI) and sw-mirror faults. */
  device_faults: number
  /** Shadow entries (SPTEs) a sw-mirror zapped. */
  mirror_zaps: number
  /** CPU TLB flush operations (flush_tlb_page/range/mm, mmu_gather flushes). */
  cpu_tlb_flushes: number
  /** Simulated time from the cost table. */
  sim_ns: number
}

export function zeroMetrics(): Metrics {
  return {
    notifier_calls: 0,
    secondary_invalidations: 0,
    device_faults: 0,
    mirror_zaps: 0,
    cpu_tlb_flushes: 0,
    sim_ns: 0,
  }
}

export type EventKind =
  | 'op'
  | 'lock'
  | 'pte'
  | 'cpu-flush'
  | 'notifier'
  | 'sec-inval'
  | 'access'
  | 'fault'
  | 'fill'
  | 'frame'
  | 'violation'
  | 'info'

export interface TraceEvent {
  /** Index of the step (0-based) in the execution. */
  readonly step: number
  readonly thread: string
  /** Kernel function (or hardware action) this event models. */
  readonly fn: string
  readonly kind: EventKind
  readonly text: string
  /** Locks the thread holds while this happens. */
  readonly locks: readonly string[]
  /**
   * The pages the event is about, by name: the page accessed or filled, or the range a CPU
   * flush, a notifier call or a secondary invalidation covered (`all`: the whole address space).
   * Set on access, fill, cpu-flush, notifier and sec-inval events; absent elsewhere.
   */
  readonly pages?: readonly string[] | 'all'
  /**
   * Access and fill events: the cache the access went through or the fill filled, named as the
   * state rows (`C0 TLB`, `iommu TLB`, `iommu IOTLB`, `iommu ATC`, `kvm shadow`, `iommu walk cache`).
   */
  readonly tlb?: string
  /** Access and fill events: the pfn the translation pointed to. */
  readonly pfn?: number
  /** A load: the register it wrote. */
  readonly reg?: string
}

/** The structured fields an event may carry (see TraceEvent). */
export type EventDetail = Pick<TraceEvent, 'pages' | 'tlb' | 'pfn' | 'reg'>

export interface StepRecord {
  readonly step: number
  readonly thread: string
  readonly events: readonly TraceEvent[]
  /** What changed: PTEs, TLB entries, frames (human-readable). */
  readonly changes: readonly string[]
  /**
   * The whole machine after this step, as [subject, value] rows named like `changes`
   * (PTE A, VMA A, C0 TLB, iommu TLB, pfn 3, locks, registers). Only in traced runs.
   */
  readonly state?: ReadonlyArray<readonly [string, string]>
  /**
   * The state rows (subjects of `state`, e.g. `iommu TLB`, `iommu ATC`, `kvm shadow`, `C0 TLB`)
   * holding a translation that disagrees with its PTE after this step: the PTE is none or not
   * present, maps another pfn (or the frame was freed), or is read-only/clean while the entry
   * allows writes. Absent when every cached translation agrees. Only in traced runs.
   */
  readonly stale?: readonly string[]
  /** One line per stale entry: `iommu TLB A -> pfn 1 RO, but PTE A maps pfn 3`. */
  readonly staleWhy?: readonly string[]
}

export interface Violation {
  readonly invariant: InvariantName
  /** Step index at which it was detected. */
  readonly step: number
  readonly thread: string
  /** One line in kernel terms. */
  readonly message: string
}

/**
 * A step that caused a violation, for the swimlane's marks and the explanation:
 * - `fill`: the step that cached the translation (or permission) later used stale;
 * - `pte-change`: the PTE change that made that entry stale;
 * - `missed-flush`: a flush or invalidation after the change that did not reach the entry;
 * - `stale-use`: the access through the stale entry (or, for forbid, the read that made it true);
 *   a walk through a walk-cache entry for a detached or freed page table is one too;
 * - `context`: any further step the explanation names that is not itself at fault: a free, a
 *   syscall's return, a writeback's clean, a late invalidation, a forbid read that was up to date.
 */
export type CulpritRole = 'fill' | 'pte-change' | 'missed-flush' | 'stale-use' | 'context'

export interface Culprit {
  /** The step (StepRecord.step) this names. */
  readonly step: number
  readonly thread: string
  readonly role: CulpritRole
  /** One line: what happened at that step, in kernel terms. */
  readonly text: string
}

export interface Counterexample {
  readonly invariant: InvariantName
  /** Thread names, one per step: paste into `explore: { mode: scripted, schedule: [...] }` or `mnlab replay`. */
  readonly schedule: readonly string[]
  /** For livelocks: the steps of the cycle, repeated forever after `schedule`. */
  readonly cycle: readonly string[] | null
  readonly violation: Violation
  readonly why: string
  /** The culprit steps, in step order (empty when none could be named). */
  readonly culprits: readonly Culprit[]
  /** The replayed execution, step by step: events (kernel function, locks held) and changes. */
  readonly trace: readonly StepRecord[]
}

export interface ExploreStats {
  readonly executions: number
  readonly states: number
  readonly steps: number
  readonly complete: boolean
  /** Why exploration stopped early, if it did. */
  readonly cutReason: string | null
  /** Exhaustive runs: the deepest path explored, in steps. */
  readonly maxDepth?: number
  /** Exhaustive runs cut short: states found but never expanded (how much was left). */
  readonly frontierLeft?: number
  /** Exhaustive runs with persistent sets: how many states they cut, or why they were set aside. */
  readonly reduction?: string | null
  /** Runs in a worker: the most memory (heap and external, MiB) seen at the budget checks. */
  readonly peakMemoryMb?: number
}

/**
 * How far an incomplete exhaustive run got, for a user judging whether to raise the budget:
 * `1,200,000 states, depth 41, 35,000 found but not yet expanded`.
 */
export function howFar(st: ExploreStats): string {
  const n = (x: number): string => x.toLocaleString('en-US')
  const parts = [count(st.states, 'state')]
  if (st.maxDepth !== undefined) parts.push(`depth ${st.maxDepth}`)
  if (st.frontierLeft !== undefined && st.frontierLeft > 0)
    parts.push(`${n(st.frontierLeft)} found but not yet expanded`)
  return parts.join(', ')
}

export interface PolicyResult {
  readonly policy: string
  readonly verdict: Verdict
  /** Verdict per invariant: violated if a counterexample exists, else holds/unknown. */
  readonly invariants: Readonly<Record<InvariantName, Verdict>>
  readonly counterexamples: readonly Counterexample[]
  readonly stats: ExploreStats
  /** Metrics of the reference execution (see `metricsSchedule`). */
  readonly metrics: Metrics
  /**
   * Secondary invalidations of the metrics execution by shape: one page, a range, everything
   * (IOTLB / shadow), and device ATC invalidations (ATS).
   */
  readonly invalidations: {
    readonly page: number
    readonly range: number
    readonly full: number
    readonly atc: number
  }
  /** Which execution the metrics were measured on. */
  readonly metricsSchedule: string
  readonly costTable: string
  /** The expect entry as written: `holds`, `violated`, an invariant, or `violated: [a, b]`. */
  readonly expected: string | null
  /**
   * `expect: { P: { violated: [...] } }`: the exact set of invariants that must be violated
   * (absent for the other forms).
   */
  readonly expectedSet?: readonly string[]
  /**
   * Why the verdicts do not match an exact set: `missing lost-write; extra stale-after-return`
   * (absent when they match or another form was expected).
   */
  readonly expectNote?: string
  /**
   * With RunOptions.tallySites: the notification sites (policy.ts SITE_NAMES) the kernel code
   * asked about in this run, whether the policy has them or not. The run is the same under any
   * policy that agrees with this one on these sites.
   */
  readonly sitesReached?: readonly Site[]
  /** Whether the computed result matches `expect` and `expect_metrics`; null when nothing was expected. */
  readonly matches: boolean | null
  /** The scenario's `expect_metrics` for this policy, checked on the metrics execution. */
  readonly metricChecks: readonly MetricCheck[]
}

export interface MetricCheck {
  readonly metric: string
  /** The bound as written: `3`, `>= 1`. */
  readonly want: string
  readonly got: number
  readonly ok: boolean
}

export interface RunResult {
  readonly title: string
  readonly source: string | null
  readonly arch: string
  readonly mode: string
  readonly seed: number | null
  readonly results: readonly PolicyResult[]
  readonly engineVersion: string
}

/**
 * How a result stands against its `expect`:
 * - `ok`: it matches;
 * - `not-proven`: `holds` was expected, the run found no violation and the metrics match, but it
 *   did not cover every interleaving (random sampling, a state or time budget, one scripted
 *   schedule), so it cannot prove `holds`; not a mismatch;
 * - `mismatch`: anything else, including a violation found where `holds` was expected;
 * - null: nothing was expected.
 */
export type ExpectStatus = 'ok' | 'not-proven' | 'mismatch'

export function expectStatus(r: PolicyResult): ExpectStatus | null {
  if (r.matches === null) return null
  if (r.matches) return 'ok'
  const metricsOk = r.metricChecks.every((m) => m.ok)
  if (r.expected === 'holds' && r.verdict === 'unknown' && metricsOk) return 'not-proven'
  // An exact set whose listed invariants were all found, with nothing else violated, but the
  // search did not cover everything: the others are unknown, not proven to hold.
  if (
    r.expectedSet !== undefined &&
    metricsOk &&
    Object.entries(r.invariants).every(([k, v]) =>
      r.expectedSet!.includes(k) ? v === 'violated' : v !== 'violated',
    )
  )
    return 'not-proven'
  return 'mismatch'
}

/** Why a `not-proven` result is not a proof, in a few words: `random: 500 schedules, no violation`. */
export function notProvenReason(r: PolicyResult): string {
  const cut = r.stats.cutReason ?? 'exploration incomplete'
  if (cut.startsWith('random:'))
    return `random: ${r.stats.executions} ${plural(r.stats.executions, 'schedule')}, no violation`
  if (cut.startsWith('scripted:')) return 'scripted: one schedule, no violation'
  return `${cut}, no violation found in ${howFar(r.stats)}`
}
