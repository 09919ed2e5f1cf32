/**
 * Every LabApi request the browser host accepts, fuzzed (the reliability issue: 89 answers of
 * HTTP 500 before). Each method gets valid requests with fields dropped, retyped, oversized,
 * odd or taken from mutated catalogue scenarios and notebooks; the service must answer, or
 * refuse with a LabApiError (HTTP 400), never throw anything else (HTTP 500).
 */
import fc from 'fast-check'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { API_METHODS, type ApiMethod } from '../api/labApi'
import { catalogueTexts, fuzzInputArb } from './fuzz'
import { createLabService, LabApiError, type LabService } from './labService'
import { serializeNotebook } from './notebook/format'
import { tsxWorker, WorkerPool } from './workerPool'

const ROOT = path.join(__dirname, '../..')
const UPGRADE = readFileSync(path.join(ROOT, 'scenarios/upgrade-loop.smmu-no-btm.yaml'), 'utf8')
const texts = catalogueTexts(ROOT)

let dir = ''
let svc: LabService
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mnlab-api-fuzz-'))
  const scenarios = path.join(dir, 'scenarios')
  const notebooks = path.join(dir, 'notebooks')
  mkdirSync(scenarios)
  mkdirSync(notebooks)
  writeFileSync(path.join(scenarios, 'upgrade.yaml'), UPGRADE)
  svc = createLabService({
    scenariosDir: scenarios,
    notebooksDir: notebooks,
    dataDir: path.join(dir, 'data'),
    pool: new WorkerPool(tsxWorker, 2),
  })
})
afterAll(async () => {
  await svc.close()
  rmSync(dir, { recursive: true, force: true })
})

const recipe = {
  policies: ['arch-hook'],
  mode: 'exhaustive',
  seed: 1,
  executions: 10,
  schedule: [],
  max_states: 2_000,
  timeout_ms: 2_000,
}
const notebook = {
  format: 1,
  title: 'fuzz',
  cells: [
    { kind: 'note', id: 'n', markdown: 'x' },
    { kind: 'experiment', id: 'e', title: 'e', scenario: { inline: UPGRADE }, recipe, results: [] },
  ],
}

/** A valid request per method (what the workbench sends). */
const VALID: Record<ApiMethod, unknown> = {
  engineInfo: undefined,
  listScenarios: undefined,
  readScenario: { path: 'upgrade.yaml' },
  saveScenario: { path: 'fuzzed.yaml', text: UPGRADE },
  validate: { text: UPGRADE, file: null },
  startRun: {
    text: UPGRADE,
    file: null,
    policies: ['arch-hook'],
    mode: 'exhaustive',
    seed: 1,
    executions: 5,
    schedule: [],
    maxStates: 2_000,
    timeoutMs: 2_000,
  },
  cancelRun: { runId: 'no-such-run' },
  replay: { text: UPGRADE, file: null, policy: 'start-end', schedule: ['C0', 'D0', 'D0'] },
  compareSchedule: { text: UPGRADE, file: null, policies: ['all'], schedule: ['C0', 'D0', 'D0'] },
  distinguish: {
    text: UPGRADE,
    file: null,
    policies: ['start-end', 'arch-hook'],
    maxStates: 20_000,
    timeoutMs: 5_000,
  },
  pickFile: { purpose: 'open', suggestedName: null },
  notebookNew: undefined,
  notebookOpen: { path: 'fuzz.mnlab.yaml' },
  notebookSave: { path: 'fuzz.mnlab.yaml', notebook, expectedRevision: null, force: true },
  notebookRecent: undefined,
  notebookAutosave: { key: 'k1', path: null, notebook },
  notebookRecoverable: undefined,
  notebookDiscardRecovery: { key: 'k1' },
  notebookRunCell: { notebookPath: null, cellId: 'e', notebook },
  notebookStatus: { notebookPath: null, notebook },
  notebookExport: { notebook, format: 'markdown' },
  lkmlTimeline: { text: UPGRADE, file: null, policy: 'start-end', schedule: ['C0', 'D0'], cycle: null },
  startSynthesis: {
    scenarios: [{ path: 'upgrade.yaml' }, { text: UPGRADE, file: 'unsaved.yaml' }],
    sites: ['flush_tlb_page', 'ptep_set_access_flags'],
    objective: 'secondary_invalidations',
    policies: ['sites:flush_tlb_page'],
    maxStates: 2_000,
    timeoutMs: 5_000,
  },
  cancelSynthesis: { runId: 'no-such-synthesis' },
}

