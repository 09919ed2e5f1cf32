/**
 * The lab services behind LabApi, in plain Node (no Electron): scenario files under one root
 * directory, validation, runs in the worker pool with progress events, replays. The Electron
 * main process (ipcMain) and the browser host (HTTP) are thin adapters over this object, and
 * both treat every request as untrusted: each is checked against its schema in API_METHODS.
 */
import { ReadOnlyFileError, writeFileAtomic } from './atomicFile'
import { randomUUID } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { z } from 'zod'
import {
  defaultRunOptions,
  ENGINE_VERSION,
  INVARIANTS,
  PRESET_DOCS,
  PRESETS,
  runResultOf,
  SCENARIO_TEMPLATE,
  scenarioJsonSchema,
  scheduleIndices,
  VARIANT_DOCS,
  VARIANTS,
  type ExploreProgress,
  type PolicyResult,
  type RunOptions,
} from '../engine'
import {
  API_METHODS,
  type ApiError,
  type ApiMethod,
  type EngineInfo,
  type LabApi,
  type FirstFound,
  type PolicyProgress,
  type ReplayResult,
  type CompareResult,
  type DistinguishResult,
  type RunEvent,
  type RunId,
  type ScenarioEntry,
  type ValidationIssue,
} from '../api/labApi'
import type { Notebook, NotebookDocument, NotebookStatus, ResultStatus } from '../api/notebook'
import { loadScenarioText, ScenarioLoadError, unfollowableStep } from './scenarioFiles'
import { exportNotebook } from './notebook/export'
import {
  emptyNotebook,
  formatNotebookIssue,
  parseNotebook,
  recipeHash,
  resultStatuses,
  serializeNotebook,
} from './notebook/format'
import { createNotebookStore, NotebookStoreError } from './notebook/store'
import { LabApiError, loadOrReject, policiesOf } from './apiErrors'
import { toWorkerOptions, type RunHandle, type WorkerPool } from './workerPool'

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

