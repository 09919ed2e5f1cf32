import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { EngineInfo, RunEvent } from '../../../src-main/api/labApi'
import { RUN } from '../logic/fixtures'
import { fake, stubLocalStorage } from './fakeLab'

vi.mock('../lab', () => import('./fakeLab'))

stubLocalStorage()

const { usePlacementStore, PLACEMENTS_KEY } = await import('./placementStore')
const { usePolicyStore } = await import('./policyStore')
const { useEngineStore } = await import('./engineStore')
const { useRunStore } = await import('./runStore')
const { useCompareStore } = await import('./compareStore')
const { useTraceStore } = await import('./traceStore')

const SE = ['invalidate_range_start', 'invalidate_range_end']
const IR = ['range_end', 'ptep_clear_flush_notify']
const AH = ['flush_tlb_page', 'flush_tlb_range']
const site = (name: string, group: string) => ({ name, group, kernel: `k ${name}`, doc: `d ${name}` })
/** A small engine: two sites per preset, one proposal site each for two variants. */
const INFO: EngineInfo = {
  version: 't',
  presets: ['start-end', 'invalidate-range', 'arch-hook'].map((name) => ({ name, doc: name })),
  variants: ['upgrade-notify', 'access-flags-notify'].map((name) => ({ name, doc: name })),
  sites: [
    ...SE.map((s) => site(s, 'start-end')),
    ...IR.map((s) => site(s, 'invalidate-range')),
    ...AH.map((s) => site(s, 'arch-hook')),
    site('ptep_set_access_flags', 'access-flags-notify'),
    site('handle_pte_fault', 'upgrade-notify'),
  ],
  namedSites: {
    'start-end': SE,
    'start-end+upgrade-notify': [...SE, 'handle_pte_fault'],
    'start-end+access-flags-notify': SE,
    'invalidate-range': IR,
    'invalidate-range+upgrade-notify': [...IR, 'handle_pte_fault'],
    'invalidate-range+access-flags-notify': [...IR, 'ptep_set_access_flags'],
    'arch-hook': AH,
    'arch-hook+upgrade-notify': [...AH, 'handle_pte_fault'],
    'arch-hook+access-flags-notify': [...AH, 'ptep_set_access_flags'],
  },
  invariants: ['use-after-free', 'forbid'],
  scenarioSchema: {},
  template: 'title: T\n',
  nativeDialogs: false,
}

beforeEach(async () => {
  localStorage.clear()
  setActivePinia(createPinia())
  fake.listeners.clear()
  fake.api = { engineInfo: async () => INFO, validate: async () => [] }
  await useEngineStore().load()
})

