/**
 * Runs a synthesis (engine/synthesize.ts) with its evaluations in the worker pool: each
 * placement x scenario exploration is one independent job, so the search spreads across the
 * pool's workers and a level of the lattice runs in parallel. Shared by `mnlab synthesize`, the
 * lab service's startSynthesis and notebook synthesis cells. Cancelling stops every running
 * job and refuses new ones; the search then rejects with 'cancelled'.
 */
import { createHash } from 'node:crypto'
import {
  definePolicies,
  mergePolicyDefs,
  isSite,
  parsePolicyList,
  sitePolicy,
  SITE_NAMES,
  synthesize,
  synthOutcome,
  synthRunOptions,
  SYNTH_OBJECTIVES,
  type Policy,
  type PolicyDefs,
  type Scenario,
  type Site,
  type SynthEvaluation,
  type SynthEvaluator,
  type SynthesisResult,
  type SynthObjective,
  type SynthProgress,
  type SynthScenarioInput,
} from '../engine'
import { toWorkerOptions, type RunHandle, type WorkerPool } from './workerPool'

/** A scenario of a synthesis, loaded. */
export interface SynthScenarioFile {
  /** How the request named it (unique). */
  readonly id: string
  /** Where it was read from, for `mnlab replay`; null for text. */
  readonly file: string | null
  readonly scenario: Scenario
  /**
   * sha256 of its text as read (scenarioTextHash), when the reader kept it: the services send
   * these with the result, so a notebook records it under the files as the search read them.
   */
  readonly sha256?: string
}

