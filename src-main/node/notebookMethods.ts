/**
 * The lab notebook methods behind LabApi: open, save (atomic, with conflict detection),
 * autosave and recovery, Recent, status of recorded results, running a cell, export, and the
 * file picker. Notebooks stay inside the notebooks folder unless `notebooksAnywhere` (the desktop
 * app), where only files the user chose in a dialog (or opened before) are allowed.
 */
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { z } from 'zod'
import { ENGINE_VERSION } from '../engine'
import type { API_METHODS, LabApi } from '../api/labApi'
import type { Notebook, NotebookDocument, NotebookStatus, ResultStatus, SynthesisCell } from '../api/notebook'
import { LabApiError, loadOrReject } from './apiErrors'
import {
  emptyNotebook,
  formatNotebookIssue,
  parseNotebook,
  recipeHash,
  resultStatuses,
  serializeNotebook,
} from './notebook/format'
import { createNotebookStore, NotebookStoreError } from './notebook/store'
import {
  synthesisCellRecipe,
  synthesisCellTexts,
  synthesisRecipeHash,
  synthesisRecipeHashAsSearched,
  type CellScenarioText,
} from './notebook/synthesis'
import { scenarioTextHash } from './synthesis'
import type { SynthesisManager } from './synthesisManager'
import type { LabServiceOptions } from './labService'
import type { ScenarioFolder } from './scenarioFolder'
import { isInside, isMissing, parseRequest } from './serviceRequests'

export type NotebookMethods = Pick<
  LabApi,
  | 'pickFile'
  | 'notebookNew'
  | 'notebookOpen'
  | 'notebookSave'
  | 'notebookRecent'
  | 'notebookAutosave'
  | 'notebookRecoverable'
  | 'notebookDiscardRecovery'
  | 'notebookRunCell'
  | 'notebookStatus'
>

export function createNotebookMethods(
  options: LabServiceOptions,
  folder: ScenarioFolder,
  startRun: LabApi['startRun'],
  synthesis: Pick<SynthesisManager, 'launch'>,
): NotebookMethods {
  const { root, resolveScenarioPath } = folder

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
   * A synthesis cell's scenarios (files and folders relative to the notebook), each confined as
   * an experiment's scenario path is, read.
   */
  const synthesisTexts = async (
    cell: SynthesisCell,
    notebookPath: string | null,
  ): Promise<CellScenarioText[]> => {
    if (notebookPath === null)
      throw new LabApiError(`cell ${cell.id}: save the notebook first: its scenario paths are relative to it`)
    const roots = [notebooksDir, await root()]
    for (const p of cell.recipe.scenarios)
      await confine(path.resolve(path.dirname(notebookPath), p), roots, `cell ${cell.id}: scenario`)
    let texts: CellScenarioText[]
    try {
      texts = synthesisCellTexts(cell, notebookPath)
    } catch (e) {
      throw new LabApiError((e as Error).message)
    }
    for (const t of texts) await confine(t.file, roots, `cell ${cell.id}: scenario`)
    return texts
  }

  /**
   * The status of every recorded result against the cells' recipes and scenario texts as they are
   * now. A cell whose scenario cannot be read has only stale-recipe results, and says why.
   */
  const statusOf = async (
    nb: Notebook,
    notebookPath: string | null,
    searched: Readonly<Record<string, Readonly<Record<string, string>>>> = {},
  ): Promise<NotebookStatus> => {
    const status: Record<string, ResultStatus[]> = {}
    const problems: Record<string, string> = {}
    const hashes: Record<string, string | null> = {}
    for (const cell of nb.cells) {
      if (cell.kind === 'synthesis') {
        let hash: string | null = null
        try {
          const texts = await synthesisTexts(cell, notebookPath)
          const read = searched[cell.id]
          hash =
            read === undefined
              ? synthesisRecipeHash(cell.recipe, texts)
              : synthesisRecipeHashAsSearched(cell.recipe, texts, read)
        } catch (e) {
          problems[cell.id] = (e as Error).message
        }
        hashes[cell.id] = hash
        status[cell.id] = cell.results.map((r) =>
          r.recipe_hash !== hash ? 'stale-recipe' : r.engine !== ENGINE_VERSION ? 'stale-engine' : 'current',
        )
        continue
      }
      if (cell.kind !== 'experiment') continue
      let text: string | null = null
      try {
        text = (await cellScenario(cell, notebookPath)).text
      } catch (e) {
        problems[cell.id] = (e as Error).message
      }
      status[cell.id] =
        text === null
          ? cell.results.map(() => 'stale-recipe')
          : resultStatuses(cell, text, ENGINE_VERSION, nb.policies)
    }
    return { status, problems, hashes }
  }

  const notebookStatus: LabApi['notebookStatus'] = async (req) => {
    const r = parseRequest('notebookStatus', req) as z.infer<typeof API_METHODS.notebookStatus>
    const nbPath = r.notebookPath === null ? null : await resolveNotebookPath(r.notebookPath, false)
    return statusOf(r.notebook, nbPath, r.searched)
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
    if (cell.kind === 'note') throw new LabApiError(`cellId: '${r.cellId}' is a note, not an experiment`)
    const nbPath = r.notebookPath === null ? null : await resolveNotebookPath(r.notebookPath, false)
    if (cell.kind === 'synthesis') {
      // Its progress and result arrive as synthesis events of the returned id.
      const texts = await synthesisTexts(cell, nbPath)
      const files = texts.map((t) => ({
        id: t.id,
        file: t.file,
        scenario: loadOrReject(t.text, t.id),
        sha256: scenarioTextHash(t.text),
      }))
      const recipe = synthesisCellRecipe(cell, r.notebook, files)
      if (typeof recipe === 'string') throw new LabApiError(recipe)
      return { runId: synthesis.launch(files, recipe), recipeHash: synthesisRecipeHash(cell.recipe, texts) }
    }
    const sc = await cellScenario(cell, nbPath)
    const rc = cell.recipe
    const runId = await startRun({
      text: sc.text,
      file: sc.file ?? `${nbPath ?? '<unsaved>'}#${cell.id}`,
      policies: rc.policies,
      // The notebook's own policies (`policies:`), which the recipe may name.
      ...(r.notebook.policies !== undefined ? { policyDefs: r.notebook.policies } : {}),
      mode: rc.mode,
      seed: rc.seed,
      executions: rc.executions,
      schedule: rc.schedule,
      maxStates: rc.max_states,
      timeoutMs: rc.timeout_ms,
    })
    return { runId, recipeHash: recipeHash(rc, sc.text, r.notebook.policies) }
  }

  return {
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
  }
}
