import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { EngineInfo, LabApi, RunEvent } from '../../../src-main/api/labApi'
import type { PolicyReplay } from '../../../src-main/api/labApi'
import type { SynthesisResult, SynthPlacement } from '../../../src-main/engine'
import { RUN, TRACE } from '../logic/fixtures'
import { fake } from './fakeLab'

vi.mock('../lab', () => import('./fakeLab'))

const { useRunStore } = await import('./runStore')
const { usePolicyStore } = await import('./policyStore')
const { useScenarioStore } = await import('./scenarioStore')
const { useEngineStore } = await import('./engineStore')
const { useTraceStore } = await import('./traceStore')
const { useNotebookStore } = await import('./notebookStore')
const { useCompareStore } = await import('./compareStore')
const { LabError } = await import('../lab')

const INFO: EngineInfo = {
  version: 't',
  presets: ['start-end', 'invalidate-range', 'arch-hook'].map((name) => ({ name, doc: name })),
  variants: ['upgrade-notify', 'access-flags-notify', 'pri-flush'].map((name) => ({ name, doc: name })),
  invariants: ['use-after-free', 'stale-after-return', 'lost-write', 'lost-dirty', 'progress', 'forbid'],
  scenarioSchema: {},
  template: 'title: T\n',
  nativeDialogs: false,
}

function api(over: Partial<LabApi>): void {
  fake.api = { engineInfo: async () => INFO, validate: async () => [], ...over }
}

beforeEach(async () => {
  setActivePinia(createPinia())
  fake.listeners.clear()
  api({})
  await useEngineStore().load()
})
afterEach(() => {
  vi.useRealTimers()
})

describe('policyStore', () => {
  it('builds the run request from the selection, mode and budgets', () => {
    const p = usePolicyStore()
    p.set('start-end+pri-flush', true)
    p.set('arch-hook', false)
    expect(p.selected).toEqual(['start-end', 'start-end+pri-flush', 'invalidate-range'])
    p.mode = 'scripted'
    p.scheduleText = 'C0 C0, D0'
    p.timeoutS = 0
    const r = p.request('text', 'a.yaml')
    expect(r).toMatchObject({
      policies: ['start-end', 'start-end+pri-flush', 'invalidate-range'],
      mode: 'scripted',
      schedule: ['C0', 'C0', 'D0'],
      timeoutMs: null,
      file: 'a.yaml',
    })
  })
  it('reports problems before a run and parses typed lists', () => {
    const p = usePolicyStore()
    expect(p.setFromText('arch-hook+pri-flush+upgrade-notify')).toBeNull()
    expect(p.selected).toEqual(['arch-hook+upgrade-notify+pri-flush'])
    expect(p.setFromText('nope')).toMatch(/unknown preset/)
    p.selected = []
    p.mode = 'scripted'
    expect(p.problems).toEqual(['Select at least one policy.', 'Scripted mode needs a schedule.'])
  })
  it("selects a scenario's own policy names and site sets from its expect block, and keeps them typed", () => {
    const p = usePolicyStore()
    // A scenario whose expect names a policy it defines and a sites: set (issue 14).
    p.selectFromExpect(['start-end', 'popple-v1', 'sites:ptep_clear_flush_notify+flush_tlb_range'])
    expect(p.selected).toEqual(['start-end', 'popple-v1', 'sites:ptep_clear_flush_notify+flush_tlb_range'])
    expect(p.setFromText('popple-v1, sites:flush_tlb_page,flush_tlb_mm')).toBeNull()
    expect(p.selected).toEqual(['popple-v1', 'sites:flush_tlb_page+flush_tlb_mm'])
    expect(p.request('t', null).policies).toEqual(['popple-v1', 'sites:flush_tlb_page+flush_tlb_mm'])
    // A name no scenario defines is still refused.
    expect(p.setFromText('popple-v2')).toMatch(/unknown preset 'popple-v2'/)
  })
})

