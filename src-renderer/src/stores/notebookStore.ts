/**
 * The open lab notebook: its file and revision, the cells, whether it has unsaved changes, the
 * Recent list, and a save that never overwrites a file someone else changed (issue 4). The
 * services do the file work (atomic writes, revision checks); this store only keeps the view's state.
 */
import { defineStore } from 'pinia'
import { computed, ref, shallowRef, watch } from 'vue'
import type { RunEvent, RunId, ValidationIssue } from '../../../src-main/api/labApi'
import type {
  Notebook,
  Cell,
  ExperimentCell,
  NotebookIssue,
  RecentNotebook,
  Recipe,
  RecordedSynthesis,
  RecoveryEntry,
  ResultStatus,
  SynthesisRecipe,
} from '../../../src-main/api/notebook'
import { recordedResult, recordedSynthesis } from '../../../src-main/api/record'
import { lab, toLabError } from '../lab'
import { expandSites } from '../logic/sites'
import { useEngineStore } from './engineStore'

/** A run of one experiment cell: live until it finishes, fails or is cancelled. */
export interface CellRun {
  readonly runId: RunId | null
  readonly recipeHash: string | null
  readonly state: 'running' | 'failed' | 'cancelled'
  readonly message: string | null
  readonly elapsedMs: number
}

/** Unsaved changes go to the recovery area this long after the last edit. */
export const AUTOSAVE_DELAY_MS = 2000

/** A key for this window's recovery copy (letters, digits, _ and -). */
function newKey(): string {
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0'))
  return `nb-${Date.now().toString(36)}-${rand.join('')}`
}

