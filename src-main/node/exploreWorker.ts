/**
 * Worker-thread entry: runs one policy of one scenario with the engine and posts the result.
 * Messages are plain data (structured clone); see workerPool.ts for the protocol.
 */
import { getHeapStatistics } from 'node:v8'
import { parentPort } from 'node:worker_threads'
import { parsePolicy, runPolicy } from '../engine'
import { LabApiError } from './apiErrors'
import { runTask } from './engineTasks'
import { stopAtOf, type MainToWorker, type WorkerToMain } from './workerPool'

const MB = 1024 * 1024
const port = parentPort
if (!port) throw new Error('exploreWorker must run in a worker thread')

port.on('message', (msg: MainToWorker) => {
  const reply = (m: WorkerToMain): void => port.postMessage(m)
  if (msg.kind === 'task') {
    try {
      reply({ kind: 'value', id: msg.id, value: runTask(msg.task, msg.arg) })
    } catch (e) {
      if (e instanceof LabApiError)
        reply({ kind: 'failed', id: msg.id, message: e.message, badInput: { issues: e.issues } })
      else
        reply({
          kind: 'failed',
          id: msg.id,
          message: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e),
        })
    }
    return
  }
  try {
    // A name is resolved as the scenario does (presets, `sites:...`, its `policies:`).
    const policy =
      typeof msg.policy === 'string' ? parsePolicy(msg.policy, msg.scenario.policies) : msg.policy
    if (typeof policy === 'string') throw new Error(policy)
    const started = Date.now()
    const {
      timeoutMs,
      deadline,
      maxStates,
      maxSteps,
      reduction,
      order,
      first,
      canonicalFrames,
      persistent,
      merge,
      components,
      maxMemoryMb,
      ...rest
    } = msg.opts
    // Memory: this worker's heap plus its external memory (the visited-state table's arrays),
    // checked with the time budget; the run stops with `unknown` before the heap limit (a
    // worker that hits it dies with its results) or the OS's out-of-memory killer.
    const limitMb = Math.min(
      maxMemoryMb ?? Infinity,
      Math.floor((getHeapStatistics().heap_size_limit / MB) * 0.85),
    )
    let peakMb = 0
    const memoryStop = (): string | null => {
      const h = getHeapStatistics()
      const mb = (h.used_heap_size + h.external_memory) / MB
      if (mb > peakMb) peakMb = mb
      return mb > limitMb ? `memory budget of ${limitMb.toLocaleString('en-US')} MB reached` : null
    }
    // The run's (or the command's) time budget: from its start, not from this job's.
    const end = deadline ?? (timeoutMs === null ? null : started + timeoutMs)
    const result = runPolicy(msg.scenario, policy, {
      ...rest,
      budget: {
        maxStates,
        maxSteps,
        reduction,
        order,
        stopAt: stopAtOf(first),
        canonicalFrames,
        persistent,
        merge,
        components,
        onProgress: (progress) => reply({ kind: 'progress', id: msg.id, progress }),
        shouldStop: () =>
          (end !== null && Date.now() > end ? `time budget of ${(timeoutMs ?? 0) / 1000} s reached` : null) ??
          memoryStop(),
      },
    })
    memoryStop()
    reply({
      kind: 'done',
      id: msg.id,
      result: { ...result, stats: { ...result.stats, peakMemoryMb: Math.ceil(peakMb) } },
    })
  } catch (e) {
    reply({
      kind: 'failed',
      id: msg.id,
      message: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e),
    })
  }
})
