/**
 * The traces on screen: a left and a right pane, the selected step, scroll sync, and, when both
 * panes show the same schedule, their alignment and differences (issue 12).
 */
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import type { ScheduleSkip } from '../../../src-main/api/labApi'
import { diffTraces, type TraceDiff } from '../../../src-main/api/traceDiff'
import type { Culprit, StepRecord } from '../../../src-main/engine/results'
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
  /** The steps that caused the violation, for the swimlane's marks. */
  readonly culprits: readonly Culprit[]
  /** For each record, the schedule entry it ran (null past the schedule), when known. */
  readonly positions?: ReadonlyArray<number | null>
  /** Schedule entries this policy did not run (a compare or distinguish replay). */
  readonly skipped?: readonly ScheduleSkip[]
}

/** Where each record of a counterexample's trace sits in its schedule: one entry per step. */
export function schedulePositions(
  records: readonly StepRecord[],
  schedule: readonly string[],
): (number | null)[] {
  return records.map((_, i) => (i < schedule.length ? i : null))
}

/** A request's `policyDefs` (the placements its run defined), when there are any. */
function defsOf(d: Record<string, string[]> | undefined): { policyDefs?: Record<string, string[]> } {
  return d ? { policyDefs: d } : {}
}

function sameSchedule(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i])
}

/** Where a trace pane is scrolled to: a displayed row and how far into it (0..1). */
export interface ScrollPosition {
  readonly index: number
  readonly frac: number
}

export const useTraceStore = defineStore('trace', () => {
  const run = useRunStore()
  const left = shallowRef<TraceSource | null>(null)
  const right = shallowRef<TraceSource | null>(null)
  const replays = shallowRef<TraceSource[]>([])
  const selected = ref<{ side: Side; row: number } | null>(null)
  const syncScroll = ref(true)
  /**
   * Swimlane cells: `compact` (one line, long hook names by their distinguishing suffix) or
   * `wrap` (every name in full, rows as tall as their text).
   */
  const cellMode = ref<'compact' | 'wrap'>('compact')
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
          culprits: c.culprits ?? [],
          positions: schedulePositions(c.trace, c.schedule),
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
        ...defsOf(live ? run.liveDefs : run.resultDefs),
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
        culprits: [],
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
    collapse = false,
  ): Promise<string> {
    return lab.lkmlTimeline({
      text: run.resultText,
      file: run.resultFile,
      policy,
      ...defsOf(run.resultDefs),
      schedule: [...schedule],
      cycle: cycle ? [...cycle] : null,
      collapse,
    })
  }

  function select(side: Side, row: number): void {
    selected.value = { side, row }
  }

  /** Adds traces (a compare's or distinguish's replays) to the pickers. */
  function addSources(list: readonly TraceSource[]): void {
    replays.value = [...replays.value, ...list]
  }

  /** Selects the row of a step (StepRecord.step) in a pane. */
  function selectStep(side: Side, step: number): void {
    const src = side === 'left' ? left.value : right.value
    const row = src?.records.findIndex((r) => r.step === step) ?? -1
    if (row >= 0) selected.value = { side, row }
  }

  /**
   * The two panes aligned step by step, when they show the same schedule (two policies' traces
   * of one counterexample, a compare, a distinguish): null otherwise.
   */
  const diff = computed<TraceDiff | null>(() => {
    const a = left.value
    const b = right.value
    if (!a || !b || !sameSchedule(a.schedule, b.schedule)) return null
    return diffTraces(a, b)
  })

  /** The aligned row of the selection, or -1. */
  const selectedAligned = computed(() => {
    const d = diff.value
    const s = selected.value
    if (!d || !s) return -1
    return d.rows.findIndex((r) => (s.side === 'left' ? r.a : r.b) === s.row)
  })

  /** The record aligned with the selected one in the other pane (for the inspector's marks). */
  const counterpart = computed<{ side: Side; record: StepRecord | null } | null>(() => {
    const d = diff.value
    const s = selected.value
    if (!d || !s || selectedAligned.value < 0) return null
    const row = d.rows[selectedAligned.value]!
    const side: Side = s.side === 'left' ? 'right' : 'left'
    const idx = side === 'left' ? row.a : row.b
    const src = side === 'left' ? left.value : right.value
    return { side, record: idx === null ? null : (src?.records[idx] ?? null) }
  })

  /** Selects aligned row `k`, on the selected side when that side has a record there. */
  function selectAligned(k: number): void {
    const row = diff.value?.rows[k]
    if (!row) return
    const prefer: Side = selected.value?.side ?? 'left'
    const mine = prefer === 'left' ? row.a : row.b
    if (mine !== null) selected.value = { side: prefer, row: mine }
    else if (prefer === 'left' && row.b !== null) selected.value = { side: 'right', row: row.b }
    else if (prefer === 'right' && row.a !== null) selected.value = { side: 'left', row: row.a }
  }

  /** Moves the selection to the next (1) or previous (-1) differing step; false when there is none. */
  function stepDifference(dir: 1 | -1): boolean {
    const d = diff.value
    if (!d || d.differing.length === 0) return false
    const cur = selectedAligned.value
    const before = [...d.differing].reverse()
    const next =
      dir === 1 ? d.differing.find((k) => k > cur) : cur < 0 ? before[0] : before.find((k) => k < cur)
    if (next === undefined) return false
    selectAligned(next)
    return true
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
    cellMode,
    replaying,
    replayError,
    sources,
    show,
    showKey,
    openCounterexample,
    replay,
    lkmlTimeline,
    select,
    selectStep,
    addSources,
    diff,
    selectedAligned,
    counterpart,
    selectAligned,
    stepDifference,
    selectedRecord,
    clear,
  }
})
