/**
 * The synthesis view's state (issue 14): which scenarios and candidate sites to search over and
 * for which objective, the search in progress (its events arrive as run events of its id), and
 * its result. A placement of the result opens in the site grid; a certificate's counterexample
 * opens in the trace panes, the placement without the site beside the minimal one.
 */
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import type { PolicyReplay, RunEvent, RunId, SynthesizeRequest } from '../../../src-main/api/labApi'
import type {
  SynthesisResult,
  SynthMinimal,
  SynthObjective,
  SynthProgress,
} from '../../../src-main/engine/synthesisResult'
import type { SynthesisRecipe } from '../../../src-main/api/notebook'
import { recordedSynthesis } from '../../../src-main/api/record'
import { lab, toLabError } from '../lab'
import { dirOf, relativePath, sitesKey, synthRows } from '../logic/synthesis'
import { useEngineStore } from './engineStore'
import { useNotebookStore } from './notebookStore'
import { usePlacementStore } from './placementStore'
import { useScenarioStore } from './scenarioStore'
import { useTraceStore, type TraceSource } from './traceStore'

export type SynthStatus = 'idle' | 'starting' | 'running' | 'finished' | 'failed' | 'cancelled'

/** The editor's scenario, as the scenario list's entry for it. */
export const EDITOR = '(the editor)'

/** What a search was asked, as the form held it: a notebook cell records it with the result. */
interface Asked {
  readonly scenarios: readonly string[]
  readonly candidates: readonly string[]
  readonly objective: SynthObjective
  readonly maxStates: number
  readonly timeoutS: number
  readonly shown: ReadonlyArray<{ readonly name: string; readonly sites: readonly string[] }>
}