describe('runStore', () => {
  it('handles events that arrive before startRun answers, then the result', async () => {
    api({
      startRun: async () => {
        const progress: RunEvent = {
          kind: 'progress',
          runId: 'r1',
          elapsedMs: 5,
          rate: 100,
          policies: [{ policy: 'start-end', states: 7, steps: 9, executions: 1, done: false }],
        }
        fake.emit(progress)
        return 'r1'
      },
    })
    const run = useRunStore()
    await run.start()
    expect(run.runId).toBe('r1')
    expect(run.progress?.policies[0].states).toBe(7)
    expect(run.status).toBe('running')
    fake.emit({ kind: 'progress', runId: 'other', elapsedMs: 1, rate: 1, policies: [] })
    expect(run.progress?.runId).toBe('r1')
    fake.emit({ kind: 'finished', runId: 'r1', elapsedMs: 20, result: RUN })
    expect(run.status).toBe('finished')
    expect(run.result?.results).toHaveLength(3)
    expect(run.elapsedMs).toBe(20)
  })
  it('shows an invalid scenario inline and hands its issues to the editor', async () => {
    const issues = [{ line: 3, column: 5, length: 4, message: 'bad page' }]
    api({
      startRun: async () => {
        throw new LabError('invalid scenario', issues)
      },
    })
    const run = useRunStore()
    await run.start()
    expect(run.status).toBe('failed')
    expect(run.error).toBe('invalid scenario')
    expect(useScenarioStore().issues).toEqual(issues)
  })
  it('cancels the current run', async () => {
    const cancelRun = vi.fn(async () => {})
    api({ startRun: async () => 'r2', cancelRun })
    const run = useRunStore()
    await run.start()
    await run.cancel()
    expect(cancelRun).toHaveBeenCalledWith({ runId: 'r2' })
    fake.emit({ kind: 'cancelled', runId: 'r2' })
    expect(run.status).toBe('cancelled')
    expect(run.active).toBe(false)
  })
})

describe('scenarioStore', () => {
  it('tracks dirty state and validates 300 ms after the last edit', async () => {
    vi.useFakeTimers()
    const validate = vi.fn(async () => [{ line: 1, column: 1, length: 1, message: 'x' }])
    api({ validate })
    const s = useScenarioStore()
    s.newFromTemplate('title: T\n')
    expect(s.dirty).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    validate.mockClear()
    s.setText('title: U\n')
    s.setText('title: V\n')
    expect(s.dirty).toBe(true)
    await vi.advanceTimersByTimeAsync(299)
    expect(validate).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(validate).toHaveBeenCalledTimes(1)
    expect(validate).toHaveBeenCalledWith({ text: 'title: V\n', file: null })
    expect(s.issues).toHaveLength(1)
  })
  it('asks for a path when saving a new buffer, then saves', async () => {
    const saveScenario = vi.fn(async () => {})
    api({ saveScenario, listScenarios: async () => [] })
    const s = useScenarioStore()
    s.newFromTemplate('title: T\n')
    expect(await s.save()).toBe(false)
    expect(s.askingPath).toBe(true)
    expect(await s.save('new.yaml')).toBe(true)
    expect(saveScenario).toHaveBeenCalledWith({ path: 'new.yaml', text: 'title: T\n' })
    expect(s.file).toBe('new.yaml')
    expect(s.dirty).toBe(false)
  })
})

describe('traceStore', () => {
  it('lists counterexamples and opens one at its violating step', async () => {
    api({ startRun: async () => 'r3' })
    const run = useRunStore()
    await run.start()
    fake.emit({ kind: 'finished', runId: 'r3', elapsedMs: 1, result: RUN })
    const t = useTraceStore()
    expect(t.sources.map((s) => s.key)).toEqual(['cx:start-end:0'])
    t.openCounterexample('start-end', 0, 'right')
    expect(t.right?.policy).toBe('start-end')
    // The violation (step 4) is after the last step (3): the last row is selected.
    expect(t.selected).toEqual({ side: 'right', row: 3 })
    expect(t.selectedRecord?.step).toBe(3)
  })
  it('replays a schedule into a pane', async () => {
    const replay = vi.fn(async () => ({
      records: RUN.results[0].counterexamples[0].trace,
      violations: [{ invariant: 'forbid' as const, step: 4, thread: '-', message: 'forbid' }],
      outcome: 'done',
      registers: [],
    }))
    api({ replay })
    const t = useTraceStore()
    await t.replay('start-end', ['C0', 'D0'], 'left')
    expect(replay).toHaveBeenCalledWith(
      expect.objectContaining({ policy: 'start-end', schedule: ['C0', 'D0'] }),
    )
    expect(t.left?.key).toBe('replay:1')
    expect(t.left?.invariant).toBe('forbid')
  })
})

