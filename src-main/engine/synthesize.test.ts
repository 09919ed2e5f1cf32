/**
 * The placement search (synthesize.ts) against a fake evaluator (scenarios given as truth tables
 * over sites), where every answer is known: pruning both ways, the lattice growing with what
 * runs reach, minimal sets and the Pareto front against brute force, certificates, scenarios
 * explored without pruning, stopping and cancelling.
 */
import { describe, expect, it } from 'vitest'
import { SITE_NAMES, siteBit, siteSetName, sitePolicy, type Site } from './policy'
import {
  synthesize,
  type SynthEvalOutcome,
  type SynthEvalRequest,
  type SynthEvaluator,
  type SynthOptions,
  type SynthScenarioInput,
} from './synthesize'
import type { SynthesisResult } from './synthesisResult'

/** A fake scenario: which placements hold, and what a run under each asks about and costs. */
interface Fake {
  readonly id: string
  /** Whether the placement holds (only its sites among `asks(p)` may matter). */
  readonly holds: (p: ReadonlySet<Site>) => boolean
  /** The sites a run under `p` asks about (default: `sites`). */
  readonly asks?: (p: ReadonlySet<Site>) => readonly Site[]
  readonly sites: readonly Site[]
  /** Cost of each site in the placement (default 10), plus 1. */
  readonly cost?: Partial<Record<Site, number>>
  readonly monotone?: boolean
}

const [A, B, C, D, E] = SITE_NAMES as unknown as [Site, Site, Site, Site, Site]

function fakeEvaluator(fakes: readonly Fake[], log: SynthEvalRequest[] = []): SynthEvaluator {
  return (req) => {
    log.push(req)
    const f = fakes[req.scenario]!
    const asked = f.asks?.(new Set(req.sites)) ?? f.sites
    // What the run sees: only the sites it asks about.
    const seen = new Set(req.sites.filter((s) => asked.includes(s)))
    const ok = f.holds(seen)
    const cost = 1 + [...seen].reduce((a, s) => a + (f.cost?.[s] ?? 10), 0)
    const out: SynthEvalOutcome = {
      verdict: ok ? 'holds' : 'violated',
      invariant: ok ? null : 'use-after-free',
      counterexample: ok
        ? null
        : { invariant: 'use-after-free', schedule: ['C0', 'D0'], cycle: null, why: `${f.id} breaks` },
      costs: { sim_ns: cost, secondary_invalidations: seen.size },
      reached: asked,
      states: 10,
    }
    return Promise.resolve(out)
  }
}

function options(fakes: readonly Fake[], extra: Partial<SynthOptions> = {}): SynthOptions {
  const scenarios: SynthScenarioInput[] = fakes.map((f) => ({
    id: f.id,
    title: f.id,
    file: `${f.id}.yaml`,
    monotone: f.monotone,
  }))
  return { scenarios, candidates: [A, B, C, D, E], objective: 'sim_ns', maxStates: 1000, ...extra }
}

const has =
  (...need: Site[]) =>
  (p: ReadonlySet<Site>): boolean =>
    need.every((s) => p.has(s))
const anyOf =
  (...one: Site[]) =>
  (p: ReadonlySet<Site>): boolean =>
    one.some((s) => p.has(s))

/** Every placement of `sites`, by brute force: which hold on all fakes, minimal under inclusion. */
function bruteMinimal(fakes: readonly Fake[], sites: readonly Site[]): string[] {
  const correct: Site[][] = []
  for (let i = 0; i < 1 << sites.length; i++) {
    const p = sites.filter((_, j) => (i & (1 << j)) !== 0)
    const ok = fakes.every((f) => {
      const asked = f.asks?.(new Set(p)) ?? f.sites
      return f.holds(new Set(p.filter((s) => asked.includes(s))))
    })
    if (ok) correct.push(p)
  }
  const minimal = correct.filter(
    (p) => !correct.some((q) => q.length < p.length && q.every((s) => p.includes(s))),
  )
  return minimal.map((p) => siteSetName(p)).sort()
}

const names = (r: SynthesisResult): string[] => r.minimal.map((m) => m.placement.name).sort()

const FAKES: Fake[] = [
  // Needs A, or both B and C.
  { id: 'x1', sites: [A, B, C], holds: (p) => has(A)(p) || has(B, C)(p) },
  // Needs B or C or D.
  { id: 'x2', sites: [B, C, D], holds: anyOf(B, C, D) },
  // Holds with nothing; asks about A only.
  { id: 'x3', sites: [A], holds: () => true },
]