describe('placementStore', () => {
  it('groups the sites by kernel path, presets first, then the proposals', () => {
    const s = usePlacementStore()
    const heads = s.rows.map((r) =>
      r.kind === 'site' ? r.site.name : r.kind === 'group' ? `[${r.group}]` : '--',
    )
    expect(heads).toEqual([
      '[start-end]',
      ...SE,
      '[invalidate-range]',
      ...IR,
      '[arch-hook]',
      ...AH,
      '--',
      '[upgrade-notify]',
      'handle_pte_fault',
      '[access-flags-notify]',
      'ptep_set_access_flags',
    ])
  })

  it('creates a placement from a preset, selects it for the run and sends its sites with the request', () => {
    const s = usePlacementStore()
    const p = usePolicyStore()
    const n = s.create('invalidate-range')
    expect(n).toBe('my-invalidate-range')
    expect(s.active).toBe(n)
    expect(s.byName(n)!.sites).toEqual(IR)
    expect(p.selected).toEqual(['start-end', 'invalidate-range', 'arch-hook', n])
    const req = p.request('text', null)
    expect(req.policies).toContain(n)
    expect(req.policyDefs).toEqual({ [n]: IR })
  })

  it('switches one site off, fills from a preset and adds a variant in canonical order', () => {
    const s = usePlacementStore()
    const n = s.create('arch-hook')
    s.setSite(n, 'flush_tlb_page', false)
    expect(s.byName(n)!.sites).toEqual(['flush_tlb_range'])
    expect(s.equals(n)).toBeNull()
    s.setSite(n, 'range_end', true)
    expect(s.byName(n)!.sites).toEqual(['range_end', 'flush_tlb_range'])
    s.fill(n, 'start-end')
    expect(s.byName(n)!.sites).toEqual(SE)
    expect(s.equals(n)).toBe('start-end')
    // access-flags-notify adds nothing to a start/end-only set (nobody implements ->invalidate_range)...
    s.addVariant(n, 'access-flags-notify')
    expect(s.byName(n)!.sites).toEqual(SE)
    // ...and ptep_set_access_flags to an invalidate-range one.
    s.fill(n, 'invalidate-range')
    s.addVariant(n, 'access-flags-notify')
    s.addVariant(n, 'upgrade-notify')
    expect(s.byName(n)!.sites).toEqual([...IR, 'ptep_set_access_flags', 'handle_pte_fault'])
    s.clearSites(n)
    expect(s.byName(n)!.sites).toEqual([])
  })

  it('renames with the loader rules, and the run selection follows', () => {
    const s = usePlacementStore()
    const p = usePolicyStore()
    const n = s.create()
    expect(n).toBe('mine')
    expect(s.create()).toBe('mine-2')
    expect(s.rename(n, 'arch-hook+pri-flush')).toBe(false)
    expect(s.error).toMatch(/letters, digits/)
    expect(s.rename(n, 'arch-hook')).toBe(false)
    expect(s.error).toMatch(/built-in policy/)
    expect(s.rename(n, 'range_end')).toBe(false)
    expect(s.error).toMatch(/is a site/)
    expect(s.rename(n, 'mine-2')).toBe(false)
    expect(s.error).toMatch(/already/)
    expect(s.rename(n, 'all')).toBe(false)
    expect(s.rename(n, 'popple.v1')).toBe(true)
    expect(s.error).toBeNull()
    expect(p.selected).toContain('popple.v1')
    expect(p.selected).not.toContain('mine')
    s.remove('popple.v1')
    expect(p.selected).not.toContain('popple.v1')
    expect(s.active).toBe('mine-2')
  })

  it('survives a reload (browser storage), and drops malformed entries', () => {
    const s = usePlacementStore()
    const n = s.create('arch-hook')
    s.setSite(n, 'flush_tlb_page', false)
    return Promise.resolve().then(async () => {
      await new Promise((r) => setTimeout(r, 0))
      setActivePinia(createPinia())
      await useEngineStore().load()
      const again = usePlacementStore()
      expect(again.placements).toEqual([{ name: n, sites: ['flush_tlb_range'] }])
      localStorage.setItem(PLACEMENTS_KEY, '[{"name":1},{"name":"ok","sites":["range_end",3]},"x"]')
      setActivePinia(createPinia())
      expect(usePlacementStore().placements).toEqual([{ name: 'ok', sites: ['range_end'] }])
      localStorage.setItem(PLACEMENTS_KEY, '{not json')
      setActivePinia(createPinia())
      expect(usePlacementStore().placements).toEqual([])
    })
  })

  it("adopts a notebook's placements without overwriting one of the same name", () => {
    const s = usePlacementStore()
    s.create('arch-hook', 'mine')
    const clashes = s.adopt({ mine: ['range_end'], theirs: ['start-end', 'handle_pte_fault'], same: [] })
    expect(clashes).toEqual(['mine'])
    expect(s.byName('mine')!.sites).toEqual(AH)
    // A preset in the list stands for its sites, as in a scenario's policies:.
    expect(s.byName('theirs')!.sites).toEqual([...SE, 'handle_pte_fault'])
    expect(s.adopt({ theirs: [...SE, 'handle_pte_fault'] })).toEqual([])
  })

  it('reveals a set of sites: the placement that has them, else a new one', () => {
    const s = usePlacementStore()
    s.create('arch-hook', 'mine')
    s.create(null, 'other')
    expect(s.reveal([...AH].reverse(), 'synth-1')).toBe('mine')
    expect(s.active).toBe('mine')
    expect(s.revealed).toBe(1)
    expect(s.reveal(['range_end'], 'synth-1')).toBe('synth-1')
    expect(s.byName('synth-1')!.sites).toEqual(['range_end'])
    expect(s.reveal(['range_end', 'flush_tlb_page'], 'synth-1')).toBe('synth-1-2')
  })
})

describe('placements in the policy list and the flows that name them', () => {
  it('parses placement names and site sets in the typed list', () => {
    const s = usePlacementStore()
    const p = usePolicyStore()
    s.create('arch-hook', 'mine')
    expect(p.setFromText('mine, sites:range_end,flush_tlb_page, start-end')).toBeNull()
    expect(p.selected).toEqual(['mine', 'sites:range_end+flush_tlb_page', 'start-end'])
    // Only the placements travel as definitions; a site set is a name the engine reads itself.
    expect(p.request('t', null).policyDefs).toEqual({ mine: AH })
    expect(p.setFromText('theirs')).toMatch(/unknown preset 'theirs'/)
  })

  it("selects a scenario's own policy names from its expect block", () => {
    const p = usePolicyStore()
    p.selectFromExpect(['start-end', 'popple-v1'])
    expect(p.selected).toEqual(['start-end', 'popple-v1'])
    expect(p.request('t', null).policyDefs).toBeUndefined()
  })

  it('compare, distinguish, replays and timelines send the definitions of the run that made the result', async () => {
    const s = usePlacementStore()
    const p = usePolicyStore()
    s.create('arch-hook', 'mine')
    p.selected = ['start-end', 'mine']
    const seen: Record<string, unknown> = {}
    const record = (k: string) => async (req: unknown) => {
      seen[k] = req
      if (k === 'startRun') return 'r1'
      if (k === 'compareSchedule') return { schedule: [], replays: [], hints: [], hint: null }
      if (k === 'distinguish')
        return {
          policies: ['start-end', 'mine'],
          schedule: null,
          replays: [],
          firstDifference: null,
          states: 1,
          complete: true,
          note: '',
          hint: null,
        }
      if (k === 'replay') return { records: [], violations: [], outcome: 'done', registers: [] }
      return 'timeline'
    }
    fake.api = {
      ...fake.api,
      startRun: record('startRun'),
      compareSchedule: record('compareSchedule'),
      distinguish: record('distinguish'),
      replay: record('replay'),
      lkmlTimeline: record('lkmlTimeline'),
    }
    const run = useRunStore()
    await run.start()
    expect((seen.startRun as { policyDefs: unknown }).policyDefs).toEqual({ mine: AH })
    // The placement changes after the run: the result's flows still use the run's definition.
    s.setSite('mine', 'flush_tlb_page', false)
    const finished: RunEvent = { kind: 'finished', runId: 'r1', elapsedMs: 1, result: RUN }
    fake.emit(finished)
    expect(run.resultDefs).toEqual({ mine: AH })
    const cmp = useCompareStore()
    await cmp.compare('start-end', ['C0'])
    await cmp.distinguish('start-end', 'mine')
    const traces = useTraceStore()
    await traces.replay('mine', ['C0'])
    await traces.lkmlTimeline('mine', ['C0'], null)
    for (const k of ['compareSchedule', 'distinguish', 'replay', 'lkmlTimeline'])
      expect((seen[k] as { policyDefs?: unknown }).policyDefs, k).toEqual({ mine: AH })
    // A run without placements sends none.
    run.clearResult()
    p.selected = ['start-end']
    await run.start()
    expect(seen.startRun).not.toHaveProperty('policyDefs')
  })
})

