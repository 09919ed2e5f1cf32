/**
 * A run's result in a notebook's recorded form (verdicts, metrics, counterexample schedules; no
 * traces). Pure and shared: the services record CLI runs with it (src-main/node/notebook/format.ts)
 * and the workbench records a cell run with it, with the recipe hash the services computed.
 */
import type { RunResult } from '../engine/results'
import type { SynthesisResult } from '../engine/synthesisResult'
import { METRIC_KEYS } from '../engine/types'
import type { RecordedPolicy, RecordedResult, RecordedSynthesis } from './notebook'

export function recordedResult(
  run: RunResult,
  recipeHash: string,
  at: Date,
  pinned: boolean,
): RecordedResult {
  return {
    recipe_hash: recipeHash,
    engine: run.engineVersion,
    at: at.toISOString(),
    pinned,
    policies: run.results.map((r) => ({
      policy: r.policy,
      verdict: r.verdict,
      violated: Object.entries(r.invariants)
        .filter(([, v]) => v === 'violated')
        .map(([k]) => k),
      invariants: { ...r.invariants },
      expected: r.expected,
      matches: r.matches,
      cut_reason: r.stats.cutReason,
      metrics: { ...r.metrics },
      counterexamples: r.counterexamples.map((c) => ({
        invariant: c.invariant,
        schedule: [...c.schedule],
        cycle: c.cycle ? [...c.cycle] : null,
        why: c.why,
      })),
    })),
  }
}

export type RecordedVerdict = 'holds' | 'violated' | 'unknown'

/**
 * An invariant's recorded verdict, or null when the result does not say (recorded before every
 * invariant's verdict was kept, for a policy that was not proven to hold): never a guessed `unknown`.
 */
export function recordedInvariant(p: RecordedPolicy, invariant: string): RecordedVerdict | null {
  const v = p.invariants?.[invariant]
  if (v !== undefined) return v
  if (p.violated.includes(invariant)) return 'violated'
  // `holds` overall means every invariant was proven to hold.
  if (p.verdict === 'holds') return 'holds'
  return null
}

/** The metrics a recorded result keeps, in the order reports and the app show them. */
export const RECORDED_METRICS = METRIC_KEYS

/**
 * A synthesis in a notebook's recorded form: minimal placements with the schedule that breaks
 * each without a site, the front, and the shown placements' verdicts (no explanations: they are
 * recomputed from the recipe).
 */
export function recordedSynthesis(
  r: SynthesisResult,
  recipeHash: string,
  at: Date,
  pinned: boolean,
): RecordedSynthesis {
  return {
    recipe_hash: recipeHash,
    engine: r.engineVersion,
    at: at.toISOString(),
    pinned,
    scenarios: r.scenarios.map((s) => s.id),
    complete: r.complete,
    minimal: r.minimal.map((m) => ({
      placement: m.placement.name,
      cost: m.placement.cost,
      needs: m.needed.map((n) => ({
        site: n.site,
        scenario: n.scenario,
        invariant: n.counterexample.invariant,
        schedule: [...n.counterexample.schedule],
        cycle: n.counterexample.cycle ? [...n.counterexample.cycle] : null,
      })),
    })),
    front: r.front.map((f) => ({ held: f.held, cost: f.cost, placements: f.placements.map((p) => p.name) })),
    placements: r.placements.map((p) => ({
      placement: p.name,
      held: p.held,
      cost: p.cost,
      verdicts: p.cells.map((c) => c.verdict),
    })),
    search: {
      explored: r.search.explored,
      pruned: r.search.pruned,
      cost_runs: r.search.costRuns,
      states: r.search.states,
      elapsed_ms: Math.round(r.search.elapsedMs),
    },
  }
}

/** Index of the result shown for a cell: the latest pinned one, else the latest; -1 if none. */
export function referenceIndex(cell: {
  readonly results: ReadonlyArray<{ readonly pinned: boolean }>
}): number {
  for (let i = cell.results.length - 1; i >= 0; i--) if (cell.results[i]!.pinned) return i
  return cell.results.length - 1
}
