import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { RunEvent } from '../../api/labApi'
import type { ExperimentCell, Notebook, RecordedResult, SynthesisCell } from '../../api/notebook'
import { ENGINE_VERSION, type RunResult } from '../../engine'
import { createLabService, LabApiError, type LabService } from '../labService'
import { tsxWorker, WorkerPool } from '../workerPool'
import { recipeHash, recordResult } from './format'
import { synthesisCellTexts, synthesisRecipeHash } from './synthesis'
import { scenarioTextHash } from '../synthesis'
import { recordedSynthesis } from '../../api/record'

const SCENARIOS = path.join(__dirname, '../../../scenarios')
const UPGRADE_TEXT = readFileSync(path.join(SCENARIOS, 'upgrade-loop.smmu-no-btm.yaml'), 'utf8')

let dir: string
let svc: LabService

const recipe = {
  policies: ['start-end', 'arch-hook'],
  mode: 'exhaustive' as const,
  seed: 1,
  executions: 10,
  schedule: [],
  max_states: 100_000,
  timeout_ms: null,
}
const pathCell: ExperimentCell = {
  kind: 'experiment',
  id: 'loop',
  title: 'the loop',
  scenario: { path: '../scenarios/upgrade.yaml' },
  recipe,
  results: [],
}
const inlineCell: ExperimentCell = { ...pathCell, id: 'inline', scenario: { inline: UPGRADE_TEXT } }
/** A synthesis cell over the scenarios folder's upgrade.yaml, from a notebook in notebooks/. */
const synthCell: SynthesisCell = {
  kind: 'synthesis',
  id: 'synthesis-1',
  title: 's',
  recipe: {
    scenarios: ['../scenarios/upgrade.yaml'],
    sites: null,
    objective: 'sim_ns',
    policies: [],
    max_states: 1000,
    timeout_ms: null,
  },
  results: [],
}
const nb: Notebook = {
  format: 1,
  title: 'Test notebook',
  cells: [{ kind: 'note', id: 'n', markdown: '# Hello\n\nworld\n' }, pathCell, inlineCell],
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nb-svc-'))
  mkdirSync(path.join(dir, 'scenarios'))
  mkdirSync(path.join(dir, 'notebooks'))
  writeFileSync(path.join(dir, 'scenarios', 'upgrade.yaml'), UPGRADE_TEXT)
  svc = createLabService({
    scenariosDir: path.join(dir, 'scenarios'),
    dataDir: path.join(dir, 'data'),
    pool: new WorkerPool(tsxWorker, 2),
  })
})
afterEach(async () => {
  await svc.close()
  rmSync(dir, { recursive: true, force: true })
})

async function rejection(p: Promise<unknown>): Promise<LabApiError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(LabApiError)
    return e as LabApiError
  }
  throw new Error('expected a rejection')
}

function finished(runId: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const off = svc.onDidRunEvent((e: RunEvent) => {
      if (e.runId !== runId) return
      if (e.kind === 'finished') {
        off()
        resolve(e.result)
      } else if (e.kind !== 'progress') {
        off()
        reject(new Error(e.kind))
      }
    })
  })
}

