/**
 * The lab services behind LabApi, in plain Node (no Electron), composed of the scenarios folder
 * (scenarioFolder.ts), runs with progress events (runManager.ts) and lab notebooks
 * (notebookMethods.ts), plus validation, replays, comparisons and exports, each engine task in a
 * worker thread. The Electron
 * main process (ipcMain) and the browser host (HTTP) are thin adapters over this object, and
 * both treat every request as untrusted: each is checked against its schema in API_METHODS.
 */
import path from 'node:path'
import type { z } from 'zod'
import {
  ENGINE_VERSION,
  INVARIANTS,
  namedSites,
  PRESET_DOCS,
  PRESETS,
  SCENARIO_TEMPLATE,
  scenarioJsonSchema,
  SITES,
  VARIANT_DOCS,
  VARIANTS,
} from '../engine'
import type {
  API_METHODS,
  ApiError,
  CompareResult,
  DistinguishResult,
  EngineInfo,
  LabApi,
  ReplayResult,
  RunEvent,
  ValidationIssue,
} from '../api/labApi'
import { LabApiError } from './apiErrors'
import { ReadOnlyFileError } from './atomicFile'
import { exportNotebook } from './notebook/export'
import { createNotebookMethods } from './notebookMethods'
import { createRunManager } from './runManager'
import { createScenarioFolder } from './scenarioFolder'
import { createSynthesisManager } from './synthesisManager'
import { parseRequest } from './serviceRequests'
import type { WorkerPool } from './workerPool'

export { LabApiError }

/** The plain-data form of any error, for the HTTP and IPC adapters. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof LabApiError)
    return e.issues ? { message: e.message, issues: e.issues } : { message: e.message }
  return { message: e instanceof Error ? e.message : String(e) }
}

export type LabService = LabApi & { close(): Promise<void> }

/**
 * A file-system error about a path or file the request named (too long, not a folder, no
 * permission, read-only, a loop of links...) is the request's problem: a LabApiError (HTTP
 * 400) naming the code, never an internal error (500). Anything else stays an internal error.
 */
function asApiError(e: unknown): unknown {
  if (e instanceof LabApiError) return e
  if (e instanceof ReadOnlyFileError) return new LabApiError(e.message)
  const code = (e as NodeJS.ErrnoException | null)?.code
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code))
    return new LabApiError(`${code}: ${(e as Error).message.slice(0, 300)}`)
  return e
}

function userErrorsAsApiErrors<T extends Record<string, (a: never) => Promise<unknown>>>(methods: T): T {
  const out: Record<string, (a: never) => Promise<unknown>> = {}
  for (const [name, fn] of Object.entries(methods))
    out[name] = (a: never) =>
      fn(a).catch((e: unknown) => {
        throw asApiError(e)
      })
  return out as T
}

export interface LabServiceOptions {
  readonly scenariosDir: string
  readonly pool: WorkerPool
  /** Minimum interval between progress events of one run (default 200 ms: at most ~5/s). */
  readonly progressIntervalMs?: number
  /**
   * A native file dialog (Electron): resolves with an absolute path, or null when cancelled.
   * Without one, pickFile answers null and the renderer asks for a path itself.
   */
  readonly nativePicker?: (
    purpose: 'open' | 'save',
    defaultPath: string,
    kind: 'scenario' | 'notebook',
  ) => Promise<string | null>
  /**
   * The notebooks folder (default: `notebooks` next to the scenarios folder). Relative notebook
   * paths resolve against it and, unless `notebooksAnywhere`, every notebook must be inside it.
   */
  readonly notebooksDir?: string
  /** Allow notebooks (and their scenario paths) anywhere the user chooses (the Electron host). */
  readonly notebooksAnywhere?: boolean
  /** Recovery area and Recent list (default: $MNLAB_DATA_DIR, else ~/.local/state/mnlab). */
  readonly dataDir?: string
}

