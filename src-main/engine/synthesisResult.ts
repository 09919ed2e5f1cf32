/**
 * What `mnlab synthesize` and LabApi.startSynthesis return (issue 14): the search over notifier
 * placements (sets of call sites, policy.ts) for the cheapest one under which every scenario of
 * a set holds. Plain JSON data, like results.ts: the CLI prints it, `--json` writes it, the
 * workbench's synthesis view draws it (placements x scenarios, a cost chart with the Pareto
 * front) and a notebook cell records it with its recipe.
 *
 * Words used throughout:
 * - placement: a set of sites, named by its canonical name (siteSetName: a preset name such as
 *   `arch-hook+kernel-notifier`, else `sites:a+b`), which `--policy` and `mnlab replay` accept;
 * - holds / violated / unknown: the verdict of an exhaustive exploration (run.ts);
 * - cost: the objective (SynthObjective) on the scenario's reference schedule (the metrics
 *   `mnlab run` prints), summed over the scenarios for a placement;
 * - reached: the sites the kernel code asked about in a run (Ctx.at). A run that never asks
 *   about a site is the same with or without it, so each scenario's search is over its reached
 *   sites only, and a site no scenario reaches is left out with the evidence "never reached".
 */
import type { Site } from './policy'
import type { InvariantName, Verdict } from './types'

/** What a placement costs, measured on each scenario's reference schedule and summed. */
export type SynthObjective = 'sim_ns' | 'secondary_invalidations'
export const SYNTH_OBJECTIVES: readonly SynthObjective[] = ['sim_ns', 'secondary_invalidations']

/** Both objectives of one run (its reference schedule's metrics). */
export interface SynthCosts {
  readonly sim_ns: number
  readonly secondary_invalidations: number
}

/** One scenario of the set, in the order the request gave them. */
export interface SynthScenario {
  /** How the request named it (a path as given); unique within a result. */
  readonly id: string
  readonly title: string
  /** The file it was read from (for `mnlab replay`), or null for an inline scenario. */
  readonly file: string | null
  /** The candidate sites its runs asked about (Ctx.at), in SITE_NAMES order: its search space. */
  readonly reached: readonly Site[]
  /**
   * Whether the search pruned its lattice by monotonicity (a larger placement only adds
   * invalidations). False for a scenario with a `forbid` predicate, which may state an
   * ordering that fewer invalidations hide: every placement of its lattice is explored (up to
   * runs that ask about the same sites).
   */
  readonly monotone: boolean
  /**
   * The verdict of every candidate site together: `violated` means no placement of the
   * candidates holds (a kernel or driver bug no notifier placement fixes), and the scenario is
   * left out of `minimal` (see SynthesisResult.scope).
   */
  readonly full: Verdict
  /** Placements of its lattice (2^|reached|) decided by an exploration of their own, by monotonicity, or not at all. */
  readonly explored: number
  readonly inferred: number
  readonly undecided: number
}

/**
 * A placement on one scenario.
 * - `explored`: an exhaustive run of a placement that answers every site the run asked about as
 *   this one does (`from`), so exactly this placement's run;
 * - `inferred`: by monotonicity (adding a site only adds invalidations): `from` holds and is a
 *   subset of this placement (on the sites its run asked about), or `from` is violated and a
 *   superset;
 * - `unknown`: neither (an exploration cut by its budget, or the search was stopped).
 */
export interface SynthCell {
  readonly verdict: Verdict
  readonly how: 'explored' | 'inferred' | 'unknown'
  /** The explored placement the verdict comes from (its sites), or null when unknown. */
  readonly from: readonly Site[] | null
  /** `violated`: the first invariant that explored run found; otherwise null. */
  readonly invariant: InvariantName | null
  /** The objective on the scenario's reference schedule under this placement. */
  readonly cost: number
}

/** A placement with its verdict and cost on every scenario (SynthesisResult.scenarios order). */
export interface SynthPlacement {
  /** The canonical name (siteSetName), or the name a user or preset gave it. */
  readonly name: string
  readonly sites: readonly Site[]
  /** How many scenarios it holds on (proven: `holds` cells). */
  readonly held: number
  /** The objective summed over every scenario. */
  readonly cost: number
  readonly cells: readonly SynthCell[]
}

/** A counterexample of a placement on a scenario, replayable with `mnlab replay`. */
export interface SynthCounterexample {
  readonly invariant: InvariantName
  /** Thread names, one per step (then `cycle` forever, for a livelock). */
  readonly schedule: readonly string[]
  readonly cycle: readonly string[] | null
  /** The explanation `mnlab run` prints under it. */
  readonly why: string
  /**
   * The command that replays it with a full trace:
   * `mnlab replay FILE --policy sites:... --schedule "..."` (null for an inline scenario).
   */
  readonly replay: string | null
}

/** Why a site of a minimal placement is in it: without it, `scenario` breaks. */
export interface SynthSiteNeeded {
  readonly site: Site
  /** The placement without the site (its canonical name) and where it fails. */
  readonly without: string
  /** SynthScenario.id. */
  readonly scenario: string
  readonly counterexample: SynthCounterexample
}

