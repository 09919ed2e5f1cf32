import { describe, expect, it } from 'vitest'
import { loadScenarioText } from '../node/scenarioFiles'
import { alignedChunks, COSTS, invalidationCost } from './costs'
import { runUnder } from './kernel/traceTestkit'

describe('cost model: what one secondary invalidation costs each driver (v6.6)', () => {
  it('SMMUv3: a TLBI per page and one CMD_SYNC, an ASID-wide TLBI from 512 pages or for everything', () => {
    expect(invalidationCost('smmu-v3', [3])).toEqual({
      kind: 'page',
      cost: [
        ['smmu_tlbi_va', 1],
        ['smmu_cmd_sync', 1],
      ],
    })
    expect(invalidationCost('smmu-v3', [1, 2, 3])).toEqual({
      kind: 'range',
      cost: [
        ['smmu_tlbi_va', 3],
        ['smmu_cmd_sync', 1],
      ],
    })
    const big = Array.from({ length: 512 }, (_, i) => i)
    expect(invalidationCost('smmu-v3', big)).toEqual({
      kind: 'full',
      cost: [
        ['smmu_tlbi_asid', 1],
        ['smmu_cmd_sync', 1],
      ],
    })
    expect(invalidationCost('smmu-v3', null).kind).toBe('full')
  })

  it('VT-d: one qi_submit_sync per naturally aligned power-of-two chunk', () => {
    expect(alignedChunks([0, 1, 2, 3])).toBe(1)
    expect(alignedChunks([1, 2, 3, 4])).toBe(3) // [1] [2,3] [4]
    expect(alignedChunks([5, 9])).toBe(2)
    expect(invalidationCost('vt-d', [1, 2, 3, 4])).toEqual({ kind: 'range', cost: [['vtd_qi_sync', 3]] })
    expect(invalidationCost('vt-d', null)).toEqual({ kind: 'full', cost: [['vtd_qi_sync', 1]] })
  })

  it('AMD IOMMUv2: one page, or the whole PASID for anything larger', () => {
    expect(invalidationCost('amd-v2', [7]).kind).toBe('page')
    expect(invalidationCost('amd-v2', [7, 8]).kind).toBe('full')
  })

  it('every figure names its source and reliability', () => {
    for (const [k, e] of Object.entries(COSTS)) {
      expect(e.source.length, k).toBeGreaterThan(10)
      expect(['H', 'M', 'L'], k).toContain(e.reliability)
    }
  })
})

describe('cost model in results', () => {
  const yaml = (extra: string) => `title: t
arch: x86_64
pages:
  P: { value: 5, prot: rw }
secondary:
  - { name: iommu, type: hw-walker, cached: [P] }
cpus:
  kcompactd: [migrate P]
${extra}`

  it('x86 batched migration invalidates the whole address space under the arch hook, one page under invalidate-range', () => {
    const sc = loadScenarioText(yaml(''), 't.yaml')
    const ah = runUnder(sc, 'arch-hook')
    const ir = runUnder(sc, 'invalidate-range')
    expect(ah.invalidations).toEqual({ page: 0, range: 0, full: 1, atc: 0 })
    expect(ir.invalidations).toEqual({ page: 1, range: 0, full: 0, atc: 0 })
  })

  it('a scenario can override cost-table entries, and results name the table with the overrides', () => {
    const base = loadScenarioText(yaml(''), 't.yaml')
    const over = loadScenarioText(yaml('costs: { vtd_qi_sync: 7000 }\n'), 't.yaml')
    const a = runUnder(base, 'arch-hook')
    const b = runUnder(over, 'arch-hook')
    expect(b.metrics.sim_ns - a.metrics.sim_ns).toBe(6000)
    expect(b.costTable).toBe('default-v2 with vtd_qi_sync=7000')
  })

  it('expect_metrics: bounds on the metrics of a policy are checked, and a wrong one fails the match with the numbers', () => {
    const ok = loadScenarioText(
      yaml(
        "expect: { arch-hook: holds, invalidate-range: holds }\nexpect_metrics:\n  arch-hook: { full_invalidations: 1, page_invalidations: '< 1' }\n  invalidate-range: { secondary_invalidations: '>= 1' }\n",
      ),
      't.yaml',
    )
    const ah = runUnder(ok, 'arch-hook')
    expect(ah.matches).toBe(true)
    expect(ah.metricChecks).toEqual([
      { metric: 'full_invalidations', want: '1', got: 1, ok: true },
      { metric: 'page_invalidations', want: '< 1', got: 0, ok: true },
    ])
    const wrong = loadScenarioText(
      yaml('expect: { arch-hook: holds }\nexpect_metrics: { arch-hook: { full_invalidations: 0 } }\n'),
      't.yaml',
    )
    const w = runUnder(wrong, 'arch-hook')
    expect(w.verdict).toBe('holds')
    expect(w.matches).toBe(false)
    expect(w.metricChecks).toEqual([{ metric: 'full_invalidations', want: '0', got: 1, ok: false }])
  })

  it('expect_metrics errors: an unknown metric, a bad bound, a policy with no verdict in expect', () => {
    const load = (extra: string) => () => loadScenarioText(yaml(extra), 't.yaml')
    expect(
      load('expect: { arch-hook: holds }\nexpect_metrics: { arch-hook: { full_flushes: 1 } }\n'),
    ).toThrow(/unknown key 'full_flushes'/)
    expect(
      load("expect: { arch-hook: holds }\nexpect_metrics: { arch-hook: { full_invalidations: 'lots' } }\n"),
    ).toThrow(/full_invalidations must be a count \(0, 3\) or a bound such as '>= 1'/)
    expect(load('expect: { arch-hook: holds }\nexpect_metrics: { start-end: { mirror_zaps: 0 } }\n')).toThrow(
      /start-end has metrics to check but no verdict: add it to expect too/,
    )
  })
})

describe('a huge page stands for 512 pages in what an invalidation costs', () => {
  // v6.6 arm_smmu_mm_arch_invalidate_secondary_tlbs: a range of CMDQ_MAX_TLBI_OPS pages or
  // more (a 2 MiB PMD range is 512) is one ASID-wide TLBI, however few subpages the scenario
  // names for it; a subpage alone (after the split) is one page.
  const yaml = (ops: string) => `title: t
arch: arm64
thp: { H: [A, B] }
pages: { A: { value: 1 }, B: { value: 2 } }
secondary:
  - { name: smmu, type: hw-walker, iommu: smmu-v3, flush_at: end, cached: [A] }
cpus:
  C0: [${ops}]
expect: { start-end: holds }
`
  it('the zap of the whole huge PMD is one ASID-wide TLBI; a zap of one subpage after the split is one page', () => {
    const whole = runUnder(loadScenarioText(yaml('munmap A B'), 't.yaml'), 'start-end')
    expect(whole.invalidations).toEqual({ page: 0, range: 0, full: 1, atc: 0 })
    const one = runUnder(loadScenarioText(yaml('thp_split H, madvise_dontneed A'), 't.yaml'), 'start-end')
    // flush_at: end: one invalidation per range_end. The split's range covers the 2 MiB
    // (ASID-wide); the MADV_DONTNEED of A after it is one page.
    expect(one.invalidations).toEqual({ page: 1, range: 0, full: 1, atc: 0 })
  })
})
