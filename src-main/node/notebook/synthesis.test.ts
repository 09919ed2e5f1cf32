/**
 * Synthesis cells in notebooks: the file format (located errors, a stable round trip), record
 * and check through the CLI (a changed minimal set fails check; a changed scenario makes the
 * recorded result stale), and both report formats.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Notebook, SynthesisCell } from '../../api/notebook'
import { mnlab } from '../cliTestkit'
import { exportNotebook } from './export'
import { parseNotebook, serializeNotebook } from './format'
import { synthesisCellTexts, synthesisRecipeHash } from './synthesis'

const ROOT = path.join(__dirname, '../../..')
const FILES = ['upgrade-loop.smmu-no-btm.yaml', 'munmap-uaf.flush-at-start.yaml']

let dir = ''
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mnlab-nb-synth-'))
  mkdirSync(path.join(dir, 'set'))
  for (const f of FILES) copyFileSync(path.join(ROOT, 'scenarios', f), path.join(dir, 'set', f))
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const cell: SynthesisCell = {
  kind: 'synthesis',
  id: 'search',
  title: 'munmap and the upgrade loop',
  recipe: {
    scenarios: ['set'],
    sites: ['range_end', 'tlb_flush_mmu_tlbonly', 'flush_tlb_page', 'iommu_page_response'],
    objective: 'sim_ns',
    policies: ['sites:range_end,flush_tlb_page'],
    max_states: 100_000,
    timeout_ms: null,
  },
  results: [],
}
const notebook = (c: SynthesisCell = cell): Notebook => ({
  format: 1,
  title: 'synthesis',
  cells: [{ kind: 'note', id: 'n', markdown: 'Placements.\n' }, c],
})

function write(name: string, text: string): string {
  const f = path.join(dir, name)
  writeFileSync(f, text)
  return f
}

describe('synthesis cells: the file', () => {
  it('round-trips with a stable key order, names on one line', () => {
    const text = serializeNotebook(notebook())
    expect(text).toMatch(
      /^ {2}- kind: synthesis\n {4}id: search\n {4}title: munmap and the upgrade loop\n {4}recipe:\n {6}scenarios: \[set\]\n {6}sites: \[range_end, tlb_flush_mmu_tlbonly, flush_tlb_page, iommu_page_response\]\n {6}objective: sim_ns\n/m,
    )
    const back = parseNotebook(text, 'x.mnlab.yaml')
    expect(back.ok && back.notebook).toEqual(notebook())
    expect(serializeNotebook((back as { notebook: Notebook }).notebook)).toBe(text)
  })

  it('a bad recipe is located: its line, the field and what was expected', () => {
    const text = serializeNotebook(notebook())
      .replace('objective: sim_ns', 'objective: speed')
      .replace('max_states: 100000', 'max_states: 0')
    const r = parseNotebook(text, 'bad.mnlab.yaml')
    expect(r.ok).toBe(false)
    const issues = (r as { issues: ReadonlyArray<{ line: number; message: string }> }).issues
    const lines = text.split('\n')
    const at = (s: string): number => lines.findIndex((l) => l.includes(s)) + 1
    expect(issues).toEqual([
      expect.objectContaining({
        line: at('objective: speed'),
        message: expect.stringMatching(
          /^cells\.1\.recipe\.objective: Invalid option: expected one of "sim_ns"\|"secondary_invalidations"/,
        ),
      }),
      expect.objectContaining({
        line: at('max_states: 0'),
        message: expect.stringMatching(/^cells\.1\.recipe\.max_states: Too small/),
      }),
    ])
    // An unknown key, and a cell without scenarios.
    const extra = parseNotebook(
      serializeNotebook(notebook()).replace('    recipe:\n', '    recipe:\n      jobs: 4\n'),
      'x',
    )
    expect(!extra.ok && extra.issues[0]!.message).toMatch(/^cells\.1\.recipe: Unrecognized key: "jobs"/)
    const none = parseNotebook(
      serializeNotebook(notebook({ ...cell, recipe: { ...cell.recipe, scenarios: [] } })),
      'x',
    )
    expect(!none.ok && none.issues[0]!.message).toMatch(/^cells\.1\.recipe\.scenarios: Too small/)
  })

  it("hashes the recipe and every scenario's text: an edit to either changes it", () => {
    const nbFile = path.join(dir, 'hash.mnlab.yaml')
    const texts = synthesisCellTexts(cell, nbFile)
    expect(texts.map((t) => t.id)).toEqual(FILES.map((f) => `set/${f}`).sort())
    const h = synthesisRecipeHash(cell.recipe, texts)
    expect(synthesisRecipeHash({ ...cell.recipe, objective: 'secondary_invalidations' }, texts)).not.toBe(h)
    expect(
      synthesisRecipeHash(cell.recipe, [{ ...texts[0]!, text: texts[0]!.text + '\n' }, texts[1]!]),
    ).not.toBe(h)
    expect(synthesisRecipeHash(cell.recipe, texts)).toBe(h)
  })
})

describe('synthesis cells: record, check and export', () => {
  it('record runs the search and keeps the result; check reproduces it; a changed result fails check', async () => {
    const file = write('record.mnlab.yaml', serializeNotebook(notebook()))
    const rec = await mnlab('notebook', 'record', file)
    expect(rec.code).toBe(0)
    expect(rec.stdout).toBe(`recorded 1 experiment in ${file}\n`)
    const parsed = parseNotebook(readFileSync(file, 'utf8'), file)
    expect(parsed.ok).toBe(true)
    const c = (parsed as { notebook: Notebook }).notebook.cells[1] as SynthesisCell
    expect(c.results).toHaveLength(1)
    const res = c.results[0]!
    expect(res.scenarios).toEqual(FILES.map((f) => `set/${f}`).sort())
    expect(res.complete).toBe(true)
    expect(res.minimal.map((m) => m.placement)).toContain('sites:range_end+flush_tlb_page')
    expect(res.placements.map((p) => p.placement)).toEqual([
      'start-end',
      'invalidate-range',
      'arch-hook',
      'sites:range_end+flush_tlb_page',
    ])

    const ok = await mnlab('notebook', 'check', file)
    expect(ok.code).toBe(0)
    // check names the file relative to where it runs.
    const shown = path.relative(process.cwd(), file)
    expect(ok.stdout.startsWith(`ok   ${shown}#search: `)).toBe(true)
    expect(ok.stdout).toMatch(/#search: \d+ minimal \(/)

    // A recorded result that claims another minimal set and another verdict: check names both.
    const forged = readFileSync(file, 'utf8')
      .replace('- placement: sites:range_end+flush_tlb_page\n', '- placement: sites:flush_tlb_page\n')
      .replace(/(placement: arch-hook\n\s+held: )2(\n\s+cost: \d+\n\s+verdicts: \[)holds/, '$11$2violated')
    expect(forged).not.toBe(readFileSync(file, 'utf8'))
    writeFileSync(file, forged)
    const bad = await mnlab('notebook', 'check', file)
    expect(bad.code).toBe(1)
    expect(bad.stdout).toMatch(/^FAIL .*#search: the synthesis changed since /m)
    expect(bad.stdout).toMatch(
      /^ {7}minimal placements: no longer sites:flush_tlb_page; now also sites:range_end\+flush_tlb_page$/m,
    )
    expect(bad.stdout).toMatch(/^ {7}arch-hook: set\/munmap-uaf\.flush-at-start\.yaml violated -> holds$/m)

    // record --stale leaves a current result alone; an edited scenario makes it stale.
    writeFileSync(file, serializeNotebook((parsed as { notebook: Notebook }).notebook))
    const again = await mnlab('notebook', 'record', file, '--stale')
    expect(again.stdout).toBe(`recorded 0 experiments in ${file}\n`)
    const scenario = path.join(dir, 'set', FILES[0]!)
    writeFileSync(scenario, readFileSync(scenario, 'utf8') + '# edited\n')
    const stale = await mnlab('notebook', 'check', file)
    expect(stale.stdout).toMatch(/#search: .*\(recorded result is stale-recipe\)$/m)
  }, 300_000)

  it("a scenario path that does not exist is the notebook's error, exit 2", async () => {
    const file = write(
      'missing.mnlab.yaml',
      serializeNotebook(notebook({ ...cell, recipe: { ...cell.recipe, scenarios: ['nowhere.yaml'] } })),
    )
    const r = await mnlab('notebook', 'check', file)
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`${file}:1:1: cell search: no scenario file or folder 'nowhere.yaml'\n`)
  })

  it("an unknown candidate site is the notebook's error too", async () => {
    const file = write(
      'site.mnlab.yaml',
      serializeNotebook(notebook({ ...cell, recipe: { ...cell.recipe, sites: ['flush_tlb_rang'] } })),
    )
    const r = await mnlab('notebook', 'check', file)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:1:1: cell search: unknown site 'flush_tlb_rang'`,
      ),
    )
  })

  it('reports show the minimal placements, the verdict matrix and the front', () => {
    const withResult: SynthesisCell = {
      ...cell,
      results: [
        {
          recipe_hash: 'a'.repeat(64),
          engine: '0.1.0',
          at: '2026-01-02T03:04:05.000Z',
          pinned: true,
          scenarios: ['set/a.yaml', 'set/b.yaml'],
          complete: true,
          minimal: [
            {
              placement: 'sites:flush_tlb_page',
              cost: 12,
              needs: [
                {
                  site: 'flush_tlb_page',
                  scenario: 'set/a.yaml',
                  invariant: 'progress',
                  schedule: ['C0'],
                  cycle: ['D0'],
                },
              ],
            },
          ],
          front: [{ held: 2, cost: 12, placements: ['sites:flush_tlb_page'] }],
          placements: [{ placement: 'start-end', held: 1, cost: 9, verdicts: ['violated', 'holds'] }],
          search: { explored: 3, pruned: 1, cost_runs: 2, states: 40, elapsed_ms: 1500 },
        },
      ],
    }
    const md = exportNotebook(notebook(withResult), 'markdown')
    expect(md).toContain('## Synthesis: munmap and the upgrade loop')
    expect(md).toContain('- `sites:flush_tlb_page` (cost 12)')
    expect(md).toContain(
      '  - needs `flush_tlb_page`: without it set/a.yaml is violated (progress), schedule `C0  then forever: D0`',
    )
    expect(md).toContain('| start-end | 1/2 | 9 | V | H |')
    expect(md).toContain('- 2/2, 12: sites:flush_tlb_page')
    const html = exportNotebook(notebook(withResult), 'html')
    expect(html).toContain('<h2>Synthesis: munmap and the upgrade loop</h2>')
    expect(html).toContain('<td class="violated">V</td><td class="holds">H</td>')
    expect(html).not.toContain('<script')
  })
})