/** Checks `req` against the method's schema; the message names the offending field. */
export function parseRequest<M extends ApiMethod>(method: M, req: unknown): unknown {
  const schema = API_METHODS[method] as z.ZodType | null
  if (schema === null) return undefined
  const r = schema.safeParse(req)
  if (r.success) return r.data
  const first = r.error.issues[0]
  const where = first && first.path.length > 0 ? first.path.map(String).join('.') : 'request'
  const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more problems)` : ''
  throw new LabApiError(`${method}: invalid ${where}: ${first?.message ?? 'invalid input'}${more}`)
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p)
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))
}

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT'

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

export function createLabService(options: LabServiceOptions): LabService {
  const { pool } = options
  const interval = options.progressIntervalMs ?? 200
  const listeners = new Set<(e: RunEvent) => void>()
  const runs = new Map<RunId, ActiveRun>()
  let closed = false
  let rootReal: string | null = null

  const emit = (e: RunEvent): void => {
    for (const l of [...listeners]) {
      try {
        l(e)
      } catch {
        // A faulty subscriber must not break a run or the other subscribers.
      }
    }
  }

  const root = async (): Promise<string> => {
    rootReal ??= await fs.realpath(path.resolve(options.scenariosDir)).catch((e: unknown) => {
      if (isMissing(e)) throw new LabApiError(`the scenarios folder ${options.scenariosDir} does not exist`)
      throw e
    })
    return rootReal
  }

  /** Resolves a request path to an absolute path under the root, refusing every way out. */
  const resolveScenarioPath = async (rel: string): Promise<{ abs: string; rel: string }> => {
    const base = await root()
    if (rel.includes('\0')) throw new LabApiError('path: contains a NUL character')
    if (path.isAbsolute(rel) || path.win32.isAbsolute(rel) || /^[a-zA-Z]:/.test(rel))
      throw new LabApiError(`path: '${rel}' must be relative to the scenarios folder`)
    const parts = rel.split(/[\\/]+/).filter((s) => s !== '' && s !== '.')
    if (parts.length === 0) throw new LabApiError('path: empty')
    if (parts.includes('..')) throw new LabApiError(`path: '${rel}' may not contain '..'`)
    if (!parts[parts.length - 1]!.endsWith('.yaml'))
      throw new LabApiError(`path: '${rel}' is not a .yaml file`)
    const abs = path.join(base, ...parts)
    // Symlinks: the deepest existing ancestor (or the file itself) must really be inside the root.
    let probe = abs
    for (;;) {
      try {
        const real = await fs.realpath(probe)
        if (!isInside(base, real))
          throw new LabApiError(`path: '${rel}' leads outside the scenarios folder (symbolic link)`)
        break
      } catch (e) {
        if (!isMissing(e)) throw e
        const up = path.dirname(probe)
        if (up === probe) break
        probe = up
      }
    }
    return { abs, rel: parts.join('/') }
  }

  const walk = async (dir: string, prefix: string, out: string[]): Promise<void> => {
    const base = await root()
    const entries = await fs.readdir(dir, { withFileTypes: true })
    for (const e of entries) {
      if (e.name.startsWith('.')) continue
      const abs = path.join(dir, e.name)
      const rel = prefix ? `${prefix}/${e.name}` : e.name
      let isDir = e.isDirectory()
      let isFile = e.isFile()
      if (e.isSymbolicLink()) {
        const real = await fs.realpath(abs).catch(() => null)
        if (!real || !isInside(base, real)) continue
        const st = await fs.stat(real)
        isDir = st.isDirectory() && !isInside(real, dir) // no cycles through links to an ancestor
        isFile = st.isFile()
      }
      if (isDir) await walk(abs, rel, out)
      else if (isFile && e.name.endsWith('.yaml')) out.push(rel)
    }
  }

  const listScenarios = async (): Promise<ScenarioEntry[]> => {
    const base = await root()
    const files: string[] = []
    await walk(base, '', files)
    files.sort()
    return Promise.all(
      files.map(async (rel): Promise<ScenarioEntry> => {
        try {
          const text = await fs.readFile(path.join(base, rel), 'utf8')
          const sc = loadScenarioText(text, rel)
          return {
            path: rel,
            title: sc.title,
            source: sc.source,
            arch: sc.arch,
            policies: sc.expect.map(([p]) => p),
            error: null,
          }
        } catch (e) {
          const error =
            e instanceof ScenarioLoadError
              ? e.issues.map((i) => `${i.line}:${i.column}: ${i.message}`).join('\n')
              : e instanceof Error
                ? e.message
                : String(e)
          return { path: rel, title: path.basename(rel), source: null, arch: '', policies: [], error }
        }
      }),
    )
  }

  const readScenario: LabApi['readScenario'] = async (req) => {
    const { path: p } = parseRequest('readScenario', req) as { path: string }
    const { abs, rel } = await resolveScenarioPath(p)
    try {
      return { path: rel, text: await fs.readFile(abs, 'utf8') }
    } catch (e) {
      if (isMissing(e)) throw new LabApiError(`no scenario file '${rel}'`)
      if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw new LabApiError(`'${rel}' is a folder`)
      throw e
    }
  }

  const saveScenario: LabApi['saveScenario'] = async (req) => {
    const { path: p, text } = parseRequest('saveScenario', req) as { path: string; text: string }
    const { abs } = await resolveScenarioPath(p)
    await writeFileAtomic(abs, text)
  }

  // Checking a large scenario takes up to a second or so: in a worker too, like replays.
  const validate: LabApi['validate'] = async (req) => {
    const r = parseRequest('validate', req) as { text: string; file: string | null }
    return (await pool.task('validate', r)) as ValidationIssue[]
  }

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
    const sc = loadOrReject(r.text, r.file)
    const policies = policiesOf(r.policies)
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
      pool.start(sc, p.name, wopts, (pr: ExploreProgress) => {
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

  // ---- lab notebooks ----

  const notebooksDir = path.resolve(
    options.notebooksDir ?? path.join(path.dirname(path.resolve(options.scenariosDir)), 'notebooks'),
  )
  const store = createNotebookStore(
    path.resolve(
      options.dataDir ?? process.env.MNLAB_DATA_DIR ?? path.join(os.homedir(), '.local', 'state', 'mnlab'),
    ),
  )

  /** The real path of `abs`, or of its deepest existing ancestor joined with the rest. */
  const realish = async (abs: string): Promise<string> => {
    let probe = abs
    const rest: string[] = []
    for (;;) {
      try {
        return path.join(await fs.realpath(probe), ...rest)
      } catch (e) {
        if (!isMissing(e)) throw e
        const up = path.dirname(probe)
        if (up === probe) return abs
        rest.unshift(path.basename(probe))
        probe = up
      }
    }
  }

  /**
   * With notebooksAnywhere (the desktop app), notebooks outside the notebooks folder are those
   * the user chose in a native dialog during this session, or opened before (Recent): a request
   * cannot name any other file on the machine (~/.ssh/id_rsa). A granted notebook's scenario
   * paths may point inside its own folder.
   */
  const granted = new Set<string>()
  let recentGranted = false
  const grantedFor = async (): Promise<Set<string>> => {
    if (!recentGranted) {
      recentGranted = true
      for (const r of await store.recent()) granted.add(path.resolve(r.path))
    }
    return granted
  }

  /** A path confined to one of `roots`, symbolic links included (or, anywhere, granted). */
  const confine = async (abs: string, roots: readonly string[], what: string): Promise<string> => {
    if (abs.includes('\0')) throw new LabApiError(`${what}: contains a NUL character`)
    const real = await realish(abs)
    for (const r of roots) if (isInside(await realish(r), real)) return abs
    if (options.notebooksAnywhere) {
      const ok = await grantedFor()
      if (ok.has(abs)) return abs
      // A cell's scenario next to (or below) a granted notebook.
      if (what.startsWith('cell ')) for (const g of ok) if (isInside(path.dirname(g), abs)) return abs
      throw new LabApiError(
        `${what}: '${abs}' is outside the notebooks folder ${notebooksDir} and was not chosen in a file dialog; open it with Open… first`,
      )
    }
    throw new LabApiError(`${what}: '${abs}' is outside the notebooks folder ${notebooksDir}`)
  }

  const resolveNotebookPath = async (p: string, forSave: boolean): Promise<string> => {
    const abs = path.resolve(notebooksDir, p)
    if (forSave && !abs.endsWith('.mnlab.yaml'))
      throw new LabApiError(`path: '${p}' must end with .mnlab.yaml`)
    return confine(abs, [notebooksDir], 'path')
  }

  const storeError = (e: unknown): never => {
    if (e instanceof NotebookStoreError) throw new LabApiError(`${e.code}: ${e.message}`)
    throw e
  }

  /** The scenario text of an experiment cell: inline, or a path relative to the notebook (confined). */
  const cellScenario = async (
    cell: Extract<Notebook['cells'][number], { kind: 'experiment' }>,
    notebookPath: string | null,
  ): Promise<{ text: string; file: string | null }> => {
    if ('inline' in cell.scenario) return { text: cell.scenario.inline, file: null }
    if (notebookPath === null)
      throw new LabApiError(`cell ${cell.id}: save the notebook first: its scenario path is relative to it`)
    const abs = path.resolve(path.dirname(notebookPath), cell.scenario.path)
    await confine(abs, [notebooksDir, await root()], `cell ${cell.id}: scenario`)
    try {
      return { text: await fs.readFile(abs, 'utf8'), file: abs }
    } catch (e) {
      if (isMissing(e)) throw new LabApiError(`cell ${cell.id}: no scenario file '${cell.scenario.path}'`)
      throw e
    }
  }

  /**
   * The status of every recorded result against the cells' recipes and scenario texts as they are
   * now. A cell whose scenario cannot be read has only stale-recipe results, and says why.
   */
  const statusOf = async (nb: Notebook, notebookPath: string | null): Promise<NotebookStatus> => {
    const status: Record<string, ResultStatus[]> = {}
    const problems: Record<string, string> = {}
    for (const cell of nb.cells) {
      if (cell.kind !== 'experiment') continue
      let text: string | null = null
      try {
        text = (await cellScenario(cell, notebookPath)).text
      } catch (e) {
        problems[cell.id] = (e as Error).message
      }
      status[cell.id] =
        text === null ? cell.results.map(() => 'stale-recipe') : resultStatuses(cell, text, ENGINE_VERSION)
    }
    return { status, problems }
  }

  const notebookStatus: LabApi['notebookStatus'] = async (req) => {
    const r = parseRequest('notebookStatus', req) as z.infer<typeof API_METHODS.notebookStatus>
    const nbPath = r.notebookPath === null ? null : await resolveNotebookPath(r.notebookPath, false)
    return statusOf(r.notebook, nbPath)
  }

  const pickFile: LabApi['pickFile'] = async (req) => {
    const r = parseRequest('pickFile', req) as z.infer<typeof API_METHODS.pickFile>
    if (!options.nativePicker) return null
    if (r.kind === 'notebook') {
      const chosen = await options.nativePicker(
        r.purpose,
        path.join(notebooksDir, r.suggestedName ?? ''),
        'notebook',
      )
      if (chosen === null) return null
      // The same checks as notebookOpen / notebookSave (the folder, unless anywhere; the suffix).
      const wanted =
        r.purpose === 'save' && !chosen.endsWith('.mnlab.yaml')
          ? `${chosen.replace(/\.ya?ml$/, '')}.mnlab.yaml`
          : chosen
      // The user chose it: with notebooksAnywhere, this grants it for the session.
      if (options.notebooksAnywhere) (await grantedFor()).add(path.resolve(notebooksDir, wanted))
      return { path: await resolveNotebookPath(wanted, r.purpose === 'save') }
    }
    const base = await root()
    const chosen = await options.nativePicker(r.purpose, path.join(base, r.suggestedName ?? ''), 'scenario')
    if (chosen === null) return null
    const rel = path.relative(base, chosen)
    if (rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new LabApiError(
        `path: '${chosen}' is outside the scenarios folder ${base}; choose a file under it`,
      )
    }
    // The same checks as read and save (.yaml, no symlink escapes).
    return { path: (await resolveScenarioPath(rel)).rel }
  }

  const notebookNew: LabApi['notebookNew'] = async () => {
    const notebook = emptyNotebook()
    return { notebook, text: serializeNotebook(notebook) }
  }

  const notebookOpen: LabApi['notebookOpen'] = async (req) => {
    const { path: p } = parseRequest('notebookOpen', req) as { path: string }
    const abs = await resolveNotebookPath(p, false)
    const { text, revision } = await store.read(abs).catch(storeError)
    const parsed = parseNotebook(text, abs)
    let st: NotebookStatus = { status: {}, problems: {} }
    if (parsed.ok) {
      st = await statusOf(parsed.notebook, abs)
      await store.addRecent(abs)
    }
    const doc: NotebookDocument = {
      path: abs,
      text,
      revision,
      notebook: parsed.ok ? parsed.notebook : null,
      issues: parsed.ok ? [] : parsed.issues,
      migratedFrom: parsed.ok ? parsed.migratedFrom : null,
      status: st.status,
      problems: st.problems,
    }
    return doc
  }

  const notebookSave: LabApi['notebookSave'] = async (req) => {
    const r = parseRequest('notebookSave', req) as z.infer<typeof API_METHODS.notebookSave>
    if ((r.text === undefined) === (r.notebook === undefined))
      throw new LabApiError('notebookSave: give exactly one of text and notebook')
    const abs = await resolveNotebookPath(r.path, true)
    let text: string
    if (r.notebook) text = serializeNotebook(r.notebook)
    else {
      text = r.text!
      const parsed = parseNotebook(text, abs)
      if (!parsed.ok)
        throw new LabApiError(
          `the notebook is invalid: ${formatNotebookIssue(parsed.issues[0]!)}`,
          parsed.issues.map((i) => ({ line: i.line, column: i.column, length: 1, message: i.message })),
        )
    }
    const { revision } = await store
      .save(abs, text, { expectedRevision: r.expectedRevision, force: r.force })
      .catch(storeError)
    return { path: abs, revision }
  }

  const notebookRecent: LabApi['notebookRecent'] = () => store.recent()

  const notebookAutosave: LabApi['notebookAutosave'] = async (req) => {
    const r = parseRequest('notebookAutosave', req) as z.infer<typeof API_METHODS.notebookAutosave>
    const abs = r.path === null ? null : await resolveNotebookPath(r.path, false)
    await store.autosave(r.key, abs, serializeNotebook(r.notebook)).catch(storeError)
  }

  const notebookRecoverable: LabApi['notebookRecoverable'] = async () =>
    (await store.recoverable()).map((e) => {
      const parsed = parseNotebook(e.text, e.path ?? `recovery:${e.key}`)
      return parsed.ok
        ? { ...e, notebook: parsed.notebook, issues: [] }
        : { ...e, notebook: null, issues: parsed.issues }
    })

  const notebookDiscardRecovery: LabApi['notebookDiscardRecovery'] = async (req) => {
    const { key } = parseRequest('notebookDiscardRecovery', req) as { key: string }
    await store.discardRecovery(key).catch(storeError)
  }

  const notebookRunCell: LabApi['notebookRunCell'] = async (req) => {
    const r = parseRequest('notebookRunCell', req) as z.infer<typeof API_METHODS.notebookRunCell>
    const cell = r.notebook.cells.find((c) => c.id === r.cellId)
    if (!cell) throw new LabApiError(`cellId: no cell '${r.cellId}'`)
    if (cell.kind !== 'experiment')
      throw new LabApiError(`cellId: '${r.cellId}' is a note, not an experiment`)
    const nbPath = r.notebookPath === null ? null : await resolveNotebookPath(r.notebookPath, false)
    const sc = await cellScenario(cell, nbPath)
    const rc = cell.recipe
    const runId = await startRun({
      text: sc.text,
      file: sc.file ?? `${nbPath ?? '<unsaved>'}#${cell.id}`,
      policies: rc.policies,
      mode: rc.mode,
      seed: rc.seed,
      executions: rc.executions,
      schedule: rc.schedule,
      maxStates: rc.max_states,
      timeoutMs: rc.timeout_ms,
    })
    return { runId, recipeHash: recipeHash(rc, sc.text) }
  }

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
    invariants: [...INVARIANTS],
    scenarioSchema: scenarioJsonSchema(),
    template: SCENARIO_TEMPLATE,
    nativeDialogs: options.nativePicker !== undefined,
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
    pickFile,
    notebookNew,
    notebookOpen,
    notebookSave,
    notebookRecent,
    notebookAutosave,
    notebookRecoverable,
    notebookDiscardRecovery,
    notebookRunCell,
    notebookStatus,
    notebookExport,
    lkmlTimeline,
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
      for (const run of [...runs.values()]) {
        endRun(run)
        for (const h of run.handles) h.cancel()
      }
      listeners.clear()
      await pool.close()
    },
  }
}
