/**
 * The one typed door between the workbench renderer and the lab services. The Electron
 * preload exposes one function per method; the browser host serves the same methods over
 * HTTP (POST /api/<method>, events over server-sent events). Every request is validated with
 * the schemas below on the service side: the renderer is untrusted input.
 */
import { z } from 'zod'
import type {
  Culprit,
  ExploreMode,
  RunResult,
  StepRecord,
  SynthesisResult,
  SynthEvaluation,
  SynthProgress,
  Violation,
} from '../engine'
import {
  LkmlTimelineSchema,
  NotebookAutosaveSchema,
  NotebookExportSchema,
  NotebookKeySchema,
  NotebookOpenSchema,
  NotebookRunCellSchema,
  NotebookSaveSchema,
  NotebookStatusSchema,
  PolicyDefsSchema,
  PolicyName,
  RunFields,
  type Notebook,
  type NotebookDocument,
  type NotebookStatus,
  type RecentNotebook,
  type RecoveryEntry,
} from './notebook'

export type RunId = string
export type Unsubscribe = () => void

/** A scenario file under the scenarios root, as the browser lists it. */
export interface ScenarioEntry {
  /** Path relative to the scenarios root, with forward slashes. */
  readonly path: string
  readonly title: string
  readonly source: string | null
  readonly arch: string
  /** Policies named in its expect block. */
  readonly policies: readonly string[]
  /** Set when the file does not load; the entry is still listed. */
  readonly error: string | null
}

/** A problem in scenario text, at a 1-based line and column. */
export interface ValidationIssue {
  readonly line: number
  readonly column: number
  readonly length: number
  readonly message: string
}

export const RunRequestSchema = z.object({
  /** The scenario YAML (the editor's contents, saved or not). */
  text: z.string().max(1_000_000),
  /** Where it came from, for messages; null for an unsaved buffer. */
  file: z.string().max(4096).nullable(),
  policies: RunFields.policies,
  /** Policies defined outside the scenario text (a notebook's `policies:`), by name. */
  policyDefs: PolicyDefsSchema.optional(),
  mode: RunFields.mode,
  seed: RunFields.seed,
  executions: RunFields.executions,
  schedule: z.array(z.string().max(100)).max(100_000),
  maxStates: RunFields.maxStates,
  timeoutMs: RunFields.timeoutMs,
  /** Exhaustive runs: stop each policy at its first violation (`--first`). */
  first: z.boolean().optional(),
})
export type RunRequest = z.infer<typeof RunRequestSchema> & { readonly mode: ExploreMode }

export const ReplayRequestSchema = z.object({
  text: z.string().max(1_000_000),
  file: z.string().max(4096).nullable(),
  policy: PolicyName,
  policyDefs: PolicyDefsSchema.optional(),
  schedule: z.array(z.string().max(100)).max(100_000),
})
export type ReplayRequest = z.infer<typeof ReplayRequestSchema>

/**
 * One schedule under several policies (issue 12): each policy replays the same schedule; a
 * scheduled thread that is blocked or finished at its turn is skipped (and listed in `skipped`).
 */
export const CompareRequestSchema = z.object({
  text: z.string().max(1_000_000),
  file: z.string().max(4096).nullable(),
  policies: z.array(PolicyName).min(1).max(16),
  policyDefs: PolicyDefsSchema.optional(),
  schedule: z.array(z.string().max(100)).max(100_000),
})
export type CompareRequest = z.infer<typeof CompareRequestSchema>

/** The shortest schedule on which two policies' outcomes differ (issue 12). */
export const DistinguishRequestSchema = z.object({
  text: z.string().max(1_000_000),
  file: z.string().max(4096).nullable(),
  policies: z.tuple([PolicyName, PolicyName]),
  policyDefs: PolicyDefsSchema.optional(),
  /** Product states before giving up (default 2,000,000). */
  maxStates: z.number().int().positive().max(50_000_000).optional(),
  timeoutMs: z.number().int().positive().max(3_600_000).optional(),
})
export type DistinguishRequest = z.infer<typeof DistinguishRequestSchema>

/**
 * `synthesize` (issue 14): the cheapest notifier placement (set of call sites) under which every
 * scenario of a set holds, searched over the placements of the candidate sites; see
 * engine/synthesisResult.ts for what comes back. Progress, each finished exploration and the
 * result arrive as run events of the returned id (SynthesisEvent); cancelSynthesis stops it.
 */
