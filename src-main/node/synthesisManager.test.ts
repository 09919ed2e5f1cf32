/**
 * LabApi startSynthesis / cancelSynthesis (synthesisManager.ts): scenarios from the confined
 * folder (files, folders) or text, bad input refused before anything runs, events streamed
 * under the synthesis's id, and cancellation.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { RunEvent, SynthesisEvent, SynthesizeRequest } from '../api/labApi'
import { createLabService, LabApiError, type LabService } from './labService'
import { scenarioTextHash } from './synthesis'
import { tsxWorker, WorkerPool } from './workerPool'

const CATALOGUE = path.join(__dirname, '../../scenarios')
const MUNMAP = 'munmap-uaf.flush-at-start.yaml'
const UPGRADE = 'upgrade-loop.smmu-no-btm.yaml'
const COW = 'cow-ordering.invalidate-range-needed.yaml'

let dir: string
let svc: LabService

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lab-synth-'))
  mkdirSync(path.join(dir, 'set'))
  for (const f of [MUNMAP, UPGRADE]) copyFileSync(path.join(CATALOGUE, f), path.join(dir, 'set', f))
  copyFileSync(path.join(CATALOGUE, COW), path.join(dir, COW))
  mkdirSync(path.join(dir, 'broken'))
  writeFileSync(path.join(dir, 'broken', 'bad.yaml'), 'title: broken\nbogus: [\n')
  svc = createLabService({ scenariosDir: dir, pool: new WorkerPool(tsxWorker, 2), progressIntervalMs: 50 })
})

afterEach(async () => {
  await svc.close()
  rmSync(dir, { recursive: true, force: true })
})

/** The events of one synthesis until it ends. */
function eventsOf(runId: Promise<string>): Promise<RunEvent[]> {
  const seen: RunEvent[] = []
  return new Promise((resolve) => {
    const off = svc.onDidRunEvent((e) => {
      seen.push(e)
      void runId.then((id) => {
        const mine = seen.filter((x) => x.runId === id)
        if (mine.some((x) => x.kind !== 'synthesis-progress' && x.kind !== 'synthesis-evaluation')) {
          off()
          resolve(mine)
        }
      })
    })
  })
}

async function rejection(p: Promise<unknown>): Promise<LabApiError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(LabApiError)
    return e as LabApiError
  }
  throw new Error('expected a rejection')
}

const SMALL: Partial<SynthesizeRequest> = {
  sites: [
    'invalidate_range_start',
    'range_end',
    'tlb_flush_mmu_tlbonly',
    'flush_tlb_range',
    'flush_tlb_page',
  ],
}

