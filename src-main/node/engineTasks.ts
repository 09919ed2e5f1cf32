/**
 * Engine work a request can make long (a replay with a trace of every step, an LKML timeline):
 * run in a worker thread (workerPool `task`), so that the host keeps answering other requests.
 * Bad input is a LabApiError here too; the worker sends it back as such.
 */
import { getHeapStatistics } from 'node:v8'
import type { z } from 'zod'
import type {
  API_METHODS,
  CompareResult,
  DistinguishResult,
  PolicyReplay,
  ReplayResult,
  ValidationIssue,
} from '../api/labApi'
import { diffTraces } from '../api/traceDiff'
import {
  distinguish,
  explainExecution,
  hookHint,
  replayLenient,
  runExecution,
  ScheduleError,
  scheduleIndices,
  scriptedChooser,
  type Counterexample,
  type Execution,
  type Policy,
  type Scenario,
} from '../engine'
import { LabApiError, loadOrReject, policiesOf, toIssues } from './apiErrors'
import { loadScenarioText, ScenarioLoadError } from './scenarioFiles'
import { lkmlTimeline } from './notebook/lkml'

export type TaskName = 'validate' | 'replay' | 'lkmlTimeline' | 'compareSchedule' | 'distinguish'

/** A replay traces every step: past this, it stops and says so (outcome 'cut'). */
export const REPLAY_BUDGET_MS = 60_000

type ReplayReq = z.infer<(typeof API_METHODS)['replay']>
type LkmlReq = z.infer<(typeof API_METHODS)['lkmlTimeline']>
type CompareReq = z.infer<(typeof API_METHODS)['compareSchedule']>
type DistinguishReq = z.infer<(typeof API_METHODS)['distinguish']>

/** A distinguish search stops here unless the request sets a shorter budget. */
export const DISTINGUISH_BUDGET_MS = 300_000

export function replayTask(r: ReplayReq, budgetMs = REPLAY_BUDGET_MS): ReplayResult {
  const sc = loadOrReject(r.text, r.file, r.policyDefs)
  const ps = policiesOf([r.policy], sc)
  if (ps.length !== 1) throw new LabApiError(`policy: replay takes exactly one policy, got '${r.policy}'`)
  const sched = scheduleOf(sc, r.schedule)
  try {
    const end = Date.now() + budgetMs
    const ex = runExecution(sc, ps[0]!, scriptedChooser(sched), {
      tracing: true,
      maxSteps: sched.length + 10_000,
      shouldStop: () => (Date.now() > end ? 'replay time budget' : null),
    })
    return {
      records: ex.records,
      violations: ex.violations,
      outcome: ex.outcome,
      registers: sc.registers.map((name, i) => [name, ex.final.regs[i] ?? null] as const),
    }
  } catch (e) {
    if (e instanceof ScheduleError) throw new LabApiError(`schedule step ${e.index}: ${e.message}`)
    throw e
  }
}

/** The policies of a compare: each entry a name or a list (`all`, `a,b`); at least one. */
export function comparePolicies(entries: readonly string[], sc: Scenario): Policy[] {
  const ps = policiesOf(entries, sc)
  if (ps.length === 0) throw new LabApiError('policies: name at least one policy')
  return ps
}

/**
 * A schedule's thread indices; an unknown name is an Error naming its step, with the thread it
 * differs from only in case (`c1`: did you mean 'C1'?).
 */
export function threadIndices(sc: Scenario, names: readonly string[]): number[] {
  const threads = sc.threads.map((t) => t.name)
  names.forEach((n, i) => {
    if (threads.includes(n)) return
    const near = threads.find((t) => t.toLowerCase() === n.toLowerCase())
    throw new Error(
      `schedule step ${i}: unknown thread '${n}'${near ? ` (did you mean '${near}'?)` : ''}; threads are ${threads.join(', ')}`,
    )
  })
  return scheduleIndices(sc, names)
}

export function scheduleOf(sc: Scenario, names: readonly string[]): number[] {
  try {
    return threadIndices(sc, names)
  } catch (e) {
    throw new LabApiError(`schedule: ${(e as Error).message}`)
  }
}

/**
 * One policy's lenient replay of a shared schedule (skipping entries whose thread is blocked or
 * finished at their turn), traced, with its explanation.
 */
