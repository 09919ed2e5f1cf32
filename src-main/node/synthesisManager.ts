/**
 * Syntheses behind LabApi (startSynthesis, cancelSynthesis): the scenarios of a request are
 * read from the scenarios folder (or taken as text) and checked before anything runs; the
 * search then runs with its explorations in the worker pool (synthesis.ts) and reports as run
 * events of its id: progress at most every `intervalMs` (and when a phase starts), each
 * exploration as it finishes, then the result with the hash of each scenario's text as it was
 * read at the start; a failure or a cancellation ends it.
 */
import { randomUUID } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import type { z } from 'zod'
import type { API_METHODS, LabApi, RunEvent, RunId, SynthesisEvent } from '../api/labApi'
import type { SynthProgress } from '../engine'
import { LabApiError, loadOrReject } from './apiErrors'
import type { ScenarioFolder } from './scenarioFolder'
import { parseRequest } from './serviceRequests'
import {
  scenarioTextHash,
  startSynthesis,
  synthSettings,
  type SynthesisRun,
  type SynthRecipe,
  type SynthScenarioFile,
} from './synthesis'
import type { WorkerPool } from './workerPool'

type Req = z.infer<typeof API_METHODS.startSynthesis>

export interface SynthesisManager {
  startSynthesis: LabApi['startSynthesis']
  cancelSynthesis: LabApi['cancelSynthesis']
  /** Starts a synthesis of scenarios already loaded and checked (a notebook cell's). */
  launch(files: readonly SynthScenarioFile[], recipe: SynthRecipe): RunId
  /** Cancels every synthesis under way and refuses new ones. */
  close(): void
}

/**
 * The scenarios a request names: a `.yaml` path is one file under the scenarios folder; any
 * other path a folder in it (`''` or `.`: all of it), meaning every scenario under it; text is
 * an unsaved buffer. Each loads as `validate` would check it; the first that does not is the
 * request's error, with its issues.
 */
export async function synthesisScenarios(
  folder: ScenarioFolder,
  refs: Req['scenarios'],
): Promise<SynthScenarioFile[]> {
  const out: SynthScenarioFile[] = []
  const add = (f: SynthScenarioFile): void => {
    if (out.some((g) => g.id === f.id)) throw new LabApiError(`scenarios: ${f.id} is named twice`)
    out.push(f)
  }
  // The text's hash as read now, when the search starts: what its result was searched over.
  const addFile = async (id: string, abs: string): Promise<void> => {
    const text = await fs.readFile(abs, 'utf8')
    add({ id, file: abs, scenario: loadOrReject(text, id), sha256: scenarioTextHash(text) })
  }
  for (const [i, ref] of refs.entries()) {
    if ('text' in ref) {
      const id = ref.file ?? `<unsaved ${i + 1}>`
      add({ id, file: null, scenario: loadOrReject(ref.text, id), sha256: scenarioTextHash(ref.text) })
      continue
    }
    const rel = ref.path.replace(/\\/g, '/').replace(/^\.?\/+|\/+$/g, '')
    if (rel.endsWith('.yaml')) {
      const { abs, rel: clean } = await folder.resolveScenarioPath(rel)
      await addFile(clean, abs)
      continue
    }
    if (rel.split('/').includes('..')) throw new LabApiError(`scenarios: '${ref.path}' may not contain '..'`)
    const entries = (await folder.listScenarios()).filter(
      (e) => rel === '' || rel === '.' || e.path.startsWith(`${rel}/`),
    )
    if (entries.length === 0)
      throw new LabApiError(`scenarios: no scenario file under '${ref.path}' in the scenarios folder`)
    const root = await folder.root()
    for (const e of entries) await addFile(e.path, path.join(root, ...e.path.split('/')))
  }
  return out
}

interface Active {
  readonly id: RunId
  readonly run: SynthesisRun
  timer: NodeJS.Timeout | null
  lastEmit: number
  lastPhase: SynthProgress['phase'] | null
  latest: SynthProgress | null
  over: boolean
}

