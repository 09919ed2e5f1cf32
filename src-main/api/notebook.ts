/**
 * Lab notebooks: the on-disk format (one `*.mnlab.yaml` file per notebook) as types and zod
 * schemas, shared by the services, the CLI and (as types) the renderer. Keys are snake_case
 * because they are what users read and diff in git; `format` is the version, checked first.
 *
 * A notebook is a list of cells in order: notes (Markdown) and experiments. An experiment holds
 * its recipe (scenario, policies, mode, seed, budgets) and the results recorded from it. A result
 * stores verdicts, metrics and counterexample schedules, never traces (they are recomputed from
 * the recipe), with the engine version and a hash of the recipe and the scenario text, so a
 * result whose recipe or engine no longer matches is shown as stale.
 */
import { z } from 'zod'

/** The format this build writes. Older formats are migrated on load (src-main/node/notebook/format.ts). */
export const NOTEBOOK_FORMAT = 1

const Id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/, 'ids are letters, digits, _ . - (up to 100)')
const Text = z.string().max(1_000_000)

/**
 * A policy as requests, recipes and results name it: `preset[+variant...]`, a set of call sites
 * `sites:a,b` (up to every site), or a name defined in `policies:` (README, "Policies as call
 * sites"). Long enough for the canonical name of every site together.
 */
export const PolicyName = z.string().min(1).max(1000)

/**
 * Policies defined by name, each a list of call sites and presets whose sites it takes: a
 * notebook's `policies:` (as a scenario's), and what a request adds to its scenario's. The
 * engine checks the names and sites (scenario/policies.ts).
 */
export const PolicyDefsSchema = z.record(
  z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'policy names are letters, digits, _ . - (up to 64)'),
  z.array(z.string().min(1).max(100)).max(64),
)
export type PolicyDefs = z.infer<typeof PolicyDefsSchema>

/** The bounds of a run's settings, shared by a run request (labApi.ts) and a recipe. */
export const RunFields = {
  policies: z.array(PolicyName).min(1).max(32),
  mode: z.enum(['exhaustive', 'random', 'scripted']),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1),
  executions: z.number().int().min(1).max(1_000_000),
  maxStates: z.number().int().min(1).max(50_000_000),
  timeoutMs: z.number().int().min(1).max(86_400_000).nullable(),
}

export const RecipeSchema = z.strictObject({
  policies: RunFields.policies,
  mode: RunFields.mode,
  seed: RunFields.seed,
  executions: RunFields.executions,
  schedule: z.array(z.string().min(1).max(100)).max(100_000),
  max_states: RunFields.maxStates,
  timeout_ms: RunFields.timeoutMs,
})
export type Recipe = z.infer<typeof RecipeSchema>

export const ScenarioRefSchema = z.union([
  z.strictObject({ path: z.string().min(1).max(4096) }),
  z.strictObject({ inline: Text }),
])
export type ScenarioRef = z.infer<typeof ScenarioRefSchema>

const Count = z.number().int().min(0)
export const RecordedMetricsSchema = z.strictObject({
  notifier_calls: Count,
  secondary_invalidations: Count,
  device_faults: Count,
  mirror_zaps: Count,
  cpu_tlb_flushes: Count,
  sim_ns: z.number().min(0),
})

export const RecordedCounterexampleSchema = z.strictObject({
  invariant: z.string().min(1).max(100),
  schedule: z.array(z.string().min(1).max(100)).max(100_000),
  cycle: z.array(z.string().min(1).max(100)).max(100_000).nullable(),
  why: Text,
})
export type RecordedCounterexample = z.infer<typeof RecordedCounterexampleSchema>

export const RecordedPolicySchema = z.strictObject({
  policy: PolicyName,
  verdict: z.enum(['holds', 'violated', 'unknown']),
  violated: z.array(z.string().min(1).max(100)),
  /**
   * Every invariant's verdict (holds | violated | unknown). Optional: results recorded before it
   * existed say only which invariants were violated, and the others are then "not recorded".
   */
  invariants: z.record(z.string().min(1).max(100), z.enum(['holds', 'violated', 'unknown'])).optional(),
  expected: z.string().max(200).nullable(),
  matches: z.boolean().nullable(),
  /** Why exploration stopped early (budget, random sampling), if it did. */
  cut_reason: Text.nullable(),
  metrics: RecordedMetricsSchema,
  counterexamples: z.array(RecordedCounterexampleSchema),
})
export type RecordedPolicy = z.infer<typeof RecordedPolicySchema>