export const useNotebookStore = defineStore('notebook', () => {
  /** The notebook being shown, or null when none is open. */
  const notebook = shallowRef<Notebook | null>(null)
  /** Its file (as the services resolved it), or null for a notebook never saved. */
  const path = ref<string | null>(null)
  /** sha256 of the file's bytes when opened or last saved; null for a new notebook. */
  const revision = ref<string | null>(null)
  /** The JSON of the notebook as last opened or saved, to tell unsaved changes. */
  const savedJson = ref('')
  /** Per experiment cell id, the status of each recorded result, as the services computed it. */
  const status = shallowRef<Readonly<Record<string, readonly ResultStatus[]>>>({})
  /** Per experiment cell id, why its scenario could not be read (from the services). */
  const problems = shallowRef<Readonly<Record<string, string>>>({})
  const migratedFrom = ref<number | null>(null)
  /** Problems of a file that did not load (the file is left as it is). */
  const issues = ref<NotebookIssue[]>([])
  const recent = ref<RecentNotebook[]>([])
  const error = ref<string | null>(null)
  /** Set when a save found the file changed on disk: the view asks before overwriting. */
  const conflict = ref<string | null>(null)
  const busy = ref(false)
  /** Recovery copies left by a crash or a kill, offered back to the user. */
  const recoverable = ref<RecoveryEntry[]>([])
  /** This notebook's recovery key; a recovered notebook keeps the key of its copy. */
  let key = newKey()
  /** Runs of experiment cells by cell id; a finished run becomes a recorded result and leaves. */
  const runs = ref<Record<string, CellRun>>({})
  const dirty = computed(() => notebook.value !== null && JSON.stringify(notebook.value) !== savedJson.value)

  async function loadRecent(): Promise<void> {
    try {
      recent.value = await lab.notebookRecent()
    } catch (e) {
      error.value = toLabError(e).message
    }
  }

  function show(nb: Notebook | null, file: string | null, rev: string | null): void {
    notebook.value = nb
    path.value = file
    revision.value = rev
    savedJson.value = nb ? JSON.stringify(nb) : ''
    conflict.value = null
  }

  async function create(): Promise<void> {
    busy.value = true
    try {
      const r = await lab.notebookNew()
      show(r.notebook, null, null)
      status.value = {}
      problems.value = {}
      migratedFrom.value = null
      issues.value = []
      error.value = null
    } catch (e) {
      error.value = toLabError(e).message
    } finally {
      busy.value = false
    }
  }

  /** Opens a notebook; a file that does not load is reported with its problems and not shown. */
  async function open(file: string): Promise<boolean> {
    busy.value = true
    try {
      const doc = await lab.notebookOpen({ path: file })
      issues.value = [...doc.issues]
      if (!doc.notebook) {
        error.value = `${doc.path} did not load; the file was not changed.`
        return false
      }
      show(doc.notebook, doc.path, doc.revision)
      status.value = doc.status
      problems.value = doc.problems
      migratedFrom.value = doc.migratedFrom
      error.value = null
      await loadRecent()
      return true
    } catch (e) {
      error.value = `Cannot open ${file}: ${toLabError(e).message}`
      return false
    } finally {
      busy.value = false
    }
  }

  /**
   * Saves to `target` (Save As) or to the notebook's file. With `force`, a file changed on disk
   * since it was opened is overwritten (the user said so); without it, the conflict is reported.
   */
  async function save(target?: string, force = false): Promise<boolean> {
    const nb = notebook.value
    const file = target ?? path.value
    if (!nb || !file) return false
    busy.value = true
    try {
      const expectedRevision = file === path.value ? revision.value : null
      const r = await lab.notebookSave({ path: file, notebook: nb, expectedRevision, force })
      const moved = r.path !== path.value
      show(nb, r.path, r.revision)
      // Scenario paths are relative to the notebook: in another folder they may mean other files.
      if (moved) void refreshStatus()
      migratedFrom.value = null
      await dropRecovery(key)
      error.value = null
      await loadRecent()
      return true
    } catch (e) {
      const msg = toLabError(e).message
      if (msg.startsWith('conflict:')) conflict.value = msg.replace(/^conflict:\s*/, '')
      else error.value = `Cannot save ${file}: ${msg}`
      return false
    } finally {
      busy.value = false
    }
  }

  /** Replaces the notebook in memory (the view edits through this, so `dirty` follows). */
  function update(nb: Notebook): void {
    notebook.value = nb
  }

  /**
   * Replaces one experiment cell (its recipe, scenario or title edited) and asks the services
   * whether its recorded results still match: an edited recipe makes them stale-recipe, and
   * undoing the edit makes them current again.
   */
  async function updateCell(cell: ExperimentCell): Promise<void> {
    const nb = notebook.value
    if (!nb) return
    notebook.value = { ...nb, cells: nb.cells.map((c) => (c.id === cell.id ? cell : c)) }
    status.value = { ...status.value, [cell.id]: [] }
    await refreshStatus()
  }

  /** Set when Save needs a path and the host has no native dialog: the view shows its path field. */
  const askingSaveAs = ref(false)

  /**
   * Save as the Save button and Ctrl+S on the Notebook tab do it: to the notebook's file, or,
   * for a notebook never saved, to a path from the native dialog (desktop) or the view's field.
   */
  async function saveOrAsk(nativeDialogs: boolean): Promise<boolean> {
    if (!notebook.value) return false
    if (path.value) return save()
    if (nativeDialogs) {
      const p = await pickPath('save', 'notebook.mnlab.yaml')
      return p ? save(p) : false
    }
    askingSaveAs.value = true
    return false
  }

  /** A native open/save dialog for a notebook (Electron); null when cancelled or when the host has none. */
  async function pickPath(purpose: 'open' | 'save', suggestedName: string | null): Promise<string | null> {
    try {
      return (await lab.pickFile({ purpose, kind: 'notebook', suggestedName }))?.path ?? null
    } catch (e) {
      error.value = toLabError(e).message
      return null
    }
  }

  /** Problems in scenario text at line:column (the services parse it), for an inline scenario being edited. */
  function validateScenario(text: string): Promise<ValidationIssue[]> {
    return lab.validate({ text, file: null })
  }

  /** Recomputes every result's status for the notebook as it is now (the latest answer wins). */
  let statusAsked = 0
  async function refreshStatus(): Promise<void> {
    const nb = notebook.value
    if (!nb) return
    const asked = ++statusAsked
    try {
      const r = await lab.notebookStatus({ notebookPath: path.value, notebook: nb })
      if (asked !== statusAsked) return
      if (notebook.value !== nb) {
        // Edited or run meanwhile: this answer is about an older notebook.
        void refreshStatus()
        return
      }
      status.value = r.status
      problems.value = r.problems
    } catch (e) {
      if (asked === statusAsked) error.value = `Cannot check the results: ${toLabError(e).message}`
    }
  }

  let autosaveTimer: ReturnType<typeof setTimeout> | null = null
  async function autosaveNow(): Promise<void> {
    autosaveTimer = null
    const nb = notebook.value
    if (!nb || !dirty.value) return
    if (busy.value) {
      // A save or open is under way: try again once it is done.
      autosaveTimer = setTimeout(() => void autosaveNow(), AUTOSAVE_DELAY_MS)
      return
    }
    try {
      await lab.notebookAutosave({ key, path: path.value, notebook: nb })
      // Saved or closed meanwhile: the copy is not needed.
      if (!dirty.value) await dropRecovery(key)
    } catch (e) {
      error.value = `Autosave failed: ${toLabError(e).message}`
    }
  }
  // Every change to an unsaved notebook is autosaved a moment later (not on every keystroke).
  watch(notebook, () => {
    if (dirty.value && autosaveTimer === null)
      autosaveTimer = setTimeout(() => void autosaveNow(), AUTOSAVE_DELAY_MS)
  })

  async function dropRecovery(k: string): Promise<void> {
    try {
      await lab.notebookDiscardRecovery({ key: k })
    } catch {
      // Nothing to discard is fine.
    }
  }

  async function loadRecoverable(): Promise<void> {
    try {
      recoverable.value = await lab.notebookRecoverable()
    } catch (e) {
      error.value = toLabError(e).message
    }
  }

  /**
   * Shows a recovery copy as an unsaved notebook. With a file, the file is opened first for its
   * revision (so a save still notices someone else's change); the copy's results are then checked.
   */
  async function recover(entry: RecoveryEntry): Promise<void> {
    if (!entry.notebook) return
    if (entry.path !== null) {
      if (!(await open(entry.path))) return
    } else {
      show(null, null, null)
      status.value = {}
    }
    notebook.value = entry.notebook
    status.value = {}
    await refreshStatus()
    key = entry.key
    recoverable.value = recoverable.value.filter((e) => e.key !== entry.key)
  }

  async function discardRecoverable(entry: RecoveryEntry): Promise<void> {
    await dropRecovery(entry.key)
    recoverable.value = recoverable.value.filter((e) => e.key !== entry.key)
  }

  let unsubscribe: (() => void) | null = null
  /** Events that beat notebookRunCell's reply, by run id. */
  const early = new Map<RunId, RunEvent[]>()

  function cellOf(runId: RunId): string | null {
    for (const [id, r] of Object.entries(runs.value)) if (r.runId === runId) return id
    return null
  }

  function handle(e: RunEvent): void {
    const cellId = cellOf(e.runId)
    if (cellId === null) {
      const pending = Object.values(runs.value).some((r) => r.runId === null && r.state === 'running')
      if (pending) early.set(e.runId, [...(early.get(e.runId) ?? []), e])
      return
    }
    const run = runs.value[cellId]!
    const rest = { ...runs.value }
    switch (e.kind) {
      case 'progress':
        runs.value = { ...rest, [cellId]: { ...run, elapsedMs: e.elapsedMs } }
        break
      case 'synthesis-progress':
        runs.value = { ...rest, [cellId]: { ...run, elapsedMs: e.progress.elapsedMs } }
        break
      case 'synthesis-finished': {
        delete rest[cellId]
        runs.value = rest
        const nb = notebook.value
        if (!nb || run.recipeHash === null) return
        const result = recordedSynthesis(e.result, run.recipeHash, new Date(), false)
        notebook.value = {
          ...nb,
          cells: nb.cells.map((c) =>
            c.id === cellId && c.kind === 'synthesis' ? { ...c, results: [...c.results, result] } : c,
          ),
        }
        status.value = { ...status.value, [cellId]: [...(status.value[cellId] ?? []), 'current'] }
        break
      }
      case 'failed':
        runs.value = { ...rest, [cellId]: { ...run, state: 'failed', message: e.message } }
        break
      case 'cancelled':
        runs.value = { ...rest, [cellId]: { ...run, state: 'cancelled', message: 'cancelled' } }
        break
      case 'finished': {
        delete rest[cellId]
        runs.value = rest
        const nb = notebook.value
        if (!nb || run.recipeHash === null) return
        const result = recordedResult(e.result, run.recipeHash, new Date(), false)
        notebook.value = {
          ...nb,
          cells: nb.cells.map((c) =>
            c.id === cellId && c.kind === 'experiment' ? { ...c, results: [...c.results, result] } : c,
          ),
        }
        // Recorded just now from this recipe by this engine, through the services' hash: current.
        status.value = { ...status.value, [cellId]: [...(status.value[cellId] ?? []), 'current'] }
        break
      }
    }
  }

  /** Runs one experiment cell with its recipe; the result is appended to the cell (unsaved). */
  async function runCell(cellId: string): Promise<void> {
    const nb = notebook.value
    if (!nb || runs.value[cellId]?.state === 'running') return
    unsubscribe ??= lab.onDidRunEvent(handle)
    runs.value = {
      ...runs.value,
      [cellId]: { runId: null, recipeHash: null, state: 'running', message: null, elapsedMs: 0 },
    }
    try {
      const r = await lab.notebookRunCell({ notebookPath: path.value, cellId, notebook: nb })
      runs.value = {
        ...runs.value,
        [cellId]: { ...runs.value[cellId]!, runId: r.runId, recipeHash: r.recipeHash },
      }
      const pending = early.get(r.runId) ?? []
      early.clear()
      for (const e of pending) handle(e)
    } catch (e) {
      runs.value = {
        ...runs.value,
        [cellId]: { ...runs.value[cellId]!, state: 'failed', message: toLabError(e).message },
      }
    }
  }

  async function cancelCell(cellId: string): Promise<void> {
    const r = runs.value[cellId]
    if (r?.runId == null || r.state !== 'running') return
    const synthesis = notebook.value?.cells.find((c) => c.id === cellId)?.kind === 'synthesis'
    await (synthesis ? lab.cancelSynthesis({ runId: r.runId }) : lab.cancelRun({ runId: r.runId }))
  }

  /**
   * The names among `defs` the notebook's `policies:` defines with other sites (a preset in a
   * list stands for its sites, as in a scenario).
   */
  function policyClashes(defs: Readonly<Record<string, readonly string[]>>): string[] {
    const engine = useEngineStore()
    const named = engine.info?.namedSites ?? {}
    const order = engine.info?.sites?.map((s) => s.name) ?? []
    const have = notebook.value?.policies ?? {}
    return Object.entries(defs)
      .filter(([n, list]) => {
        const mine = have[n]
        return (
          mine !== undefined &&
          expandSites(mine, named, order).join(',') !== expandSites(list, named, order).join(',')
        )
      })
      .map(([n]) => n)
  }

  /**
   * Adds policy definitions (the placements an experiment runs) to the notebook's `policies:`,
   * so the file says what its recipes name. A name it already defines is left as it is (check
   * policyClashes first). False when no notebook is open.
   */
  function definePolicies(defs: Readonly<Record<string, readonly string[]>>): boolean {
    const nb = notebook.value
    if (!nb) return false
    const have = nb.policies ?? {}
    const add = Object.entries(defs).filter(([n]) => have[n] === undefined)
    if (add.length > 0)
      notebook.value = {
        ...nb,
        policies: { ...have, ...Object.fromEntries(add.map(([n, l]) => [n, [...l]])) },
      }
    return true
  }

  /**
   * Appends an experiment cell with no results yet: the scenario inline (so the notebook stays
   * self-contained) and the recipe as given; `defs` (the placements it names) go into the
   * notebook's `policies:`. Returns the new cell's id.
   */
  function addExperiment(
    title: string,
    scenarioText: string,
    recipe: Recipe,
    defs: Readonly<Record<string, readonly string[]>> = {},
  ): string | null {
    definePolicies(defs)
    return append((id) => ({
      kind: 'experiment',
      id,
      title,
      scenario: { inline: scenarioText },
      recipe,
      results: [],
    }))
  }

  /**
   * Appends a synthesis cell (the Synthesis view's search): its recipe names scenario files
   * relative to the notebook; `defs` (the placements it shows) go into the notebook's
   * `policies:`. With `record`, a finished search's result is recorded in it, under the recipe
   * hash the services compute (the renderer cannot hash) over the files as the search read them
   * (`record.searched`: each recipe scenario with its text's sha256 when the search started), so
   * a file edited since makes the result stale; when they cannot (the files do not read), the
   * cell keeps no result and `error` says why. Returns the new cell's id.
   */
  async function addSynthesis(
    title: string,
    recipe: SynthesisRecipe,
    defs: Readonly<Record<string, readonly string[]>> = {},
    record: {
      readonly result: (recipeHash: string) => RecordedSynthesis
      readonly searched: Readonly<Record<string, string>>
    } | null = null,
  ): Promise<string | null> {
    definePolicies(defs)
    const id = append((cellId) => ({ kind: 'synthesis', id: cellId, title, recipe, results: [] }))
    const nb = notebook.value
    if (id === null || !nb || record === null) return id
    try {
      const r = await lab.notebookStatus({
        notebookPath: path.value,
        notebook: nb,
        searched: { [id]: { ...record.searched } },
      })
      const hash = r.hashes?.[id] ?? null
      if (hash === null) {
        error.value = `Added ${id} without its result: ${r.problems[id] ?? 'the services gave no recipe hash'}`
        return id
      }
      const result = record.result(hash)
      const now = notebook.value
      if (!now) return id
      notebook.value = {
        ...now,
        cells: now.cells.map((c) =>
          c.id === id && c.kind === 'synthesis' ? { ...c, results: [...c.results, result] } : c,
        ),
      }
      void refreshStatus()
    } catch (e) {
      error.value = `Added ${id} without its result: ${toLabError(e).message}`
    }
    return id
  }

  /** Appends an empty note cell. Returns its id. */
  function addNote(): string | null {
    return append((id) => ({ kind: 'note', id, markdown: '' }))
  }

  /** Appends a cell under the first free id `<kind>-N`. */
  function append(make: (id: string) => Cell): string | null {
    const nb = notebook.value
    if (!nb) return null
    const kind = make('x').kind
    const ids = new Set(nb.cells.map((c) => c.id))
    let k = nb.cells.filter((c) => c.kind === kind).length + 1
    while (ids.has(`${kind}-${k}`)) k++
    const cell = make(`${kind}-${k}`)
    notebook.value = { ...nb, cells: [...nb.cells, cell] }
    return cell.id
  }

  /** Pins or unpins one recorded result; the latest pinned result is the cell's reference. */
  function togglePin(cellId: string, index: number): void {
    const nb = notebook.value
    if (!nb) return
    notebook.value = {
      ...nb,
      cells: nb.cells.map((c) =>
        c.id === cellId && c.kind === 'experiment'
          ? { ...c, results: c.results.map((r, i) => (i === index ? { ...r, pinned: !r.pinned } : r)) }
          : c.id === cellId && c.kind === 'synthesis'
            ? { ...c, results: c.results.map((r, i) => (i === index ? { ...r, pinned: !r.pinned } : r)) }
            : c,
      ),
    }
  }

  /** The notebook as a self-contained Markdown or HTML report (the services render it). */
  function exportText(nb: Notebook, format: 'markdown' | 'html'): Promise<string> {
    return lab.notebookExport({ notebook: nb, format })
  }

  function close(): void {
    if (autosaveTimer !== null) clearTimeout(autosaveTimer)
    autosaveTimer = null
    void dropRecovery(key)
    key = newKey()
    runs.value = {}
    show(null, null, null)
    status.value = {}
    problems.value = {}
    issues.value = []
    error.value = null
    migratedFrom.value = null
  }

  return {
    notebook,
    path,
    revision,
    status,
    problems,
    migratedFrom,
    issues,
    recent,
    error,
    conflict,
    busy,
    runs,
    recoverable,
    dirty,
    loadRecoverable,
    recover,
    discardRecoverable,
    runCell,
    cancelCell,
    exportText,
    togglePin,
    addExperiment,
    addSynthesis,
    policyClashes,
    definePolicies,
    addNote,
    loadRecent,
    create,
    open,
    save,
    saveOrAsk,
    askingSaveAs,
    update,
    updateCell,
    refreshStatus,
    validateScenario,
    pickPath,
    close,
  }
})