export function createSynthesisManager(
  pool: WorkerPool,
  folder: ScenarioFolder,
  intervalMs: number,
  emit: (e: RunEvent) => void,
): SynthesisManager {
  const active = new Map<RunId, Active>()
  let closed = false

  const send = (a: Active, e: SynthesisEvent): void => {
    if (!a.over) emit(e)
  }
  const flush = (a: Active): void => {
    if (a.timer) clearTimeout(a.timer)
    a.timer = null
    a.lastEmit = Date.now()
    if (a.latest) send(a, { kind: 'synthesis-progress', runId: a.id, progress: a.latest })
  }
  const end = (a: Active): void => {
    a.over = true
    if (a.timer) clearTimeout(a.timer)
    a.timer = null
    active.delete(a.id)
  }

  const startSynthesisMethod: LabApi['startSynthesis'] = async (req) => {
    if (closed) throw new LabApiError('the lab service is closed')
    const r = parseRequest('startSynthesis', req) as Req
    const files = await synthesisScenarios(folder, r.scenarios)
    const recipe = synthSettings(
      {
        sites: r.sites,
        objective: r.objective,
        policies: r.policies,
        policyDefs: r.policyDefs,
        maxStates: r.maxStates,
        timeoutMs: r.timeoutMs,
      },
      files,
    )
    if (typeof recipe === 'string') throw new LabApiError(recipe)
    return launch(files, recipe)
  }

  const launch = (files: readonly SynthScenarioFile[], recipe: SynthRecipe): RunId => {
    if (closed) throw new LabApiError('the lab service is closed')
    const id = randomUUID()
    const started = Date.now()
    const scenarioHashes = Object.fromEntries(
      files.flatMap((f) => (f.sha256 === undefined ? [] : [[f.id, f.sha256] as const])),
    )
    // Events may come before the id is returned; the renderer keeps early ones (as for runs).
    let a: Active | null = null
    const run = startSynthesis(pool, files, recipe, {
      onProgress: (p) => {
        if (!a || a.over) return
        a.latest = p
        // A new phase is news: at once; otherwise at most every interval.
        if (p.phase !== a.lastPhase) {
          a.lastPhase = p.phase
          flush(a)
          return
        }
        if (a.timer) return
        const cur = a
        a.timer = setTimeout(() => flush(cur), Math.max(0, a.lastEmit + intervalMs - Date.now()))
      },
      onEvaluation: (evaluation) => {
        if (a) send(a, { kind: 'synthesis-evaluation', runId: id, evaluation })
      },
    })
    a = { id, run, timer: null, lastEmit: 0, lastPhase: null, latest: null, over: false }
    active.set(id, a)
    const cur = a
    run.result.then(
      (result) => {
        if (cur.over) return
        flush(cur)
        send(cur, {
          kind: 'synthesis-finished',
          runId: id,
          elapsedMs: Date.now() - started,
          result,
          scenarioHashes,
        })
        end(cur)
      },
      (e: unknown) => {
        if (cur.over) return
        end(cur)
        const text = e instanceof Error ? e.message : String(e)
        const [head, ...stack] = text.split('\n')
        if (stack.length > 0) console.error(`mnlab: synthesis ${id} failed: ${text}`)
        emit({ kind: 'failed', runId: id, message: head ?? '' })
      },
    )
    return id
  }

  const cancelSynthesis: LabApi['cancelSynthesis'] = async (req) => {
    const { runId } = parseRequest('cancelSynthesis', req) as { runId: string }
    const a = active.get(runId)
    // Finished, failed or already cancelled: nothing left to stop.
    if (!a) return
    end(a)
    a.run.cancel()
    emit({ kind: 'cancelled', runId })
  }

  return {
    startSynthesis: startSynthesisMethod,
    cancelSynthesis,
    launch,
    close() {
      closed = true
      for (const a of [...active.values()]) {
        end(a)
        a.run.cancel()
      }
    },
  }
}
