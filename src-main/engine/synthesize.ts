/**
 * `mnlab synthesize` (issue 14): the search over notifier placements (sets of call sites,
 * policy.ts) for the cheapest one under which every scenario of a set holds.
 *
 * The search is pure and runs nothing itself: an evaluator (placement x scenario -> verdict,
 * cost, reached sites, counterexample) does, in the worker pool (node/synthesis.ts) or in
 * process (localEvaluator). Every evaluation of a scenario is kept as E = (P, C, verdict, cost):
 * the placement P it ran, the sites C its kernel code asked about (Ctx.at, the site tally) and
 * what it found. Three rules decide any placement S on that scenario from them:
 * - exact: S and P agree on C. The run under S asks the same questions and gets the same
 *   answers step by step, so it is the same run: same verdict, same cost.
 * - holds: E holds and P∩C ⊆ S. Q = (P∩C) ∪ (S\C) agrees with P on C, so it holds, and
 *   Q ⊆ S: adding a site only adds invalidations (policy.ts), so S holds.
 * - violated: E is violated and S∩C ⊆ P. The same Q agrees with P on C, so it is violated,
 *   and S ⊆ Q, so S is too.
 * The last two assume monotonicity, which a `forbid` predicate can break (SynthScenarioInput
 * .monotone): such a scenario uses the exact rule only. No rule assumes that a site a run did
 * not ask about is irrelevant elsewhere: each scenario's search space (its lattice) starts as
 * the candidate sites its run under all of them asked about, and grows whenever a run under a
 * smaller placement asks about another one. Within it the search explores level by level (the
 * level with the fewest undecided placements first), so that a placement that holds decides
 * its supersets and one that is violated its subsets; the placements of one level are
 * incomparable, so they run together (in parallel) without losing any pruning. Costs come from
 * the same evaluations (exact rule only) and from runs of the reference schedule alone for the
 * placements decided without an exploration.
 *
 * With every scenario's lattice decided, any placement's verdicts and cost are table lookups:
 * the minimal correct placements, the Pareto front (scenarios held against cost) over every
 * placement of the relevant sites, and the presets and requested placements side by side.
 * Each minimal placement gets a certificate: for each of its sites, a scenario and a
 * counterexample (replayable with `mnlab replay`) of the placement without it; for each site
 * left out, why (not needed: the placement's cells; never reached; not a candidate).
 */
import { ENGINE_VERSION, defaultRunOptions, runPolicy, type RunOptions } from './run'
import {
  makePolicy,
  PRESETS,
  SITE_NAMES,
  siteBit,
  siteSetName,
  sitePolicy,
  type Policy,
  type Site,
} from './policy'
import type { PolicyResult } from './results'
import type {
  SynthCell,
  SynthCosts,
  SynthCounterexample,
  SynthEvaluation,
  SynthFrontPoint,
  SynthMinimal,
  SynthObjective,
  SynthPlacement,
  SynthProgress,
  SynthScenario,
  SynthSearchCost,
  SynthesisResult,
  SynthSiteLeftOut,
  SynthSiteNeeded,
} from './synthesisResult'
import type { InvariantName, Scenario, Verdict } from './types'

/** One scenario of the set, as the search sees it (the evaluator holds the scenario itself). */
export interface SynthScenarioInput {
  /** Unique within the search: how the request named it. */
  readonly id: string
  readonly title: string
  /** For `mnlab replay` commands; null for an inline scenario. */
  readonly file: string | null
  /**
   * Whether its verdicts may be pruned by monotonicity (default true). Not for a scenario with a
   * `forbid` predicate: one can state an ordering (the device saw B's new value but A's old
   * one) that fewer invalidations hide, as on cow-ordering.*.yaml, where no notifier at all
   * holds (the device keeps both old values) while invalidate_range_end alone is violated.
   */
  readonly monotone?: boolean
}

