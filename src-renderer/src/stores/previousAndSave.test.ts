/**
 * Issue 12 defects in the stores: a result that is not of what the editor shows is marked as
 * previous (of its file) until cleared, and the notebook's Save (Ctrl+S on its tab) saves to its
 * file or asks for a path.
 */
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { EngineInfo, LabApi } from '../../../src-main/api/labApi'
import { RUN } from '../logic/fixtures'
import { fake } from './fakeLab'

vi.mock('../lab', () => import('./fakeLab'))

const { useRunStore } = await import('./runStore')
const { useScenarioStore } = await import('./scenarioStore')
const { useEngineStore } = await import('./engineStore')
const { useNotebookStore } = await import('./notebookStore')

const INFO = {
  version: 't',
  presets: [{ name: 'start-end', doc: '' }],
  variants: [],
  invariants: ['forbid'],
  scenarioSchema: {},
  template: 'title: T\n',
  nativeDialogs: false,
} as unknown as EngineInfo

function api(over: Partial<LabApi>): void {
  fake.api = {
    engineInfo: async () => INFO,
    validate: async () => [],
    readScenario: async ({ path }: { path: string }) => ({ path, text: `title: ${path}\n` }),
    ...over,
  }
}

beforeEach(async () => {
  setActivePinia(createPinia())
  fake.listeners.clear()
  api({})
  await useEngineStore().load()
})

/** Runs a.yaml to a finished result. */
async function finishedRunOfA(): Promise<ReturnType<typeof useRunStore>> {
  api({ startRun: async () => 'r1' })
  const sc = useScenarioStore()
  await sc.open('a.yaml')
  const run = useRunStore()
  await run.start()
  fake.emit({ kind: 'finished', runId: 'r1', elapsedMs: 3, result: RUN })
  expect(run.status).toBe('finished')
  return run
}

describe('runStore: a previous result is marked', () => {
  it('is not marked while it is the result of what the editor shows', async () => {
    const run = await finishedRunOfA()
    expect(run.previous).toBeNull()
  })

  it('after a switch to another scenario, or an edit, it names its file', async () => {
    const run = await finishedRunOfA()
    const sc = useScenarioStore()
    sc.setText('title: edited\n')
    expect(run.previous).toEqual({ of: 'a.yaml', why: 'the scenario was edited since' })
    await sc.open('b.yaml')
    expect(run.previous).toEqual({ of: 'a.yaml', why: 'the editor shows b.yaml' })
    await sc.open('a.yaml')
    expect(run.previous).toBeNull()
  })

  it('during a new run and after a Cancel; Clear drops it', async () => {
    const run = await finishedRunOfA()
    api({ startRun: async () => 'r2', cancelRun: async () => {} })
    await run.start()
    expect(run.previous?.why).toBe('a new run goes on')
    fake.emit({ kind: 'cancelled', runId: 'r2' })
    expect(run.previous).toEqual({ of: 'a.yaml', why: 'the last run was cancelled' })
    run.clearResult()
    expect(run.result).toBeNull()
    expect(run.previous).toBeNull()
    expect(run.status).toBe('idle')
  })
})

describe('notebookStore: saveOrAsk (the Save button and Ctrl+S on the Notebook tab)', () => {
  const NB = { format: 1 as const, title: 'N', cells: [] }

  it('saves to its file', async () => {
    const notebookSave = vi.fn(async ({ path }: { path: string }) => ({ path, revision: 'r' }))
    api({
      notebookOpen: async () => ({
        path: '/n/x.mnlab.yaml',
        revision: 'r0',
        notebook: NB,
        issues: [],
        status: {},
        problems: {},
        migratedFrom: null,
      }),
      notebookSave,
      notebookRecent: async () => [],
      notebookStatus: async () => ({ status: {}, problems: {} }),
      notebookDiscardRecovery: async () => {},
    } as unknown as Partial<LabApi>)
    const nb = useNotebookStore()
    await nb.open('/n/x.mnlab.yaml')
    expect(await nb.saveOrAsk(false)).toBe(true)
    expect(notebookSave).toHaveBeenCalledTimes(1)
    expect(notebookSave.mock.calls[0]![0].path).toBe('/n/x.mnlab.yaml')
    expect(nb.askingSaveAs).toBe(false)
  })

  it('a notebook never saved asks for a path (the view shows its field); no notebook: nothing', async () => {
    const notebookSave = vi.fn()
    api({ notebookSave, notebookRecent: async () => [] } as unknown as Partial<LabApi>)
    const nb = useNotebookStore()
    expect(await nb.saveOrAsk(false)).toBe(false)
    expect(nb.askingSaveAs).toBe(false)
    nb.update(NB)
    expect(await nb.saveOrAsk(false)).toBe(false)
    expect(nb.askingSaveAs).toBe(true)
    expect(notebookSave).not.toHaveBeenCalled()
  })
})