export function policyReplay(
  sc: Scenario,
  policy: Policy,
  sched: readonly number[],
  shouldStop?: () => string | null,
): { replay: PolicyReplay; ex: Execution } {
  const { ex, positions, skipped } = replayLenient(sc, policy, sched, { tracing: true, shouldStop })
  const { why, culprits } = explainExecution(sc, policy, ex)
  return {
    ex,
    replay: {
      policy: policy.name,
      records: ex.records,
      violations: ex.violations,
      outcome: ex.outcome,
      registers: sc.registers.map((name, i) => [name, ex.final.regs[i] ?? null] as const),
      ran: ex.schedule.map((t) => sc.threads[t]!.name),
      positions,
      skipped: skipped.map((k) => ({ index: k.index, thread: sc.threads[k.thread]!.name, reason: k.reason })),
      why,
      culprits,
    },
  }
}

/** Replays of one schedule with their executions (the CLI prints their traces). */
export interface CompareRuns {
  readonly result: CompareResult
  readonly executions: readonly Execution[]
}

/** A replay that holds: no violation, and not cut before the end. */
function holds(r: { replay: PolicyReplay }): boolean {
  return r.replay.violations.length === 0 && r.replay.outcome !== 'cut'
}

/**
 * Replays of one schedule, and the hook hints: the first violating replay against each replay
 * that holds, in policy order (a holding policy for which hookHint names no hook has none).
 */
export function compareRuns(
  sc: Scenario,
  policies: readonly Policy[],
  sched: readonly number[],
  shouldStop?: () => string | null,
): CompareRuns {
  const runs = policies.map((p) => policyReplay(sc, p, sched, shouldStop))
  const bad = runs.find((r) => r.replay.violations.length > 0)
  const hints: Array<{ policy: string; text: string }> = []
  if (bad)
    for (const good of runs.filter(holds)) {
      const text = hookHint(
        sc,
        { policy: bad.replay.policy, ex: bad.ex, culprits: bad.replay.culprits },
        { policy: good.replay.policy, ex: good.ex },
      )
      if (text !== null) hints.push({ policy: good.replay.policy, text })
    }
  return {
    result: {
      schedule: sched.map((t) => sc.threads[t]!.name),
      replays: runs.map((r) => r.replay),
      hints,
      hint: hints[0]?.text ?? null,
    },
    executions: runs.map((r) => r.ex),
  }
}

/**
 * The hook hints for one counterexample of a run: its schedule (and one turn of a livelock's
 * cycle) replayed leniently under each policy in `holding`, each that holds on it against the
 * counterexample's own replay under `violating` (`mnlab run` prints them under it).
 */
export function counterexampleHints(
  sc: Scenario,
  violating: Policy,
  cx: Pick<Counterexample, 'schedule' | 'cycle' | 'culprits'>,
  holding: readonly Policy[],
): Array<{ policy: string; text: string }> {
  if (holding.length === 0) return []
  const sched = scheduleIndices(sc, [...cx.schedule, ...(cx.cycle ?? [])])
  const opts = { tracing: true, maxSteps: sched.length + 10_000 }
  const bad = {
    policy: violating.name,
    ex: replayLenient(sc, violating, sched, opts).ex,
    culprits: cx.culprits,
  }
  const out: Array<{ policy: string; text: string }> = []
  for (const p of holding) {
    const ex = replayLenient(sc, p, sched, opts).ex
    if (ex.violations.length > 0 || ex.outcome === 'cut') continue
    const text = hookHint(sc, bad, { policy: p.name, ex })
    if (text !== null) out.push({ policy: p.name, text })
  }
  return out
}

/** `compareSchedule`: one schedule under each policy, leniently, each traced and explained. */
export function compareTask(r: CompareReq, budgetMs = REPLAY_BUDGET_MS): CompareResult {
  const sc = loadOrReject(r.text, r.file, r.policyDefs)
  const ps = comparePolicies(r.policies, sc)
  const sched = scheduleOf(sc, r.schedule)
  const end = Date.now() + budgetMs
  return compareRuns(sc, ps, sched, () => (Date.now() > end ? 'replay time budget' : null)).result
}

/** The first row at which two replays' aligned traces differ (traceDiff), or null. */
export function firstDifference(a: PolicyReplay, b: PolicyReplay): number | null {
  return diffTraces(a, b).differing[0] ?? null
}

/**
 * A distinguish search stops before the heap limit (a worker that reaches it dies, and so does
 * the CLI): at 85% of it, heap and external memory (the state tables' arrays) together.
 */