describe("placements in a notebook's policies:", () => {
  const RECIPE = {
    policies: ['mine'],
    mode: 'exhaustive' as const,
    seed: 1,
    executions: 1,
    schedule: [],
    max_states: 10,
    timeout_ms: null,
  }

  async function openNotebook(policies?: Record<string, string[]>) {
    const { useNotebookStore } = await import('./notebookStore')
    const nb = { format: 1 as const, title: 'n', cells: [], ...(policies ? { policies } : {}) }
    fake.api = {
      ...fake.api,
      notebookNew: async () => ({ notebook: nb, text: '' }),
      notebookStatus: async () => ({ status: {}, problems: {} }),
    }
    const s = useNotebookStore()
    await s.create()
    return s
  }

  it('an experiment keeps the placements it runs in the notebook, by name', async () => {
    const nb = await openNotebook()
    const id = nb.addExperiment('t', 'title: t', RECIPE, { mine: AH })
    expect(id).toBe('experiment-1')
    expect(nb.notebook!.policies).toEqual({ mine: AH })
    expect(nb.dirty).toBe(true)
    // Defined already: left as it is; the same sites written with a preset are no clash.
    expect(nb.policyClashes({ mine: ['arch-hook'] })).toEqual([])
    expect(nb.policyClashes({ mine: ['range_end'], other: [] })).toEqual(['mine'])
    nb.definePolicies({ mine: ['range_end'], other: [] })
    expect(nb.notebook!.policies).toEqual({ mine: AH, other: [] })
  })

  it("runs and replays a name the open notebook defines, with the notebook's definition", async () => {
    const defs = { nbdef: ['arch-hook', 'handle_pte_fault'] }
    const nb = await openNotebook(defs)
    const s = usePlacementStore()
    const p = usePolicyStore()
    // The notebook view puts the notebook's policies in the grid; one deleted from the grid since
    // is still the notebook's, and a run and its replays send its definition.
    expect(s.adopt(nb.notebook!.policies!)).toEqual([])
    s.remove('nbdef')
    expect(p.setFromText('start-end, nbdef')).toBeNull()
    const seen: Record<string, { policyDefs?: unknown }> = {}
    fake.api = {
      ...fake.api,
      startRun: async (req: { policyDefs?: unknown }) => ((seen.startRun = req), 'r1'),
      replay: async (req: { policyDefs?: unknown }) => (
        (seen.replay = req),
        { records: [], violations: [], outcome: 'done', registers: [] }
      ),
    }
    const run = useRunStore()
    await run.start()
    expect(seen.startRun!.policyDefs).toEqual(defs)
    fake.emit({ kind: 'finished', runId: 'r1', elapsedMs: 1, result: RUN } satisfies RunEvent)
    await useTraceStore().replay('nbdef', ['C0'])
    expect(useTraceStore().replayError).toBeNull()
    expect(seen.replay!.policyDefs).toEqual(defs)
    // A grid placement of the same name is the one the run means (the notebook view says so).
    s.create('start-end', 'nbdef')
    expect(p.request('t', null).policyDefs).toEqual({ nbdef: SE })
  })

  it('a preset with two variants in a definition stands for all their sites', async () => {
    const nb = await openNotebook({ pp: ['invalidate-range+upgrade-notify+access-flags-notify'] })
    expect(nb.policyClashes({ pp: [...IR, 'handle_pte_fault', 'ptep_set_access_flags'] })).toEqual([])
    expect(nb.policyClashes({ pp: IR })).toEqual(['pp'])
  })
})