const oddValue = fc.oneof(
  fc.constant(null),
  fc.constant(undefined),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(-1, 0, 2 ** 53, Number.MAX_VALUE, 1e308),
  fc.string({ maxLength: 20 }),
  fc.constantFrom('../../etc/passwd', '/etc/passwd', '..', '', '\u0000', 'a'.repeat(5000), '__proto__'),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 5 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
  fuzzInputArb(texts).map((i) => i.text),
  fuzzInputArb(texts).map((i) =>
    serializeNotebook(JSON.parse(JSON.stringify(notebook)) as never).replace('x', i.text.slice(0, 200)),
  ),
)

/** A valid request with one to three fields replaced, dropped or added. */
function mutated(method: ApiMethod): fc.Arbitrary<unknown> {
  const base = VALID[method]
  if (base === undefined || base === null || typeof base !== 'object')
    return fc.oneof(fc.constant(base), oddValue)
  const keys = Object.keys(base)
  const edit = fc.record({
    key: fc.oneof(fc.constantFrom(...keys), fc.constantFrom('extra', 'constructor')),
    drop: fc.boolean(),
    value: oddValue,
  })
  return fc.oneof(
    { weight: 1, arbitrary: oddValue },
    {
      weight: 6,
      arbitrary: fc.array(edit, { minLength: 1, maxLength: 3 }).map((edits) => {
        const out: Record<string, unknown> = JSON.parse(JSON.stringify(base)) as Record<string, unknown>
        for (const e of edits) {
          if (e.drop) delete out[e.key]
          else out[e.key] = e.value
        }
        return out
      }),
    },
  )
}

describe('every LabApi request, fuzzed', () => {
  it('valid requests are answered', async () => {
    for (const m of Object.keys(API_METHODS) as ApiMethod[]) {
      if (m === 'notebookOpen' || m === 'notebookDiscardRecovery') continue // need earlier calls
      const fn = svc[m] as (a: unknown) => Promise<unknown>
      await expect(fn(VALID[m]), m).resolves.not.toThrow()
    }
    await expect(svc.notebookOpen(VALID.notebookOpen as never)).resolves.toBeTruthy()
  }, 60_000)

  it('600 mutated requests: answered, or refused as bad input (400), never an internal error (500) (seed 4711)', async () => {
    const methods = Object.keys(API_METHODS) as ApiMethod[]
    const cases = fc.sample(
      fc.constantFrom(...methods).chain((m) => mutated(m).map((arg) => ({ m, arg }))),
      { seed: 4711, numRuns: 600 },
    )
    const internal: string[] = []
    let refused = 0
    for (const { m, arg } of cases) {
      const fn = svc[m] as (a: unknown) => Promise<unknown>
      try {
        const r = await fn(arg)
        if (m === 'startRun' || m === 'notebookRunCell') {
          const id = typeof r === 'string' ? r : (r as { runId: string }).runId
          await svc.cancelRun({ runId: id })
        }
        if (m === 'startSynthesis') await svc.cancelSynthesis({ runId: r as string })
      } catch (e) {
        if (e instanceof LabApiError) refused++
        else
          internal.push(
            `${m}(${JSON.stringify(arg)?.slice(0, 300)}): ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}`,
          )
      }
    }
    expect(internal.slice(0, 5)).toEqual([])
    expect(refused).toBeGreaterThan(100)
  }, 300_000)
})
