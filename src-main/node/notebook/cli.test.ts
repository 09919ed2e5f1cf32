import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Notebook } from '../../api/notebook'
import { mnlab } from '../cliTestkit'
import { parseNotebook, serializeNotebook } from './format'

const ROOT = path.join(__dirname, '../../..')
const UPGRADE_TEXT = readFileSync(path.join(ROOT, 'scenarios/upgrade-loop.smmu-no-btm.yaml'), 'utf8')

let dir = ''
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mnlab-nb-cli-'))
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const recipe = {
  policies: ['start-end', 'arch-hook'],
  mode: 'exhaustive' as const,
  seed: 1,
  executions: 10,
  schedule: [],
  max_states: 100_000,
  timeout_ms: null,
}

function notebook(): Notebook {
  return {
    format: 1,
    title: 'CLI test',
    cells: [
      { kind: 'note', id: 'n', markdown: 'A note.\n' },
      {
        kind: 'experiment',
        id: 'by-path',
        title: 'by path',
        scenario: { path: path.relative(dir, path.join(ROOT, 'scenarios/upgrade-loop.smmu-no-btm.yaml')) },
        recipe,
        results: [],
      },
      {
        kind: 'experiment',
        id: 'inline',
        title: 'inline',
        scenario: { inline: UPGRADE_TEXT },
        recipe,
        results: [],
      },
    ],
  }
}

function write(name: string, text: string): string {
  const f = path.join(dir, name)
  writeFileSync(f, text)
  return f
}

