/** The verdict matrix: policies × invariants, computed against expected. */
import type { RunResult } from '../../../src-main/engine/results'

export type CellVerdict = 'holds' | 'violated' | 'unknown'

export interface VerdictCell {
  readonly invariant: string
  readonly computed: CellVerdict
  /** What `expect` says about this invariant; null when it says nothing about it. */
  readonly expected: CellVerdict | null
  /** null when nothing was expected of this cell. */
  readonly match: boolean | null
  /** Index into the policy's counterexamples, when violated. */
  readonly counterexample: number | null
}

export interface VerdictRow {
  readonly policy: string
  readonly verdict: CellVerdict
  /** The expect entry as written: holds | violated | an invariant name; null if none. */
  readonly expected: string | null
  readonly matches: boolean | null
  readonly cells: readonly VerdictCell[]
  readonly complete: boolean
  readonly cutReason: string | null
  readonly states: number
  readonly executions: number
}

/**
 * Per-cell expectations follow the engine's `matches` rule: `holds` expects every invariant to
 * hold; an invariant name expects that one to be violated (the others are unconstrained);
 * `violated` expects some violation, so no single cell is constrained; an exact set
 * (`{ violated: [a, b] }`, `expectedSet`) expects its invariants violated and every other to hold.
 */
export function expectedCell(
  expected: string | null,
  invariant: string,
  expectedSet?: readonly string[],
): CellVerdict | null {
  if (expectedSet !== undefined) return expectedSet.includes(invariant) ? 'violated' : 'holds'
  if (expected === null || expected === 'violated') return null
  if (expected === 'holds') return 'holds'
  return expected === invariant ? 'violated' : null
}

export function buildVerdictMatrix(run: RunResult, invariants: readonly string[]): VerdictRow[] {
  return run.results.map((r) => {
    const verdicts = r.invariants as Readonly<Record<string, CellVerdict | undefined>>
    const cells = invariants.map((inv): VerdictCell => {
      const computed = verdicts[inv] ?? 'unknown'
      const expected = expectedCell(r.expected, inv, r.expectedSet)
      const idx = r.counterexamples.findIndex((c) => c.invariant === inv)
      return {
        invariant: inv,
        computed,
        expected,
        match: expected === null ? null : expected === computed,
        counterexample: idx < 0 ? null : idx,
      }
    })
    return {
      policy: r.policy,
      verdict: r.verdict,
      expected: r.expected,
      matches: r.matches,
      cells,
      complete: r.stats.complete,
      cutReason: r.stats.cutReason,
      states: r.stats.states,
      executions: r.stats.executions,
    }
  })
}

/** One line for the status bar: how many policies match their expectation. */
export function matrixSummary(rows: readonly VerdictRow[]): string {
  const withExp = rows.filter((r) => r.matches !== null)
  const ok = withExp.filter((r) => r.matches).length
  const violated = rows.filter((r) => r.verdict === 'violated').length
  const parts = [`${rows.length} ${rows.length === 1 ? 'policy' : 'policies'}`, `${violated} violated`]
  if (withExp.length > 0) parts.push(`${ok}/${withExp.length} match expect`)
  return parts.join(' · ')
}
