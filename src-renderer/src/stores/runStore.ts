/** The current run: its id, live progress, the result, or why it failed. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { RunEvent, RunId, ValidationIssue } from '../../../src-main/api/labApi'
import type { RunResult } from '../../../src-main/engine/results'
import { lab, toLabError } from '../lab'
import type { RunShape } from '../logic/progress'
import { usePolicyStore } from './policyStore'
import { useScenarioStore } from './scenarioStore'

export type RunStatus = 'idle' | 'starting' | 'running' | 'finished' | 'failed' | 'cancelled'
type Progress = Extract<RunEvent, { kind: 'progress' }>

export const useRunStore = defineStore('run', () => {
  const status = ref<RunStatus>('idle')
  const runId = ref<RunId | null>(null)
  const progress = ref<Progress | null>(null)
  const result = ref<RunResult | null>(null)
  const elapsedMs = ref(0)
  const error = ref<string | null>(null)
  const errorIssues = ref<ValidationIssue[]>([])
  /** The scenario text and file the result came from (replays use them). */
  const resultText = ref('')
  const resultFile = ref<string | null>(null)
  /** The placements (name -> sites) the result's run defined: compare and replays send them back. */
  const resultDefs = ref<Record<string, string[]> | undefined>(undefined)
  /** Policies requested, for progress rows before the first event. */
  const requested = ref<string[]>([])
  /** What was asked for (mode, totals, budgets), for the progress estimate. */
  const shape = ref<RunShape | null>(null)
  const cancelling = ref(false)
  const active = computed(() => status.value === 'starting' || status.value === 'running')

  /**
   * Why the result on screen is a previous one: of another scenario, of text edited since, or the
   * last run was cancelled, failed or is still going. null when it is the result of what the
   * editor shows. `of` names the result's scenario.
   */
  const previous = computed<{ of: string; why: string } | null>(() => {
    if (!result.value) return null
    const sc = useScenarioStore()
    const of = resultFile.value ?? 'an unsaved scenario'
    if (sc.file !== resultFile.value)
      return { of, why: `the editor shows ${sc.file ?? 'an unsaved scenario'}` }
    if (sc.text !== resultText.value) return { of, why: 'the scenario was edited since' }
    if (status.value === 'cancelled') return { of, why: 'the last run was cancelled' }
    if (status.value === 'failed') return { of, why: 'the last run failed' }
    if (active.value) return { of, why: 'a new run goes on' }
    return null
  })

  /** Drops the result on screen (the trace store's panes follow it: App clears them on a new result). */
  function clearResult(): void {
    result.value = null
    resultText.value = ''
    resultFile.value = null
    resultDefs.value = undefined
    if (!active.value && status.value !== 'failed') status.value = 'idle'
  }

  let early: RunEvent[] = []
  let unsubscribe: (() => void) | null = null
  /** The scenario text and file of the run in progress (its early counterexamples replay them). */
  const liveText = ref('')
  const liveFile = ref<string | null>(null)
  const liveDefs = ref<Record<string, string[]> | undefined>(undefined)

  function handle(e: RunEvent): void {
    if (status.value === 'starting' && runId.value === null) {
      early.push(e) // the event beat startRun's reply
      return
    }
    if (e.runId !== runId.value) return
    switch (e.kind) {
      case 'progress':
        progress.value = e
        elapsedMs.value = e.elapsedMs
        status.value = 'running'
        break
      case 'finished':
        result.value = e.result
        elapsedMs.value = e.elapsedMs
        resultText.value = liveText.value
        resultFile.value = liveFile.value
        resultDefs.value = liveDefs.value
        status.value = 'finished'
        break
      case 'failed':
        error.value = e.message
        status.value = 'failed'
        break
      case 'cancelled':
        status.value = 'cancelled'
        break
    }
    if (e.kind !== 'progress') cancelling.value = false
  }

  function listen(): void {
    unsubscribe ??= lab.onDidRunEvent(handle)
  }

  async function start(): Promise<void> {
    if (active.value) return
    const scenario = useScenarioStore()
    const policy = usePolicyStore()
    listen()
    error.value = null
    errorIssues.value = []
    if (policy.problems.length > 0) {
      error.value = policy.problems.join(' ')
      status.value = 'failed'
      return
    }
    const req = policy.request(scenario.text, scenario.file)
    liveText.value = req.text
    liveFile.value = req.file
    liveDefs.value = req.policyDefs
    requested.value = [...req.policies]
    shape.value = {
      mode: req.mode,
      policies: [...req.policies],
      executions: req.executions,
      maxStates: req.maxStates,
      timeoutMs: req.timeoutMs,
    }
    progress.value = null
    elapsedMs.value = 0
    runId.value = null
    early = []
    status.value = 'starting'
    try {
      const id = await lab.startRun(req)
      runId.value = id
      if (status.value === 'starting') status.value = 'running'
      const pending = early
      early = []
      for (const e of pending) handle(e)
    } catch (e) {
      const err = toLabError(e)
      error.value = err.message
      errorIssues.value = [...err.issues]
      if (err.issues.length > 0) scenario.setIssues(err.issues)
      status.value = 'failed'
    }
  }

  async function cancel(): Promise<void> {
    if (!active.value || runId.value === null) return
    cancelling.value = true
    try {
      await lab.cancelRun({ runId: runId.value })
    } catch (e) {
      error.value = toLabError(e).message
      cancelling.value = false
    }
  }

  function dismissError(): void {
    error.value = null
    errorIssues.value = []
  }

  return {
    status,
    runId,
    progress,
    result,
    elapsedMs,
    error,
    errorIssues,
    resultText,
    resultFile,
    resultDefs,
    liveText,
    liveFile,
    liveDefs,
    requested,
    shape,
    cancelling,
    active,
    previous,
    clearResult,
    listen,
    start,
    cancel,
    dismissError,
    handle,
  }
})
