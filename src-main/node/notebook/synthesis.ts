/**
 * Synthesis cells of a notebook (issue 14): a `mnlab synthesize` recipe (scenario files and
 * folders relative to the notebook, candidate sites, objective, placements shown, budgets) and
 * its recorded results. Shared by `mnlab notebook check|record|export` and the lab service.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { createHash } from 'node:crypto'
import path from 'node:path'
import type { Notebook, RecordedSynthesis, SynthesisCell, SynthesisRecipe } from '../../api/notebook'
import { recordedSynthesis } from '../../api/record'
import type { SynthesisResult } from '../../engine'
import { loadScenarioText } from '../scenarioFiles'
import {
  scenarioTextHash,
  startSynthesis,
  synthSettings,
  type SynthRecipe,
  type SynthScenarioFile,
} from '../synthesis'
import type { WorkerPool } from '../workerPool'
import { canonicalJson } from './format'

/** A scenario of a synthesis cell: its id (path relative to the notebook, forward slashes) and text. */
export interface CellScenarioText {
  readonly id: string
  readonly file: string
  readonly text: string
}

/**
 * The cell's scenario files, its folders expanded (every `.yaml` under them, sorted), read.
 * Throws an Error naming the cell and the path that cannot be read.
 */
export function synthesisCellTexts(cell: SynthesisCell, notebookFile: string | null): CellScenarioText[] {
  if (notebookFile === null)
    throw new Error(`cell ${cell.id}: save the notebook first: its scenario paths are relative to it`)
  const base = path.dirname(notebookFile)
  const out: CellScenarioText[] = []
  const add = (abs: string): void => {
    const id = path.relative(base, abs).split(path.sep).join('/')
    if (out.some((o) => o.id === id)) throw new Error(`cell ${cell.id}: scenario ${id} is named twice`)
    out.push({ id, file: abs, text: readFileSync(abs, 'utf8') })
  }
  const walk = (abs: string): void => {
    for (const e of readdirSync(abs).sort()) {
      const q = path.join(abs, e)
      if (statSync(q).isDirectory()) walk(q)
      else if (/\.ya?ml$/.test(e)) add(q)
    }
  }
  for (const p of cell.recipe.scenarios) {
    const abs = path.resolve(base, p)
    let st
    try {
      st = statSync(abs)
    } catch {
      throw new Error(`cell ${cell.id}: no scenario file or folder '${p}'`)
    }
    if (st.isDirectory()) walk(abs)
    else add(abs)
  }
  return out
}

/** The recipe's fields in a fixed order, for hashing. */
function orderedRecipe(recipe: SynthesisRecipe): object {
  return {
    scenarios: [...recipe.scenarios],
    sites: recipe.sites === null ? null : [...recipe.sites],
    objective: recipe.objective,
    policies: [...recipe.policies],
    max_states: recipe.max_states,
    timeout_ms: recipe.timeout_ms,
  }
}

/** sha256 over the canonical JSON of the recipe and every scenario's path and text, in order. */
export function synthesisRecipeHash(recipe: SynthesisRecipe, texts: readonly CellScenarioText[]): string {
  return createHash('sha256')
    .update(canonicalJson({ recipe: orderedRecipe(recipe), scenarios: texts.map((t) => [t.id, t.text]) }))
    .digest('hex')
}

/**
 * The recipe hash of a result searched over the scenario files as they were read then
 * (`searched`: each scenario id with the scenarioTextHash of its text at the search's start),
 * given the files as they are now: synthesisRecipeHash when every file still reads as searched
 * (the same files, none edited), else a hash over the recipe and the searched hashes that no
 * files give (a different shape from synthesisRecipeHash's), so a result recorded under it is
 * stale-recipe, never current. A file edited back to what was searched matches again.
 */
export function synthesisRecipeHashAsSearched(
  recipe: SynthesisRecipe,
  texts: readonly CellScenarioText[],
  searched: Readonly<Record<string, string>>,
): string {
  const same =
    Object.keys(searched).length === texts.length &&
    texts.every((t) => searched[t.id] === scenarioTextHash(t.text))
  if (same) return synthesisRecipeHash(recipe, texts)
  const read = Object.entries(searched).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return createHash('sha256')
    .update(canonicalJson({ recipe: orderedRecipe(recipe), searched: read }))
    .digest('hex')
}

