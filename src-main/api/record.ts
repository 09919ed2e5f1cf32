/**
 * A run's result in a notebook's recorded form (verdicts, metrics, counterexample schedules; no
 * traces). Pure and shared: the services record CLI runs with it (src-main/node/notebook/format.ts)
 * and the workbench records a cell run with it, with the recipe hash the services computed.
 */
import type { RunResult } from '../engine/results'
import { METRIC_KEYS } from '../engine/types'
import type { ExperimentCell, RecordedPolicy, RecordedResult } from './notebook'

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

/** Index of the result shown for a cell: the latest pinned one, else the latest; -1 if none. */
export function referenceIndex(cell: ExperimentCell): number {
  for (let i = cell.results.length - 1; i >= 0; i--) if (cell.results[i]!.pinned) return i
  return cell.results.length - 1
}