describe('startSynthesis', () => {
  it('streams each exploration and the progress, then the result, under its id', async () => {
    const id = svc.startSynthesis({ scenarios: [{ path: 'set' }], ...SMALL })
    const events = await eventsOf(id)
    const kinds = new Set(events.map((e) => e.kind))
    expect(kinds).toEqual(new Set(['synthesis-evaluation', 'synthesis-progress', 'synthesis-finished']))
    const done = events.at(-1) as Extract<SynthesisEvent, { kind: 'synthesis-finished' }>
    expect(done.kind).toBe('synthesis-finished')
    const r = done.result
    // The folder's scenarios, by their paths under the scenarios folder.
    expect(r.scenarios.map((s) => s.id)).toEqual([`set/${MUNMAP}`, `set/${UPGRADE}`])
    expect(r.scenarios[0]!.file).toBe(path.join(dir, 'set', MUNMAP))
    // Each file's text as read when the search started, by the same ids.
    const read = (f: string): string => scenarioTextHash(readFileSync(path.join(dir, 'set', f), 'utf8'))
    expect(done.scenarioHashes).toEqual({
      [`set/${MUNMAP}`]: read(MUNMAP),
      [`set/${UPGRADE}`]: read(UPGRADE),
    })
    // In canonical order (SITE_NAMES), whatever order the request gave.
    expect(r.settings.candidates).toEqual([
      'invalidate_range_start',
      'range_end',
      'tlb_flush_mmu_tlbonly',
      'flush_tlb_page',
      'flush_tlb_range',
    ])
    // munmap needs range_end, the gather flush or the range flush; the upgrade loop the page flush.
    expect(r.minimal.map((m) => m.placement.name).sort()).toEqual([
      'sites:flush_tlb_page+flush_tlb_range',
      'sites:range_end+flush_tlb_page',
      'sites:tlb_flush_mmu_tlbonly+flush_tlb_page',
    ])
    const evaluations = events.filter((e) => e.kind === 'synthesis-evaluation')
    expect(evaluations.length).toBe(r.search.explored)
    expect(r.complete).toBe(true)
    // Plain data: survives JSON.
    expect(JSON.parse(JSON.stringify(r))).toEqual(r)
  }, 60_000)

  it('takes unsaved text, and shows the policies the request defines and those it names', async () => {
    const text = readFileSync(path.join(CATALOGUE, UPGRADE), 'utf8').replace(
      /^expect:/m,
      'policies: { mine: [flush_tlb_page] }\nexpect:',
    )
    const id = svc.startSynthesis({
      scenarios: [{ text, file: 'draft.yaml' }],
      ...SMALL,
      // `mine` is the scenario's own name: shown because named.
      policies: ['sites:range_end', 'mine'],
      policyDefs: { theirs: ['invalidate_range_start'] },
    })
    const events = await eventsOf(id)
    const done = events.at(-1) as Extract<SynthesisEvent, { kind: 'synthesis-finished' }>
    const r = done.result
    expect(r.scenarios[0]!.id).toBe('draft.yaml')
    expect(done.scenarioHashes).toEqual({ 'draft.yaml': scenarioTextHash(text) })
    expect(r.scenarios[0]!.file).toBeNull()
    expect(r.placements.map((p) => [p.name, p.cells[0]!.verdict])).toEqual([
      ['start-end', 'violated'],
      ['invalidate-range', 'violated'],
      ['arch-hook', 'holds'],
      ['theirs', 'violated'],
      ['sites:range_end', 'violated'],
      ['mine', 'holds'],
    ])
    // No scenario file: the certificates cannot name a replay command.
    expect(r.minimal[0]!.needed[0]!.counterexample.replay).toBeNull()
  }, 60_000)

  it('refuses bad input before anything runs, saying what and where', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ scenarios: [{ path: 'set' }], sites: ['flush_tlb_rang'] }, /unknown site 'flush_tlb_rang'/],
      [{ scenarios: [{ path: 'set' }], objective: 'speed' }, /startSynthesis: invalid objective/],
      [{ scenarios: [{ path: 'set' }], policies: ['arch-hok'] }, /unknown policy 'arch-hok'/],
      [{ scenarios: [] }, /startSynthesis: invalid scenarios/],
      [{ scenarios: [{ path: '../x.yaml' }] }, /may not contain '\.\.'/],
      [{ scenarios: [{ path: '..' }] }, /may not contain '\.\.'/],
      [{ scenarios: [{ path: 'nothing-here' }] }, /no scenario file under 'nothing-here'/],
      [
        { scenarios: [{ path: `set/${MUNMAP}` }, { path: 'set' }] },
        /set\/munmap-uaf.flush-at-start.yaml is named twice/,
      ],
      [
        { scenarios: [{ path: 'set' }], policyDefs: { mine: ['frob'] } },
        /policyDefs: policies.mine.0: unknown site 'frob'/,
      ],
    ]
    for (const [req, msg] of cases)
      expect((await rejection(svc.startSynthesis(req as never))).message).toMatch(msg)
    // A scenario that does not load: its issues, located.
    const e = await rejection(svc.startSynthesis({ scenarios: [{ path: 'broken' }] }))
    expect(e.message).toMatch(/^the scenario is invalid: line \d+, column \d+/)
    expect(e.issues?.length).toBeGreaterThan(0)
  })

  it('cancelSynthesis stops a long search and emits cancelled; a second cancel does nothing', async () => {
    const id = svc.startSynthesis({ scenarios: [{ path: COW }] })
    const events = eventsOf(id)
    // Let it start exploring.
    await new Promise((r) => setTimeout(r, 300))
    await svc.cancelSynthesis({ runId: await id })
    const got = await events
    expect(got.at(-1)).toEqual({ kind: 'cancelled', runId: await id })
    expect(got.some((e) => e.kind === 'synthesis-finished')).toBe(false)
    await svc.cancelSynthesis({ runId: await id })
    await svc.cancelSynthesis({ runId: 'no-such-synthesis' })
  }, 30_000)
})
