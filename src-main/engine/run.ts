/** Runs a scenario under policies and assembles plain-data results. */
import { COST_TABLE_NAME, type InvalidationKinds } from './costs'
import {
  DEFAULT_BUDGET,
  exploreExhaustive,
  firstViolationReason,
  pctChooser,
  runExecution,
  scriptedChooser,
  sequentialChooser,
  toCounterexample,
  type Budget,
  type Found,
} from './explore'
import type { SiteTally, TallyingPolicy } from './ctx'
import { SITE_NAMES, siteBit, type Policy } from './policy'
import { expectationText, matchExpectation } from './scenario/expect'
import { mulberry32 } from './prng'
import type { MetricCheck, Metrics, PolicyResult, RunResult } from './results'
import {
  INVARIANTS,
  type ExploreMode,
  type InvariantName,
  type MetricName,
  type Scenario,
  type Verdict,
} from './types'

export const ENGINE_VERSION = '0.1.0'

export interface RunOptions {
  readonly mode: ExploreMode
  readonly seed: number
  /** Random mode: number of schedules. */
  readonly executions: number
  /** Scripted mode: thread names, one per step. */
  readonly schedule: readonly string[]
  readonly budget: Budget
  /** Called after each policy finishes (progress reporting). */
  readonly onPolicyDone?: (r: PolicyResult) => void
  /**
   * Note which notification sites the run's kernel code asked about (Ctx.at), in the
   * exploration, the reference execution and the counterexamples' replays:
   * PolicyResult.sitesReached. A site never asked about cannot change the run.
   */
  readonly tallySites?: boolean
}

export function defaultRunOptions(sc: Scenario): RunOptions {
  return {
    mode: sc.explore.mode ?? (sc.explore.schedule ? 'scripted' : 'exhaustive'),
    seed: sc.explore.seed ?? 1,
    executions: sc.explore.executions ?? 1000,
    schedule: sc.explore.schedule ?? [],
    // The product's default reduction: canonical frames, persistent sets and components
    // (persistent.ts, components.ts); `--reduction none|frames|persistent` picks less.
    budget: {
      ...DEFAULT_BUDGET,
      maxStates: sc.explore.maxStates ?? DEFAULT_BUDGET.maxStates,
      persistent: true,
      components: true,
    },
  }
}

/** Thread names to indices; throws with the position of an unknown name. */
export function scheduleIndices(sc: Scenario, names: readonly string[]): number[] {
  return names.map((n, i) => {
    const t = sc.threads.findIndex((th) => th.name === n)
    if (t < 0)
      throw new Error(
        `schedule step ${i}: unknown thread '${n}'; threads are ${sc.threads.map((x) => x.name).join(', ')}`,
      )
    return t
  })
}