/** One evaluation the search asks for. */
export interface SynthEvalRequest {
  /** Index into SynthOptions.scenarios. */
  readonly scenario: number
  readonly sites: readonly Site[]
  /** The placement's canonical name (siteSetName): parsePolicy reads it back. */
  readonly name: string
  /** `verdict`: explore every interleaving; `cost`: the reference schedule alone. */
  readonly kind: 'verdict' | 'cost'
  /** A verdict exploration may stop at its first violation (one decides `violated`). */
  readonly first: boolean
}

/** What an evaluation found (synthOutcome makes it from a PolicyResult). */
export interface SynthEvalOutcome {
  /** A cost run's is the reference schedule's alone (not a verdict: ignored). */
  readonly verdict: Verdict
  readonly invariant: InvariantName | null
  readonly counterexample: Omit<SynthCounterexample, 'replay'> | null
  readonly costs: SynthCosts
  /** Every site the run asked about (not only candidates). */
  readonly reached: readonly Site[]
  readonly states: number
}

/** Runs evaluations; may reject (cancelled), which ends the search with that error. */
export type SynthEvaluator = (req: SynthEvalRequest) => Promise<SynthEvalOutcome>

export interface SynthOptions {
  readonly scenarios: readonly SynthScenarioInput[]
  /** The sites a placement may have; a placement never has another. */
  readonly candidates: readonly Site[]
  readonly objective: SynthObjective
  /** Placements to show beside the presets (the presets come first, always). */
  readonly placements?: readonly Policy[]
  /** Echoed in the result's settings: each exploration's state budget. */
  readonly maxStates: number
  /** false: each scenario's lattice is every candidate, not its reached sites (tests). */
  readonly reach?: boolean
  /** false: the exact rule only, so every placement of every lattice is explored (tests). */
  readonly prune?: boolean
  /** Polled before each new evaluation: a reason stops the search (its result is incomplete). */
  readonly shouldStop?: () => string | null
  readonly onEvaluation?: (e: SynthEvaluation) => void
  readonly onProgress?: (p: SynthProgress) => void
  /** A clock in ms for elapsedMs (the engine has none of its own); default: no time. */
  readonly now?: () => number
}

/** The run options of an evaluation: the scenario's own exploration settings, tallying sites. */
export function synthRunOptions(
  sc: Scenario,
  req: Pick<SynthEvalRequest, 'kind'>,
  maxStates: number,
): RunOptions {
  const base = defaultRunOptions(sc)
  if (req.kind === 'cost')
    // A scripted run of no steps is the reference schedule: the first runnable thread each step.
    return { ...base, mode: 'scripted', schedule: [], tallySites: true }
  return { ...base, budget: { ...base.budget, maxStates }, tallySites: true }
}

/** An evaluation's outcome from its run's result (run with synthRunOptions). */
export function synthOutcome(r: PolicyResult): SynthEvalOutcome {
  const cx = r.counterexamples[0] ?? null
  return {
    verdict: r.verdict,
    invariant: cx?.invariant ?? null,
    counterexample: cx && { invariant: cx.invariant, schedule: cx.schedule, cycle: cx.cycle, why: cx.why },
    costs: { sim_ns: r.metrics.sim_ns, secondary_invalidations: r.metrics.secondary_invalidations },
    reached: r.sitesReached ?? [...SITE_NAMES],
    states: r.stats.states,
  }
}

/**
 * Evaluations in this thread, one at a time (tests, and small sets); `stopAt` is
 * Budget.stopAt's for `first`.
 */
export function localEvaluator(scenarios: readonly Scenario[], maxStates: number): SynthEvaluator {
  return (req) => {
    const sc = scenarios[req.scenario]!
    const opts = synthRunOptions(sc, req, maxStates)
    const r = runPolicy(sc, sitePolicy(req.sites, req.name), {
      ...opts,
      budget: { ...opts.budget, ...(req.first ? { stopAt: () => true } : {}) },
    })
    return Promise.resolve(synthOutcome(r))
  }
}

// ---- bit masks over SITE_NAMES ---------------------------------------------------------

