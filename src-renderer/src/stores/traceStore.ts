/** The traces on screen: a left and a right pane, the selected step, scroll sync. */
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import type { StepRecord } from '../../../src-main/engine/results'
import { lab, toLabError } from '../lab'
import { useRunStore } from './runStore'

export type Side = 'left' | 'right'

export interface TraceSource {
  /** Stable key: `cx:<policy>:<index>` or `replay:<n>`. */
  readonly key: string
  readonly label: string
  readonly policy: string
  readonly invariant: string | null
  readonly records: readonly StepRecord[]
  readonly violationStep: number | null
  /** Row where a livelock cycle starts (it repeats forever from there), or null. */
  readonly cycleFrom: number | null
  readonly why: string
  readonly schedule: readonly string[]
}

export const useTraceStore = defineStore('trace', () => {
  const run = useRunStore()
  const left = shallowRef<TraceSource | null>(null)
  const right = shallowRef<TraceSource | null>(null)
  const replays = shallowRef<TraceSource[]>([])
  const selected = ref<{ side: Side; row: number } | null>(null)
  const syncScroll = ref(true)
  const replaying = ref(false)
  const replayError = ref<string | null>(null)
  let replayCount = 0

  /** Every counterexample of the current result, then replays, for the pane pickers. */
  const sources = computed<TraceSource[]>(() => {
    const out: TraceSource[] = []
    for (const r of run.result?.results ?? []) {
      r.counterexamples.forEach((c, i) => {
        out.push({
          key: `cx:${r.policy}:${i}`,
          label: `${r.policy} · ${c.invariant}`,
          policy: r.policy,
          invariant: c.invariant,
          records: c.trace,
          violationStep: c.violation.step,
          cycleFrom: c.cycle && c.cycle.length > 0 ? c.schedule.length : null,
          why: c.why,
          schedule: c.schedule,
        })
      })
    }
    return [...out, ...replays.value]
  })

  function show(side: Side, src: TraceSource | null): void {
    if (side === 'left') left.value = src
    else right.value = src
    if (selected.value?.side === side) selected.value = null
  }

  function showKey(side: Side, key: string): void {
    show(side, sources.value.find((s) => s.key === key) ?? null)
  }

  function openCounterexample(policy: string, index: number, side: Side = 'left'): void {
    showKey(side, `cx:${policy}:${index}`)
    const src = side === 'left' ? left.value : right.value
    if (src && src.violationStep !== null) {
      const row =
        src.violationStep < 0 && src.cycleFrom !== null
          ? src.cycleFrom
          : src.records.findIndex((r) => r.step === src.violationStep)
      selected.value = { side, row: row >= 0 && row < src.records.length ? row : src.records.length - 1 }
    }
  }

  /**
   * Replays a schedule of the current result (or, with `live`, of the run in progress: its
   * first counterexamples arrive before the result) and shows the trace.
   */
  async function replay(
    policy: string,
    schedule: readonly string[],
    side: Side = 'left',
    live = false,
  ): Promise<void> {
    replaying.value = true
    replayError.value = null
    try {
      const r = await lab.replay({
        text: live ? run.liveText : run.resultText,
        file: live ? run.liveFile : run.resultFile,
        policy,
        schedule: [...schedule],
      })
      const v = r.violations[0] ?? null
      const src: TraceSource = {
        key: `replay:${++replayCount}`,
        label: `${live ? 'first found' : 'replay'} #${replayCount} ${policy} (${r.outcome})`,
        policy,
        invariant: v?.invariant ?? null,
        records: r.records,
        violationStep: v?.step ?? null,
        cycleFrom: null,
        why: v ? v.message : `no violation (${r.outcome})`,
        schedule,
      }
      replays.value = [...replays.value, src]
      show(side, src)
    } catch (e) {
      replayError.value = toLabError(e).message
    } finally {
      replaying.value = false
    }
  }

  /**
   * A counterexample as plain text in the style of Documentation/vm/mmu_notifier.txt (`[Time N]`
   * blocks, one line per thread), ready for a mail; the services re-run the schedule to write it.
   */
  async function lkmlTimeline(
    policy: string,
    schedule: readonly string[],
    cycle: readonly string[] | null,
  ): Promise<string> {
    return lab.lkmlTimeline({
      text: run.resultText,
      file: run.resultFile,
      policy,
      schedule: [...schedule],
      cycle: cycle ? [...cycle] : null,
    })
  }

  function select(side: Side, row: number): void {
    selected.value = { side, row }
  }

  const selectedRecord = computed<StepRecord | null>(() => {
    const s = selected.value
    if (!s) return null
    const src = s.side === 'left' ? left.value : right.value
    return src?.records[s.row] ?? null
  })

  function clear(): void {
    left.value = null
    right.value = null
    replays.value = []
    selected.value = null
  }

  return {
    left,
    right,
    replays,
    selected,
    syncScroll,
    replaying,
    replayError,
    sources,
    show,
    showKey,
    openCounterexample,
    replay,
    lkmlTimeline,
    select,
    selectedRecord,
    clear,
  }
})
