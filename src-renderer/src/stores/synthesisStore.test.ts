import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { EngineInfo, PolicyReplay, RunEvent, SynthesizeRequest } from '../../../src-main/api/labApi'
import type { Site } from '../../../src-main/engine/policy'
import type { SynthCell, SynthesisResult, SynthPlacement } from '../../../src-main/engine/synthesisResult'
import { cellTitle, certificateLines, chartData, labelOf, synthRows } from '../logic/synthesis'
import { fake, stubLocalStorage } from './fakeLab'

vi.mock('../lab', () => import('./fakeLab'))
const stored = stubLocalStorage()

const { useSynthesisStore, EDITOR } = await import('./synthesisStore')
const { usePlacementStore } = await import('./placementStore')
const { useEngineStore } = await import('./engineStore')
const { useScenarioStore } = await import('./scenarioStore')
const { useTraceStore } = await import('./traceStore')
const { useNotebookStore } = await import('./notebookStore')

const site = (name: string, group: string) => ({ name, group, kernel: 'k', doc: 'd' })
const INFO: EngineInfo = {
  version: 't',
  presets: ['start-end', 'arch-hook'].map((name) => ({ name, doc: name })),
  variants: [],
  sites: [
    site('invalidate_range_start', 'start-end'),
    site('invalidate_range_end', 'start-end'),
    site('flush_tlb_page', 'arch-hook'),
    site('flush_tlb_range', 'arch-hook'),
  ],
  namedSites: {
    'start-end': ['invalidate_range_start', 'invalidate_range_end'],
    'arch-hook': ['flush_tlb_page', 'flush_tlb_range'],
  },
  invariants: ['use-after-free'],
  scenarioSchema: {},
  template: 'title: T\n',
  nativeDialogs: false,
  scenariosDir: '/lab/scenarios',
}

const cell = (
  verdict: SynthCell['verdict'],
  cost: number,
  how: SynthCell['how'] = 'explored',
): SynthCell => ({
  verdict,
  how,
  from: how === 'unknown' ? null : [],
  invariant: verdict === 'violated' ? 'use-after-free' : null,
  cost,
})
const placement = (name: string, sites: Site[], cells: SynthCell[]): SynthPlacement => ({
  name,
  sites,
  held: cells.filter((c) => c.verdict === 'holds').length,
  cost: cells.reduce((a, c) => a + c.cost, 0),
  cells,
})
const RANGE = placement(
  'sites:flush_tlb_range',
  ['flush_tlb_range'],
  [cell('holds', 100), cell('holds', 50, 'inferred')],
)
const AH = placement(
  'arch-hook',
  ['flush_tlb_page', 'flush_tlb_range'],
  [cell('holds', 200), cell('holds', 90)],
)
const SE = placement(
  'start-end',
  ['invalidate_range_start', 'invalidate_range_end'],
  [cell('violated', 10), cell('holds', 20)],
)
const MINE = placement(
  'sites:flush_tlb_page',
  ['flush_tlb_page'],
  [cell('violated', 5), cell('unknown', 5, 'unknown')],
)
const RESULT: SynthesisResult = {
  settings: { objective: 'sim_ns', candidates: ['flush_tlb_page', 'flush_tlb_range'], maxStates: 1000 },
  scenarios: [
    {
      id: 'munmap-uaf.ats.yaml',
      title: 'munmap',
      file: '/s/munmap-uaf.ats.yaml',
      reached: ['flush_tlb_range'],
      monotone: true,
      full: 'holds',
      explored: 2,
      inferred: 0,
      undecided: 0,
    },
    {
      id: 'x.yaml',
      title: 'x',
      file: null,
      reached: [],
      monotone: false,
      full: 'holds',
      explored: 1,
      inferred: 1,
      undecided: 0,
    },
  ],
  scope: ['munmap-uaf.ats.yaml', 'x.yaml'],
  excluded: [],
  relevant: ['flush_tlb_range'],
  minimal: [
    {
      placement: RANGE,
      needed: [
        {
          site: 'flush_tlb_range',
          without: 'sites:',
          scenario: 'munmap-uaf.ats.yaml',
          counterexample: {
            invariant: 'use-after-free',
            schedule: ['C0', 'D0'],
            cycle: null,
            why: 'D0 reads a freed page',
            replay: 'mnlab replay ...',
          },
        },
      ],
      leftOut: [
        { site: 'flush_tlb_page', evidence: 'not-needed', scenarios: ['munmap-uaf.ats.yaml'] },
        { site: 'invalidate_range_start', evidence: 'not-candidate', scenarios: [] },
        { site: 'invalidate_range_end', evidence: 'never-reached', scenarios: [] },
      ],
    },
  ],
  front: [
    { held: 2, cost: 150, placements: [RANGE], more: 0 },
    { held: 1, cost: 10, placements: [MINE, SE], more: 2 },
  ],
  placements: [SE, AH, MINE],
  search: {
    pairs: 8,
    reachedPairs: 3,
    explored: 3,
    pruned: 1,
    prunedHolds: 1,
    prunedViolated: 0,
    costRuns: 4,
    states: 99,
    elapsedMs: 1234,
  },
  complete: true,
  notes: [],
  engineVersion: 't',
}

