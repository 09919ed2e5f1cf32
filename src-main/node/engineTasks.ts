/**
 * Engine work a request can make long (a replay with a trace of every step, an LKML timeline):
 * run in a worker thread (workerPool `task`), so that the host keeps answering other requests.
 * Bad input is a LabApiError here too; the worker sends it back as such.
 */
import type { z } from 'zod'
import type { API_METHODS, ReplayResult } from '../api/labApi'
import { runExecution, ScheduleError, scheduleIndices, scriptedChooser } from '../engine'
import { LabApiError, loadOrReject, policiesOf } from './apiErrors'
import { lkmlTimeline } from './notebook/lkml'

export type TaskName = 'replay' | 'lkmlTimeline'

type ReplayReq = z.infer<(typeof API_METHODS)['replay']>
type LkmlReq = z.infer<(typeof API_METHODS)['lkmlTimeline']>

export function replayTask(r: ReplayReq): ReplayResult {
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
    const ex = runExecution(sc, ps[0]!, scriptedChooser(sched), {
      tracing: true,
      maxSteps: sched.length + 10_000,
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

export function runTask(name: TaskName, arg: unknown): unknown {
  switch (name) {
    case 'replay':
      return replayTask(arg as ReplayReq)
    case 'lkmlTimeline':
      return lkmlTask(arg as LkmlReq)
  }
}