describe('synthesize: the lattice', () => {
  it('prunes both ways and finds the minimal sets and front that exploring every placement finds', async () => {
    const pruned = await synthesize(options(FAKES), fakeEvaluator(FAKES))
    const full = await synthesize(options(FAKES, { prune: false, reach: false }), fakeEvaluator(FAKES))
    expect(names(pruned)).toEqual(bruteMinimal(FAKES, [A, B, C, D, E]))
    expect(names(full)).toEqual(names(pruned))
    // x2 needs one of B, C, D; x1 needs A, or B and C.
    expect(names(pruned)).toEqual(
      [siteSetName([A, B]), siteSetName([A, C]), siteSetName([A, D]), siteSetName([B, C])].sort(),
    )
    expect(pruned.front.map((f) => [f.held, f.cost])).toEqual(full.front.map((f) => [f.held, f.cost]))
    for (const [a, b] of pruned.placements.map((p, i) => [p, full.placements[i]!] as const)) {
      expect(a.cells.map((c) => c.verdict)).toEqual(b.cells.map((c) => c.verdict))
      expect(a.cost).toBe(b.cost)
    }
    // Fewer explorations, and pruning in both directions.
    const s = pruned.search
    expect(s.explored).toBeLessThan(full.search.explored)
    expect(s.prunedHolds).toBeGreaterThan(0)
    expect(s.pruned).toBe(s.prunedHolds + s.prunedViolated)
    // Each scenario's lattice is its reached sites: 2^3 + 2^3 + 2^1 pairs, not 3 x 2^5.
    expect(s.pairs).toBe(3 * 32)
    expect(s.reachedPairs).toBe(8 + 8 + 2)
    expect(full.search.reachedPairs).toBe(3 * 32)
    expect(pruned.complete).toBe(true)
    expect(pruned.notes).toEqual([])
  })

  it("decides every placement of a scenario's lattice, each explored or inferred", async () => {
    const r = await synthesize(options(FAKES), fakeEvaluator(FAKES))
    for (const x of r.scenarios) {
      expect(x.undecided).toBe(0)
      expect(x.explored + x.inferred).toBe(2 ** x.reached.length)
    }
    expect(r.scenarios.map((x) => x.reached)).toEqual([[A, B, C], [B, C, D], [A]])
    expect(r.relevant).toEqual([A, B, C, D])
  })

  it('grows a lattice when a run under a smaller placement asks about a site the full one did not', async () => {
    // With A present the run never gets to where E is asked about; without A it does, and E alone holds.
    const fakes: Fake[] = [
      {
        id: 'grow',
        sites: [A],
        asks: (p) => (p.has(A) ? [A] : [A, E]),
        holds: (p) => p.has(A) || p.has(E),
      },
    ]
    const r = await synthesize(options(fakes), fakeEvaluator(fakes))
    expect(r.scenarios[0]!.reached).toEqual([A, E])
    expect(names(r)).toEqual([siteSetName([A]), siteSetName([E])].sort())
    expect(names(r)).toEqual(bruteMinimal(fakes, [A, B, C, D, E]))
  })

  it('explores a scenario marked non-monotone without pruning, and gets its minimal sets right', async () => {
    // Holds with nothing and with A+B, not with A alone (an ordering that one flush exposes).
    const fakes: Fake[] = [
      {
        id: 'ordering',
        sites: [A, B],
        holds: (p) => p.size !== 1,
        monotone: false,
      },
      { id: 'needsA', sites: [A], holds: has(A) },
    ]
    const r = await synthesize(options(fakes), fakeEvaluator(fakes))
    expect(r.scenarios[0]!.monotone).toBe(false)
    expect(r.scenarios[0]!.inferred).toBe(0)
    expect(r.scenarios[0]!.explored).toBe(4)
    expect(names(r)).toEqual([siteSetName([A, B])])
    expect(names(r)).toEqual(bruteMinimal(fakes, [A, B, C, D, E]))
  })

  it('a violated placement decides its subsets: a site every holding placement needs', async () => {
    // Holds iff D and one of A, B: the placement of every site but D fails, and so do its subsets.
    const fakes: Fake[] = [{ id: 'needsD', sites: [A, B, C, D], holds: (p) => p.has(D) && anyOf(A, B)(p) }]
    const log: SynthEvalRequest[] = []
    const r = await synthesize(options(fakes), fakeEvaluator(fakes, log))
    expect(names(r)).toEqual(bruteMinimal(fakes, [A, B, C, D, E]))
    // Explored: all, none, the four single sites, the four of three sites (A+B+C fails, so
    // do A+B, A+C, B+C), then A+D, B+D, C+D.
    expect(r.search.prunedViolated).toBe(3)
    const lattice = log.filter((q) => q.kind === 'verdict').map((q) => siteSetName(q.sites))
    expect(lattice).toContain(siteSetName([A, B, C]))
    expect(lattice).not.toContain(siteSetName([A, B]))
    expect(r.scenarios[0]!.explored + r.scenarios[0]!.inferred).toBe(16)
  })

  it('notes a contradiction when a certificate exploration finds a holding placement inferred violated', async () => {
    // Marked monotone but is not: B alone holds, B+C is violated (and explored first), so B is
    // inferred violated; A's certificate explores B and finds it holds.
    const fakes: Fake[] = [
      {
        id: 'liar',
        sites: [A],
        asks: (p) => (p.has(A) ? [A] : [A, B, C]),
        holds: (p) => p.has(A) || (p.has(B) && !p.has(C)),
      },
      { id: 'needsB', sites: [B], holds: has(B) },
    ]
    const r = await synthesize(options(fakes), fakeEvaluator(fakes))
    expect(names(r)).toEqual([siteSetName([A, B])])
    expect(r.notes.join('\n')).toMatch(
      /^liar: monotonicity contradicted: sites:invalidate_range_end holds but sites:invalidate_range_end\+range_end is violated/m,
    )
  })
})