export const RecordedResultSchema = z.strictObject({
  /** sha256 (hex) of the canonical JSON of { recipe, scenario text }. */
  recipe_hash: z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex (64 digits)'),
  engine: z.string().min(1).max(100),
  /** ISO 8601 time of the run. */
  at: z.iso.datetime({ offset: true }),
  pinned: z.boolean(),
  policies: z.array(RecordedPolicySchema),
})
export type RecordedResult = z.infer<typeof RecordedResultSchema>

export const NoteCellSchema = z.strictObject({
  kind: z.literal('note'),
  id: Id,
  markdown: Text,
})
export type NoteCell = z.infer<typeof NoteCellSchema>

export const ExperimentCellSchema = z.strictObject({
  kind: z.literal('experiment'),
  id: Id,
  title: z.string().max(500),
  scenario: ScenarioRefSchema,
  recipe: RecipeSchema,
  /** Oldest first. */
  results: z.array(RecordedResultSchema),
})
export type ExperimentCell = z.infer<typeof ExperimentCellSchema>

/**
 * A synthesis's recipe (`mnlab synthesize`, issue 14): the scenarios (files or folders, relative
 * to the notebook), the candidate sites (null: every site), the objective, the placements to
 * show beside the presets and the policies the notebook and scenarios define, and budgets.
 */
export const SynthesisRecipeSchema = z.strictObject({
  scenarios: z.array(z.string().min(1).max(4096)).min(1).max(200),
  sites: z.array(z.string().min(1).max(100)).max(16).nullable(),
  objective: z.enum(['sim_ns', 'secondary_invalidations']),
  policies: z.array(PolicyName).max(32),
  max_states: RunFields.maxStates,
  timeout_ms: RunFields.timeoutMs,
})
export type SynthesisRecipe = z.infer<typeof SynthesisRecipeSchema>

const Verdicts = z.enum(['holds', 'violated', 'unknown'])
const Cost = z.number().min(0)

/**
 * A synthesis's result as a notebook keeps it (engine/synthesisResult.ts, without cells' origins
 * or the counterexamples' explanations): the minimal placements with the scenario and schedule
 * that break without each site, the Pareto front, and a verdict per scenario for each shown
 * placement. Hashed like an experiment's: the recipe and the text of every scenario.
 */
export const RecordedSynthesisSchema = z.strictObject({
  recipe_hash: z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex (64 digits)'),
  engine: z.string().min(1).max(100),
  at: z.iso.datetime({ offset: true }),
  pinned: z.boolean(),
  /** The scenarios searched, in order: the recipe's files and folders expanded. */
  scenarios: z.array(z.string().min(1).max(4096)),
  /** False when a budget left a verdict unknown: the minimal placements are not proven. */
  complete: z.boolean(),
  minimal: z.array(
    z.strictObject({
      placement: PolicyName,
      cost: Cost,
      needs: z.array(
        z.strictObject({
          site: z.string().min(1).max(100),
          scenario: z.string().min(1).max(4096),
          invariant: z.string().min(1).max(100),
          schedule: z.array(z.string().min(1).max(100)).max(100_000),
          cycle: z.array(z.string().min(1).max(100)).max(100_000).nullable(),
        }),
      ),
    }),
  ),
  front: z.array(z.strictObject({ held: Count, cost: Cost, placements: z.array(PolicyName) })),
  placements: z.array(
    z.strictObject({ placement: PolicyName, held: Count, cost: Cost, verdicts: z.array(Verdicts) }),
  ),
  search: z.strictObject({
    explored: Count,
    pruned: Count,
    cost_runs: Count,
    states: Count,
    elapsed_ms: Count,
  }),
})
export type RecordedSynthesis = z.infer<typeof RecordedSynthesisSchema>

export const SynthesisCellSchema = z.strictObject({
  kind: z.literal('synthesis'),
  id: Id,
  title: z.string().max(500),
  recipe: SynthesisRecipeSchema,
  /** Oldest first. */
  results: z.array(RecordedSynthesisSchema),
})
export type SynthesisCell = z.infer<typeof SynthesisCellSchema>

export const CellSchema = z.discriminatedUnion('kind', [
  NoteCellSchema,
  ExperimentCellSchema,
  SynthesisCellSchema,
])
export type Cell = z.infer<typeof CellSchema>

export const NotebookSchema = z
  .strictObject({
    format: z.literal(NOTEBOOK_FORMAT),
    title: z.string().max(500),
    /** Policies its experiments name, each a list of sites (as a scenario's `policies:`). */
    policies: PolicyDefsSchema.optional(),
    cells: z.array(CellSchema).max(10_000),
  })
  .superRefine((nb, ctx) => {
    const seen = new Set<string>()
    nb.cells.forEach((c, i) => {
      if (seen.has(c.id))
        ctx.addIssue({ code: 'custom', path: ['cells', i, 'id'], message: `duplicate cell id '${c.id}'` })
      seen.add(c.id)
    })
  })
