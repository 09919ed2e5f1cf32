/** Chart data for the per-policy metrics, kept apart from chart.js so it can be tested. */
import type { Metrics, RunResult } from '../../../src-main/engine/results'

export const COUNT_METRICS = [
  'notifier_calls',
  'secondary_invalidations',
  'device_faults',
  'mirror_zaps',
  'cpu_tlb_flushes',
] as const satisfies readonly (keyof Metrics)[]

export interface MetricsSeries {
  readonly policies: readonly string[]
  /** One series per count metric, one value per policy. */
  readonly counts: ReadonlyArray<{ metric: (typeof COUNT_METRICS)[number]; values: readonly number[] }>
  readonly simNs: readonly number[]
}

export function metricsSeries(run: RunResult): MetricsSeries {
  return {
    policies: run.results.map((r) => r.policy),
    counts: COUNT_METRICS.map((metric) => ({ metric, values: run.results.map((r) => r.metrics[metric]) })),
    simNs: run.results.map((r) => r.metrics.sim_ns),
  }
}