export const SynthesizeRequestSchema = z.object({
  /**
   * The scenarios: files or folders under the scenarios root (paths as listScenarios gives
   * them; a folder means every scenario in it), or a scenario's text (an unsaved buffer).
   */
  scenarios: z
    .array(
      z.union([
        z.strictObject({ path: z.string().min(1).max(4096) }),
        z.strictObject({ text: z.string().max(1_000_000), file: z.string().max(4096).nullable() }),
      ]),
    )
    .min(1)
    .max(200),
  /** The candidate sites (policy.ts SITE_NAMES); default every site. */
  sites: z.array(z.string().min(1).max(100)).max(16).optional(),
  /** What a placement costs, summed over the scenarios' reference schedules (default sim_ns). */
  objective: z.enum(['sim_ns', 'secondary_invalidations']).optional(),
  /**
   * Placements to show beside the three presets, each as `--policy` takes them: `sites:a,b`, a
   * preset with variants (`arch-hook+kernel-notifier`), a name a scenario (`policies:`) or
   * `policyDefs` defines, or a list of them (`a,b`).
   */
  policies: z.array(PolicyName).max(32).optional(),
  /** Policies defined outside the scenarios (a notebook's `policies:`), by name; shown too. */
  policyDefs: PolicyDefsSchema.optional(),
  /** Each exploration's state budget (default 2,000,000). */
  maxStates: RunFields.maxStates.optional(),
  /** The whole search's time budget; past it, the result says what is unknown (complete: false). */
  timeoutMs: RunFields.timeoutMs.optional(),
})
export type SynthesizeRequest = z.infer<typeof SynthesizeRequestSchema>

export const PathSchema = z.object({ path: z.string().min(1).max(4096) })
export const SaveSchema = z.object({ path: z.string().min(1).max(4096), text: z.string().max(1_000_000) })
export const ValidateSchema = z.object({
  text: z.string().max(1_000_000),
  file: z.string().max(4096).nullable(),
})
export const RunIdSchema = z.object({ runId: z.string().min(1).max(100) })
export const PickFileSchema = z.object({
  purpose: z.enum(['open', 'save']),
  /** A scenario (confined to the scenarios folder) or a lab notebook (default: scenario). */
  kind: z.enum(['scenario', 'notebook']).optional(),
  /** For save: the name to propose. */
  suggestedName: z.string().max(255).nullable(),
})

export interface ReplayResult {
  readonly records: readonly StepRecord[]
  readonly violations: readonly Violation[]
  readonly outcome: string
  readonly registers: ReadonlyArray<readonly [string, number | null]>
}

/** A schedule entry a policy's replay did not run: that thread was blocked or finished then. */
export interface ScheduleSkip {
  /** Index in the requested schedule. */
  readonly index: number
  readonly thread: string
  /** `blocked on mmap_lock (held by C1)`, `finished`. */
  readonly reason: string
}

/** One policy's replay of a shared schedule. */
export interface PolicyReplay extends ReplayResult {
  readonly policy: string
  /** The thread names actually run, in order (pasteable into `replay`). */
  readonly ran: readonly string[]
  /** For each record, the index of the requested schedule entry it ran, or null past the schedule. */
  readonly positions: ReadonlyArray<number | null>
  readonly skipped: readonly ScheduleSkip[]
  /** The first violation's explanation, or what the run ended with (`holds on this schedule`). */
  readonly why: string
  readonly culprits: readonly Culprit[]
}

export interface CompareResult {
  readonly schedule: readonly string[]
  readonly replays: readonly PolicyReplay[]
  /**
   * For the first violating replay, against each replay that holds (no violation, not cut), in
   * policy order: which notifier hook, under that policy, invalidated the stale entry between
   * its fill and its use (one line). A holding policy for which no hook could be named has none.
   */
  readonly hints: ReadonlyArray<{ readonly policy: string; readonly text: string }>
  /** The first of `hints`, or null (kept for older readers). */
  readonly hint: string | null
}

export interface DistinguishResult {
  readonly policies: readonly [string, string]
  /**
   * The shortest distinguishing schedule (thread names; fewest entries, the reference schedule
   * that runs after it not counted; may be empty), or null when none was found.
   */
  readonly schedule: readonly string[] | null
  /** Both policies replayed on `schedule` (empty when null). */
  readonly replays: readonly PolicyReplay[]
  /**
   * The first row of `diffTraces(replays[0], replays[1]).rows` (api/traceDiff.ts) that differs,
   * or null.
   */
  readonly firstDifference: number | null
  /** Pairs of states explored. */
  readonly states: number
  /**
   * True when the search covered every reachable pair: with no schedule, the outcomes never
   * differ (livelocks compared only where the reference schedule runs into one).
   */
  readonly complete: boolean
  /** One line: what was found, or why the search stopped. */
  readonly note: string
  /**
   * On the distinguishing schedule, when one policy violates and the other holds: which hook,
   * under the holding one, invalidated the stale entry the violating one used (hookHint); null
   * when both violate (different invariants) or no hook could be named.
   */
  readonly hint: string | null
}