export function createLabService(options: LabServiceOptions): LabService {
  const { pool } = options
  const interval = options.progressIntervalMs ?? 200
  const listeners = new Set<(e: RunEvent) => void>()
  let closed = false
  const emit = (e: RunEvent): void => {
    for (const l of [...listeners]) {
      try {
        l(e)
      } catch {
        // A faulty subscriber must not break a run or the other subscribers.
      }
    }
  }

  const folder = createScenarioFolder(options.scenariosDir)
  const { listScenarios, readScenario, saveScenario } = folder

  // Checking a large scenario takes up to a second or so: in a worker too, like replays.
  const validate: LabApi['validate'] = async (req) => {
    const r = parseRequest('validate', req) as { text: string; file: string | null }
    return (await pool.task('validate', r)) as ValidationIssue[]
  }

  const runManager = createRunManager(pool, interval, emit)
  const { startRun, cancelRun } = runManager

  // A replay traces every step (diffs and state views): long schedules take seconds to minutes,
  // so it runs in a worker thread (workerPool task), never on the host's event loop.
  const replay: LabApi['replay'] = async (req) => {
    const r = parseRequest('replay', req) as z.infer<typeof API_METHODS.replay>
    return (await pool.task('replay', r)) as ReplayResult
  }
  // One schedule under several policies: a lenient replay each, traced, in a worker.
  const compareSchedule: LabApi['compareSchedule'] = async (req) => {
    const r = parseRequest('compareSchedule', req) as z.infer<typeof API_METHODS.compareSchedule>
    return (await pool.task('compareSchedule', r)) as CompareResult
  }
  // A breadth-first search over two policies' product graph: seconds to minutes, in a worker.
  const distinguish: LabApi['distinguish'] = async (req) => {
    const r = parseRequest('distinguish', req) as z.infer<typeof API_METHODS.distinguish>
    return (await pool.task('distinguish', r)) as DistinguishResult
  }

  // Syntheses: many explorations each, as jobs in the same pool, reported as run events.
  const synthesisManager = createSynthesisManager(pool, folder, interval, emit)
  const { startSynthesis, cancelSynthesis } = synthesisManager

  const notebooks = createNotebookMethods(options, folder, startRun, synthesisManager)

  const notebookExport: LabApi['notebookExport'] = async (req) => {
    const r = parseRequest('notebookExport', req) as z.infer<typeof API_METHODS.notebookExport>
    return exportNotebook(r.notebook, r.format)
  }

  const lkmlTimeline: LabApi['lkmlTimeline'] = async (req) => {
    const r = parseRequest('lkmlTimeline', req) as z.infer<typeof API_METHODS.lkmlTimeline>
    return (await pool.task('lkmlTimeline', r)) as string
  }

  const engineInfo: LabApi['engineInfo'] = async (): Promise<EngineInfo> => ({
    version: ENGINE_VERSION,
    presets: PRESETS.map((name) => ({ name, doc: PRESET_DOCS[name] })),
    variants: VARIANTS.map((name) => ({ name, doc: VARIANT_DOCS[name] })),
    sites: SITES.map((s) => ({ name: s.name, group: s.group, kernel: s.kernel, doc: s.doc })),
    namedSites: Object.fromEntries(
      PRESETS.flatMap((p) => [[p, namedSites(p)], ...VARIANTS.map((v) => [`${p}+${v}`, namedSites(p, [v])])]),
    ),
    invariants: [...INVARIANTS],
    scenarioSchema: scenarioJsonSchema(),
    template: SCENARIO_TEMPLATE,
    nativeDialogs: options.nativePicker !== undefined,
    scenariosDir: path.resolve(options.scenariosDir),
  })

  const methods = {
    engineInfo,
    listScenarios,
    readScenario,
    saveScenario,
    validate,
    startRun,
    cancelRun,
    replay,
    compareSchedule,
    distinguish,
    ...notebooks,
    notebookExport,
    lkmlTimeline,
    startSynthesis,
    cancelSynthesis,
  }
  return {
    ...userErrorsAsApiErrors(methods),
    onDidRunEvent(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },
    async close() {
      if (closed) return
      closed = true
      runManager.close()
      synthesisManager.close()
      listeners.clear()
      await pool.close()
    },
  }
}
