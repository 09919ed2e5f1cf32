/**
 * One schedule under every policy of the run ("Compare on this schedule"), and the shortest
 * schedule that tells two policies apart ("Distinguish…"), issue 12. Each policy's replay
 * becomes a trace in the pickers; two of them open side by side, diffed by the trace store.
 */
import { defineStore } from 'pinia'
import { computed, ref, shallowRef, watch } from 'vue'
import type { CompareResult, DistinguishResult, PolicyReplay } from '../../../src-main/api/labApi'
import { lab, toLabError } from '../lab'
import { useRunStore } from './runStore'
import { useTraceStore, type TraceSource } from './traceStore'

/** What a policy's replay ended with, in one word: the first violated invariant, or `holds`. */
export function outcomeOf(r: PolicyReplay): string {
  return r.violations[0]?.invariant ?? 'holds'
}

/** The schedule entries a replay skipped, as the trace says them: `C1 blocked on mmap_lock, skipped`. */
export function skipText(r: PolicyReplay): string {
  return r.skipped.map((s) => `${s.thread} ${s.reason}, skipped (entry ${s.index})`).join('; ')
}

export const useCompareStore = defineStore('compare', () => {
  const run = useRunStore()
  const traces = useTraceStore()
  /** What is on screen: a compare, a distinguish, or nothing. */
  const view = ref<'compare' | 'distinguish' | null>(null)
  const compared = shallowRef<CompareResult | null>(null)
  const distinguished = shallowRef<DistinguishResult | null>(null)
  /** The trace sources made from the replays on screen, in policy order. */
  const sources = shallowRef<TraceSource[]>([])
  /** The policy the compare started from (its counterexample). */
  const origin = ref<string | null>(null)
  /** What is being computed, or null. */
  const pending = ref<'compare' | 'distinguish' | null>(null)
  const busy = computed(() => pending.value !== null)
  const error = ref<string | null>(null)
  /** The distinguish form (two policies to choose) is open. */
  const asking = ref(false)
  let count = 0

  /** The placements the result's run defined, for requests that name its policies. */
  const defs = () => (run.resultDefs ? { policyDefs: run.resultDefs } : {})

  /** The run's policies, in its order: what a compare replays and distinguish chooses from. */
  const policies = computed(() => (run.result?.results ?? []).map((r) => r.policy))

  function toSource(prefix: string, n: number, r: PolicyReplay, schedule: readonly string[]): TraceSource {
    const v = r.violations[0] ?? null
    return {
      key: `${prefix}:${n}:${r.policy}`,
      label: `${prefix === 'cmp' ? 'compare' : 'distinguish'} #${n} ${r.policy} (${outcomeOf(r)})`,
      policy: r.policy,
      invariant: v?.invariant ?? null,
      records: r.records,
      violationStep: v?.step ?? null,
      cycleFrom: null,
      why: r.why,
      schedule,
      culprits: r.culprits,
      positions: r.positions,
      skipped: r.skipped,
    }
  }

  /**
   * Replays `schedule` under every policy of the run and opens the `from` policy's trace on the
   * left, and on the right the first policy whose outcome differs (else the next one).
   */
  async function compare(from: string, schedule: readonly string[]): Promise<void> {
    if (busy.value) return
    pending.value = 'compare'
    error.value = null
    try {
      const list = policies.value.length > 0 ? policies.value : [from]
      const res = await lab.compareSchedule({
        text: run.resultText,
        file: run.resultFile,
        policies: [...list],
        ...defs(),
        schedule: [...schedule],
      })
      const n = ++count
      const made = res.replays.map((r) => toSource('cmp', n, r, res.schedule))
      compared.value = res
      distinguished.value = null
      origin.value = from
      sources.value = made
      view.value = 'compare'
      traces.addSources(made)
      const i = Math.max(
        0,
        res.replays.findIndex((r) => r.policy === from),
      )
      const base = res.replays[i]
      const differing = res.replays.findIndex((r, k) => k !== i && base && outcomeOf(r) !== outcomeOf(base))
      const other = differing >= 0 ? differing : res.replays.findIndex((_, k) => k !== i)
      openPair(made[i] ?? null, other >= 0 ? made[other]! : null)
    } catch (e) {
      error.value = `Compare: ${toLabError(e).message}`
    } finally {
      pending.value = null
    }
  }

  /** The shortest schedule on which `a` and `b` differ, both traces opened on it, diffed. */
  async function distinguish(a: string, b: string): Promise<void> {
    if (busy.value) return
    pending.value = 'distinguish'
    error.value = null
    try {
      const res = await lab.distinguish({
        text: run.resultText,
        file: run.resultFile,
        policies: [a, b],
        ...defs(),
      })
      const n = ++count
      const made = res.schedule ? res.replays.map((r) => toSource('dist', n, r, res.schedule!)) : []
      distinguished.value = res
      compared.value = null
      origin.value = a
      sources.value = made
      view.value = 'distinguish'
      if (made.length > 0) {
        traces.addSources(made)
        openPair(made[0]!, made[1] ?? null)
      }
    } catch (e) {
      error.value = `Distinguish: ${toLabError(e).message}`
    } finally {
      pending.value = null
    }
  }

  /** Shows two traces side by side and selects their first difference (else the violation). */
  function openPair(l: TraceSource | null, r: TraceSource | null): void {
    traces.show('left', l)
    traces.show('right', r)
    if (!traces.stepDifference(1)) {
      const v = l?.violationStep
      if (v !== null && v !== undefined) traces.selectStep('left', v)
    }
  }

  /** Shows one replay of the compare in a pane. */
  function showIn(side: 'left' | 'right', policy: string): void {
    const src = sources.value.find((s) => s.policy === policy)
    if (src) traces.show(side, src)
  }

  function close(): void {
    asking.value = false
    view.value = null
    compared.value = null
    distinguished.value = null
    sources.value = []
    error.value = null
  }

  // A new result (or none) makes the compare of the previous one meaningless.
  watch(
    () => run.result,
    () => close(),
  )

  return {
    view,
    compared,
    distinguished,
    sources,
    origin,
    pending,
    busy,
    error,
    asking,
    policies,
    compare,
    distinguish,
    openPair,
    showIn,
    close,
  }
})
