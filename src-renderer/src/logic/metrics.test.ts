import { describe, expect, it } from 'vitest'
import { RUN } from './fixtures'
import {
  chartHeight,
  formatDelta,
  formatMetric,
  METRIC_COLUMNS,
  metricsSeries,
  metricsTable,
} from './metrics'

describe('metrics table', () => {
  it('has the CLI columns, with the page/range/full/atc split after secondary_invalidations', () => {
    expect(METRIC_COLUMNS.map((c) => c.label)).toEqual([
      'notifier_calls',
      'secondary_invalidations',
      'page',
      'range',
      'full',
      'atc',
      'device_faults',
      'mirror_zaps',
      'cpu_tlb_flushes',
      'sim_ns',
    ])
  })

  it('without a baseline: values only, and what they were measured on', () => {
    const t = metricsTable(RUN, null)
    expect(t.baseline).toBeNull()
    expect(t.rows.map((r) => r.policy)).toEqual(['start-end', 'invalidate-range', 'arch-hook'])
    const ah = t.rows[2]!
    expect(ah.cells.map((c) => c.value)).toEqual([6, 3, 2, 0, 0, 0, 1, 0, 2, 12000])
    expect(ah.cells.at(-1)!.text).toBe('12,000 ns')
    expect(ah.cells.every((c) => c.delta === null && c.deltaText === null)).toBe(true)
    expect(t.measuredOn).toEqual(['reference'])
    expect(t.costTables).toEqual(['v1'])
  })

  it('with a baseline: each other policy shows its difference, the baseline row none', () => {
    const t = metricsTable(RUN, 'arch-hook')
    expect(t.baseline).toBe('arch-hook')
    const se = t.rows[0]!
    expect(se.baseline).toBe(false)
    expect(se.cells.map((c) => c.delta)).toEqual([-2, -1, 0, 0, 0, 0, -1, 0, 0, -2400])
    expect(se.cells.map((c) => c.deltaText)).toEqual([
      '-2',
      '-1',
      '±0',
      '±0',
      '±0',
      '±0',
      '-1',
      '±0',
      '±0',
      '-2,400 ns',
    ])
    expect(t.rows[2]!.baseline).toBe(true)
    expect(t.rows[2]!.cells.every((c) => c.delta === null)).toBe(true)
    // A name that is not a policy of the run is no baseline.
    expect(metricsTable(RUN, 'nope').baseline).toBeNull()
  })

  it('says once what the metrics were measured on; how each execution ended stays on its row', () => {
    const run = {
      ...RUN,
      results: RUN.results.map((r, i) => ({
        ...r,
        metricsSchedule: i === 0 ? 'reference schedule (ended: livelock)' : 'reference schedule',
      })),
    }
    const t = metricsTable(run, null)
    expect(t.measuredOn).toEqual(['reference schedule'])
    expect(t.rows[0]!.measuredOn).toBe('reference schedule (ended: livelock)')
  })

  it('formats in the column unit', () => {
    expect(formatMetric(18770, 'ns')).toBe('18,770 ns')
    expect(formatMetric(3, 'count')).toBe('3')
    expect(formatDelta(2, 'count')).toBe('+2')
    expect(formatDelta(-1200, 'ns')).toBe('-1,200 ns')
    expect(formatDelta(0, 'ns')).toBe('±0')
  })
})

describe('metrics series', () => {
  it('one series per count metric that is not zero everywhere, one value per policy', () => {
    const s = metricsSeries(RUN)
    expect(s.policies).toEqual(['start-end', 'invalidate-range', 'arch-hook'])
    expect(s.counts.find((c) => c.metric === 'notifier_calls')?.values).toEqual([4, 4, 6])
    expect(s.counts.map((c) => c.metric)).toEqual([
      'notifier_calls',
      'secondary_invalidations',
      'device_faults',
      'cpu_tlb_flushes',
    ])
    expect(s.allZero).toEqual(['mirror_zaps'])
    expect(s.simNs).toEqual([9600, 9600, 12000])
  })

  it('chart heights grow with the number of policies', () => {
    expect(chartHeight(9, 4)).toBeGreaterThan(chartHeight(3, 4))
    expect(chartHeight(9, 1)).toBeGreaterThan(chartHeight(3, 1))
    // Every policy keeps at least a 14 px row for its label, so labels cannot overlap.
    for (const n of [1, 3, 6, 12])
      expect((chartHeight(n, 1) - chartHeight(0, 1)) / n).toBeGreaterThanOrEqual(14)
  })
})