/** Live progress of one policy of a run. */
export interface PolicyProgress {
  readonly policy: string
  readonly states: number
  readonly steps: number
  readonly executions: number
  readonly done: boolean
  /**
   * The first violation this policy's exploration found, sent as soon as it is found, while
   * exploration goes on: its schedule replays it (`replay`).
   */
  readonly first?: FirstFound
}

export interface FirstFound {
  readonly invariant: string
  readonly message: string
  /** Thread names, one per step (a livelock's cycle follows in `cycle`). */
  readonly schedule: readonly string[]
  readonly cycle: readonly string[] | null
}

export type RunEvent =
  | {
      readonly kind: 'progress'
      readonly runId: RunId
      readonly elapsedMs: number
      /** States per second over the run so far. */
      readonly rate: number
      readonly policies: readonly PolicyProgress[]
    }
  | {
      readonly kind: 'finished'
      readonly runId: RunId
      readonly elapsedMs: number
      readonly result: RunResult
    }
  | { readonly kind: 'failed'; readonly runId: RunId; readonly message: string }
  | { readonly kind: 'cancelled'; readonly runId: RunId }
  | SynthesisEvent

/**
 * The events of a synthesis (startSynthesis's id); it ends with `synthesis-finished`, or the
 * run events `failed` or `cancelled` of the same id.
 * - `synthesis-progress`: at most every 200 ms, and when a phase starts;
 * - `synthesis-evaluation`: each exhaustive exploration as it finishes (cost-only runs of the
 *   reference schedule are counted in the progress, not sent one by one);
 * - `synthesis-finished`: the result.
 */
export type SynthesisEvent =
  | { readonly kind: 'synthesis-progress'; readonly runId: RunId; readonly progress: SynthProgress }
  | { readonly kind: 'synthesis-evaluation'; readonly runId: RunId; readonly evaluation: SynthEvaluation }
  | {
      readonly kind: 'synthesis-finished'
      readonly runId: RunId
      readonly elapsedMs: number
      readonly result: SynthesisResult
      /**
       * Each scenario's sha256 (hex, of its text) as the services read it when the search
       * started, by the result's scenario id: a notebook records the result under the files as
       * searched (notebookStatus `searched`), not as they are when it is added.
       */
      readonly scenarioHashes: Readonly<Record<string, string>>
    }

/** The synthesis methods of LabApi (issue 14), served by node/synthesisManager.ts. */
export interface SynthesisApi {
  /**
   * Starts a search (SynthesizeRequestSchema); its progress, finished explorations and result
   * arrive as SynthesisEvents of the returned id through onDidRunEvent. Bad input (a scenario
   * that does not load, an unknown site or policy) rejects here, before anything runs.
   */
  startSynthesis(req: SynthesizeRequest): Promise<RunId>
  /** Stops a search: its explorations are cancelled and a `cancelled` event follows. */
  cancelSynthesis(req: z.infer<typeof RunIdSchema>): Promise<void>
}

export interface NamedDoc {
  readonly name: string
  readonly doc: string
}

export interface EngineInfo {
  readonly version: string
  readonly presets: readonly NamedDoc[]
  readonly variants: readonly NamedDoc[]
  /**
   * Every notification site, in canonical order: its family (the preset that has it, or the
   * proposal that adds it), the kernel function it sits in and what a secondary does there.
   * Optional for hosts that predate sites.
   */
  readonly sites?: ReadonlyArray<NamedDoc & { readonly group: string; readonly kernel: string }>
  /** The site set of each preset (`preset`) and of each preset with one variant (`preset+variant`). */
  readonly namedSites?: Readonly<Record<string, readonly string[]>>
  readonly invariants: readonly string[]
  /** JSON Schema of the scenario language, for editor completion and hover. */
  readonly scenarioSchema: object
  /** A starting point for "New scenario". */
  readonly template: string
  /** The host shows native open/save dialogs (Electron); otherwise the renderer asks inline. */
  readonly nativeDialogs: boolean
  /**
   * The scenarios folder as an absolute path (the root listScenarios' paths are relative to), so
   * the renderer can name a scenario relative to a notebook. Optional for hosts that predate it.
   */
  readonly scenariosDir?: string
}

