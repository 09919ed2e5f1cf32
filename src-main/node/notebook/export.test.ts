import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { exportHtml, exportMarkdown } from './export'
import { parseNotebook } from './format'

const ROOT = path.join(__dirname, '../../..')
const UPGRADE_NB = path.join(ROOT, 'notebooks/permission-upgrade-2023.mnlab.yaml')

function loadNb(file: string) {
  const r = parseNotebook(readFileSync(file, 'utf8'), file)
  if (!r.ok) throw new Error(JSON.stringify(r.issues))
  return r.notebook
}

describe('notebook export', () => {
  const nb = loadNb(UPGRADE_NB)

  it('Markdown: notes, a verdict matrix and a metrics table per experiment, counterexamples', () => {
    const md = exportMarkdown(nb)
    expect(md.startsWith('# Notify on PTE permission upgrades (Popple, 2023)\n')).toBe(true)
    expect(md).toContain('# The 2023 permission-upgrade discussion')
    expect(md).toContain('## Experiment: The loop: an SMMU without BTM after an in-place RO->RW upgrade')
    expect(md).toContain(
      '| policy | verdict | use-after-free | stale-after-return | lost-write | lost-dirty | progress | forbid | expected | matches |',
    )
    expect(md).toContain(
      // Recorded before every invariant's verdict was kept: the file names only the violated one.
      '| start-end | **violated** | not recorded | not recorded | not recorded | not recorded | violated | not recorded | violated | yes |',
    )
    expect(md).toContain(
      '| policy | notifier_calls | secondary_invalidations | device_faults | mirror_zaps | cpu_tlb_flushes | sim_ns |',
    )
    expect(md).toContain('| start-end+upgrade-notify | 2 | 1 | 1 | 1 | 1 | 7350 |')
    expect(md).toContain('  schedule: `C0 C0 D0  then forever: D0 D0 D0`')
    expect(md).toMatch(/- \*\*start-end\*\*: `progress`: livelock: D0 can keep faulting forever/)
  })

  it('HTML: self-contained (no scripts, no external assets), with SVG bars and escaped notes', () => {
    const html = exportHtml(nb)
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true)
    expect(html).not.toMatch(/<script|<link|src="http|url\(/i)
    expect(html).toContain('<svg xmlns="http://www.w3.org/2000/svg"')
    expect(html).toContain('<figcaption>mirror_zaps</figcaption>')
    expect(html).toContain('<td class="violated"><strong>violated</strong></td>')
    expect(html).toContain("<h3>Sean Christopherson's cost objection</h3>")
    expect(html).toContain('schedule: <code>C0 C0 D0  then forever: D0 D0 D0</code>')
    expect(html).toContain(
      "<blockquote>\n<p>may silently regress performance for secondary MMUs that\nhaven't yet taken advantage",
    )
    const evil = exportHtml({
      format: 1,
      title: '<script>x</script>',
      cells: [{ kind: 'note', id: 'n', markdown: '<iframe src="http://x">' }],
    })
    expect(evil).not.toMatch(/<script>x|<iframe/)
  })

  it('an experiment without results says so', () => {
    const md = exportMarkdown({
      format: 1,
      title: 'T',
      cells: [
        {
          kind: 'experiment',
          id: 'e',
          title: 'E',
          scenario: { inline: 'title: x\n' },
          recipe: {
            policies: ['start-end'],
            mode: 'random',
            seed: 7,
            executions: 10,
            schedule: [],
            max_states: 5,
            timeout_ms: null,
          },
          results: [],
        },
      ],
    })
    expect(md).toContain('Scenario: `inline scenario`; mode random, seed 7, 10 executions, max 5 states.')
    expect(md).toContain('```yaml\ntitle: x\n```')
    expect(md).toContain('_Not run yet._')
  })
})
