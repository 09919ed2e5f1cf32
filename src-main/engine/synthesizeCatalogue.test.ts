/**
 * What the placement search (synthesize.ts) relies on, checked on catalogue scenarios:
 * - the site tally is exact: adding a site the run never asked about changes nothing;
 * - monotonicity: on a scenario without a `forbid`, a placement that holds still holds with
 *   more sites (random S ⊆ T pairs); with a forbid it may not (the COW ordering), which is why
 *   such scenarios are searched without pruning;
 * - the pruned search finds the same minimal sets, front and cells as exploring every
 *   placement of a small site list.
 */
import fc from 'fast-check'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadScenarioFile } from '../node/scenarioFiles'
import { SITE_NAMES, sitePolicy, type Site } from './policy'
import { defaultRunOptions, runPolicy } from './run'
import type { PolicyResult } from './results'
import { localEvaluator, synthesize } from './synthesize'
import type { Scenario } from './types'

const CATALOGUE = path.join(__dirname, '../../scenarios')
const load = (f: string): Scenario => loadScenarioFile(path.join(CATALOGUE, f))

function run(sc: Scenario, sites: readonly Site[]): PolicyResult {
  return runPolicy(sc, sitePolicy(sites), { ...defaultRunOptions(sc), tallySites: true })
}

/** What must not change between two runs that answer every asked site alike. */
function outcome(r: PolicyResult): unknown {
  return {
    verdict: r.verdict,
    invariants: r.invariants,
    states: r.stats.states,
    steps: r.stats.steps,
    metrics: r.metrics,
    invalidations: r.invalidations,
    reached: r.sitesReached,
    schedules: r.counterexamples.map((c) => [c.schedule, c.cycle]),
  }
}

/** Small catalogue scenarios of several shapes (hw-walkers, a sw-mirror, exits, upgrades, reclaim). */
const SMALL = [
  'munmap-uaf.flush-at-start.yaml',
  'munmap-uaf.gather-batch-full.yaml',
  'migrate.flush-at-start.yaml',
  'upgrade-loop.smmu-no-btm.yaml',
  'upgrade-loop.clean-dirty-update.yaml',
  'upgrade-loop.x86-no-flush.yaml',
  'reclaim.flush-at-start.yaml',
  'reclaim.vtd-v6.6.0.yaml',
  'thp-collapse.walk-cache.yaml',
  'fork-isolation.flush-at-start.yaml',
  'exit.release-block.yaml',
  'zap-writeback.device.yaml',
  'vmalloc-reuse.supervisor-pasid.yaml',
  'writeback.sw-mirror.yaml',
]
const scenarios = new Map(SMALL.map((f) => [f, load(f)]))

const siteSet = fc.subarray([...SITE_NAMES] as Site[])

describe('the site tally', () => {
  it('a site the run never asked about changes nothing when added (random placements, seed 1414)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SMALL), siteSet, fc.nat(), (f, sites, k) => {
        const sc = scenarios.get(f)!
        const base = run(sc, sites)
        const unasked = SITE_NAMES.filter((s) => !base.sitesReached!.includes(s) && !sites.includes(s))
        if (unasked.length === 0) return
        const more = run(sc, [...sites, unasked[k % unasked.length]!])
        expect(outcome(more)).toEqual(outcome(base))
      }),
      { seed: 1414, numRuns: 60 },
    )
  })

  it('is what the kernel code reached: the arch flushes only with a hw-walker, the kernel chain only with a supervisor PASID', () => {
    const reached = (f: string): readonly string[] => run(load(f), [...SITE_NAMES]).sitesReached!
    expect(reached('munmap-uaf.sw-mirror.yaml')).toEqual([])
    expect(reached('vmalloc-reuse.supervisor-pasid.yaml')).toEqual(['flush_tlb_kernel_range'])
    expect(reached('munmap-uaf.flush-at-start.yaml')).toEqual([
      'invalidate_range_start',
      'range_end',
      'tlb_flush_mmu_tlbonly',
      'flush_tlb_range',
    ])
    // flush_at: start: the driver never flushes at range_end, whatever the policy.
    expect(reached('munmap-uaf.flush-at-start.yaml')).not.toContain('invalidate_range_end')
    expect(reached('munmap-uaf.flush-at-both.yaml')).toContain('invalidate_range_end')
  })
})

describe('monotonicity in the site set', () => {
  it('on scenarios without a forbid: a placement that holds still holds with more sites (random S ⊆ T, seed 2024)', () => {
    const monotone = SMALL.filter((f) => scenarios.get(f)!.forbid === null)
    fc.assert(
      fc.property(fc.constantFrom(...monotone), siteSet, siteSet, (f, s, extra) => {
        const sc = scenarios.get(f)!
        const small = run(sc, s)
        const big = run(sc, [...new Set([...s, ...extra])])
        if (small.verdict === 'holds') expect(big.verdict, `${f}: ${s.join('+')} holds`).toBe('holds')
        if (big.verdict === 'violated') expect(small.verdict, `${f}: ${s.join('+')}`).toBe('violated')
      }),
      { seed: 2024, numRuns: 80 },
    )
  })

  it('not with a forbid that states an ordering: no notifier holds on the COW scenario, one flush at range_end does not', () => {
    const sc = load('cow-ordering.flush-at-end.yaml')
    expect(sc.forbid).not.toBeNull()
    // The device keeps both old translations: it reads A and B old, which the forbid allows.
    expect(run(sc, []).verdict).toBe('holds')
    // range_end flushes B's entry while A's repoint is still before its own range_end.
    const one = run(sc, ['invalidate_range_end'])
    expect(one.verdict).toBe('violated')
    expect(one.invariants.forbid).toBe('violated')
  })
})

describe('the pruned search against every placement', () => {
  it('same minimal sets, front and cells on a small site list over catalogue scenarios', async () => {
    const files = [
      'munmap-uaf.flush-at-start.yaml',
      'munmap-uaf.gather-batch-full.yaml',
      'migrate.flush-at-start.yaml',
      'upgrade-loop.smmu-no-btm.yaml',
    ]
    const scs = files.map(load)
    const candidates: Site[] = [
      'invalidate_range_start',
      'invalidate_range_end',
      'range_end',
      'tlb_flush_mmu_tlbonly',
      'flush_tlb_page',
      'flush_tlb_range',
      'arch_tlbbatch_add_pending',
    ]
    const opts = {
      scenarios: files.map((f, i) => ({ id: f, title: scs[i]!.title, file: f })),
      candidates,
      objective: 'secondary_invalidations' as const,
      maxStates: 200_000,
    }
    const pruned = await synthesize(opts, localEvaluator(scs, 200_000))
    const every = await synthesize({ ...opts, prune: false, reach: false }, localEvaluator(scs, 200_000))
    const names = (r: typeof pruned): string[] => r.minimal.map((m) => m.placement.name).sort()
    expect(names(pruned)).toEqual(names(every))
    expect(names(pruned).length).toBeGreaterThan(1)
    expect(pruned.front.map((f) => [f.held, f.cost])).toEqual(every.front.map((f) => [f.held, f.cost]))
    const cells = (r: typeof pruned): unknown =>
      [...r.placements, ...r.minimal.map((m) => m.placement)].map((p) => [
        p.name,
        p.cells.map((c) => [c.verdict, c.cost]),
      ])
    expect(cells(pruned)).toEqual(cells(every))
    // What pruning saved: the unpruned search explores every placement's run.
    expect(every.search.pruned).toBe(0)
    expect(pruned.search.explored).toBeLessThan(every.search.explored)
    expect(pruned.search.pruned).toBeGreaterThan(0)
  }, 120_000)
})
