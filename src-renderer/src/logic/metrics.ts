/**
 * The per-policy metrics as the CLI prints them (`mnlab run`): a table of numbers with each
 * policy's difference from a chosen baseline, and chart data, kept apart from Vue and chart.js so
 * they can be tested.
 */
import type { Metrics, PolicyResult, RunResult } from '../../../src-main/engine/results'

export const COUNT_METRICS = [
  'notifier_calls',
  'secondary_invalidations',
  'device_faults',
  'mirror_zaps',
  'cpu_tlb_flushes',
] as const satisfies readonly (keyof Metrics)[]

/** One column of the metrics table: a metric, or one shape of the secondary invalidations. */
export interface MetricColumn {
  readonly key: string
  /** The column head, as the CLI names it. */
  readonly label: string
  /** What the head's tooltip says. */
  readonly title: string
  readonly unit: 'count' | 'ns'
  /** Part of the secondary_invalidations split (page/range/full/atc). */
  readonly split: boolean
  readonly value: (r: PolicyResult) => number
}

export const METRIC_COLUMNS: readonly MetricColumn[] = [
  {
    key: 'notifier_calls',
    label: 'notifier_calls',
    title: 'mmu_notifier_* calls that reached the subscriber list',
    unit: 'count',
    split: false,
    value: (r) => r.metrics.notifier_calls,
  },
  {
    key: 'secondary_invalidations',
    label: 'secondary_invalidations',
    title: 'invalidation commands a secondary executed (IOTLB flush, sw-mirror zap pass)',
    unit: 'count',
    split: false,
    value: (r) => r.metrics.secondary_invalidations,
  },
  ...(['page', 'range', 'full', 'atc'] as const).map((shape): MetricColumn => ({
    key: `inv_${shape}`,
    label: shape,
    title: `secondary invalidations of shape '${shape}'${shape === 'atc' ? ' (device ATC, ATS)' : ''}`,
    unit: 'count',
    split: true,
    value: (r) => r.invalidations[shape],
  })),
  {
    key: 'device_faults',
    label: 'device_faults',
    title: 'device page requests (IOPF/PRI) and sw-mirror faults',
    unit: 'count',
    split: false,
    value: (r) => r.metrics.device_faults,
  },
  {
    key: 'mirror_zaps',
    label: 'mirror_zaps',
    title: 'shadow entries (SPTEs) a sw-mirror zapped',
    unit: 'count',
    split: false,
    value: (r) => r.metrics.mirror_zaps,
  },
  {
    key: 'cpu_tlb_flushes',
    label: 'cpu_tlb_flushes',
    title: 'CPU TLB flush operations',
    unit: 'count',
    split: false,
    value: (r) => r.metrics.cpu_tlb_flushes,
  },
  {
    key: 'sim_ns',
    label: 'sim_ns',
    title: 'simulated time from the cost table, in nanoseconds',
    unit: 'ns',
    split: false,
    value: (r) => r.metrics.sim_ns,
  },
]

const NUM = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 })

/** A value in its column's unit: `3`, `18,770 ns`. */
export function formatMetric(v: number, unit: MetricColumn['unit']): string {
  return unit === 'ns' ? `${NUM.format(v)} ns` : NUM.format(v)
}

/** A difference from the baseline: `+2`, `-1,200 ns`, `±0`. */
export function formatDelta(d: number, unit: MetricColumn['unit']): string {
  if (d === 0) return '±0'
  const s = `${d > 0 ? '+' : '-'}${NUM.format(Math.abs(d))}`
  return unit === 'ns' ? `${s} ns` : s
}

export interface MetricCell {
  readonly key: string
  readonly value: number
  readonly text: string
  /** Difference from the baseline policy's value; null without a baseline or on its own row. */
  readonly delta: number | null
  readonly deltaText: string | null
}

export interface MetricRow {
  readonly policy: string
  readonly baseline: boolean
  /** This policy's metrics execution, as the engine names it (with how it ended). */
  readonly measuredOn: string
  readonly cells: readonly MetricCell[]
}

export interface MetricsTable {
  readonly columns: readonly MetricColumn[]
  readonly rows: readonly MetricRow[]
  /** The baseline policy, or null (absolute values only). */
  readonly baseline: string | null
  /**
   * What the CLI prints under its table: the execution(s) the metrics were measured on, without
   * the per-policy `(ended: ...)` (each row has its own), and the cost table(s).
   */
  readonly measuredOn: readonly string[]
  readonly costTables: readonly string[]
}

/** The metrics table for a run; `baseline` names a policy of the run (any other name: none). */
export function metricsTable(run: RunResult, baseline: string | null): MetricsTable {
  const base = run.results.find((r) => r.policy === baseline) ?? null
  const rows = run.results.map((r): MetricRow => {
    const isBase = base !== null && r.policy === base.policy
    return {
      policy: r.policy,
      baseline: isBase,
      measuredOn: r.metricsSchedule,
      cells: METRIC_COLUMNS.map((c): MetricCell => {
        const value = c.value(r)
        const delta = base === null || isBase ? null : value - c.value(base)
        return {
          key: c.key,
          value,
          text: formatMetric(value, c.unit),
          delta,
          deltaText: delta === null ? null : formatDelta(delta, c.unit),
        }
      }),
    }
  })
  return {
    columns: METRIC_COLUMNS,
    rows,
    baseline: base?.policy ?? null,
    measuredOn: [...new Set(run.results.map((r) => r.metricsSchedule.replace(/ \(ended: [^)]*\)$/, '')))],
    costTables: [...new Set(run.results.map((r) => r.costTable))],
  }
}

export interface MetricsSeries {
  readonly policies: readonly string[]
  /** One series per count metric, one value per policy. */
  readonly counts: ReadonlyArray<{ metric: (typeof COUNT_METRICS)[number]; values: readonly number[] }>
  /** Count metrics that are zero for every policy (left out of the chart, named under it). */
  readonly allZero: readonly (typeof COUNT_METRICS)[number][]
  readonly simNs: readonly number[]
}

export function metricsSeries(run: RunResult): MetricsSeries {
  const all = COUNT_METRICS.map((metric) => ({ metric, values: run.results.map((r) => r.metrics[metric]) }))
  return {
    policies: run.results.map((r) => r.policy),
    counts: all.filter((s) => s.values.some((v) => v !== 0)),
    allZero: all.filter((s) => s.values.every((v) => v === 0)).map((s) => s.metric),
    simNs: run.results.map((r) => r.metrics.sim_ns),
  }
}

/**
 * Chart heights that grow with the number of policies, so every policy keeps a readable row: a
 * fixed room for the axis plus, per policy, its bars or its label's lines, whichever is taller.
 */
export function chartHeight(policies: number, barsPerPolicy: number, labelLines = 1): number {
  const bar = 11
  const gap = 8
  const line = 12
  const row = Math.max(Math.max(1, barsPerPolicy) * bar + gap, Math.max(1, labelLines) * line + 6)
  return 34 + Math.max(0, policies) * row
}

/** A policy name as chart label lines: split before each `+`, so a long name never runs off the side. */
export function labelLines(policy: string): string[] {
  return policy.split(/(?=\+)/)
}