describe('mnlab notebook', () => {
  it('record, then check passes (0); a changed recorded verdict fails (1) and says what changed', async () => {
    const f = write('a.mnlab.yaml', serializeNotebook(notebook()))
    const fresh = await mnlab('notebook', 'check', f)
    expect(fresh.code).toBe(0)
    expect(fresh.stdout).toContain('#by-path: nothing recorded; now start-end violated, arch-hook holds')
    const rec = await mnlab('notebook', 'record', '--pin', f)
    expect(rec.code).toBe(0)
    const r = parseNotebook(readFileSync(f, 'utf8'), f)
    if (!r.ok) throw new Error('recorded notebook does not parse')
    const cell = r.notebook.cells[1]!
    expect(cell.kind === 'experiment' && cell.results[0]!.pinned).toBe(true)
    const ok = await mnlab('notebook', 'check', f)
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/ok {3}.*a\.mnlab\.yaml#by-path: start-end violated, arch-hook holds\n/)
    expect(ok.stdout).toContain('2 unchanged, 0 changed')

    // Tamper with the recorded verdict of the inline cell: check must fail.
    const tampered = r.notebook.cells.map((c) =>
      c.kind === 'experiment' && c.id === 'inline'
        ? {
            ...c,
            results: c.results.map((res) => ({
              ...res,
              policies: res.policies.map((p) =>
                p.policy === 'start-end' ? { ...p, verdict: 'holds' as const, violated: [] } : p,
              ),
            })),
          }
        : c,
    )
    write('a.mnlab.yaml', serializeNotebook({ ...r.notebook, cells: tampered }))
    const bad = await mnlab('notebook', 'check', f)
    expect(bad.code).toBe(1)
    expect(bad.stdout).toMatch(/FAIL .*a\.mnlab\.yaml#inline: verdicts changed since /)
    expect(bad.stdout).toContain(
      'start-end: recorded holds (violated: none), now violated (violated: progress)',
    )
    expect(bad.stdout).toContain('1 unchanged, 1 changed')
  })

  it("a notebook's own policies run by name and their results stay current until a definition changes", async () => {
    const base = notebook()
    const nb: Notebook = {
      ...base,
      // Popple's v1 leaves the wp_page_reuse upgrade alone; the reuse site is what fixes it.
      policies: {
        'popple-v1': ['start-end', 'handle_pte_fault'],
        'reuse-fix': ['start-end', 'handle_pte_fault', 'wp_page_reuse'],
      },
      cells: base.cells.map((c) =>
        c.kind === 'experiment' ? { ...c, recipe: { ...recipe, policies: ['popple-v1,reuse-fix'] } } : c,
      ),
    }
    const f = write('defs.mnlab.yaml', serializeNotebook(nb))
    expect((await mnlab('notebook', 'record', f)).code).toBe(0)
    const ok = await mnlab('notebook', 'check', f)
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/ok {3}.*defs\.mnlab\.yaml#by-path: popple-v1 violated, reuse-fix holds\n/)
    const r = parseNotebook(readFileSync(f, 'utf8'), f)
    if (!r.ok) throw new Error('recorded notebook does not parse')
    expect(r.notebook.policies).toEqual(nb.policies)
    // Defining popple-v1 differently makes its recorded results stale (record --stale reruns them).
    write(
      'defs.mnlab.yaml',
      serializeNotebook({ ...r.notebook, policies: { ...nb.policies, 'popple-v1': ['arch-hook'] } }),
    )
    const again = await mnlab('notebook', 'check', f)
    expect(again.code).toBe(1)
    expect(again.stdout).toContain('(recorded result is stale-recipe)')
    expect(again.stdout).toContain(
      'popple-v1: recorded violated (violated: progress), now holds (violated: none)',
    )
  })

  it('the pinned result is the reference, not a later unpinned one', async () => {
    const f = write('p.mnlab.yaml', serializeNotebook(notebook()))
    await mnlab('notebook', 'record', '--pin', f)
    await mnlab('notebook', 'record', f)
    const r = parseNotebook(readFileSync(f, 'utf8'), f)
    if (!r.ok) throw new Error('bad')
    // Break the later, unpinned result: check still compares against the pinned one.
    const cells = r.notebook.cells.map((c) =>
      c.kind === 'experiment' ? { ...c, results: [c.results[0]!, { ...c.results[1]!, policies: [] }] } : c,
    )
    write('p.mnlab.yaml', serializeNotebook({ ...r.notebook, cells }))
    expect((await mnlab('notebook', 'check', f)).code).toBe(0)
  })

  it('record --stale re-records only experiments whose reference result no longer matches', async () => {
    const f = write('s.mnlab.yaml', serializeNotebook(notebook()))
    expect((await mnlab('notebook', 'record', '--pin', f)).stdout).toContain('recorded 2 experiments')
    const none = await mnlab('notebook', 'record', '--stale', f)
    expect(none.stdout).toContain('recorded 0 experiments')
    // Change the inline cell's recipe: it alone is stale, and it alone gets a new result.
    const r = parseNotebook(readFileSync(f, 'utf8'), f)
    if (!r.ok) throw new Error('bad')
    const cells = r.notebook.cells.map((c) =>
      c.kind === 'experiment' && c.id === 'inline' ? { ...c, recipe: { ...c.recipe, seed: 9 } } : c,
    )
    write('s.mnlab.yaml', serializeNotebook({ ...r.notebook, cells }))
    const one = await mnlab('notebook', 'record', '--stale', '--pin', f)
    expect(one.stdout).toContain('recorded 1 experiment in')
    const after = parseNotebook(readFileSync(f, 'utf8'), f)
    if (!after.ok) throw new Error('bad')
    const counts = after.notebook.cells.flatMap((c) =>
      c.kind === 'experiment' ? [[c.id, c.results.length]] : [],
    )
    expect(counts).toEqual([
      ['by-path', 1],
      ['inline', 2],
    ])
    expect((await mnlab('notebook', 'check', f)).stdout).not.toContain('stale')
  })

  it('an invalid notebook exits 2 with file:line:col', async () => {
    const text = serializeNotebook(notebook()).replace('mode: exhaustive', 'mode: sideways')
    const line = text.split('\n').findIndex((l) => l.includes('sideways')) + 1
    const f = write('bad.mnlab.yaml', text)
    const r = await mnlab('notebook', 'check', f)
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(
      new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}:13: cells\\.1\\.recipe\\.mode: `),
    )
    const yaml = write('yaml.mnlab.yaml', 'format: 1\ncells: [\n')
    const y = await mnlab('notebook', 'check', yaml)
    expect(y.code).toBe(2)
    expect(y.stderr).toMatch(/yaml\.mnlab\.yaml:\d+:\d+: YAML: /)
  })

  it('an invalid inline scenario is located in the notebook file', async () => {
    const nb = notebook()
    nb.cells = [nb.cells[2]!]
    const text = serializeNotebook(nb).replace('[write_fault P]', '[cow_fault Z]')
    const line = text.split('\n').findIndex((l) => l.includes('cow_fault Z')) + 1
    const f = write('inline-bad.mnlab.yaml', text)
    const r = await mnlab('notebook', 'check', f)
    expect(r.code).toBe(2)
    // "  C0: [cow_fault Z]" has Z at column 18 in the scenario; the block is indented by 8.
    expect(r.stderr).toBe(`${f}:${line}:26: cell inline: unknown page 'Z' (did you mean 'P'?); pages are P\n`)
  })

  it('export to Markdown and HTML; usage errors exit 2', async () => {
    const f = write('e.mnlab.yaml', serializeNotebook(notebook()))
    const md = await mnlab('notebook', 'export', f, '--format', 'md')
    expect(md.code).toBe(0)
    expect(md.stdout.startsWith('# CLI test\n')).toBe(true)
    const out = path.join(dir, 'e.html')
    const html = await mnlab('notebook', 'export', f, '--format=html', '-o', out)
    expect(html.code).toBe(0)
    expect(readFileSync(out, 'utf8')).toMatch(/^<!DOCTYPE html>/)
    // Success says what it wrote: a silent exit 0 is indistinguishable from doing nothing.
    expect(html.stdout).toBe(`wrote ${out} (HTML, ${Buffer.byteLength(readFileSync(out, 'utf8'))} bytes)\n`)
    expect((await mnlab('notebook', 'export', f, '--format', 'pdf')).code).toBe(2)
    expect((await mnlab('notebook', 'frobnicate')).code).toBe(2)
    // --help after notebook (or after its subcommand) prints the usage, as every command's does.
    for (const args of [['--help'], ['check', '--help'], ['record', '-h']]) {
      const h = await mnlab('notebook', ...args)
      expect(h.code).toBe(0)
      expect(h.stdout).toContain('mnlab notebook check FILE')
    }
    expect((await mnlab('notebook', 'check', path.join(dir, 'missing.mnlab.yaml'))).stderr).toMatch(
      /missing\.mnlab\.yaml:1:1: no such file or directory/,
    )
  })

  it('the shipped notebooks pass their own check', async () => {
    // placement-synthesis.mnlab.yaml's searches take a minute: synthesisClaims.test.ts runs them
    // and checks them against what the notebook recorded.
    const notebooks = ['cow-ordering-2017.mnlab.yaml', 'permission-upgrade-2023.mnlab.yaml']
    const r = await mnlab('notebook', 'check', ...notebooks.map((n) => path.join(ROOT, 'notebooks', n)))
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('2 notebooks, 6 experiments')
    expect(r.stdout).not.toContain('stale')
  })
})
