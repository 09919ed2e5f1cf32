/**
 * Running experiment cells headlessly (CLI `notebook check` / `notebook record`): resolve the
 * scenario (inline, or a path relative to the notebook file), run every policy of the recipe in the
 * worker pool, and compare the fresh verdicts with the recorded ones.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import {
  defaultRunOptions,
  definePolicies,
  mergePolicyDefs,
  parsePolicyList,
  runResultOf,
  type Policy,
  type RunOptions,
  type RunResult,
  type Scenario,
} from '../../engine'
import type { ExperimentCell, PolicyDefs, Recipe, RecordedResult } from '../../api/notebook'
import { toWorkerOptions, type WorkerPool } from '../workerPool'

/** The scenario text of a cell and the name to use in messages. Throws if a path cannot be read. */
export function cellScenarioText(
  cell: ExperimentCell,
  notebookFile: string | null,
): { text: string; file: string } {
  if ('inline' in cell.scenario)
    return { text: cell.scenario.inline, file: `${notebookFile ?? '<unsaved>'}#${cell.id}` }
  if (notebookFile === null) throw new Error(`cell ${cell.id}: a scenario path needs a saved notebook`)
  const file = path.resolve(path.dirname(notebookFile), cell.scenario.path)
  return { text: readFileSync(file, 'utf8'), file }
}

/**
 * The cell's scenario with the notebook's `policies:` added to those it defines, so recipes
 * (and every replay of their results) resolve the notebook's names. Throws on a bad definition
 * or on a name both define with different sites.
 */
export function withNotebookPolicies(sc: Scenario, defs: PolicyDefs | undefined): Scenario {
  if (defs === undefined) return sc
  const d = definePolicies(defs)
  if (d.problems.length > 0) throw new Error(d.problems.join('; '))
  const merged = mergePolicyDefs(sc.policies, d.policies)
  if (typeof merged === 'string') throw new Error(merged)
  return { ...sc, policies: merged }
}

/** A recipe's policies, resolved as its scenario (with the notebook's policies) names them. */
export function recipePolicies(recipe: Recipe, sc: Scenario): Policy[] {
  const out: Policy[] = []
  for (const entry of recipe.policies) {
    const ps = parsePolicyList(entry, sc.policies)
    if (typeof ps === 'string') throw new Error(`policies: ${ps}`)
    for (const p of ps) if (!out.some((q) => q.name === p.name)) out.push(p)
  }
  return out
}

export function recipeRunOptions(sc: Scenario, recipe: Recipe): RunOptions {
  const base = defaultRunOptions(sc)
  return {
    ...base,
    mode: recipe.mode,
    seed: recipe.seed,
    executions: recipe.executions,
    schedule: recipe.schedule,
    budget: { ...base.budget, maxStates: recipe.max_states },
  }
}

/** The recipe a new experiment cell starts from: the scenario's own explore block, the given policies. */
export function defaultRecipe(policies: readonly string[]): Recipe {
  return {
    policies: [...policies],
    mode: 'exhaustive',
    seed: 1,
    executions: 1000,
    schedule: [],
    max_states: 2_000_000,
    timeout_ms: null,
  }
}

export async function runRecipeInPool(pool: WorkerPool, sc: Scenario, recipe: Recipe): Promise<RunResult> {
  const opts = recipeRunOptions(sc, recipe)
  const wopts = toWorkerOptions(opts, recipe.timeout_ms)
  const results = await Promise.all(recipePolicies(recipe, sc).map((p) => pool.run(sc, p, wopts)))
  return runResultOf(sc, opts, results)
}

/** What changed between a recorded result and a fresh one, one line per difference (empty: same verdicts). */
export function verdictChanges(recorded: RecordedResult, fresh: RecordedResult): string[] {
  const out: string[] = []
  for (const r of recorded.policies) {
    const f = fresh.policies.find((p) => p.policy === r.policy)
    if (!f) {
      out.push(`${r.policy}: recorded ${r.verdict}, no longer in the recipe`)
      continue
    }
    const rv = [...r.violated].sort().join(',') || 'none'
    const fv = [...f.violated].sort().join(',') || 'none'
    if (r.verdict !== f.verdict || rv !== fv)
      out.push(`${r.policy}: recorded ${r.verdict} (violated: ${rv}), now ${f.verdict} (violated: ${fv})`)
    else if (r.invariants && f.invariants) {
      // Same violations, but an invariant proven to hold may have become unknown (or back).
      const moved = Object.keys({ ...r.invariants, ...f.invariants })
        .filter((k) => r.invariants![k] !== f.invariants![k])
        .map((k) => `${k} ${r.invariants![k] ?? 'not recorded'} -> ${f.invariants![k] ?? 'none'}`)
      if (moved.length > 0) out.push(`${r.policy}: recorded ${r.verdict}, now ${moved.join(', ')}`)
    }
  }
  for (const f of fresh.policies)
    if (!recorded.policies.some((r) => r.policy === f.policy))
      out.push(`${f.policy}: not recorded, now ${f.verdict}`)
  return out
}