describe('synthesize: costs and the Pareto front', () => {
  it("sums each scenario's reference cost, and keeps only placements nothing beats on both", async () => {
    const fakes: Fake[] = [
      { id: 'x1', sites: [A, B], holds: anyOf(A, B), cost: { [A]: 5, [B]: 50 } },
      { id: 'x2', sites: [B, C], holds: anyOf(B, C), cost: { [B]: 50, [C]: 7 } },
    ]
    const r = await synthesize(options(fakes), fakeEvaluator(fakes))
    // Costs: 1 per scenario, plus each present site the scenario asks about.
    expect(r.front.map((f) => [f.held, f.cost, f.placements.map((p) => p.name)])).toEqual([
      [2, 1 + 5 + 1 + 7, [siteSetName([A, C])]],
      [1, 1 + 5 + 1, [siteSetName([A])]],
      [0, 2, ['sites:']],
    ])
    // Cheapest first: A+C, then B (cost 102).
    expect(r.minimal.map((m) => [m.placement.name, m.placement.cost])).toEqual([
      [siteSetName([A, C]), 14],
      [siteSetName([B]), 102],
    ])
  })

  it('shows the presets and the requested placements with a cell per scenario', async () => {
    const r = await synthesize(
      options(FAKES, { placements: [sitePolicy([A, D], 'mine')] }),
      fakeEvaluator(FAKES),
    )
    expect(r.placements.map((p) => p.name)).toEqual(['start-end', 'invalidate-range', 'arch-hook', 'mine'])
    const mine = r.placements[3]!
    expect(mine.cells.map((c) => c.verdict)).toEqual(['holds', 'holds', 'holds'])
    expect(mine.held).toBe(3)
    for (const c of mine.cells) expect(['explored', 'inferred']).toContain(c.how)
  })

  it('explores a shown placement with sites outside the candidates on its own', async () => {
    const log: SynthEvalRequest[] = []
    const r = await synthesize(
      options(FAKES, { candidates: [A, B], placements: [sitePolicy([C])] }),
      fakeEvaluator(FAKES, log),
    )
    const shown = r.placements.find((p) => p.name === siteSetName([C]))!
    // C alone: x1 violated, x2 holds, x3 holds (asks only about A).
    expect(shown.cells.map((c) => c.verdict)).toEqual(['violated', 'holds', 'holds'])
    expect(log.some((q) => q.sites.length === 1 && q.sites[0] === C)).toBe(true)
    // The lattice stays within the candidates.
    expect(r.relevant).toEqual([A, B])
    expect(r.minimal.every((m) => m.placement.sites.every((s) => s === A || s === B))).toBe(true)
  })
})

