/**
 * Engine work a request can make long (a replay with a trace of every step, an LKML timeline):
 * run in a worker thread (workerPool `task`), so that the host keeps answering other requests.
 * Bad input is a LabApiError here too; the worker sends it back as such.
 */
import type { z } from 'zod'
import type { API_METHODS, ReplayResult, ValidationIssue } from '../api/labApi'
import { runExecution, ScheduleError, scheduleIndices, scriptedChooser } from '../engine'
import { LabApiError, loadOrReject, policiesOf, toIssues } from './apiErrors'
import { loadScenarioText, ScenarioLoadError } from './scenarioFiles'
import { lkmlTimeline } from './notebook/lkml'

export type TaskName = 'validate' | 'replay' | 'lkmlTimeline'

/** A replay traces every step: past this, it stops and says so (outcome 'cut'). */
export const REPLAY_BUDGET_MS = 60_000

type ReplayReq = z.infer<(typeof API_METHODS)['replay']>
type LkmlReq = z.infer<(typeof API_METHODS)['lkmlTimeline']>

export function replayTask(r: ReplayReq, budgetMs = REPLAY_BUDGET_MS): ReplayResult {
  const sc = loadOrReject(r.text, r.file)
  const ps = policiesOf([r.policy])
  if (ps.length !== 1) throw new LabApiError(`policy: replay takes exactly one policy, got '${r.policy}'`)
  let sched: number[]
  try {
    sched = scheduleIndices(sc, r.schedule)
  } catch (e) {
    throw new LabApiError(`schedule: ${(e as Error).message}`)
  }
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

export function lkmlTask(r: LkmlReq): string {
  const sc = loadOrReject(r.text, r.file)
  const ps = policiesOf([r.policy])
  if (ps.length !== 1) throw new LabApiError(`policy: a timeline takes exactly one policy, got '${r.policy}'`)
  try {
    return lkmlTimeline({ sc, policy: ps[0]!, schedule: r.schedule, cycle: r.cycle })
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
  }
}