/** sha256 of a scenario's text (hex): how a search says which version of a file it read. */
export function scenarioTextHash(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** A synthesis's settings, checked (synthSettings makes them from user input). */
export interface SynthRecipe {
  readonly candidates: readonly Site[]
  readonly objective: SynthObjective
  /** Shown beside the presets. */
  readonly placements: readonly Policy[]
  readonly maxStates: number
  /** The whole search's time budget, or null. */
  readonly timeoutMs: number | null
}

export const DEFAULT_SYNTH_MAX_STATES = 2_000_000

/**
 * Checks user input against the loaded scenarios: candidate site names, the objective, and the
 * placements to show beside the presets: every policy `policyDefs` (a notebook's) defines, then
 * those `policies` name as `--policy` takes them (`sites:a,b`, `arch-hook+pri-flush`, or a name
 * the scenarios or `policyDefs` define). Returns an error message naming what is wrong, or the
 * recipe.
 */
export function synthSettings(
  input: {
    sites?: readonly string[] | null
    objective?: string | null
    policies?: readonly string[] | null
    policyDefs?: Readonly<Record<string, readonly string[]>> | null
    maxStates?: number | null
    timeoutMs?: number | null
  },
  files: readonly SynthScenarioFile[],
): SynthRecipe | string {
  let candidates: Site[] = [...SITE_NAMES]
  if (input.sites) {
    const bad = input.sites.find((s) => !isSite(s.trim()))
    if (bad !== undefined) return `unknown site '${bad}'; sites: ${SITE_NAMES.join(', ')}`
    const given = input.sites.map((s) => s.trim())
    const twice = given.find((s, i) => given.indexOf(s) !== i)
    if (twice !== undefined) return `site '${twice}' given twice`
    candidates = SITE_NAMES.filter((s) => given.includes(s))
  }
  const objective = input.objective ?? 'sim_ns'
  if (!(SYNTH_OBJECTIVES as readonly string[]).includes(objective))
    return `unknown objective '${objective}'; expected ${SYNTH_OBJECTIVES.join(' or ')}`
  // The names the scenarios define, one meaning each across the set.
  let defs: PolicyDefs = []
  for (const f of files) {
    const merged = mergePolicyDefs(defs, f.scenario.policies)
    if (typeof merged === 'string') return `${f.id}: ${merged}`
    defs = merged
  }
  let extra: readonly Policy[] = []
  if (input.policyDefs) {
    const d = definePolicies(input.policyDefs)
    if (d.problems.length > 0) return `policyDefs: ${d.problems.join('; ')}`
    const merged = mergePolicyDefs(defs, d.policies)
    if (typeof merged === 'string') return `policyDefs: ${merged}`
    defs = merged
    extra = d.policies
  }
  // Shown: the policies given as definitions (a notebook's), then those named. A scenario's own
  // definitions are names `policies` may use, not shown unasked (a whole-catalogue search would
  // explore every one on every scenario).
  const placements: Policy[] = defs.filter((d) => extra.some((e) => e.name === d.name))
  for (const entry of input.policies ?? []) {
    const ps = parsePolicyList(entry, defs)
    if (typeof ps === 'string') return ps
    for (const p of ps) if (!placements.some((q) => q.name === p.name)) placements.push(p)
  }
  return {
    candidates,
    objective: objective as SynthObjective,
    placements,
    maxStates: input.maxStates ?? DEFAULT_SYNTH_MAX_STATES,
    timeoutMs: input.timeoutMs ?? null,
  }
}

/** What the search engine sees of a scenario: a forbid predicate turns monotone pruning off. */
export function synthInput(f: SynthScenarioFile): SynthScenarioInput {
  return { id: f.id, title: f.scenario.title, file: f.file, monotone: f.scenario.forbid === null }
}

export interface SynthesisHooks {
  readonly onProgress?: (p: SynthProgress) => void
  readonly onEvaluation?: (e: SynthEvaluation) => void
}

/** A synthesis under way. */
export interface SynthesisRun {
  readonly result: Promise<SynthesisResult>
  /** Cancels every running evaluation and refuses new ones: `result` rejects with 'cancelled'. */
  cancel(): void
}

/** Evaluations in the worker pool, each a job of its own; `cancel` ends them all. */
export function poolEvaluator(
  pool: WorkerPool,
  files: readonly SynthScenarioFile[],
  recipe: SynthRecipe,
  deadline: number | null,
): { evaluate: SynthEvaluator; cancel(): void } {
  const running = new Set<RunHandle>()
  let cancelled = false
  const evaluate: SynthEvaluator = async (req) => {
    if (cancelled) throw new Error('cancelled')
    const sc = files[req.scenario]!.scenario
    const opts = toWorkerOptions(synthRunOptions(sc, req, recipe.maxStates), recipe.timeoutMs, deadline)
    const h = pool.start(sc, sitePolicy(req.sites, req.name), {
      ...opts,
      tallySites: true,
      ...(req.first ? { first: 'any' as const } : {}),
    })
    running.add(h)
    try {
      return synthOutcome(await h.result)
    } finally {
      running.delete(h)
    }
  }
  return {
    evaluate,
    cancel() {
      cancelled = true
      for (const h of [...running]) h.cancel()
    },
  }
}

/** Starts a synthesis over loaded scenarios with its evaluations in `pool`. */
export function startSynthesis(
  pool: WorkerPool,
  files: readonly SynthScenarioFile[],
  recipe: SynthRecipe,
  hooks: SynthesisHooks = {},
): SynthesisRun {
  const started = Date.now()
  const deadline = recipe.timeoutMs === null ? null : started + recipe.timeoutMs
  const ev = poolEvaluator(pool, files, recipe, deadline)
  const result = synthesize(
    {
      scenarios: files.map(synthInput),
      candidates: recipe.candidates,
      objective: recipe.objective,
      placements: recipe.placements,
      maxStates: recipe.maxStates,
      shouldStop: () =>
        deadline !== null && Date.now() > deadline
          ? `time budget of ${(recipe.timeoutMs ?? 0) / 1000} s reached`
          : null,
      onEvaluation: hooks.onEvaluation,
      onProgress: hooks.onProgress,
      now: () => Date.now(),
    },
    ev.evaluate,
  )
  return { result, cancel: () => ev.cancel() }
}