export function runPolicy(sc: Scenario, given: Policy, opts: RunOptions): PolicyResult {
  const tally: SiteTally | null = opts.tallySites ? { reached: 0 } : null
  const policy: TallyingPolicy = tally ? { ...given, tally } : given
  let found: Found[] = []
  let complete = false
  let cutReason: string | null = null
  let states = 0
  let steps = 0
  let executions = 0
  let maxDepth = 0
  let frontierLeft = 0
  let reduction: string | null = null
  let metricsRun
  let metricsSchedule = 'reference schedule: the first runnable thread in declaration order'
  if (opts.mode === 'exhaustive') {
    const o = exploreExhaustive(sc, policy, opts.budget)
    found = o.found
    complete = o.complete
    cutReason = o.cutReason
    states = o.states
    steps = o.steps
    executions = o.executions
    maxDepth = o.maxDepth
    frontierLeft = o.frontierLeft
    reduction = o.reduction
    metricsRun = runExecution(sc, policy, sequentialChooser, {
      tracing: false,
      maxSteps: opts.budget.maxSteps,
      shouldStop: opts.budget.shouldStop,
    })
  } else if (opts.mode === 'random') {
    const prng = mulberry32(opts.seed)
    const byInv = new Map<InvariantName, Found>()
    let length = 50
    for (let i = 0; i < opts.executions; i++) {
      const stop = opts.budget.shouldStop?.()
      if (stop) {
        cutReason = stop
        break
      }
      const ex = runExecution(sc, policy, pctChooser(sc.threads.length, prng, 3, length), {
        tracing: false,
        maxSteps: opts.budget.maxSteps,
        stopAtViolation: true,
        shouldStop: opts.budget.shouldStop,
      })
      executions++
      steps += ex.schedule.length
      if ((executions & 15) === 0) opts.budget.onProgress?.({ states: 0, steps, executions })
      length = Math.max(length, ex.schedule.length)
      for (const v of ex.violations) {
        if (byInv.has(v.invariant)) continue
        const sched = ex.cycle ? ex.schedule.slice(0, ex.schedule.length - ex.cycle.length) : ex.schedule
        byInv.set(v.invariant, { invariant: v.invariant, schedule: sched, cycle: ex.cycle, violation: v })
        if (cutReason === null && opts.budget.stopAt?.(v.invariant))
          cutReason = firstViolationReason(v.invariant)
      }
      if (cutReason) break
    }
    found = [...byInv.values()]
    cutReason ??= `random: ${executions} PCT schedules (seed ${opts.seed}) sampled, not every interleaving`
    metricsRun = runExecution(sc, policy, sequentialChooser, {
      tracing: false,
      maxSteps: opts.budget.maxSteps,
      shouldStop: opts.budget.shouldStop,
    })
  } else {
    const sched = scheduleIndices(sc, opts.schedule)
    const ex = runExecution(sc, policy, scriptedChooser(sched), {
      tracing: false,
      maxSteps: Math.max(opts.budget.maxSteps, sched.length + 1),
      shouldStop: opts.budget.shouldStop,
    })
    executions = 1
    steps = ex.schedule.length
    for (const v of ex.violations) {
      if (found.some((f) => f.invariant === v.invariant)) continue
      const s = ex.cycle
        ? ex.schedule.slice(0, ex.schedule.length - ex.cycle.length)
        : ex.schedule.slice(0, v.step + 1)
      found.push({ invariant: v.invariant, schedule: s, cycle: ex.cycle, violation: v })
    }
    cutReason = 'scripted: one schedule (then the reference schedule to the end)'
    metricsRun = ex
    metricsSchedule = 'the scripted schedule'
  }
  const counterexamples = found.map((f) => toCounterexample(sc, policy, f))
  const invariants = {} as Record<InvariantName, Verdict>
  for (const inv of INVARIANTS) {
    invariants[inv] = found.some((f) => f.invariant === inv)
      ? 'violated'
      : inv === 'forbid' && !sc.forbid
        ? 'holds'
        : complete
          ? 'holds'
          : 'unknown'
  }
  const verdict: Verdict = found.length > 0 ? 'violated' : complete ? 'holds' : 'unknown'
  const exp = sc.expect.find(([n]) => n === policy.name)?.[1] ?? null
  const match = exp === null ? null : matchExpectation(exp, verdict, invariants)
  const verdictMatches = match === null ? null : match.ok
  const metricChecks = checkMetrics(sc, policy.name, metricsRun.metrics, metricsRun.invalidations)
  const metricsMatch = metricChecks.every((m) => m.ok)
  const matches =
    verdictMatches === null && metricChecks.length === 0 ? null : (verdictMatches ?? true) && metricsMatch
  return {
    policy: policy.name,
    verdict,
    invariants,
    counterexamples,
    stats: { executions, states, steps, complete, cutReason, maxDepth, frontierLeft, reduction },
    metrics: metricsRun.metrics,
    invalidations: metricsRun.invalidations,
    metricsSchedule:
      metricsRun.outcome === 'done' ? metricsSchedule : `${metricsSchedule} (ended: ${metricsRun.outcome})`,
    costTable: Object.keys(sc.costs).length
      ? `${COST_TABLE_NAME} with ${Object.entries(sc.costs)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`
      : COST_TABLE_NAME,
    expected: exp === null ? null : expectationText(exp),
    ...(tally ? { sitesReached: SITE_NAMES.filter((x) => (tally.reached & siteBit(x)) !== 0) } : {}),
    ...(exp !== null && typeof exp !== 'string' ? { expectedSet: exp.violated } : {}),
    ...(match?.note ? { expectNote: match.note } : {}),
    matches,
    metricChecks,
  }
}

/** The `expect_metrics` entries of a policy against the metrics of its reference execution. */
export function checkMetrics(
  sc: Scenario,
  policy: string,
  m: Metrics,
  inv: InvalidationKinds,
): MetricCheck[] {
  const wanted = sc.expectMetrics.find(([n]) => n === policy)?.[1] ?? []
  return wanted.map((w) => {
    const got = metricValue(w.metric, m, inv)
    const ok =
      w.op === '=='
        ? got === w.value
        : w.op === '>='
          ? got >= w.value
          : w.op === '<='
            ? got <= w.value
            : w.op === '>'
              ? got > w.value
              : got < w.value
    return { metric: w.metric, want: `${w.op === '==' ? '' : `${w.op} `}${w.value}`, got, ok }
  })
}

function metricValue(name: MetricName, m: Metrics, inv: InvalidationKinds): number {
  switch (name) {
    case 'page_invalidations':
      return inv.page
    case 'range_invalidations':
      return inv.range
    case 'full_invalidations':
      return inv.full
    case 'atc_invalidations':
      return inv.atc
    default:
      return m[name]
  }
}

export function runScenario(sc: Scenario, policies: readonly Policy[], opts: RunOptions): RunResult {
  const results: PolicyResult[] = []
  for (const p of policies) {
    const r = runPolicy(sc, p, opts)
    results.push(r)
    opts.onPolicyDone?.(r)
  }
  return runResultOf(sc, opts, results)
}

/** Assembles the per-policy results of one scenario (computed here or in workers). */
export function runResultOf(
  sc: Scenario,
  opts: Pick<RunOptions, 'mode' | 'seed'>,
  results: readonly PolicyResult[],
): RunResult {
  return {
    title: sc.title,
    source: sc.source,
    arch: sc.arch,
    mode: opts.mode,
    seed: opts.mode === 'random' ? opts.seed : null,
    results,
    engineVersion: ENGINE_VERSION,
  }
}