function maskOf(sites: Iterable<Site>): number {
  let m = 0
  for (const s of sites) m |= siteBit(s)
  return m
}
function sitesOf(mask: number): Site[] {
  return SITE_NAMES.filter((s) => (mask & siteBit(s)) !== 0)
}
function popcount(m: number): number {
  let n = 0
  for (let x = m; x !== 0; x &= x - 1) n++
  return n
}
/** The bits of `mask`, lowest first. */
function bitsOf(mask: number): number[] {
  const out: number[] = []
  for (let i = 0; i < 31; i++) if ((mask & (1 << i)) !== 0) out.push(1 << i)
  return out
}
/** Every subset of `mask` (2^popcount of them), as masks, in counting order over its bits. */
function subsetsOf(mask: number): number[] {
  const bits = bitsOf(mask)
  return Array.from({ length: 1 << bits.length }, (_, i) => expand(i, bits))
}
/** The subset of `bits` that index `i` numbers (bit j of i: bits[j]). */
function expand(i: number, bits: readonly number[]): number {
  let m = 0
  for (let j = 0; j < bits.length; j++) if ((i & (1 << j)) !== 0) m |= bits[j]!
  return m
}

// ---- one scenario's evaluations and decisions ----------------------------------------------

interface Ev {
  /** The placement run. */
  readonly p: number
  /** The sites its run asked about. */
  readonly c: number
  readonly kind: 'verdict' | 'cost'
  readonly out: SynthEvalOutcome
  /** Whether `p` is a placement of the candidates (a lattice point, or a shown placement within them). */
  readonly inK: boolean
}

interface Decision {
  readonly verdict: Verdict
  readonly how: SynthCell['how']
  readonly from: Ev | null
}

class ScenarioSearch {
  /** Verdict explorations. */
  readonly verdicts: Ev[] = []
  /** Every evaluation (verdict explorations and cost runs), for costs. */
  readonly all: Ev[] = []
  /** The candidate sites any of its runs asked about: its lattice. */
  reach = 0
  /** The verdict of every candidate site together (its first exploration). */
  full: Verdict = 'unknown'
  done = false

  constructor(
    readonly index: number,
    readonly candidates: number,
    readonly prune: boolean,
    readonly notes: string[],
    readonly id: string,
  ) {}

  /**
   * Records an evaluation. The lattice grows by what the runs of candidate placements asked
   * about; a shown placement outside the candidates decides only itself (decide and costOf use
   * its run only for placements outside the candidates), so the lattice's decisions depend on
   * nothing outside it.
   */
  add(e: Ev, reachAll: boolean): void {
    this.all.push(e)
    if (e.kind === 'verdict') this.verdicts.push(e)
    if (e.inK) this.reach |= reachAll ? this.candidates : e.c & this.candidates
  }

  /** The verdict of placement `s` from the explorations so far, or null when none decides it. */
  decide(s: number): Decision | null {
    const inK = (s & ~this.candidates) === 0
    let exact: Ev | null = null
    let hold: Ev | null = null
    let fail: Ev | null = null
    for (const e of this.verdicts) {
      if (inK && !e.inK) continue
      const same = ((s ^ e.p) & e.c) === 0
      if (same && (exact === null || exact.out.verdict === 'unknown')) exact = e
      if (!this.prune) continue
      if (e.out.verdict === 'holds' && (e.p & e.c & ~s) === 0 && (hold === null || same)) hold = e
      if (e.out.verdict === 'violated' && (s & e.c & ~e.p) === 0 && (fail === null || same)) fail = e
    }
    if (hold && fail) {
      const note = `${this.id}: monotonicity contradicted: ${siteSetName(sitesOf(hold.p))} holds but ${siteSetName(sitesOf(fail.p))} is violated, and ${siteSetName(sitesOf(s))} lies between them`
      if (!this.notes.includes(note)) this.notes.push(note)
      return exact ? { verdict: exact.out.verdict, how: 'explored', from: exact } : null
    }
    const by = hold ?? fail
    if (by) return { verdict: by.out.verdict, how: by === exact ? 'explored' : 'inferred', from: by }
    if (exact) {
      if (exact.out.verdict === 'unknown') return { verdict: 'unknown', how: 'unknown', from: null }
      return { verdict: exact.out.verdict, how: 'explored', from: exact }
    }
    return null
  }

