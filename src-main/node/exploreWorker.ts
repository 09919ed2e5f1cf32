/**
 * Worker-thread entry: runs one policy of one scenario with the engine and posts the result.
 * Messages are plain data (structured clone); see workerPool.ts for the protocol.
 */
import { parentPort } from 'node:worker_threads'
import { parsePolicy, runPolicy } from '../engine'
import { stopAtOf, type MainToWorker, type WorkerToMain } from './workerPool'

const port = parentPort
if (!port) throw new Error('exploreWorker must run in a worker thread')

port.on('message', (msg: MainToWorker) => {
  if (msg.kind !== 'run') return
  const reply = (m: WorkerToMain): void => port.postMessage(m)
  try {
    const policy = parsePolicy(msg.policy)
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
      ...rest
    } = msg.opts
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
        onProgress: (progress) => reply({ kind: 'progress', id: msg.id, progress }),
        shouldStop:
          end === null
            ? undefined
            : () => (Date.now() > end ? `time budget of ${(timeoutMs ?? 0) / 1000} s reached` : null),
      },
    })
    reply({ kind: 'done', id: msg.id, result })
  } catch (e) {
    reply({
      kind: 'failed',
      id: msg.id,
      message: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e),
    })
  }
})