describe('synthesize: certificates', () => {
  it('names, for each site of a minimal set, a scenario and counterexample without it; and why each other site is out', async () => {
    const r = await synthesize(options(FAKES), fakeEvaluator(FAKES))
    for (const m of r.minimal) {
      expect(m.needed.map((n) => n.site)).toEqual(m.placement.sites)
      for (const n of m.needed) {
        const without = m.placement.sites.filter((s) => s !== n.site)
        expect(n.without).toBe(siteSetName(without))
        const x = r.scenarios.findIndex((s) => s.id === n.scenario)
        const f = FAKES[x]!
        expect(f.holds(new Set(without.filter((s) => f.sites.includes(s))))).toBe(false)
        expect(n.counterexample.replay).toBe(
          `mnlab replay ${n.scenario}.yaml --policy ${n.without} --schedule "C0 D0"`,
        )
      }
      expect(m.leftOut.map((l) => l.site).sort()).toEqual(
        SITE_NAMES.filter((s) => !m.placement.sites.includes(s)).sort(),
      )
      for (const l of m.leftOut) {
        const expected =
          l.site === E ? 'never-reached' : [A, B, C, D].includes(l.site) ? 'not-needed' : 'not-candidate'
        expect(l.evidence).toBe(expected)
        if (l.evidence === 'not-needed')
          expect(l.scenarios).toEqual(FAKES.filter((f) => f.sites.includes(l.site)).map((f) => f.id))
      }
    }
  })

  it('gives each needed site the counterexample of an exploration of the placement without it', async () => {
    const log: SynthEvalRequest[] = []
    const fakes: Fake[] = [
      { id: 'x', sites: [A, B, C], holds: anyOf(A, B) },
      { id: 'y', sites: [B, C], holds: has(B, C) },
    ]
    const r = await synthesize(options(fakes), fakeEvaluator(fakes, log))
    expect(names(r)).toEqual(bruteMinimal(fakes, [A, B, C, D, E]))
    expect(r.minimal.length).toBeGreaterThan(0)
    for (const m of r.minimal)
      for (const n of m.needed) {
        // Its counterexample is of the placement without the site, explored (not a superset's):
        // a verdict run on that scenario that saw the same sites.
        const x = fakes.findIndex((f) => f.id === n.scenario)
        const seen = (sites: readonly Site[]): string =>
          siteSetName(sites.filter((s) => fakes[x]!.sites.includes(s)))
        const without = m.placement.sites.filter((s) => s !== n.site)
        expect(
          log.some((q) => q.kind === 'verdict' && q.scenario === x && seen(q.sites) === seen(without)),
        ).toBe(true)
      }
  })
})

describe('synthesize: stopping', () => {
  it('stops when asked, and says what is undecided', async () => {
    let calls = 0
    const r = await synthesize(
      options(FAKES, { shouldStop: () => (calls >= 4 ? 'time budget of 1 s reached' : null) }),
      (req) => {
        calls++
        return fakeEvaluator(FAKES)(req)
      },
    )
    expect(r.complete).toBe(false)
    expect(r.notes[0]).toBe('stopped: time budget of 1 s reached')
    expect(r.notes.some((n) => /undecided/.test(n))).toBe(true)
    expect(r.scenarios.some((x) => x.undecided > 0)).toBe(true)
  })

  it('an unknown verdict (a budget cut) leaves its placements undecided, not proven', async () => {
    const ev = fakeEvaluator(FAKES)
    const r = await synthesize(options(FAKES), async (req) => {
      const out = await ev(req)
      // x2's runs without D are cut by their budget.
      return req.scenario === 1 && !req.sites.includes(D) && req.kind === 'verdict'
        ? { ...out, verdict: 'unknown', invariant: null, counterexample: null }
        : out
    })
    expect(r.complete).toBe(false)
    expect(r.scenarios[1]!.undecided).toBeGreaterThan(0)
  })

  it('rejects when the evaluator does (a cancelled search)', async () => {
    await expect(synthesize(options(FAKES), () => Promise.reject(new Error('cancelled')))).rejects.toThrow(
      'cancelled',
    )
  })

  it('a scenario no placement fixes is out of scope, and the minimal sets are over the others', async () => {
    const fakes: Fake[] = [...FAKES, { id: 'bug', sites: [A, B], holds: () => false }]
    const r = await synthesize(options(fakes), fakeEvaluator(fakes))
    expect(r.scope).toEqual(['x1', 'x2', 'x3'])
    expect(r.excluded).toEqual([
      { scenario: 'bug', why: 'violated with every candidate site: no placement of them fixes it' },
    ])
    expect(names(r)).toEqual(bruteMinimal(FAKES, [A, B, C, D, E]))
    // Every placement of it is violated, decided by the one exploration of all candidates.
    expect(r.scenarios[3]!.explored).toBe(1)
    expect(r.scenarios[3]!.inferred).toBe(3)
    expect(siteBit(A)).toBe(1)
  })
})