  /** The evaluation whose run is exactly placement `s`'s (for its cost), or null. */
  costOf(s: number): Ev | null {
    const inK = (s & ~this.candidates) === 0
    for (const e of this.all) if ((e.inK || !inK) && ((s ^ e.p) & e.c) === 0) return e
    return null
  }

  /** How its lattice's placements were decided: explored, inferred (holds, violated), not. */
  counts(): { explored: number; holds: number; violated: number; undecided: number } {
    const r = { explored: 0, holds: 0, violated: 0, undecided: 0 }
    for (const p of subsetsOf(this.reach)) {
      const d = this.decide(p)
      if (d === null || d.how === 'unknown') r.undecided++
      else if (d.how === 'explored') r.explored++
      else if (d.verdict === 'holds') r.holds++
      else r.violated++
    }
    return r
  }
}

const objectiveOf = (c: SynthCosts, o: SynthObjective): number => c[o]

/** A cell of a placement on one scenario whose lattice is decided. */
function cellOf(x: ScenarioSearch, s: number, o: SynthObjective): SynthCell {
  const d = x.decide(s)
  const cost = x.costOf(s)
  return {
    verdict: d?.verdict ?? 'unknown',
    how: d?.how ?? 'unknown',
    from: d?.from ? sitesOf(d.from.p) : null,
    invariant: d?.verdict === 'violated' ? (d.from?.out.invariant ?? null) : null,
    cost: cost ? objectiveOf(cost.out.costs, o) : 0,
  }
}

function placementOf(name: string, mask: number, cells: readonly SynthCell[]): SynthPlacement {
  return {
    name,
    sites: sitesOf(mask),
    held: cells.filter((c) => c.verdict === 'holds').length,
    cost: cells.reduce((a, c) => a + c.cost, 0),
    cells,
  }
}

/** Keeps at most this many placements per front point. */
const FRONT_PLACEMENTS = 8