export type Notebook = z.infer<typeof NotebookSchema>

/** How a recorded result relates to the recipe and engine of today. Stale is never shown as current. */
export type ResultStatus = 'current' | 'stale-recipe' | 'stale-engine'

/** A problem in a notebook file, at a 1-based line and column. */
export interface NotebookIssue {
  readonly file: string
  readonly line: number
  readonly column: number
  readonly message: string
}

// ---- LabApi requests (the methods themselves are declared in labApi.ts) ----

const PathText = z.string().min(1).max(4096)

export const NotebookOpenSchema = z.object({ path: PathText })
export const NotebookSaveSchema = z.object({
  path: PathText,
  /** Either the file's text, or the notebook (serialized with the stable key order). */
  text: Text.optional(),
  notebook: NotebookSchema.optional(),
  /** sha256 of the file's bytes when opened or last saved; null for a file that should not exist yet. */
  expectedRevision: z.string().max(100).nullable(),
  force: z.boolean().optional(),
})
export const NotebookAutosaveSchema = z.object({
  key: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'keys are letters, digits, _ and - (up to 100)'),
  /** The notebook's file, or null for one never saved. */
  path: PathText.nullable(),
  notebook: NotebookSchema,
})
export const NotebookKeySchema = z.object({ key: NotebookAutosaveSchema.shape.key })
export const NotebookRunCellSchema = z.object({
  /** The notebook's file (scenario paths are relative to it), or null for one never saved. */
  notebookPath: PathText.nullable(),
  cellId: Id,
  notebook: NotebookSchema,
})
export const NotebookStatusSchema = z.object({
  /** The notebook's file (scenario paths are relative to it), or null for one never saved. */
  notebookPath: PathText.nullable(),
  notebook: NotebookSchema,
  /**
   * Per synthesis cell id, the scenario files a search read for it (each recipe scenario, as
   * the recipe names it, with the sha256 of its text then: synthesis-finished's
   * scenarioHashes): that cell's hash is then the one of the files as searched (see hashes).
   */
  searched: z
    .record(z.string().min(1).max(200), z.record(PathText, z.string().regex(/^[0-9a-f]{64}$/)))
    .optional(),
})
export const NotebookExportSchema = z.object({
  notebook: NotebookSchema,
  format: z.enum(['markdown', 'html']),
})
export const LkmlTimelineSchema = z.object({
  text: Text,
  file: z.string().max(4096).nullable(),
  policy: PolicyName,
  policyDefs: PolicyDefsSchema.optional(),
  schedule: z.array(z.string().min(1).max(100)).max(100_000),
  cycle: z.array(z.string().min(1).max(100)).max(100_000).nullable(),
  /** Fold runs of one thread's steps that change nothing visible into one line (default false). */
  collapse: z.boolean().optional(),
})

export interface NotebookDocument extends NotebookStatus {
  /** The resolved file path. */
  readonly path: string
  readonly text: string
  /** sha256 (hex) of the bytes read: pass it back as expectedRevision when saving. */
  readonly revision: string
  /** The parsed notebook, or null with `issues` when the file does not load (it is never rewritten). */
  readonly notebook: Notebook | null
  readonly issues: readonly NotebookIssue[]
  /** Set when the file was in an older format and was migrated in memory (saving writes the new format). */
  readonly migratedFrom: number | null
}

/** The status of every recorded result of a notebook, as `notebookStatus` computes it. */
export interface NotebookStatus {
  /** Per experiment cell id, the status of each recorded result (same order as `results`). */
  readonly status: Readonly<Record<string, readonly ResultStatus[]>>
  /** Per experiment cell id, why its scenario could not be read (its results count as stale-recipe). */
  readonly problems: Readonly<Record<string, string>>
  /**
   * Per synthesis cell id, its recipe hash over its scenario files as they are now (null when
   * they cannot be read): a result the renderer records for the cell carries it. For a cell the
   * request gives `searched` files, the hash is over the files as searched: the same when every
   * file still reads so, else one no files give now, so a result recorded under it is stale.
   */
  readonly hashes?: Readonly<Record<string, string | null>>
}

export interface RecentNotebook {
  readonly path: string
  readonly openedAt: string
}

export interface RecoveryEntry {
  readonly key: string
  /** The notebook's file, or null for one never saved. */
  readonly path: string | null
  /** ISO time of the autosave. */
  readonly savedAt: string
  readonly text: string
  /** The autosaved notebook, or null with `issues` if the copy does not load (it is kept). */
  readonly notebook: Notebook | null
  readonly issues: readonly NotebookIssue[]
}