export interface LabApi extends SynthesisApi {
  engineInfo(): Promise<EngineInfo>
  listScenarios(): Promise<ScenarioEntry[]>
  readScenario(req: z.infer<typeof PathSchema>): Promise<{ path: string; text: string }>
  saveScenario(req: z.infer<typeof SaveSchema>): Promise<void>
  validate(req: z.infer<typeof ValidateSchema>): Promise<ValidationIssue[]>
  startRun(req: RunRequest): Promise<RunId>
  cancelRun(req: z.infer<typeof RunIdSchema>): Promise<void>
  replay(req: ReplayRequest): Promise<ReplayResult>
  /**
   * One schedule under each policy (issue 12): a scheduled thread that is blocked or finished at
   * its turn is skipped (listed in `skipped`), then the reference schedule runs to the end. Every
   * policy gets a trace, whether it holds or not.
   */
  compareSchedule(req: CompareRequest): Promise<CompareResult>
  /**
   * The shortest schedule on which two policies' outcomes differ (breadth first over the product
   * of their state graphs; engine/compare.ts), with both replays on it; within a time budget.
   */
  distinguish(req: DistinguishRequest): Promise<DistinguishResult>
  /**
   * A native open/save dialog (Electron). For a scenario, confined to the scenarios folder: the
   * chosen path relative to it. For a notebook, a path notebookOpen/notebookSave accept (the
   * desktop app allows notebooks anywhere). Null when cancelled or when the host has no native
   * dialogs (the browser host), in which case the renderer asks for a path itself.
   */
  pickFile(req: z.infer<typeof PickFileSchema>): Promise<{ path: string } | null>
  /** A new, empty notebook (not on disk until saved). */
  notebookNew(): Promise<{ notebook: Notebook; text: string }>
  /**
   * Reads a notebook (absolute, or relative to the notebooks folder; the browser host confines it
   * to that folder). A bad file is returned with located issues and no notebook, never rewritten.
   */
  notebookOpen(req: z.infer<typeof NotebookOpenSchema>): Promise<NotebookDocument>
  /**
   * Atomic save. Rejects with a message starting 'conflict:' when the file changed on disk since
   * `expectedRevision`, unless `force`. Drops the file's recovery copies; adds it to Recent.
   */
  notebookSave(req: z.infer<typeof NotebookSaveSchema>): Promise<{ path: string; revision: string }>
  notebookRecent(): Promise<RecentNotebook[]>
  notebookAutosave(req: z.infer<typeof NotebookAutosaveSchema>): Promise<void>
  notebookRecoverable(): Promise<RecoveryEntry[]>
  notebookDiscardRecovery(req: z.infer<typeof NotebookKeySchema>): Promise<void>
  /**
   * Starts a run of one experiment cell (its scenario inline, or a path relative to the notebook).
   * Results arrive as run events; record them with the returned recipeHash.
   */
  notebookRunCell(req: z.infer<typeof NotebookRunCellSchema>): Promise<{ runId: RunId; recipeHash: string }>
  /**
   * Recomputes the status (current / stale-recipe / stale-engine) of every recorded result of a
   * notebook as it is now, edits included: the renderer cannot hash recipes itself.
   */
  notebookStatus(req: z.infer<typeof NotebookStatusSchema>): Promise<NotebookStatus>
  /** A self-contained Markdown or HTML report. */
  notebookExport(req: z.infer<typeof NotebookExportSchema>): Promise<string>
  /** A counterexample as a plain-text `[Time N]` timeline (Documentation/vm/mmu_notifier.txt style). */
  lkmlTimeline(req: z.infer<typeof LkmlTimelineSchema>): Promise<string>
  /** Run progress, results, failures and cancellations. */
  onDidRunEvent(listener: (e: RunEvent) => void): Unsubscribe
}

/** The request-response methods (events travel separately), with their request schemas. */
export const API_METHODS = {
  engineInfo: null,
  listScenarios: null,
  readScenario: PathSchema,
  saveScenario: SaveSchema,
  validate: ValidateSchema,
  startRun: RunRequestSchema,
  cancelRun: RunIdSchema,
  replay: ReplayRequestSchema,
  compareSchedule: CompareRequestSchema,
  distinguish: DistinguishRequestSchema,
  pickFile: PickFileSchema,
  notebookNew: null,
  notebookOpen: NotebookOpenSchema,
  notebookSave: NotebookSaveSchema,
  notebookRecent: null,
  notebookAutosave: NotebookAutosaveSchema,
  notebookRecoverable: null,
  notebookDiscardRecovery: NotebookKeySchema,
  notebookRunCell: NotebookRunCellSchema,
  notebookStatus: NotebookStatusSchema,
  notebookExport: NotebookExportSchema,
  lkmlTimeline: LkmlTimelineSchema,
  startSynthesis: SynthesizeRequestSchema,
  cancelSynthesis: RunIdSchema,
} as const satisfies Record<Exclude<keyof LabApi, 'onDidRunEvent'>, z.ZodType | null>

export type ApiMethod = keyof typeof API_METHODS

/** Errors crossing the boundary: a message and, for bad input, where. */
export interface ApiError {
  readonly message: string
  readonly issues?: readonly ValidationIssue[]
}
