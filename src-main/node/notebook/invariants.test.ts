/**
 * Recorded results keep every invariant's verdict (issue 12): a policy that violated one invariant
 * where the engine proved the others hold is reported as such, and results recorded before the
 * field existed still load and say "not recorded" rather than a guessed `unknown`.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Notebook } from '../../api/notebook'
import { recordedInvariant } from '../../api/record'
import { runScenario } from '../../engine'
import { loadScenarioText } from '../scenarioFiles'
import { cellScenarioText, recipePolicies, recipeRunOptions, verdictChanges } from './cells'
import { exportHtml, exportMarkdown } from './export'
import { parseNotebook, recipeHash, recordResult, serializeNotebook } from './format'

const ROOT = path.join(__dirname, '../../..')
const UPGRADE_NB = path.join(ROOT, 'notebooks/permission-upgrade-2023.mnlab.yaml')

function loadNb(file: string): Notebook {
  const r = parseNotebook(readFileSync(file, 'utf8'), file)
  if (!r.ok) throw new Error(JSON.stringify(r.issues))
  return r.notebook
}

describe('recorded per-invariant verdicts', () => {
  const nb = loadNb(UPGRADE_NB)

  it("a result recorded now keeps every invariant's verdict: the others hold where one is violated", () => {
    const cell = nb.cells.find((c) => c.kind === 'experiment')!
    if (cell.kind !== 'experiment') throw new Error('no experiment')
    const { text, file } = cellScenarioText(cell, UPGRADE_NB)
    const sc = loadScenarioText(text, file)
    const run = runScenario(sc, recipePolicies(cell.recipe, sc), recipeRunOptions(sc, cell.recipe))
    const fresh = recordResult(run, cell.recipe, text, new Date('2026-01-02T03:04:05Z'))
    const se = fresh.policies.find((p) => p.policy === 'start-end')!
    // Computed, not assumed: the engine's own per-invariant verdicts are what is recorded.
    const engineSe = run.results.find((r) => r.policy === 'start-end')!
    expect(se.invariants).toEqual(engineSe.invariants)
    expect(se.verdict).toBe('violated')
    const one: Notebook = { ...nb, cells: [{ ...cell, results: [fresh] }] }
    const md = exportMarkdown(one)
    const row = md.split('\n').find((l) => l.startsWith('| start-end |'))!
    const cellsOf = row.split('|').map((c) => c.trim())
    const INV = ['use-after-free', 'stale-after-return', 'lost-write', 'lost-dirty', 'progress', 'forbid']
    INV.forEach((inv, i) => expect(cellsOf[3 + i], inv).toBe(engineSe.invariants[inv as 'forbid']))
    expect(row).not.toContain('not recorded')
    expect(row).not.toContain('unknown')
    const html = exportHtml(one)
    expect(html).not.toContain('not recorded')
    expect(html).toContain('<td class="holds">holds</td>')
    // It survives a save and a load, and the recipe hash (which never covers results) is unchanged.
    const back = parseNotebook(serializeNotebook(one), 'x.mnlab.yaml')
    if (!back.ok) throw new Error(JSON.stringify(back.issues))
    const cb = back.notebook.cells[0]!
    if (cb.kind !== 'experiment') throw new Error('no experiment')
    expect(cb.results[0]!.policies.find((p) => p.policy === 'start-end')!.invariants).toEqual(
      engineSe.invariants,
    )
    expect(cb.results[0]!.recipe_hash).toBe(cell.results[0]!.recipe_hash)
  })

  it('an old result (no per-invariant verdicts) loads, keeps its recipe hash, and never claims unknown', () => {
    const cell = nb.cells.find((c) => c.kind === 'experiment')!
    if (cell.kind !== 'experiment') throw new Error('no experiment')
    const old = cell.results[0]!.policies.find((p) => p.policy === 'start-end')!
    expect(old.invariants).toBeUndefined()
    expect(recordedInvariant(old, 'progress')).toBe('violated')
    expect(recordedInvariant(old, 'forbid')).toBeNull()
    const holds = cell.results[0]!.policies.find((p) => p.verdict === 'holds')!
    expect(recordedInvariant(holds, 'forbid')).toBe('holds')
    // The hash covers the recipe and the scenario text only: what the file recorded is what it checks.
    const { text } = cellScenarioText(cell, UPGRADE_NB)
    expect(recipeHash(cell.recipe, text)).toBe(cell.results[0]!.recipe_hash)
    // Saving an old file writes no `invariants:` key it did not have.
    expect(serializeNotebook(nb)).not.toContain('invariants:')
  })

  it('notebook check reports an invariant that was proven to hold and no longer is', () => {
    const cell = nb.cells.find((c) => c.kind === 'experiment')!
    if (cell.kind !== 'experiment') throw new Error('no experiment')
    const { text, file } = cellScenarioText(cell, UPGRADE_NB)
    const sc = loadScenarioText(text, file)
    const fresh = recordResult(
      runScenario(sc, recipePolicies(cell.recipe, sc), recipeRunOptions(sc, cell.recipe)),
      cell.recipe,
      text,
    )
    expect(verdictChanges(fresh, fresh)).toEqual([])
    // The same violations, but forbid only unknown now (a budget cut it, say).
    const weaker = {
      ...fresh,
      policies: fresh.policies.map((p) =>
        p.policy === 'start-end' ? { ...p, invariants: { ...p.invariants!, forbid: 'unknown' as const } } : p,
      ),
    }
    expect(verdictChanges(fresh, weaker)).toEqual([
      'start-end: recorded violated, now forbid holds -> unknown',
    ])
    // An old result (no per-invariant verdicts) is compared on its violations only, as before.
    expect(verdictChanges(cell.results[0]!, fresh)).toEqual([])
  })
})