/** Runs the search. Rejects when the evaluator does (a cancelled search). */
export async function synthesize(opts: SynthOptions, evaluate: SynthEvaluator): Promise<SynthesisResult> {
  const now = opts.now ?? (() => 0)
  const started = now()
  const o = opts.objective
  const K = maskOf(opts.candidates)
  const reachAll = opts.reach === false
  const notes: string[] = []
  const xs = opts.scenarios.map(
    (s, i) => new ScenarioSearch(i, K, opts.prune !== false && s.monotone !== false, notes, s.id),
  )
  let explored = 0
  let costRuns = 0
  let states = 0
  let pending = 0
  let pruned = 0
  let stopped: string | null = null
  let phase: SynthProgress['phase'] = 'reach'

  const progress = (): void =>
    opts.onProgress?.({
      phase,
      explored,
      costRuns,
      pruned,
      pending,
      scenariosDone: xs.filter((x) => x.done).length,
      scenarios: xs.length,
      elapsedMs: now() - started,
    })
  const stop = (): boolean => {
    if (stopped === null) stopped = opts.shouldStop?.() ?? null
    return stopped !== null
  }

  // Evaluations asked for, by scenario, placement and kind: two certificates needing the same
  // run share it.
  const asked = new Map<string, Promise<Ev | null>>()
  /** Evaluates placement `p` on scenario `x` and records it; null when the search was stopped. */
  const run = (
    x: ScenarioSearch,
    p: number,
    kind: 'verdict' | 'cost',
    first: boolean,
  ): Promise<Ev | null> => {
    const key = `${x.index} ${p} ${kind} ${first}`
    let job = asked.get(key)
    if (!job) {
      job = evaluateOnce(x, p, kind, first)
      asked.set(key, job)
    }
    return job
  }
  const evaluateOnce = async (
    x: ScenarioSearch,
    p: number,
    kind: 'verdict' | 'cost',
    first: boolean,
  ): Promise<Ev | null> => {
    if (stop()) return null
    const sites = sitesOf(p)
    const name = siteSetName(sites)
    pending++
    let out: SynthEvalOutcome
    try {
      out = await evaluate({ scenario: x.index, sites, name, kind, first })
    } finally {
      pending--
    }
    const e: Ev = { p, c: maskOf(out.reached), kind, out, inK: (p & ~K) === 0 }
    x.add(e, reachAll)
    if (kind === 'verdict') {
      explored++
      states += out.states
      opts.onEvaluation?.({
        scenario: x.id,
        placement: name,
        sites,
        kind,
        verdict: out.verdict,
        invariant: out.invariant,
        costs: out.costs,
        states: out.states,
        reached: out.reached,
      })
    } else costRuns++
    progress()
    return e
  }

  /**
   * Decides every placement of a scenario's lattice, growing it as runs reach more sites. Each
   * round explores the level (placements of one size) with the fewest undecided placements,
   * the smaller size on a tie: a cheap round, whose holding placements decide their supersets
   * and violated ones their subsets (after the empty and the one-site placements, typically
   * the one placement of all sites but the ones found sufficient, whose failure decides the rest).
   */
  const searchLattice = async (x: ScenarioSearch): Promise<void> => {
    for (;;) {
      const undecided = subsetsOf(x.reach).filter((p) => x.decide(p) === null)
      if (undecided.length === 0 || stop()) return
      const bySize = new Map<number, number[]>()
      for (const p of undecided) bySize.set(popcount(p), [...(bySize.get(popcount(p)) ?? []), p])
      const level = [...bySize.entries()].sort((a, b) => a[1].length - b[1].length || a[0] - b[0])[0]![1]
      await Promise.all(level.map((p) => run(x, p, 'verdict', true)))
    }
  }

  /**
   * Runs the reference schedule of lattice placements whose cost no run gives yet, a few at a
   * time (each covers every placement that agrees with it on what it asked). Returns whether a
   * run reached a site new to the lattice (whose new placements then need verdicts).
   */
  const fillCosts = async (x: ScenarioSearch): Promise<boolean> => {
    const before = x.reach
    for (;;) {
      const missing = subsetsOf(x.reach).filter((p) => x.costOf(p) === null)
      if (missing.length === 0 || stop()) break
      missing.sort((a, b) => popcount(a) - popcount(b) || a - b)
      await Promise.all(missing.slice(0, 4).map((p) => run(x, p, 'cost', false)))
    }
    return x.reach !== before
  }

  // 1. Every candidate site together, explored to the end: each scenario's reached sites, and
  //    whether any placement can hold on it.
  progress()
  await Promise.all(
    xs.map(async (x) => {
      const e = await run(x, K, 'verdict', false)
      if (e) x.full = e.out.verdict
    }),
  )
  // 2. Each scenario's lattice: verdicts, then costs.
  phase = 'lattice'
  progress()
  const finish = (x: ScenarioSearch): void => {
    x.done = true
    const c = x.counts()
    pruned += c.holds + c.violated
    progress()
  }
  await Promise.all(xs.map((x) => searchLattice(x)))
  phase = 'costs'
  progress()
  await Promise.all(
    xs.map(async (x) => {
      while (await fillCosts(x)) await searchLattice(x)
      finish(x)
    }),
  )

  // 3. The presets and the requested placements: decided by the lattice when their sites are
  //    candidates, else explored as they are.
  phase = 'placements'
  progress()
  const shown: Policy[] = []
  for (const p of [...PRESETS.map((name) => makePolicy(name)), ...(opts.placements ?? [])])
    if (!shown.some((q) => q.mask === p.mask && q.name === p.name)) shown.push(p)
  await Promise.all(
    shown.flatMap((p) =>
      xs.map(async (x) => {
        if (x.decide(p.mask) === null) await run(x, p.mask, 'verdict', true)
        if (x.costOf(p.mask) === null) await run(x, p.mask, 'cost', false)
      }),
    ),
  )
  const placements = shown.map((p) =>
    placementOf(
      p.name,
      p.mask,
      xs.map((x) => cellOf(x, p.mask, o)),
    ),
  )

  // 4. Every placement of the relevant sites: held count and cost, from each lattice's table.
  const R = xs.reduce((m, x) => m | x.reach, 0)
  const rBits = bitsOf(R)
  const size = 1 << rBits.length
  const inScope = xs.map((x) => x.full === 'holds')
  const tables = xs.map((x) => {
    const subs = subsetsOf(x.reach)
    return {
      /** Where each of the lattice's bits sits among the relevant ones. */
      inR: bitsOf(x.reach).map((b) => rBits.indexOf(b)),
      holds: subs.map((p) => x.decide(p)?.verdict === 'holds'),
      cost: subs.map((p) => {
        const e = x.costOf(p)
        return e ? objectiveOf(e.out.costs, o) : 0
      }),
    }
  })
  const held = new Int32Array(size)
  const total = new Float64Array(size)
  const correct = new Uint8Array(size)
  for (let i = 0; i < size; i++) {
    let h = 0
    let c = 0
    let ok = 1
    for (let k = 0; k < tables.length; k++) {
      const t = tables[k]!
      let j = 0
      for (let b = 0; b < t.inR.length; b++) if ((i & (1 << t.inR[b]!)) !== 0) j |= 1 << b
      if (t.holds[j]) h++
      else if (inScope[k]) ok = 0
      c += t.cost[j]!
    }
    held[i] = h
    total[i] = c
    correct[i] = ok
  }
  const maskAt = (i: number): number => expand(i, rBits)
  const placementAt = (i: number): SynthPlacement => {
    const m = maskAt(i)
    return placementOf(
      siteSetName(sitesOf(m)),
      m,
      xs.map((x) => cellOf(x, m, o)),
    )
  }
  /** The members of `idx` no other member is a subset of. */
  const minimalUnderInclusion = (idx: readonly number[]): number[] => {
    const kept: number[] = []
    for (const i of [...idx].sort((a, b) => popcount(a) - popcount(b) || a - b))
      if (!kept.some((j) => (j & i) === j)) kept.push(i)
    return kept
  }

  // Minimal correct placements, cheapest first.
  const minimalIdx = minimalUnderInclusion(
    Array.from({ length: size }, (_, i) => i).filter((i) => correct[i] === 1),
  ).sort((a, b) => total[a]! - total[b]! || popcount(a) - popcount(b) || maskAt(a) - maskAt(b))

  // The Pareto front, most held first: a point is on it when it costs less than every
  // placement that holds on more scenarios.
  const order = Array.from({ length: size }, (_, i) => i).sort(
    (a, b) => held[b]! - held[a]! || total[a]! - total[b]! || a - b,
  )
  const front: SynthFrontPoint[] = []
  let best = Infinity
  for (let k = 0; k < order.length;) {
    const h = held[order[k]!]!
    const c = total[order[k]!]!
    let end = k
    while (end < order.length && held[order[end]!] === h) end++
    if (c < best) {
      best = c
      const same = minimalUnderInclusion(order.slice(k, end).filter((i) => total[i] === c))
      front.push({
        held: h,
        cost: c,
        placements: same.slice(0, FRONT_PLACEMENTS).map(placementAt),
        more: Math.max(0, same.length - FRONT_PLACEMENTS),
      })
    }
    k = end
  }

  // 5. Certificates: for each site of a minimal placement, a scenario in scope on which the
  //    placement without it is violated, with an explored counterexample.
  phase = 'certificates'
  progress()
  const needs = async (m: number, site: Site): Promise<SynthSiteNeeded | null> => {
    const without = m & ~siteBit(site)
    const name = siteSetName(sitesOf(without))
    const failing = xs
      .filter((x, k) => inScope[k] && x.decide(without)?.verdict === 'violated')
      .sort(
        (a, b) =>
          Number(b.decide(without)!.how === 'explored') - Number(a.decide(without)!.how === 'explored'),
      )
    for (const x of failing) {
      if (x.decide(without)!.how !== 'explored') {
        // Inferred from a violated superset: explore the placement itself for its own counterexample.
        await run(x, without, 'verdict', true)
        const d = x.decide(without)
        if (d?.how !== 'explored' || d.verdict !== 'violated') {
          notes.push(
            `${x.id}: ${name} was inferred violated, but its own exploration found ${d?.verdict ?? 'nothing'}`,
          )
          continue
        }
      }
      const cx = x.decide(without)!.from!.out.counterexample
      if (!cx) continue
      const file = opts.scenarios[x.index]!.file
      const sched = [...cx.schedule, ...(cx.cycle ?? [])].join(' ')
      return {
        site,
        without: name,
        scenario: x.id,
        counterexample: {
          ...cx,
          replay: file === null ? null : `mnlab replay ${file} --policy ${name} --schedule "${sched}"`,
        },
      }
    }
    return null
  }
  const leftOut = (m: number): SynthSiteLeftOut[] =>
    SITE_NAMES.filter((s) => (m & siteBit(s)) === 0).map((site) => {
      const b = siteBit(site)
      if ((K & b) === 0) return { site, evidence: 'not-candidate', scenarios: [] }
      if ((R & b) === 0) return { site, evidence: 'never-reached', scenarios: [] }
      return {
        site,
        evidence: 'not-needed',
        scenarios: xs.filter((x) => (x.reach & b) !== 0).map((x) => x.id),
      }
    })
  const minimal: SynthMinimal[] = await Promise.all(
    minimalIdx.map(async (i): Promise<SynthMinimal> => {
      const m = maskAt(i)
      const needed = await Promise.all(sitesOf(m).map((site) => needs(m, site)))
      return {
        placement: placementAt(i),
        needed: needed.filter((x): x is SynthSiteNeeded => x !== null),
        leftOut: leftOut(m),
      }
    }),
  )
  for (const mm of minimal)
    if (mm.needed.length !== mm.placement.sites.length)
      notes.push(
        `${mm.placement.name}: no counterexample for ${mm.placement.sites.length - mm.needed.length} of its sites`,
      )

  // The per-scenario summaries and the search's cost.
  let prunedHolds = 0
  let prunedViolated = 0
  let undecided = 0
  const scenarios: SynthScenario[] = xs.map((x) => {
    const c = x.counts()
    prunedHolds += c.holds
    prunedViolated += c.violated
    undecided += c.undecided
    const input = opts.scenarios[x.index]!
    return {
      id: input.id,
      title: input.title,
      file: input.file,
      reached: sitesOf(x.reach),
      monotone: x.prune,
      full: x.full,
      explored: c.explored,
      inferred: c.holds + c.violated,
      undecided: c.undecided,
    }
  })
  pruned = prunedHolds + prunedViolated
  if (stopped !== null) notes.unshift(`stopped: ${stopped}`)
  if (undecided > 0)
    notes.push(
      `${undecided} scenario x placement pair${undecided === 1 ? '' : 's'} undecided (an exploration cut by its budget, or the search stopped): the minimal placements are not proven`,
    )
  const search: SynthSearchCost = {
    pairs: xs.length * 2 ** popcount(K),
    reachedPairs: xs.reduce((a, x) => a + 2 ** popcount(x.reach), 0),
    explored,
    pruned,
    prunedHolds,
    prunedViolated,
    costRuns,
    states,
    elapsedMs: now() - started,
  }
  progress()
  return {
    settings: { objective: o, candidates: sitesOf(K), maxStates: opts.maxStates },
    scenarios,
    scope: scenarios.filter((_, k) => inScope[k]).map((s) => s.id),
    excluded: scenarios
      .filter((_, k) => !inScope[k])
      .map((s) => ({
        scenario: s.id,
        why:
          s.full === 'violated'
            ? 'violated with every candidate site: no placement of them fixes it'
            : 'unknown with every candidate site (its exploration was cut): not proven fixable',
      })),
    relevant: sitesOf(R),
    minimal,
    front,
    placements,
    search,
    complete: stopped === null && undecided === 0,
    notes,
    engineVersion: ENGINE_VERSION,
  }
}