export const useSynthesisStore = defineStore('synthesis', () => {
  const placements = usePlacementStore()
  const scenarioStore = useScenarioStore()
  const traces = useTraceStore()
  const notebooks = useNotebookStore()
  const engine = useEngineStore()

  /** Scenario paths (relative to the scenarios folder), or EDITOR for the editor's text. */
  const scenarios = ref<string[]>([])
  /** Candidate sites; empty means every site. */
  const candidates = ref<string[]>([])
  const objective = ref<SynthObjective>('sim_ns')
  const maxStates = ref(2_000_000)
  /** Seconds for the whole search; 0 means none. */
  const timeoutS = ref(300)
  /** Show the grid's placements beside the presets. */
  const withPlacements = ref(true)

  const status = ref<SynthStatus>('idle')
  const runId = ref<RunId | null>(null)
  const progress = shallowRef<SynthProgress | null>(null)
  /** Explorations finished so far (each a synthesis-evaluation event). */
  const evaluations = ref(0)
  const result = shallowRef<SynthesisResult | null>(null)
  /** The result's scenarios' text hashes as the services read them when the search started. */
  let resultHashes: Readonly<Record<string, string>> = {}
  const elapsedMs = ref(0)
  const error = ref<string | null>(null)
  const cancelling = ref(false)
  const active = computed(() => status.value === 'starting' || status.value === 'running')
  /**
   * The scenarios as the request gave them: the result lists them in this order (no folders are
   * sent, so one entry each), which is how a certificate finds the editor's text it was sent.
   */
  let sent: SynthesizeRequest['scenarios'] = []
  /** The grid's names of the placements the request showed, by their sites. */
  const yours = ref<Map<string, string>>(new Map())

  const rows = computed(() => (result.value ? synthRows(result.value, placements.presets, yours.value) : []))

  const problems = computed(() => {
    const out: string[] = []
    if (scenarios.value.length === 0) out.push('Pick at least one scenario.')
    if (!Number.isInteger(maxStates.value) || maxStates.value < 1) out.push('Max states must be at least 1.')
    if (!(timeoutS.value >= 0)) out.push('Timeout must be 0 (none) or more seconds.')
    return out
  })

  function toggleScenario(path: string, on: boolean): void {
    const has = scenarios.value.includes(path)
    if (on && !has) scenarios.value = [...scenarios.value, path]
    if (!on && has) scenarios.value = scenarios.value.filter((p) => p !== path)
  }

  function toggleCandidate(site: string, on: boolean): void {
    const all = placements.siteNames
    const cur = candidates.value.length === 0 ? all : candidates.value
    const next = on ? [...new Set([...cur, site])] : cur.filter((s) => s !== site)
    // Every site again is the default: say so by the empty list.
    candidates.value = next.length === all.length ? [] : all.filter((s) => next.includes(s))
  }

  function isCandidate(site: string): boolean {
    return candidates.value.length === 0 || candidates.value.includes(site)
  }

  /** The form as it is now. */
  function asked(): Asked {
    return {
      scenarios: [...scenarios.value],
      candidates: [...candidates.value],
      objective: objective.value,
      maxStates: maxStates.value,
      timeoutS: timeoutS.value,
      shown: (withPlacements.value ? placements.placements : []).map((p) => ({
        name: p.name,
        sites: [...p.sites],
      })),
    }
  }

  /** What the search whose result is shown was asked. */
  let searched: Asked | null = null

  /** The recipe to record: the shown result's when it finished, else the form's. */
  const recorded = computed<Asked>(() =>
    status.value === 'finished' && result.value !== null && searched !== null ? searched : asked(),
  )

  /**
   * Why "Add to notebook" cannot add the search now, or null when it can: a synthesis cell names
   * scenario files relative to the notebook, so the notebook needs a file and the editor's
   * unsaved text (not a file) cannot be in the search.
   */
  const notebookBlock = computed<string | null>(() => {
    if (!notebooks.notebook) return 'Open or create a notebook first (Notebook tab).'
    const a = recorded.value
    if (a.scenarios.includes(EDITOR))
      return "The search includes the editor's unsaved text, which is not a file: a notebook cell names scenario files. Save it as a file and pick that instead."
    if (a.scenarios.length === 0) return 'Pick at least one scenario.'
    if (!notebooks.path)
      return 'Save the notebook first: a synthesis cell names its scenario files relative to it.'
    if (!engine.info?.scenariosDir) return 'The lab services do not say where the scenarios folder is.'
    if (a.scenarios.some((p) => toNotebook(p) === null))
      return 'A scenario has no path relative to the notebook (another drive).'
    return null
  })

  /** A scenario path (relative to the scenarios folder) relative to the notebook's folder. */
  function toNotebook(p: string): string | null {
    const root = engine.info?.scenariosDir
    const nb = notebooks.path
    if (!root || !nb) return null
    return relativePath(dirOf(nb), `${root.replace(/[\\/]+$/, '')}/${p}`)
  }

  const notebookNote = ref<string | null>(null)

  /**
   * Appends a synthesis cell to the open notebook with the recipe (scenario files relative to the
   * notebook, candidate sites, objective, shown placements, budgets) and, when a finished result
   * is shown, that result. The notebook is then dirty and saves as usual.
   */
  async function addToNotebook(): Promise<string | null> {
    const why = notebookBlock.value
    if (why !== null) {
      notebookNote.value = why
      return null
    }
    const a = recorded.value
    const defs = Object.fromEntries(a.shown.map((p) => [p.name, [...p.sites]]))
    const clashes = notebooks.policyClashes(defs)
    if (clashes.length > 0) {
      notebookNote.value = `The notebook defines ${clashes.join(', ')} with other sites: rename the placement${clashes.length > 1 ? 's' : ''} in the site grid, or edit the notebook's.`
      return null
    }
    const files = a.scenarios.map((p) => toNotebook(p)!)
    const recipe: SynthesisRecipe = {
      scenarios: files,
      sites: a.candidates.length > 0 ? [...a.candidates] : null,
      objective: a.objective,
      policies: a.shown.map((p) => p.name),
      max_states: a.maxStates,
      timeout_ms: a.timeoutS > 0 ? Math.round(a.timeoutS * 1000) : null,
    }
    const r = status.value === 'finished' && a === searched ? result.value : null
    // The result names scenarios as they were sent (relative to the scenarios folder, in order);
    // the services hashed each one's text when the search started: the result is of those texts.
    const ids = new Map<string, string>()
    const searchedHashes: Record<string, string> = {}
    r?.scenarios.forEach((sc, i) => {
      const given = sent[i]
      const rel = given && 'path' in given ? toNotebook(given.path) : null
      if (rel === null) return
      ids.set(sc.id, rel)
      const h = resultHashes[sc.id]
      if (h !== undefined) searchedHashes[rel] = h
    })
    const rename = (id: string): string => ids.get(id) ?? id
    const record =
      r === null
        ? null
        : {
            searched: searchedHashes,
            result: (hash: string) =>
              recordedSynthesis(
                {
                  ...r,
                  scenarios: r.scenarios.map((sc) => ({ ...sc, id: rename(sc.id) })),
                  minimal: r.minimal.map((m) => ({
                    ...m,
                    needed: m.needed.map((n) => ({ ...n, scenario: rename(n.scenario) })),
                  })),
                },
                hash,
                new Date(),
                false,
              ),
          }
    const title = `Synthesis (${a.objective}) over ${files.length === 1 ? files[0] : `${files.length} scenarios`}`
    const id = await notebooks.addSynthesis(title, recipe, defs, record)
    notebookNote.value =
      id === null ? 'No notebook is open.' : `Added ${id}${record ? ' with its result' : ''} to the notebook.`
    return id
  }

  function request(): SynthesizeRequest {
    const editor = scenarios.value.includes(EDITOR)
    // The editor's text stands for its own file: the file is not sent a second time.
    const list: SynthesizeRequest['scenarios'] = scenarios.value
      .filter((p) => !(editor && p === scenarioStore.file))
      .map((p) => (p === EDITOR ? { text: scenarioStore.text, file: scenarioStore.file } : { path: p }))
    sent = list
    const shown = withPlacements.value ? placements.placements : []
    yours.value = new Map(shown.map((p) => [sitesKey(p.sites), p.name]))
    return {
      scenarios: list,
      ...(candidates.value.length > 0 ? { sites: [...candidates.value] } : {}),
      objective: objective.value,
      // The grid's placements by name, with their sites: the result shows them under those names.
      ...(shown.length > 0
        ? {
            policies: shown.map((p) => p.name),
            policyDefs: Object.fromEntries(shown.map((p) => [p.name, [...p.sites]])),
          }
        : {}),
      maxStates: maxStates.value,
      timeoutMs: timeoutS.value > 0 ? Math.round(timeoutS.value * 1000) : null,
    }
  }

  let early: RunEvent[] = []
  let unsubscribe: (() => void) | null = null

  function handle(e: RunEvent): void {
    if (status.value === 'starting' && runId.value === null) {
      early.push(e) // the event beat startSynthesis's reply
      return
    }
    if (e.runId !== runId.value) return
    switch (e.kind) {
      case 'synthesis-progress':
        progress.value = e.progress
        elapsedMs.value = e.progress.elapsedMs
        status.value = 'running'
        break
      case 'synthesis-evaluation':
        evaluations.value++
        break
      case 'synthesis-finished':
        result.value = e.result
        resultHashes = e.scenarioHashes
        elapsedMs.value = e.elapsedMs
        status.value = 'finished'
        cancelling.value = false
        break
      case 'failed':
        error.value = e.message
        status.value = 'failed'
        cancelling.value = false
        break
      case 'cancelled':
        status.value = 'cancelled'
        cancelling.value = false
        break
    }
  }

  function listen(): void {
    unsubscribe ??= lab.onDidRunEvent(handle)
  }

  async function start(): Promise<void> {
    if (active.value) return
    listen()
    error.value = null
    if (problems.value.length > 0) {
      error.value = problems.value.join(' ')
      status.value = 'failed'
      return
    }
    const req = request()
    searched = asked()
    progress.value = null
    evaluations.value = 0
    elapsedMs.value = 0
    cancelling.value = false
    runId.value = null
    early = []
    status.value = 'starting'
    try {
      runId.value = await lab.startSynthesis(req)
      if (status.value === 'starting') status.value = 'running'
      const pending = early
      early = []
      for (const e of pending) handle(e)
      // Cancel was pressed while the services were still reading the scenarios.
      if (cancelling.value && active.value) await sendCancel()
    } catch (e) {
      error.value = toLabError(e).message
      status.value = 'failed'
    }
  }

  /**
   * Stops the search. Before startSynthesis has answered (the services read and check every
   * scenario first) there is no id to cancel yet: the cancel is sent as soon as there is.
   */
  async function cancel(): Promise<void> {
    if (!active.value) return
    cancelling.value = true
    if (runId.value !== null) await sendCancel()
  }

  async function sendCancel(): Promise<void> {
    try {
      await lab.cancelSynthesis({ runId: runId.value! })
    } catch (e) {
      error.value = toLabError(e).message
      cancelling.value = false
    }
  }

  /** Opens a placement of the result in the site grid (under the grid's name when it has one). */
  function openPlacement(sites: readonly string[]): string {
    return placements.reveal(sites, 'synth')
  }

  /** The text of a scenario of the result: the editor's as it was sent, else the file's. */
  async function scenarioText(id: string): Promise<{ text: string; file: string | null }> {
    const i = result.value?.scenarios.findIndex((s) => s.id === id) ?? -1
    const given = sent[i]
    if (given && 'text' in given) return { text: given.text, file: given.file }
    const r = await lab.readScenario({ path: given && 'path' in given ? given.path : id })
    return { text: r.text, file: r.path }
  }

  const opening = ref(false)
  let opened = 0

  /**
   * A certificate's counterexample in the trace panes: its schedule replayed under the placement
   * without the site (left: it breaks) and under the minimal placement (right: it holds there),
   * aligned step by step with their differences, as a compare shows them.
   */
  async function openCertificate(m: SynthMinimal, index: number): Promise<void> {
    const n = m.needed[index]
    if (!n || opening.value) return
    opening.value = true
    error.value = null
    try {
      const { text, file } = await scenarioText(n.scenario)
      const schedule = [...n.counterexample.schedule, ...(n.counterexample.cycle ?? [])]
      const res = await lab.compareSchedule({
        text,
        file,
        policies: [n.without, m.placement.name],
        schedule,
      })
      const k = ++opened
      const made = res.replays.map((r) => certificateSource(k, n.site, r, res.schedule))
      traces.addSources(made)
      traces.show('left', made[0] ?? null)
      traces.show('right', made[1] ?? null)
      if (!traces.stepDifference(1)) {
        const v = made[0]?.violationStep
        if (v !== null && v !== undefined) traces.selectStep('left', v)
      }
    } catch (e) {
      error.value = `Certificate: ${toLabError(e).message}`
    } finally {
      opening.value = false
    }
  }

  function certificateSource(
    k: number,
    site: string,
    r: PolicyReplay,
    schedule: readonly string[],
  ): TraceSource {
    const v = r.violations[0] ?? null
    return {
      key: `synth:${k}:${r.policy}`,
      label: `certificate #${k} ${site}: ${r.policy} (${v?.invariant ?? 'holds'})`,
      policy: r.policy,
      invariant: v?.invariant ?? null,
      records: r.records,
      violationStep: v?.step ?? null,
      cycleFrom: null,
      why: r.why,
      schedule,
      culprits: r.culprits,
      positions: r.positions,
      skipped: r.skipped,
    }
  }

  function clear(): void {
    result.value = null
    resultHashes = {}
    progress.value = null
    error.value = null
    if (!active.value) status.value = 'idle'
  }

  return {
    scenarios,
    candidates,
    objective,
    maxStates,
    timeoutS,
    withPlacements,
    notebookBlock,
    notebookNote,
    addToNotebook,
    status,
    runId,
    progress,
    evaluations,
    result,
    elapsedMs,
    error,
    cancelling,
    active,
    rows,
    yours,
    problems,
    opening,
    toggleScenario,
    toggleCandidate,
    isCandidate,
    request,
    handle,
    listen,
    start,
    cancel,
    openPlacement,
    openCertificate,
    clear,
  }
})