beforeEach(async () => {
  stored.clear()
  setActivePinia(createPinia())
  fake.listeners.clear()
  fake.api = { engineInfo: async () => INFO, validate: async () => [] }
  await useEngineStore().load()
})

describe('synthesis logic', () => {
  it('one row per placement: minimal, then the front, then presets and yours, under your names', () => {
    const yours = new Map([['flush_tlb_page', 'page-only']])
    const rows = synthRows(RESULT, ['start-end', 'arch-hook'], yours)
    expect(rows.map((r) => [r.label, r.kinds.join('+')])).toEqual([
      ['sites:flush_tlb_range', 'minimal+front'],
      ['page-only', 'front+yours'],
      ['start-end', 'front+preset'],
      ['arch-hook', 'preset'],
    ])
    const chart = chartData(rows, RESULT.front, yours)
    expect(chart.points).toHaveLength(4)
    expect(chart.front).toEqual([
      { x: 150, y: 2, label: 'sites:flush_tlb_range', sites: ['flush_tlb_range'] },
      { x: 10, y: 1, label: 'page-only (+3 more)', sites: ['flush_tlb_page'] },
    ])
  })
})

describe('certificates and cells', () => {
  it('a line per site: the needed one with its scenario and counterexample, the others with their evidence', () => {
    const lines = certificateLines(RESULT.minimal[0]!)
    expect(lines.map((l) => [l.site, l.kind, l.index])).toEqual([
      ['flush_tlb_range', 'needed', 0],
      ['flush_tlb_page', 'not-needed', null],
      ['invalidate_range_start', 'not-candidate', null],
      ['invalidate_range_end', 'never-reached', null],
    ])
    expect(lines[0]!.text).toBe('without it, munmap-uaf.ats breaks: use-after-free (D0 reads a freed page)')
    expect(lines[1]!.text).toBe('not needed: every scenario holds without it (reached by munmap-uaf.ats)')
  })

  it('says how a cell was decided, and names the empty placement', () => {
    const inferred = { ...cell('holds', 50, 'inferred'), from: ['flush_tlb_range'] as Site[] }
    expect(cellTitle(inferred, 'p', 'x.yaml', 'sim_ns')).toBe(
      'p on x.yaml: holds, inferred by monotonicity from {flush_tlb_range} (a subset holds); sim_ns 50',
    )
    expect(cellTitle(cell('violated', 1200), 'p', 'x.yaml', 'sim_ns')).toBe(
      'p on x.yaml: violated (use-after-free), explored; sim_ns 1,200',
    )
    expect(labelOf({ name: 'sites:', sites: [] }, new Map())).toBe('sites: (none)')
    expect(labelOf({ name: 'sites:', sites: [] }, new Map([['', 'nothing']]))).toBe('nothing')
  })
})