/** The scenarios loaded (a load error is the scenario's, located in its file). */
export function synthesisCellFiles(texts: readonly CellScenarioText[]): SynthScenarioFile[] {
  return texts.map((t) => ({
    id: t.id,
    file: t.file,
    scenario: loadScenarioText(t.text, t.file),
    sha256: scenarioTextHash(t.text),
  }))
}

/** The recipe checked against its scenarios and the notebook's policies, or why not. */
export function synthesisCellRecipe(
  cell: SynthesisCell,
  nb: Pick<Notebook, 'policies'>,
  files: readonly SynthScenarioFile[],
): SynthRecipe | string {
  const r = cell.recipe
  const recipe = synthSettings(
    {
      sites: r.sites,
      objective: r.objective,
      policies: r.policies,
      policyDefs: nb.policies ?? null,
      maxStates: r.max_states,
      timeoutMs: r.timeout_ms,
    },
    files,
  )
  return typeof recipe === 'string' ? `cell ${cell.id}: ${recipe}` : recipe
}

/** Runs a synthesis cell in the pool. */
export function runSynthesisCell(
  pool: WorkerPool,
  files: readonly SynthScenarioFile[],
  recipe: SynthRecipe,
): Promise<SynthesisResult> {
  return startSynthesis(pool, files, recipe).result
}

export function recordSynthesis(
  r: SynthesisResult,
  recipe: SynthesisRecipe,
  texts: readonly CellScenarioText[],
  at: Date = new Date(),
  pinned = false,
): RecordedSynthesis {
  return recordedSynthesis(r, synthesisRecipeHash(recipe, texts), at, pinned)
}

/** What changed between a recorded synthesis and a fresh one, one line each (empty: the same). */
export function synthesisChanges(recorded: RecordedSynthesis, fresh: RecordedSynthesis): string[] {
  const out: string[] = []
  const list = (xs: readonly string[]): string => (xs.length ? xs.join(', ') : 'none')
  const was = recorded.minimal.map((m) => m.placement)
  const now = fresh.minimal.map((m) => m.placement)
  const gone = was.filter((p) => !now.includes(p))
  const added = now.filter((p) => !was.includes(p))
  if (gone.length || added.length)
    out.push(`minimal placements: no longer ${list(gone)}; now also ${list(added)}`)
  // Verdicts by scenario: a scenario added to a folder since (a new catalogue file) is no
  // change to what was recorded; one that is gone is.
  const missing = recorded.scenarios.filter((s) => !fresh.scenarios.includes(s))
  if (missing.length) out.push(`scenarios no longer searched: ${missing.join(', ')}`)
  for (const p of recorded.placements) {
    const f = fresh.placements.find((q) => q.placement === p.placement)
    if (!f) {
      out.push(`${p.placement}: recorded, no longer shown`)
      continue
    }
    const moved = p.verdicts
      .map((v, i) => {
        const s = recorded.scenarios[i] ?? '?'
        const j = fresh.scenarios.indexOf(s)
        return [v, j < 0 ? undefined : f.verdicts[j], s] as const
      })
      .filter(([a, b]) => b !== undefined && a !== b)
      .map(([a, b, s]) => `${s} ${a} -> ${b}`)
    if (moved.length) out.push(`${p.placement}: ${moved.join('; ')}`)
  }
  if (recorded.complete && !fresh.complete) out.push('the search is no longer complete (a budget ran out)')
  return out
}

/** Scenarios a fresh synthesis searched that the recorded one did not (added to a folder since). */
export function addedScenarios(recorded: RecordedSynthesis, fresh: RecordedSynthesis): string[] {
  return fresh.scenarios.filter((s) => !recorded.scenarios.includes(s))
}

/** One line: the minimal placements and how each shown placement fares. */
export function synthesisSummary(r: RecordedSynthesis): string {
  const n = r.scenarios.length
  const minimal = r.minimal.length
    ? `${r.minimal.length} minimal (${r.minimal
        .slice(0, 3)
        .map((m) => m.placement)
        .join(', ')}${r.minimal.length > 3 ? ', ...' : ''})`
    : 'no correct placement'
  return `${minimal}; ${r.placements.map((p) => `${p.placement} ${p.held}/${n}`).join(', ')}`
}
