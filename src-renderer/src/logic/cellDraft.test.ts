import { describe, expect, it } from 'vitest'
import type { ExperimentCell } from '../../../src-main/api/notebook'
import { applyDraft, draftOf } from './cellDraft'

const PRESETS = ['start-end', 'invalidate-range', 'arch-hook']
const VARIANTS = ['upgrade-notify', 'access-flags-notify', 'pri-flush']

const cell: ExperimentCell = {
  kind: 'experiment',
  id: 'e1',
  title: 'upgrade loop',
  scenario: { inline: 'title: x\n' },
  recipe: {
    policies: ['start-end', 'arch-hook+pri-flush'],
    mode: 'exhaustive',
    seed: 3,
    executions: 500,
    schedule: [],
    max_states: 2_000_000,
    timeout_ms: 60_000,
  },
  results: [
    {
      recipe_hash: '0'.repeat(64),
      engine: '1',
      at: '2026-11-22T06:00:00.000Z',
      pinned: true,
      policies: [],
    },
  ],
}

describe('editing an experiment cell', () => {
  it('a draft applied unchanged gives the same cell (results kept)', () => {
    const r = applyDraft(cell, draftOf(cell), PRESETS, VARIANTS)
    expect(r.problems).toEqual([])
    expect(r.cell).toEqual(cell)
  })

  it('applies each field: policies canonicalised, seconds to ms, schedule only when scripted, a path', () => {
    const d = {
      ...draftOf(cell),
      title: 'renamed',
      policies: 'invalidate-range, start-end+pri-flush+upgrade-notify',
      mode: 'scripted' as const,
      seed: 9,
      timeoutS: 0,
      schedule: '[C0, D0]  C0',
      source: 'path' as const,
      path: ' ../scenarios/a.yaml ',
    }
    const r = applyDraft(cell, d, PRESETS, VARIANTS)
    expect(r.cell).toEqual({
      ...cell,
      title: 'renamed',
      scenario: { path: '../scenarios/a.yaml' },
      recipe: {
        policies: ['invalidate-range', 'start-end+upgrade-notify+pri-flush'],
        mode: 'scripted',
        seed: 9,
        executions: 500,
        schedule: ['C0', 'D0', 'C0'],
        max_states: 2_000_000,
        timeout_ms: null,
      },
    })
    const exhaustive = applyDraft(cell, { ...d, mode: 'exhaustive' }, PRESETS, VARIANTS)
    expect(exhaustive.cell?.recipe.schedule).toEqual([])
  })

  it('names every bad field and changes nothing', () => {
    const r = applyDraft(
      cell,
      {
        ...draftOf(cell),
        policies: 'start-end, bogus',
        seed: -1,
        executions: 1.5,
        maxStates: 0,
        timeoutS: -2,
        mode: 'scripted',
        schedule: ' ',
        source: 'path',
        path: 'notes.txt',
      },
      PRESETS,
      VARIANTS,
    )
    expect(r.cell).toBeNull()
    expect(r.problems.map((p) => p.field)).toEqual([
      'policies',
      'seed',
      'executions',
      'maxStates',
      'timeoutS',
      'schedule',
      'path',
    ])
    expect(r.problems[0]!.message).toBe("unknown preset 'bogus'")
    expect(applyDraft(cell, { ...draftOf(cell), policies: ' , ' }, PRESETS, VARIANTS).problems).toEqual([
      { field: 'policies', message: 'name at least one policy, e.g. start-end, arch-hook' },
    ])
    expect(applyDraft(cell, { ...draftOf(cell), inline: '  \n' }, PRESETS, VARIANTS).problems).toEqual([
      { field: 'inline', message: 'the inline scenario is empty' },
    ])
  })
})