/**
 * Why a site is not in a minimal placement:
 * - `not-needed`: the placement holds on every scenario in scope without it (its cells, each
 *   explored or inferred from an explored subset of it); `scenarios` are those that reach it;
 * - `never-reached`: no scenario's kernel code asked about it, under any placement explored;
 * - `not-candidate`: outside the candidate sites (`--sites`).
 */
export interface SynthSiteLeftOut {
  readonly site: Site
  readonly evidence: 'not-needed' | 'never-reached' | 'not-candidate'
  /** SynthScenario ids whose runs reached the site (empty unless not-needed). */
  readonly scenarios: readonly string[]
}

/** A minimal correct placement (every scenario in scope holds; no site can go) and its certificate. */
export interface SynthMinimal {
  readonly placement: SynthPlacement
  /** One entry per site of the placement. */
  readonly needed: readonly SynthSiteNeeded[]
  /** One entry per site (of SITE_NAMES) not in the placement. */
  readonly leftOut: readonly SynthSiteLeftOut[]
}

/** A point of the Pareto front: no placement holds on more scenarios for less cost. */
export interface SynthFrontPoint {
  readonly held: number
  readonly cost: number
  /** The placements with exactly this held count and cost that are minimal under inclusion (at most 8). */
  readonly placements: readonly SynthPlacement[]
  /** How many more such placements were left out of `placements`. */
  readonly more: number
}

/** What the search cost. */
export interface SynthSearchCost {
  /** Scenarios x placements of the candidate sites: the pairs a search without reachability or monotonicity would explore. */
  readonly pairs: number
  /** Scenario x placement pairs within each scenario's reached sites (sum of 2^|reached|). */
  readonly reachedPairs: number
  /** Exhaustive explorations run (lattice, shown placements and certificates). */
  readonly explored: number
  /** Pairs of `reachedPairs` decided by monotonicity, without an exploration of their own. */
  readonly pruned: number
  /** Of `pruned`: decided `holds` from an explored subset, `violated` from an explored superset. */
  readonly prunedHolds: number
  readonly prunedViolated: number
  /** Reference-schedule runs for costs alone. */
  readonly costRuns: number
  /** States explored by every exploration together. */
  readonly states: number
  readonly elapsedMs: number
}

/** The request's knobs, echoed (a notebook cell records them as its recipe). */
export interface SynthSettings {
  readonly objective: SynthObjective
  /** The candidate sites, in SITE_NAMES order. */
  readonly candidates: readonly Site[]
  /** Each exploration's state budget. */
  readonly maxStates: number
}

export interface SynthesisResult {
  readonly settings: SynthSettings
  readonly scenarios: readonly SynthScenario[]
  /**
   * The scenarios `minimal` must hold on: those some placement of the candidates holds on
   * (SynthScenario.full is `holds`). `excluded`: the others, with why.
   */
  readonly scope: readonly string[]
  readonly excluded: ReadonlyArray<{ readonly scenario: string; readonly why: string }>
  /** The sites some scenario reached, in SITE_NAMES order: the lattice the search covered. */
  readonly relevant: readonly Site[]
  /** The minimal correct placements, cheapest first (empty when none holds on every scenario in scope). */
  readonly minimal: readonly SynthMinimal[]
  /** The Pareto front of scenarios held (more is better) against cost (less is better), most held first. */
  readonly front: readonly SynthFrontPoint[]
  /** The presets and the placements the request named, side by side. */
  readonly placements: readonly SynthPlacement[]
  readonly search: SynthSearchCost
  /** True when every scenario's lattice was decided (no unknown cell): the minimal sets are proven. */
  readonly complete: boolean
  /** Why the search is incomplete, and anything that contradicted monotonicity (should be empty). */
  readonly notes: readonly string[]
  readonly engineVersion: string
}

/** A finished evaluation, streamed while the search runs. */
export interface SynthEvaluation {
  /** SynthScenario.id. */
  readonly scenario: string
  /** The placement's canonical name and sites. */
  readonly placement: string
  readonly sites: readonly Site[]
  /** `verdict`: an exhaustive exploration; `cost`: the reference schedule alone. */
  readonly kind: 'verdict' | 'cost'
  /** null for a cost run. */
  readonly verdict: Verdict | null
  readonly invariant: InvariantName | null
  readonly costs: SynthCosts
  readonly states: number
  readonly reached: readonly Site[]
}

/** How far the search is, streamed while it runs. */
export interface SynthProgress {
  /**
   * `reach`: every candidate site on each scenario; `lattice`: each scenario's placements;
   * `placements`: the shown ones; `costs`: reference runs for the front; `certificates`.
   */
  readonly phase: 'reach' | 'lattice' | 'placements' | 'costs' | 'certificates'
  readonly explored: number
  readonly costRuns: number
  readonly pruned: number
  /** Evaluations asked for and not finished yet. */
  readonly pending: number
  /** Scenarios whose lattice is decided, of all. */
  readonly scenariosDone: number
  readonly scenarios: number
  readonly elapsedMs: number
}
