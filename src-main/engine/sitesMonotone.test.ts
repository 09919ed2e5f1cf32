/**
 * Correctness is monotone in the set of sites (policy.ts): a site only adds a notifier call or
 * an invalidation, so for sites S ⊆ T, when S holds (explored to the end) T violates none of
 * the safety invariants (use-after-free, stale-after-return, lost-write, lost-dirty) nor
 * progress. Checked on every catalogue scenario with pairs drawn from a seeded PRNG: a named
 * set (preset and variants) or a random set as S, and S with one to three more sites as T. The
 * later site synthesis (`mnlab synthesize`) may prune supersets of a holding set on this.
 *
 * Two things are not monotone, and the tests below pin them so a pruning search knows:
 * - a litmus outcome (`forbid`): a secondary that is never invalidated reads a consistent,
 *   stale snapshot, so the empty set can hold where a partial placement lets the device see
 *   one write and not the other (Glisse's COW ordering);
 * - one invariant on its own, when another is violated: a run that reads a freed page through a
 *   stale leaf entry (use-after-free) does not walk the stale walk cache that loops forever.
 */
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadScenarioText } from '../node/scenarioFiles'
import { namedSites, PRESETS, SITE_NAMES, sitePolicy, VARIANTS, type Site } from './policy'
import { mulberry32, type Prng } from './prng'
import { defaultRunOptions, runPolicy } from './run'
import { INVARIANTS, type Scenario } from './types'

const DIR = path.join(__dirname, '../../scenarios')
/** Per run: enough for most catalogue files to finish; a cut run of S proves nothing and is skipped. */
const MAX_STATES = 20_000

function pick<T>(rng: Prng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)]!
}

/** S: a preset with random variants, or a random set of two to six sites. */
function smaller(rng: Prng): Site[] {
  if (rng.next() < 0.6)
    return namedSites(
      pick(rng, PRESETS),
      VARIANTS.filter(() => rng.next() < 0.3),
    )
  const n = 2 + rng.int(5)
  const out = new Set<Site>()
  while (out.size < n) out.add(pick(rng, SITE_NAMES))
  return [...out]
}

/** T: S with one to three sites it does not have. */
function larger(rng: Prng, s: readonly Site[]): Site[] {
  const rest = SITE_NAMES.filter((x) => !s.includes(x))
  const out = new Set<Site>(s)
  const n = Math.min(rest.length, 1 + rng.int(3))
  while (out.size < s.length + n) out.add(pick(rng, rest))
  return [...out]
}

function run(sc: Scenario, sites: readonly Site[]) {
  const o = defaultRunOptions(sc)
  return runPolicy(sc, sitePolicy(sites), {
    ...o,
    mode: 'exhaustive',
    budget: { ...o.budget, maxStates: MAX_STATES },
  })
}

describe('sites: correctness is monotone in the set', () => {
  it('for S ⊆ T on every catalogue scenario: when S holds, T violates no safety invariant and not progress (seed 14)', () => {
    const rng = mulberry32(14)
    let compared = 0
    let holding = 0
    for (const f of readdirSync(DIR).filter((x) => x.endsWith('.yaml'))) {
      const sc = loadScenarioText(readFileSync(path.join(DIR, f), 'utf8'), f)
      for (let k = 0; k < 2; k++) {
        const s = smaller(rng)
        const t = larger(rng, s)
        const rs = run(sc, s)
        if (!rs.stats.complete || rs.verdict !== 'holds') continue
        const rt = run(sc, t)
        compared++
        for (const inv of INVARIANTS) {
          if (inv === 'forbid') continue
          holding++
          expect(
            rt.invariants[inv],
            `${f}: ${inv} holds under ${sitePolicy(s).name} but not under its superset ${sitePolicy(t).name}: ${rt.counterexamples.find((c) => c.invariant === inv)?.why ?? ''}`,
          ).not.toBe('violated')
        }
      }
    }
    // The pairs must exercise the property, not skip it.
    expect(compared).toBeGreaterThan(100)
    expect(holding).toBeGreaterThan(500)
  })

  it('a litmus outcome is not monotone: on the COW ordering race the empty set holds, invalidate_range_end alone sees B new and A old', () => {
    const f = 'cow-ordering.invalidate-range-needed.yaml'
    const sc = loadScenarioText(readFileSync(path.join(DIR, f), 'utf8'), f)
    const none = run(sc, [])
    expect(none.stats.complete).toBe(true)
    expect(none.verdict).toBe('holds')
    const end = run(sc, ['invalidate_range_end'])
    expect(end.invariants.forbid).toBe('violated')
    expect(Object.entries(end.invariants).filter(([, v]) => v === 'violated')).toEqual([
      ['forbid', 'violated'],
    ])
  })

  it('one invariant alone is not monotone when another is violated: a leaf invalidation turns a use-after-free into a walk-cache livelock too', () => {
    const f = 'thp-collapse.walk-cache-leaf-only.yaml'
    const sc = loadScenarioText(readFileSync(path.join(DIR, f), 'utf8'), f)
    const none = run(sc, [])
    expect(none.invariants['use-after-free']).toBe('violated')
    expect(none.invariants.progress).toBe('holds')
    const range = run(sc, ['flush_tlb_range'])
    expect(range.invariants.progress).toBe('violated')
  })
})
