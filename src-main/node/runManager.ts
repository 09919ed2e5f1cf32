/**
 * Runs behind LabApi: each policy of a run explores in the worker pool; progress is merged per
 * run and sent at most every `intervalMs` (a first counterexample at once); a run ends finished,
 * failed (one line for the user, the stack to the host's log) or cancelled.
 */
import { randomUUID } from 'node:crypto'
import type { z } from 'zod'
import {
  defaultRunOptions,
  runResultOf,
  scheduleIndices,
  type ExploreProgress,
  type PolicyResult,
  type RunOptions,
} from '../engine'
import type { API_METHODS, FirstFound, LabApi, PolicyProgress, RunEvent, RunId } from '../api/labApi'
import { LabApiError, loadOrReject, policiesOf } from './apiErrors'
import { unfollowableStep } from './scenarioFiles'
import { parseRequest } from './serviceRequests'
import { toWorkerOptions, type RunHandle, type WorkerPool } from './workerPool'

interface ActiveRun {
  readonly id: RunId
  readonly started: number
  readonly progress: Array<{
    policy: string
    states: number
    steps: number
    executions: number
    done: boolean
    first?: FirstFound
  }>
  handles: RunHandle[]
  timer: NodeJS.Timeout | null
  lastEmit: number
  over: boolean
}

export interface RunManager {
  startRun: LabApi['startRun']
  cancelRun: LabApi['cancelRun']
  /** Ends every active run (cancelling its workers) and refuses new ones. */
  close(): void
}

export function createRunManager(
  pool: WorkerPool,
  intervalMs: number,
  emit: (e: RunEvent) => void,
): RunManager {
  const interval = intervalMs
  const runs = new Map<RunId, ActiveRun>()
  let closed = false

  const emitProgress = (run: ActiveRun): void => {
    if (run.timer) clearTimeout(run.timer)
    run.timer = null
    run.lastEmit = Date.now()
    const elapsedMs = run.lastEmit - run.started
    const states = run.progress.reduce((a, p) => a + p.states, 0)
    // Random and scripted runs count executions, not states.
    const work = states > 0 ? states : run.progress.reduce((a, p) => a + p.executions, 0)
    emit({
      kind: 'progress',
      runId: run.id,
      elapsedMs,
      rate: elapsedMs > 0 ? Math.round((work * 1000) / elapsedMs) : 0,
      policies: run.progress.map((p): PolicyProgress => ({ ...p })),
    })
  }

  const scheduleProgress = (run: ActiveRun): void => {
    if (run.over || run.timer) return
    const wait = Math.max(0, run.lastEmit + interval - Date.now())
    run.timer = setTimeout(() => {
      run.timer = null
      if (!run.over) emitProgress(run)
    }, wait)
  }

  const endRun = (run: ActiveRun): void => {
    run.over = true
    if (run.timer) clearTimeout(run.timer)
    run.timer = null
    runs.delete(run.id)
  }

  const startRun: LabApi['startRun'] = async (req) => {
    if (closed) throw new LabApiError('the lab service is closed')
    const r = parseRequest('startRun', req) as z.infer<typeof API_METHODS.startRun>
    const sc = loadOrReject(r.text, r.file, r.policyDefs)
    const policies = policiesOf(r.policies, sc)
    const base = defaultRunOptions(sc)
    if (r.mode === 'scripted') {
      if (r.schedule.length === 0) throw new LabApiError('schedule: scripted mode needs a schedule')
      let idx: number[]
      try {
        idx = scheduleIndices(sc, r.schedule)
      } catch (e) {
        throw new LabApiError(`schedule: ${(e as Error).message}`)
      }
      // A step that cannot be followed is the request's fault: say which, before any worker runs.
      const u = unfollowableStep(sc, policies, idx, defaultRunOptions(sc).budget.maxSteps)
      if (u !== null) throw new LabApiError(`schedule: step ${u.index} under ${u.policy}: ${u.message}`)
    }
    const opts: RunOptions = {
      ...base,
      mode: r.mode,
      seed: r.seed,
      executions: r.executions,
      schedule: r.schedule,
      budget: { ...base.budget, maxStates: r.maxStates },
    }
    const wopts = {
      ...toWorkerOptions(opts, r.timeoutMs),
      ...(r.first === true && r.mode === 'exhaustive' ? { first: 'any' as const } : {}),
    }
    const names = (ts: readonly number[]): string[] => ts.map((t) => sc.threads[t]!.name)
    const run: ActiveRun = {
      id: randomUUID(),
      started: Date.now(),
      progress: policies.map((p) => ({ policy: p.name, states: 0, steps: 0, executions: 0, done: false })),
      handles: [],
      timer: null,
      lastEmit: 0,
      over: false,
    }
    runs.set(run.id, run)
    run.handles = policies.map((p, i) =>
      pool.start(sc, p, wopts, (pr: ExploreProgress) => {
        if (run.over) return
        const { first, ...counts } = pr
        const row = run.progress[i]!
        Object.assign(row, counts)
        if (first && !row.first) {
          row.first = {
            invariant: first.invariant,
            message: first.message,
            schedule: names(first.schedule),
            cycle: first.cycle ? names(first.cycle) : null,
          }
          // A first counterexample is news: report it now, not at the next tick.
          emitProgress(run)
          return
        }
        scheduleProgress(run)
      }),
    )
    const jobs = run.handles.map((h, i) =>
      h.result.then((res: PolicyResult) => {
        if (!run.over) {
          const { states, steps, executions } = res.stats
          Object.assign(run.progress[i]!, { states, steps, executions, done: true })
          scheduleProgress(run)
        }
        return res
      }),
    )
    Promise.all(jobs).then(
      (results) => {
        if (run.over) return
        emitProgress(run)
        endRun(run)
        emit({
          kind: 'finished',
          runId: run.id,
          elapsedMs: Date.now() - run.started,
          result: runResultOf(sc, opts, results),
        })
      },
      (e: unknown) => {
        if (run.over) return
        endRun(run)
        for (const h of run.handles) h.cancel()
        // One line for the user; the worker's stack trace goes to the host's log, not the page.
        const text = e instanceof Error ? e.message : String(e)
        const [head, ...stack] = text.split('\n')
        if (stack.length > 0) console.error(`mnlab: run ${run.id} failed: ${text}`)
        emit({ kind: 'failed', runId: run.id, message: head ?? '' })
      },
    )
    return run.id
  }

  const cancelRun: LabApi['cancelRun'] = async (req) => {
    const { runId } = parseRequest('cancelRun', req) as { runId: string }
    const run = runs.get(runId)
    // Finished, failed or already cancelled: nothing left to stop.
    if (!run) return
    endRun(run)
    for (const h of run.handles) h.cancel()
    emit({ kind: 'cancelled', runId })
  }

  const close = (): void => {
    closed = true
    for (const run of [...runs.values()]) {
      endRun(run)
      for (const h of run.handles) h.cancel()
    }
  }

  return { startRun, cancelRun, close }
}