function memoryStop(): string | null {
  const h = getHeapStatistics()
  const limit = h.heap_size_limit * 0.85
  return h.used_heap_size + h.external_memory > limit
    ? `the memory budget (${Math.round(limit / 2 ** 20).toLocaleString('en-US')} MB)`
    : null
}

/** Two policies of a distinguish request, each a single policy, and not the same one twice. */
export function distinguishPolicies(names: readonly [string, string], sc: Scenario): [Policy, Policy] {
  const ps = names.map((p) => {
    const one = policiesOf([p], sc)
    if (one.length !== 1) throw new LabApiError(`policies: distinguish takes two single policies, got '${p}'`)
    return one[0]!
  })
  if (ps[0]!.name === ps[1]!.name)
    throw new LabApiError(
      `policies: distinguish needs two different policies, got ${ps[0]!.name} twice (a policy never differs from itself)`,
    )
  return [ps[0]!, ps[1]!]
}

/**
 * The shortest schedule on which two policies' outcomes differ, and both replays on it (with
 * their executions, empty when none was found).
 */
export function distinguishRuns(
  sc: Scenario,
  a: Policy,
  b: Policy,
  budget: { maxStates?: number; timeoutMs?: number },
): { result: DistinguishResult; executions: readonly Execution[] } {
  const end = budget.timeoutMs === undefined ? Infinity : Date.now() + budget.timeoutMs
  const d = distinguish(sc, a, b, {
    maxStates: budget.maxStates,
    shouldStop: () => (Date.now() > end ? 'the time budget' : memoryStop()),
  })
  const policies = [a.name, b.name] as const
  const base = { policies, states: d.states, complete: d.complete, note: d.note }
  if (!d.schedule)
    return {
      result: { ...base, schedule: null, replays: [], firstDifference: null, hint: null },
      executions: [],
    }
  const cmp = compareRuns(sc, [a, b], d.schedule)
  return {
    result: {
      ...base,
      schedule: cmp.result.schedule,
      replays: cmp.result.replays,
      firstDifference: firstDifference(cmp.result.replays[0]!, cmp.result.replays[1]!),
      // Two policies: a hint only when one violates and the other holds.
      hint: cmp.result.hint,
    },
    executions: cmp.executions,
  }
}

/** `distinguish`: the shortest schedule on which two policies' outcomes differ, both replays on it. */
export function distinguishTask(r: DistinguishReq, budgetMs = DISTINGUISH_BUDGET_MS): DistinguishResult {
  const sc = loadOrReject(r.text, r.file, r.policyDefs)
  const [a, b] = distinguishPolicies(r.policies, sc)
  return distinguishRuns(sc, a, b, {
    maxStates: r.maxStates,
    timeoutMs: Math.min(budgetMs, r.timeoutMs ?? Infinity),
  }).result
}

export function lkmlTask(r: LkmlReq): string {
  const sc = loadOrReject(r.text, r.file, r.policyDefs)
  const ps = policiesOf([r.policy], sc)
  if (ps.length !== 1) throw new LabApiError(`policy: a timeline takes exactly one policy, got '${r.policy}'`)
  try {
    return lkmlTimeline({ sc, policy: ps[0]!, schedule: r.schedule, cycle: r.cycle, collapse: r.collapse })
  } catch (e) {
    if (e instanceof ScheduleError) throw new LabApiError(`schedule step ${e.index}: ${e.message}`)
    throw new LabApiError(`schedule: ${(e as Error).message}`)
  }
}

/** The editor's problems for a scenario text: a 1 MB file takes about a second to check. */
export function validateTask(r: { text: string; file: string | null }): ValidationIssue[] {
  try {
    loadScenarioText(r.text, r.file ?? '<unsaved>')
    return []
  } catch (e) {
    if (e instanceof ScenarioLoadError) return toIssues(e)
    throw e
  }
}

export function runTask(name: TaskName, arg: unknown): unknown {
  switch (name) {
    case 'validate':
      return validateTask(arg as { text: string; file: string | null })
    case 'replay':
      return replayTask(arg as ReplayReq)
    case 'lkmlTimeline':
      return lkmlTask(arg as LkmlReq)
    case 'compareSchedule':
      return compareTask(arg as CompareReq)
    case 'distinguish':
      return distinguishTask(arg as DistinguishReq)
  }
}