describe('notebookStore: editing a cell', () => {
  const cell = {
    kind: 'experiment' as const,
    id: 'e1',
    title: 't',
    scenario: { inline: 'title: x\n' },
    recipe: {
      policies: ['arch-hook'],
      mode: 'exhaustive' as const,
      seed: 1,
      executions: 1,
      schedule: [],
      max_states: 10,
      timeout_ms: null,
    },
    results: [],
  }
  const nb = { format: 1 as const, title: 'N', cells: [cell] }

  it('replaces the cell, marks the notebook unsaved, and takes the status from the services', async () => {
    const asked: unknown[] = []
    api({
      notebookNew: async () => ({ notebook: nb, text: '' }),
      notebookStatus: async (req) => {
        asked.push(req)
        return { status: { e1: ['stale-recipe'] }, problems: {} }
      },
    })
    const s = useNotebookStore()
    await s.create()
    expect(s.dirty).toBe(false)
    const edited = { ...cell, recipe: { ...cell.recipe, seed: 2 } }
    await s.updateCell(edited)
    expect(s.dirty).toBe(true)
    expect(s.notebook!.cells[0]).toEqual(edited)
    expect(asked).toEqual([{ notebookPath: null, notebook: s.notebook }])
    expect(s.status).toEqual({ e1: ['stale-recipe'] })
  })

  it('an answer about an older notebook is not shown; the newest edit is checked', async () => {
    const replies: Array<(v: unknown) => void> = []
    api({
      notebookNew: async () => ({ notebook: nb, text: '' }),
      notebookStatus: (req) =>
        new Promise((resolve) => {
          const seed = (req.notebook.cells[0] as typeof cell).recipe.seed
          replies.push(() =>
            resolve({ status: { e1: [seed === 1 ? 'current' : 'stale-recipe'] }, problems: {} }),
          )
        }),
    })
    const s = useNotebookStore()
    await s.create()
    const first = s.updateCell({ ...cell, recipe: { ...cell.recipe, seed: 2 } })
    const second = s.updateCell(cell)
    replies[1]!(null) // the newest (seed back to 1) answers first
    await second
    replies[0]!(null) // the older answer arrives late and is ignored
    await first
    expect(s.status).toEqual({ e1: ['current'] })
    expect(s.problems).toEqual({})
  })
})

