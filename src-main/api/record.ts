/**
 * A run's result in a notebook's recorded form (verdicts, metrics, counterexample schedules; no
 * traces). Pure and shared: the services record CLI runs with it (src-main/node/notebook/format.ts)
 * and the workbench records a cell run with it, with the recipe hash the services computed.
 */
import type { RunResult } from '../engine/results'
import type { RecordedResult } from './notebook'

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