describe('synthesisStore', () => {
  it('sends the picked scenarios, the candidates, the objective and your placements as site sets', async () => {
    const p = usePlacementStore()
    p.create('arch-hook', 'mine')
    p.setSite('mine', 'flush_tlb_range', false)
    useScenarioStore().text = 'title: edited\n'
    useScenarioStore().file = 'munmap-uaf.ats.yaml'
    const s = useSynthesisStore()
    expect(s.problems).toEqual(['Pick at least one scenario.'])
    s.toggleScenario('munmap-uaf.ats.yaml', true)
    s.toggleScenario(EDITOR, true)
    s.toggleScenario('b.yaml', true)
    s.toggleScenario('b.yaml', false)
    s.toggleScenario('c.yaml', true)
    // Every site is the default (no `sites`); taking one out lists the others.
    expect(s.isCandidate('flush_tlb_page')).toBe(true)
    s.toggleCandidate('invalidate_range_start', false)
    expect(s.candidates).toEqual(['invalidate_range_end', 'flush_tlb_page', 'flush_tlb_range'])
    s.objective = 'secondary_invalidations'
    s.timeoutS = 0
    let sent: SynthesizeRequest | null = null
    fake.api = {
      ...fake.api,
      startSynthesis: async (req: SynthesizeRequest) => {
        sent = req
        return 's1'
      },
    }
    await s.start()
    // The editor's text stands for its file (munmap-uaf.ats.yaml is not sent twice).
    expect(sent).toEqual({
      scenarios: [{ text: 'title: edited\n', file: 'munmap-uaf.ats.yaml' }, { path: 'c.yaml' }],
      sites: ['invalidate_range_end', 'flush_tlb_page', 'flush_tlb_range'],
      objective: 'secondary_invalidations',
      policies: ['mine'],
      policyDefs: { mine: ['flush_tlb_page'] },
      maxStates: 2_000_000,
      timeoutMs: null,
    })
    s.toggleCandidate('invalidate_range_start', true)
    expect(s.candidates).toEqual([])
  })

  it('follows progress, evaluations and the result of its own id, events before the reply included', async () => {
    const s = useSynthesisStore()
    s.toggleScenario('munmap-uaf.ats.yaml', true)
    const progress = {
      phase: 'lattice' as const,
      explored: 3,
      costRuns: 0,
      pruned: 1,
      pending: 2,
      scenariosDone: 1,
      scenarios: 2,
      elapsedMs: 50,
    }
    fake.api = {
      ...fake.api,
      startSynthesis: async () => {
        fake.emit({ kind: 'synthesis-progress', runId: 's1', progress } satisfies RunEvent)
        return 's1'
      },
    }
    await s.start()
    expect(s.status).toBe('running')
    expect(s.progress).toEqual(progress)
    fake.emit({ kind: 'synthesis-progress', runId: 'other', progress: { ...progress, explored: 99 } })
    expect(s.progress!.explored).toBe(3)
    const evaluation = {
      scenario: 'munmap-uaf.ats.yaml',
      placement: 'sites:',
      sites: [],
      kind: 'verdict' as const,
      verdict: 'violated' as const,
      invariant: 'use-after-free' as const,
      costs: { sim_ns: 1, secondary_invalidations: 0 },
      states: 5,
      reached: [],
    }
    fake.emit({ kind: 'synthesis-evaluation', runId: 's1', evaluation })
    fake.emit({ kind: 'synthesis-evaluation', runId: 's1', evaluation })
    expect(s.evaluations).toBe(2)
    fake.emit({ kind: 'synthesis-finished', runId: 's1', elapsedMs: 77, result: RESULT, scenarioHashes: {} })
    expect(s.status).toBe('finished')
    expect(s.result).toBe(RESULT)
    expect(s.rows[0]!.kinds).toContain('minimal')
  })

  it('cancels and fails by run events of its id', async () => {
    const s = useSynthesisStore()
    s.toggleScenario('a.yaml', true)
    const cancelled: string[] = []
    fake.api = {
      ...fake.api,
      startSynthesis: async () => 's2',
      cancelSynthesis: async (req: { runId: string }) => void cancelled.push(req.runId),
    }
    await s.start()
    await s.cancel()
    expect(cancelled).toEqual(['s2'])
    expect(s.cancelling).toBe(true)
    fake.emit({ kind: 'cancelled', runId: 's2' })
    expect(s.status).toBe('cancelled')
    expect(s.cancelling).toBe(false)
    // Cancel before startSynthesis answers: sent as soon as the id is known.
    let answer: (id: string) => void = () => {}
    fake.api = {
      ...fake.api,
      startSynthesis: () => new Promise<string>((r) => (answer = r)),
    }
    const starting = s.start()
    expect(s.status).toBe('starting')
    await s.cancel()
    expect(cancelled).toEqual(['s2'])
    expect(s.cancelling).toBe(true)
    answer('s3')
    await starting
    expect(cancelled).toEqual(['s2', 's3'])
    fake.emit({ kind: 'cancelled', runId: 's3' })
    expect(s.status).toBe('cancelled')
    fake.api = { ...fake.api, startSynthesis: async () => Promise.reject(new Error('unknown site nope')) }
    await s.start()
    expect(s.status).toBe('failed')
    expect(s.error).toBe('unknown site nope')
  })

  it('opens a placement of the result in the grid, reusing one with the same sites', () => {
    const p = usePlacementStore()
    p.create('arch-hook', 'mine')
    const s = useSynthesisStore()
    expect(s.openPlacement(['flush_tlb_range', 'flush_tlb_page'])).toBe('mine')
    expect(s.openPlacement(['flush_tlb_range'])).toBe('synth')
    expect(p.byName('synth')!.sites).toEqual(['flush_tlb_range'])
    expect(p.active).toBe('synth')
  })

  it("opens a certificate: the schedule under the placement without the site beside the minimal one, on the scenario's text", async () => {
    const s = useSynthesisStore()
    s.toggleScenario('munmap-uaf.ats.yaml', true)
    const asked: unknown[] = []
    const replay = (policy: string, violated: boolean): PolicyReplay => ({
      policy,
      records: [],
      violations: violated ? [{ invariant: 'use-after-free', step: 1, message: 'm' } as never] : [],
      outcome: 'done',
      registers: [],
      ran: ['C0', 'D0'],
      positions: [],
      skipped: [],
      why: violated ? 'D0 reads a freed page' : 'holds on this schedule',
      culprits: [],
    })
    fake.api = {
      ...fake.api,
      startSynthesis: async () => 's3',
      readScenario: async (req: { path: string }) => ({ path: req.path, text: 'title: munmap\n' }),
      compareSchedule: async (req: { policies: string[] }) => {
        asked.push(req)
        return {
          schedule: ['C0', 'D0'],
          replays: [replay(req.policies[0]!, true), replay(req.policies[1]!, false)],
          hints: [],
          hint: null,
        }
      },
    }
    await s.start()
    fake.emit({ kind: 'synthesis-finished', runId: 's3', elapsedMs: 1, result: RESULT, scenarioHashes: {} })
    await s.openCertificate(RESULT.minimal[0]!, 0)
    expect(s.error).toBeNull()
    expect(asked).toEqual([
      {
        text: 'title: munmap\n',
        file: 'munmap-uaf.ats.yaml',
        policies: ['sites:', 'sites:flush_tlb_range'],
        schedule: ['C0', 'D0'],
      },
    ])
    const t = useTraceStore()
    expect(t.left?.policy).toBe('sites:')
    expect(t.left?.invariant).toBe('use-after-free')
    expect(t.right?.policy).toBe('sites:flush_tlb_range')
    expect(t.sources.map((x) => x.label)).toEqual([
      'certificate #1 flush_tlb_range: sites: (use-after-free)',
      'certificate #1 flush_tlb_range: sites:flush_tlb_range (holds)',
    ])
  })
})