describe('notebookStore: a synthesis cell', () => {
  const cell = {
    kind: 'synthesis' as const,
    id: 's1',
    title: 'search',
    recipe: {
      scenarios: ['../scenarios'],
      sites: null,
      objective: 'sim_ns' as const,
      policies: [],
      max_states: 10,
      timeout_ms: null,
    },
    results: [],
  }
  const nb = { format: 1 as const, title: 'N', cells: [cell] }
  const placement: SynthPlacement = {
    name: 'sites:flush_tlb_page',
    sites: ['flush_tlb_page'],
    held: 1,
    cost: 7,
    cells: [{ verdict: 'holds', how: 'explored', from: ['flush_tlb_page'], invariant: null, cost: 7 }],
  }
  const RESULT: SynthesisResult = {
    settings: { objective: 'sim_ns', candidates: ['flush_tlb_page'], maxStates: 10 },
    scenarios: [
      {
        id: 'a.yaml',
        title: 'a',
        file: 'a.yaml',
        reached: ['flush_tlb_page'],
        monotone: true,
        full: 'holds',
        explored: 2,
        inferred: 0,
        undecided: 0,
      },
    ],
    scope: ['a.yaml'],
    excluded: [],
    relevant: ['flush_tlb_page'],
    minimal: [{ placement, needed: [], leftOut: [] }],
    front: [{ held: 1, cost: 7, placements: [placement], more: 0 }],
    placements: [{ ...placement, name: 'arch-hook' }],
    search: {
      pairs: 2,
      reachedPairs: 2,
      explored: 2,
      pruned: 0,
      prunedHolds: 0,
      prunedViolated: 0,
      costRuns: 0,
      states: 9,
      elapsedMs: 12,
    },
    complete: true,
    notes: [],
    engineVersion: '0.1.0',
  }

  it('runs through the services, shows the progress, and appends the recorded synthesis (unsaved)', async () => {
    const cancelled: unknown[] = []
    api({
      notebookNew: async () => ({ notebook: nb, text: '' }),
      notebookStatus: async () => ({ status: {}, problems: {} }),
      notebookRunCell: async () => ({ runId: 'syn-1', recipeHash: 'f'.repeat(64) }),
      cancelSynthesis: async (req) => {
        cancelled.push(req)
      },
      cancelRun: async () => {
        throw new Error('a synthesis is cancelled with cancelSynthesis')
      },
    })
    const s = useNotebookStore()
    await s.create()
    await s.runCell('s1')
    expect(s.runs.s1!.state).toBe('running')
    fake.emit({
      kind: 'synthesis-progress',
      runId: 'syn-1',
      progress: {
        phase: 'lattice',
        explored: 1,
        costRuns: 0,
        pruned: 0,
        pending: 1,
        scenariosDone: 0,
        scenarios: 1,
        elapsedMs: 1500,
      },
    } satisfies RunEvent)
    expect(s.runs.s1!.elapsedMs).toBe(1500)
    await s.cancelCell('s1')
    expect(cancelled).toEqual([{ runId: 'syn-1' }])
    fake.emit({
      kind: 'synthesis-finished',
      runId: 'syn-1',
      elapsedMs: 20,
      result: RESULT,
      scenarioHashes: { 'a.yaml': 'e'.repeat(64) },
    } satisfies RunEvent)
    expect(s.runs.s1).toBeUndefined()
    const got = s.notebook!.cells[0]!
    expect(got.kind === 'synthesis' && got.results).toEqual([
      expect.objectContaining({
        recipe_hash: 'f'.repeat(64),
        scenarios: ['a.yaml'],
        minimal: [{ placement: 'sites:flush_tlb_page', cost: 7, needs: [] }],
        placements: [{ placement: 'arch-hook', held: 1, cost: 7, verdicts: ['holds'] }],
        pinned: false,
      }),
    ])
    expect(s.status).toEqual({ s1: ['current'] })
    expect(s.dirty).toBe(true)
  })
})