describe('notebook methods of the lab service', () => {
  it('new, save, open (relative to the notebooks folder), Recent', async () => {
    const fresh = await svc.notebookNew()
    expect(fresh.notebook.cells).toEqual([])
    expect(fresh.text.startsWith('format: 1\n')).toBe(true)
    const saved = await svc.notebookSave({ path: 'a.mnlab.yaml', notebook: nb, expectedRevision: null })
    expect(saved.path).toBe(path.join(dir, 'notebooks', 'a.mnlab.yaml'))
    const doc = await svc.notebookOpen({ path: 'a.mnlab.yaml' })
    expect(doc.notebook).toEqual(nb)
    expect(doc.revision).toBe(saved.revision)
    expect(doc.issues).toEqual([])
    expect(doc.status).toEqual({ loop: [], inline: [] })
    expect((await svc.notebookRecent())[0]!.path).toBe(saved.path)
  })

  it('a changed file on disk is a conflict, unless forced', async () => {
    const s = await svc.notebookSave({ path: 'a.mnlab.yaml', notebook: nb, expectedRevision: null })
    writeFileSync(s.path, readFileSync(s.path, 'utf8').replace('Test notebook', 'Edited elsewhere'))
    const e = await rejection(
      svc.notebookSave({ path: 'a.mnlab.yaml', notebook: nb, expectedRevision: s.revision }),
    )
    expect(e.message).toMatch(/^conflict: .*changed on disk/)
    await svc.notebookSave({ path: 'a.mnlab.yaml', notebook: nb, expectedRevision: s.revision, force: true })
    expect((await svc.notebookOpen({ path: 'a.mnlab.yaml' })).notebook!.title).toBe('Test notebook')
  })

  it('a bad file opens with located issues and is not rewritten; bad text is not saved', async () => {
    const f = path.join(dir, 'notebooks', 'bad.mnlab.yaml')
    writeFileSync(f, 'format: 1\ntitle: x\ncells:\n  - kind: note\n    id: n\n    markdown: [oops\n')
    const doc = await svc.notebookOpen({ path: f })
    expect(doc.notebook).toBeNull()
    expect(doc.issues[0]).toMatchObject({ file: f })
    expect(doc.issues[0]!.message).toMatch(/^YAML: /)
    const e = await rejection(
      svc.notebookSave({ path: f, text: 'format: 9\n', expectedRevision: doc.revision }),
    )
    expect(e.message).toMatch(/^the notebook is invalid: .*bad.mnlab.yaml:1:9: format 9 is newer/)
    expect(e.issues![0]).toMatchObject({ line: 1, column: 9 })
  })

  it('paths are confined to the notebooks folder (.., absolute, symbolic links)', async () => {
    expect((await rejection(svc.notebookOpen({ path: '../scenarios/upgrade.yaml' }))).message).toMatch(
      /outside the notebooks folder/,
    )
    expect((await rejection(svc.notebookOpen({ path: '/etc/passwd' }))).message).toMatch(/outside/)
    symlinkSync(os.tmpdir(), path.join(dir, 'notebooks', 'link'))
    expect(
      (await rejection(svc.notebookSave({ path: 'link/x.mnlab.yaml', notebook: nb, expectedRevision: null })))
        .message,
    ).toMatch(/outside/)
    expect(
      (await rejection(svc.notebookSave({ path: 'x.yaml', notebook: nb, expectedRevision: null }))).message,
    ).toMatch(/must end with .mnlab.yaml/)
    expect((await rejection(svc.notebookOpen({ path: '' }))).message).toMatch(/^notebookOpen: invalid path/)
  })

  it('autosave, recoverable, discard; a save of that file clears its recovery copy', async () => {
    await svc.notebookAutosave({ key: 'k1', path: 'a.mnlab.yaml', notebook: nb })
    await svc.notebookAutosave({ key: 'k2', path: null, notebook: { ...nb, title: 'untitled' } })
    const list = await svc.notebookRecoverable()
    expect(list.map((r) => r.key).sort()).toEqual(['k1', 'k2'])
    expect(list.find((r) => r.key === 'k1')!.path).toBe(path.join(dir, 'notebooks', 'a.mnlab.yaml'))
    // The copy comes back parsed, ready to show: the same notebook that was autosaved.
    expect(list.find((r) => r.key === 'k2')!.notebook).toEqual({ ...nb, title: 'untitled' })
    await svc.notebookDiscardRecovery({ key: 'k2' })
    await svc.notebookSave({ path: 'a.mnlab.yaml', notebook: nb, expectedRevision: null })
    expect(await svc.notebookRecoverable()).toEqual([])
    expect((await rejection(svc.notebookDiscardRecovery({ key: '../x' }))).message).toMatch(/invalid key/)
  })

  it('runs a cell from a path relative to the notebook and inline; results go stale when the scenario changes', async () => {
    const s = await svc.notebookSave({ path: 'a.mnlab.yaml', notebook: nb, expectedRevision: null })
    const a = await svc.notebookRunCell({ notebookPath: s.path, cellId: 'loop', notebook: nb })
    const b = await svc.notebookRunCell({ notebookPath: null, cellId: 'inline', notebook: nb })
    expect(a.recipeHash).toBe(b.recipeHash) // same recipe, same scenario text
    const [ra, rb] = await Promise.all([finished(a.runId), finished(b.runId)])
    expect(ra.results.map((r) => r.verdict)).toEqual(['violated', 'holds'])
    expect(rb.results.map((r) => r.verdict)).toEqual(['violated', 'holds'])
    const rec = recordResult(ra, recipe, UPGRADE_TEXT)
    expect(rec.recipe_hash).toBe(a.recipeHash)
    const withResult: Notebook = {
      ...nb,
      cells: nb.cells.map((c) => (c.kind === 'experiment' ? { ...c, results: [rec] } : c)),
    }
    const s2 = await svc.notebookSave({ path: s.path, notebook: withResult, expectedRevision: s.revision })
    expect((await svc.notebookOpen({ path: s2.path })).status).toEqual({
      loop: ['current'],
      inline: ['current'],
    })
    writeFileSync(path.join(dir, 'scenarios', 'upgrade.yaml'), UPGRADE_TEXT + '# edited\n')
    expect((await svc.notebookOpen({ path: s2.path })).status).toEqual({
      loop: ['stale-recipe'],
      inline: ['current'],
    })
    const old = {
      ...withResult,
      cells: withResult.cells.map((c) =>
        c.kind === 'experiment' ? { ...c, results: [{ ...rec, engine: '0.0.0' }] } : c,
      ),
    }
    await svc.notebookSave({ path: s2.path, notebook: old, expectedRevision: null, force: true })
    expect((await svc.notebookOpen({ path: s2.path })).status).toEqual({
      loop: ['stale-recipe'],
      inline: ['stale-engine'],
    })
    expect(ENGINE_VERSION).not.toBe('0.0.0')
  })

  it('notebookStatus follows edits to a recipe or an inline scenario, and says why a path does not load', async () => {
    const text = UPGRADE_TEXT
    const rec: RecordedResult = {
      recipe_hash: recipeHash(recipe, text),
      engine: ENGINE_VERSION,
      at: '2026-11-22T06:00:00.000Z',
      pinned: false,
      policies: [],
    }
    const withResult: Notebook = {
      ...nb,
      cells: nb.cells.map((c) => (c.kind === 'experiment' ? { ...c, results: [rec] } : c)),
    }
    const s = await svc.notebookSave({ path: 'st.mnlab.yaml', notebook: withResult, expectedRevision: null })
    expect(await svc.notebookStatus({ notebookPath: s.path, notebook: withResult })).toEqual({
      status: { loop: ['current'], inline: ['current'] },
      problems: {},
      hashes: {},
    })
    const edit = (f: (c: ExperimentCell) => ExperimentCell): Notebook => ({
      ...withResult,
      cells: withResult.cells.map((c) => (c.kind === 'experiment' ? f(c) : c)),
    })
    // Another seed, another policy list, another budget: stale. Back to the recorded recipe: current.
    for (const change of [
      { seed: 2 },
      { policies: ['arch-hook'] },
      { max_states: 99_999 },
      { mode: 'random' as const },
      { timeout_ms: 1000 },
    ]) {
      const edited = edit((c) => ({ ...c, recipe: { ...c.recipe, ...change } }))
      expect((await svc.notebookStatus({ notebookPath: s.path, notebook: edited })).status).toEqual({
        loop: ['stale-recipe'],
        inline: ['stale-recipe'],
      })
    }
    const inlineEdited = edit((c) =>
      'inline' in c.scenario ? { ...c, scenario: { inline: text.replace('title:', 'title: x') } } : c,
    )
    expect((await svc.notebookStatus({ notebookPath: s.path, notebook: inlineEdited })).status).toEqual({
      loop: ['current'],
      inline: ['stale-recipe'],
    })
    // The same text inline as in the file: same hash, so still current.
    const inlined = edit((c) => ({ ...c, scenario: { inline: text } }))
    expect((await svc.notebookStatus({ notebookPath: null, notebook: inlined })).status).toEqual({
      loop: ['current'],
      inline: ['current'],
    })
    const unsaved = await svc.notebookStatus({ notebookPath: null, notebook: withResult })
    expect(unsaved.status.loop).toEqual(['stale-recipe'])
    expect(unsaved.problems.loop).toMatch(/save the notebook first/)
    const missing = edit((c) => ('path' in c.scenario ? { ...c, scenario: { path: 'nope.yaml' } } : c))
    const m = await svc.notebookStatus({ notebookPath: s.path, notebook: missing })
    expect(m.problems).toEqual({ loop: "cell loop: no scenario file 'nope.yaml'" })
    expect(
      (await rejection(svc.notebookStatus({ notebookPath: '../x.mnlab.yaml', notebook: nb }))).message,
    ).toMatch(/outside the notebooks folder/)
  })

  it("notebookStatus gives a synthesis cell's recipe hash, and engineInfo the scenarios folder, for the Synthesis view's Add to notebook", async () => {
    const cell = synthCell
    const withSynth: Notebook = { ...nb, cells: [cell] }
    const s = await svc.notebookSave({ path: 'sy.mnlab.yaml', notebook: withSynth, expectedRevision: null })
    const want = synthesisRecipeHash(cell.recipe, synthesisCellTexts(cell, s.path))
    expect(want).toMatch(/^[0-9a-f]{64}$/)
    expect((await svc.notebookStatus({ notebookPath: s.path, notebook: withSynth })).hashes).toEqual({
      'synthesis-1': want,
    })
    const unsaved = await svc.notebookStatus({ notebookPath: null, notebook: withSynth })
    expect(unsaved.hashes).toEqual({ 'synthesis-1': null })
    expect(unsaved.problems['synthesis-1']).toMatch(/save the notebook first/)
    expect((await svc.engineInfo()).scenariosDir).toBe(path.join(dir, 'scenarios'))
  })

  it('a synthesis result goes in under the scenario files as the search read them at its start: a file edited before the add reads stale', async () => {
    const cell: SynthesisCell = {
      ...synthCell,
      recipe: { ...synthCell.recipe, sites: ['flush_tlb_page'], max_states: 100_000 },
    }
    const withSynth: Notebook = { ...nb, cells: [cell] }
    const s = await svc.notebookSave({ path: 'sy.mnlab.yaml', notebook: withSynth, expectedRevision: null })
    // The Synthesis view's search: the services hash each scenario's text when it starts.
    const runId = await svc.startSynthesis({
      scenarios: [{ path: 'upgrade.yaml' }],
      sites: ['flush_tlb_page'],
    })
    const file = path.join(dir, 'scenarios', 'upgrade.yaml')
    writeFileSync(file, `${UPGRADE_TEXT}# edited while the search runs\n`)
    const done = await new Promise<Extract<RunEvent, { kind: 'synthesis-finished' }>>((resolve, reject) => {
      const off = svc.onDidRunEvent((e: RunEvent) => {
        if (e.runId !== runId || e.kind === 'synthesis-progress' || e.kind === 'synthesis-evaluation') return
        off()
        if (e.kind === 'synthesis-finished') resolve(e)
        else reject(new Error(e.kind))
      })
    })
    expect(done.scenarioHashes).toEqual({ 'upgrade.yaml': scenarioTextHash(UPGRADE_TEXT) })
    // Add to notebook: the recipe's scenarios with the hashes the search read.
    const searched = { 'synthesis-1': { '../scenarios/upgrade.yaml': done.scenarioHashes['upgrade.yaml']! } }
    const status = (n: Notebook, withSearched: boolean) =>
      svc.notebookStatus({ notebookPath: s.path, notebook: n, ...(withSearched ? { searched } : {}) })
    const now = (await status(withSynth, false)).hashes!['synthesis-1']!
    const asSearched = (await status(withSynth, true)).hashes!['synthesis-1']!
    expect(now).toBe(synthesisRecipeHash(cell.recipe, synthesisCellTexts(cell, s.path)))
    expect(asSearched).toMatch(/^[0-9a-f]{64}$/)
    expect(asSearched).not.toBe(now)
    const recorded: Notebook = {
      ...withSynth,
      cells: [{ ...cell, results: [recordedSynthesis(done.result, asSearched, new Date(0), false)] }],
    }
    expect((await status(recorded, false)).status['synthesis-1']).toEqual(['stale-recipe'])
    // The file as the search read it again: the same recipe hash as recorded, current.
    writeFileSync(file, UPGRADE_TEXT)
    expect((await status(withSynth, true)).hashes!['synthesis-1']).toBe(
      (await status(withSynth, false)).hashes!['synthesis-1'],
    )
    const fresh = (await status(withSynth, true)).hashes!['synthesis-1']!
    const again: Notebook = {
      ...withSynth,
      cells: [{ ...cell, results: [recordedSynthesis(done.result, fresh, new Date(0), false)] }],
    }
    expect((await status(again, false)).status['synthesis-1']).toEqual(['current'])
  })

  it("runs a cell naming the notebook's own policies; the hash covers their sites; replays resolve them with policyDefs", async () => {
    const defs = { 'popple-v1': ['start-end', 'handle_pte_fault'], mine: ['flush_tlb_page'] }
    const custom: Notebook = {
      ...nb,
      policies: defs,
      cells: [{ ...inlineCell, recipe: { ...recipe, policies: ['popple-v1', 'mine'] } }],
    }
    const s = await svc.notebookSave({ path: 'c.mnlab.yaml', notebook: custom, expectedRevision: null })
    expect((await svc.notebookOpen({ path: s.path })).notebook?.policies).toEqual(defs)
    const a = await svc.notebookRunCell({ notebookPath: s.path, cellId: 'inline', notebook: custom })
    const ra = await finished(a.runId)
    expect(ra.results.map((r) => [r.policy, r.verdict])).toEqual([
      ['popple-v1', 'violated'],
      ['mine', 'holds'],
    ])
    expect(a.recipeHash).toBe(recipeHash({ ...recipe, policies: ['popple-v1', 'mine'] }, UPGRADE_TEXT, defs))
    const cx = ra.results[0]!.counterexamples[0]!
    const rp = await svc.replay({
      text: UPGRADE_TEXT,
      file: null,
      policy: 'popple-v1',
      policyDefs: defs,
      schedule: [...cx.schedule],
    })
    expect(rp.outcome).toBe('livelock')
    // Without the definitions the name means nothing; a bad site is bad input.
    expect(
      (await rejection(svc.replay({ text: UPGRADE_TEXT, file: null, policy: 'popple-v1', schedule: [] })))
        .message,
    ).toMatch(/unknown policy 'popple-v1'/)
    expect(
      (
        await rejection(
          svc.replay({
            text: UPGRADE_TEXT,
            file: null,
            policy: 'x',
            policyDefs: { x: ['nope'] },
            schedule: [],
          }),
        )
      ).message,
    ).toMatch(/^policyDefs: policies\.x\.0: unknown site 'nope'/)
  })

  it('run-cell errors: unknown cell, a note, a path without a saved notebook, a path outside', async () => {
    expect(
      (await rejection(svc.notebookRunCell({ notebookPath: null, cellId: 'zz', notebook: nb }))).message,
    ).toMatch(/no cell 'zz'/)
    expect(
      (await rejection(svc.notebookRunCell({ notebookPath: null, cellId: 'n', notebook: nb }))).message,
    ).toMatch(/is a note/)
    expect(
      (await rejection(svc.notebookRunCell({ notebookPath: null, cellId: 'loop', notebook: nb }))).message,
    ).toMatch(/save the notebook first/)
    const evil: Notebook = { ...nb, cells: [{ ...pathCell, scenario: { path: '../../../../etc/passwd' } }] }
    expect(
      (await rejection(svc.notebookRunCell({ notebookPath: 'a.mnlab.yaml', cellId: 'loop', notebook: evil })))
        .message,
    ).toMatch(/outside/)
  })

  it('export and LKML timeline', async () => {
    const md = await svc.notebookExport({ notebook: nb, format: 'markdown' })
    expect(md).toContain('# Hello')
    expect(await svc.notebookExport({ notebook: nb, format: 'html' })).toContain('<h2>Hello</h2>')
    const t = await svc.lkmlTimeline({
      text: UPGRADE_TEXT,
      file: null,
      policy: 'start-end',
      schedule: ['C0', 'C0', 'D0'],
      cycle: ['D0', 'D0', 'D0'],
    })
    expect(t).toContain('[Time N] ---')
    expect(t).toContain('DEV-thread-0  {')
    // collapse reaches lkmlTimeline through the request (the lkmlTimeline schema's optional field).
    const folded = await svc.lkmlTimeline({
      text: UPGRADE_TEXT,
      file: null,
      policy: 'start-end',
      schedule: ['C0', 'C0', 'D0'],
      cycle: ['D0', 'D0', 'D0'],
      collapse: true,
    })
    // The cycle's first step stays unfolded (the timeline says where the loop starts); the rest fold.
    expect(folded).toContain('[Time N+4..N+5, repeats forever] 2 steps with no visible change (D0 x2)')
    expect(t).not.toContain('no visible change')
    const e = await rejection(
      svc.lkmlTimeline({
        text: UPGRADE_TEXT,
        file: null,
        policy: 'start-end',
        schedule: ['C9'],
        cycle: null,
      }),
    )
    expect(e.message).toMatch(/unknown thread 'C9'/)
  })
})