describe('Add to notebook', () => {
  const HASH = 'a'.repeat(64)
  /** The scenarios' text hashes the services read when the search started. */
  const READ_A = 'b'.repeat(64)
  const READ_X = 'c'.repeat(64)
  const openNotebook = async (): Promise<ReturnType<typeof useNotebookStore>> => {
    const asked: unknown[] = []
    fake.api = {
      ...fake.api,
      notebookOpen: async () => ({
        path: '/lab/notebooks/n.mnlab.yaml',
        revision: 'r0',
        notebook: { format: 1, title: 'N', cells: [] },
        issues: [],
        status: {},
        problems: {},
        migratedFrom: null,
      }),
      notebookRecent: async () => [],
      notebookStatus: async (req: unknown) => {
        asked.push(req)
        return { status: {}, problems: {}, hashes: { 'synthesis-1': HASH } }
      },
      startSynthesis: async () => 's1',
    }
    const nb = useNotebookStore()
    expect(await nb.open('/lab/notebooks/n.mnlab.yaml')).toBe(true)
    expect(nb.dirty).toBe(false)
    return nb
  }

  it('needs an open notebook, and refuses the editor’s unsaved text with the reason', async () => {
    const s = useSynthesisStore()
    s.toggleScenario('munmap-uaf.ats.yaml', true)
    expect(s.notebookBlock).toMatch(/Open or create a notebook/)
    expect(await s.addToNotebook()).toBeNull()
    const nb = await openNotebook()
    expect(s.notebookBlock).toBeNull()
    s.toggleScenario(EDITOR, true)
    expect(s.notebookBlock).toMatch(/editor's unsaved text, which is not a file/)
    expect(await s.addToNotebook()).toBeNull()
    expect(nb.notebook!.cells).toEqual([])
    expect(nb.dirty).toBe(false)
  })

  it('appends a synthesis cell with the recipe relative to the notebook; with a finished result, that result', async () => {
    const p = usePlacementStore()
    p.create('arch-hook', 'mine')
    p.setSite('mine', 'flush_tlb_range', false)
    const nb = await openNotebook()
    const s = useSynthesisStore()
    s.toggleScenario('munmap-uaf.ats.yaml', true)
    s.toggleScenario('sub/x.yaml', true)
    s.toggleCandidate('invalidate_range_start', false)
    s.timeoutS = 0
    // Before any search: the recipe alone.
    expect(await s.addToNotebook()).toBe('synthesis-1')
    expect(nb.dirty).toBe(true)
    const first = nb.notebook!.cells[0]!
    expect(first).toMatchObject({
      kind: 'synthesis',
      id: 'synthesis-1',
      recipe: {
        scenarios: ['../scenarios/munmap-uaf.ats.yaml', '../scenarios/sub/x.yaml'],
        sites: ['invalidate_range_end', 'flush_tlb_page', 'flush_tlb_range'],
        objective: 'sim_ns',
        policies: ['mine'],
        max_states: 2_000_000,
        timeout_ms: null,
      },
      results: [],
    })
    // The placements it shows are defined in the notebook.
    expect(nb.notebook!.policies).toEqual({ mine: ['flush_tlb_page'] })

    // A finished search: its result goes in under the hash the services computed.
    await s.start()
    s.objective = 'secondary_invalidations' // edited after the search: the recorded recipe is the searched one
    fake.emit({
      kind: 'synthesis-finished',
      runId: 's1',
      elapsedMs: 5,
      result: {
        ...RESULT,
        scenarios: [RESULT.scenarios[0]!, { ...RESULT.scenarios[1]!, id: 'sub/x.yaml' }],
      },
      scenarioHashes: { [RESULT.scenarios[0]!.id]: READ_A, 'sub/x.yaml': READ_X },
    })
    // The services say the hash of the files as the search read them (here: as they are now).
    const asked: Array<{ searched?: unknown }> = []
    fake.api = {
      ...fake.api,
      notebookStatus: async (req: { searched?: unknown }) => (
        asked.push(req),
        { status: {}, problems: {}, hashes: { 'synthesis-2': HASH } }
      ),
    }
    expect(await s.addToNotebook()).toBe('synthesis-2')
    expect(asked[0]!.searched).toEqual({
      'synthesis-2': { '../scenarios/munmap-uaf.ats.yaml': READ_A, '../scenarios/sub/x.yaml': READ_X },
    })
    const second = nb.notebook!.cells[1]!
    expect(second.kind).toBe('synthesis')
    if (second.kind !== 'synthesis') return
    expect(second.recipe.objective).toBe('sim_ns')
    expect(second.results).toHaveLength(1)
    const r = second.results[0]!
    expect(r.recipe_hash).toBe(HASH)
    expect(r.scenarios).toEqual(['../scenarios/munmap-uaf.ats.yaml', '../scenarios/sub/x.yaml'])
    expect(r.minimal[0]!.needs[0]!.scenario).toBe('../scenarios/munmap-uaf.ats.yaml')
    expect(r.minimal[0]!.placement).toBe('sites:flush_tlb_range')
    expect(s.notebookNote).toBe('Added synthesis-2 with its result to the notebook.')
  })
})