describe('compareStore', () => {
  /** start-end violates forbid on C0 C0 D0 C0; under arch-hook D0 was blocked at entry 2. */
  const SE: PolicyReplay = {
    policy: 'start-end',
    records: TRACE,
    violations: [{ invariant: 'forbid', step: 4, thread: '-', message: 'forbid holds' }],
    outcome: 'violation',
    registers: [],
    ran: ['C0', 'C0', 'D0', 'C0'],
    positions: [0, 1, 2, 3],
    skipped: [],
    why: 'the final state satisfies forbid',
    culprits: [{ step: 2, thread: 'D0', role: 'stale-use', text: 'D0 read A through the stale entry' }],
  }
  const AH: PolicyReplay = {
    ...SE,
    policy: 'arch-hook',
    records: [TRACE[0]!, TRACE[1]!, { ...TRACE[3]!, step: 2 }],
    violations: [],
    outcome: 'done',
    ran: ['C0', 'C0', 'C0'],
    positions: [0, 1, 3],
    skipped: [{ index: 2, thread: 'D0', reason: 'blocked on the PTL' }],
    why: 'holds on this schedule',
    culprits: [],
  }

  async function finished(): Promise<void> {
    const run = useRunStore()
    await run.start()
    fake.emit({ kind: 'finished', runId: 'r9', elapsedMs: 1, result: RUN })
  }

  it("replays a counterexample's schedule under every policy of the run and opens two outcomes side by side, diffed", async () => {
    const compareSchedule = vi.fn(async () => ({
      schedule: SE.ran,
      replays: [SE, AH],
      hints: [],
      hint: null,
    }))
    api({ startRun: async () => 'r9', compareSchedule })
    await finished()
    const cmp = useCompareStore()
    const t = useTraceStore()
    await cmp.compare('start-end', ['C0', 'C0', 'D0', 'C0'])
    expect(compareSchedule).toHaveBeenCalledWith(
      expect.objectContaining({
        policies: ['start-end', 'invalidate-range', 'arch-hook'],
        schedule: ['C0', 'C0', 'D0', 'C0'],
      }),
    )
    expect(cmp.view).toBe('compare')
    expect([t.left?.policy, t.right?.policy]).toEqual(['start-end', 'arch-hook'])
    expect(t.right?.invariant).toBeNull()
    expect(t.left?.culprits.map((c) => c.role)).toEqual(['stale-use'])
    // Aligned by schedule entry: arch-hook's missing D0 step is a one-sided row, the one difference.
    expect(t.diff?.rows.map((r) => [r.a, r.b])).toEqual([
      [0, 0],
      [1, 1],
      [2, null],
      [3, 2],
    ])
    expect(t.diff?.differing).toEqual([2])
    // The first difference is selected on open; there is no other to go to.
    expect(t.selected).toEqual({ side: 'left', row: 2 })
    expect(t.counterpart).toEqual({ side: 'right', record: null })
    expect(t.stepDifference(1)).toBe(false)
    t.select('left', 0)
    expect(t.stepDifference(1)).toBe(true)
    expect(t.selected).toEqual({ side: 'left', row: 2 })
    t.select('right', 2)
    expect(t.stepDifference(-1)).toBe(true)
    expect(t.selected).toEqual({ side: 'left', row: 2 })
    expect(t.sources.map((s) => s.key)).toContain('cmp:1:arch-hook')
  })

  it('says why a distinguish found no schedule and opens nothing; a failure is an error line', async () => {
    const distinguish = vi.fn(async () => ({
      policies: ['invalidate-range', 'arch-hook'] as [string, string],
      schedule: null,
      replays: [],
      firstDifference: null,
      states: 1234,
      complete: true,
      note: 'no schedule: the outcomes never differ',
      hint: null,
    }))
    api({ startRun: async () => 'r9', distinguish })
    await finished()
    const cmp = useCompareStore()
    await cmp.distinguish('invalidate-range', 'arch-hook')
    expect(distinguish).toHaveBeenCalledWith(
      expect.objectContaining({ policies: ['invalidate-range', 'arch-hook'] }),
    )
    expect(cmp.view).toBe('distinguish')
    expect(cmp.distinguished?.note).toContain('never differ')
    expect(useTraceStore().left).toBeNull()
    api({
      startRun: async () => 'r9',
      distinguish: async () => {
        throw new LabError('policies: unknown policy')
      },
    })
    await cmp.distinguish('a', 'b')
    expect(cmp.error).toBe('Distinguish: policies: unknown policy')
    expect(cmp.busy).toBe(false)
  })

  it('passes the LKML fold option through, and a counterexample carries its culprits and positions', async () => {
    const lkmlTimeline = vi.fn(async () => '[Time 0]')
    api({ startRun: async () => 'r9', lkmlTimeline })
    await finished()
    const t = useTraceStore()
    await t.lkmlTimeline('start-end', ['C0'], null, true)
    expect(lkmlTimeline).toHaveBeenCalledWith(expect.objectContaining({ collapse: true, schedule: ['C0'] }))
    const cx = t.sources.find((s) => s.key === 'cx:start-end:0')!
    expect(cx.positions).toEqual([0, 1, 2, 3])
    expect(cx.culprits).toEqual([])
    // The counterexample and a compare replay of its schedule diff against each other.
    t.show('left', cx)
    t.show('right', { ...cx, key: 'other', records: cx.records.slice(0, 3) })
    expect(t.diff?.differing).toEqual([3])
  })

  it('opens both traces of a distinguishing schedule with their first difference selected', async () => {
    api({
      startRun: async () => 'r9',
      distinguish: async () => ({
        policies: ['start-end', 'arch-hook'] as [string, string],
        schedule: ['C0', 'C0', 'D0', 'C0'],
        replays: [SE, AH],
        firstDifference: 2,
        states: 50,
        complete: false,
        note: 'start-end violates forbid, arch-hook holds',
        hint: null,
      }),
    })
    await finished()
    await useCompareStore().distinguish('start-end', 'arch-hook')
    const t = useTraceStore()
    expect(t.left?.key).toBe('dist:1:start-end')
    expect(t.right?.key).toBe('dist:1:arch-hook')
    expect(t.selectedAligned).toBe(2)
  })
})
