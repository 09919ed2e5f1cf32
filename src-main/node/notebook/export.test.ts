import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { parsePolicyList } from '../../engine'
import { loadScenarioFile } from '../scenarioFiles'
import { exportHtml, exportMarkdown } from './export'
import { parseNotebook } from './format'
import { lkmlThreadNames, lkmlTimeline } from './lkml'

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
      '<blockquote>\n<p>may silently regress performance for secondary MMUs that\nhaven\'t yet taken advantage',
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

describe('LKML timeline', () => {
  it('the upgrade-loop counterexample as [Time N] blocks, one line per thread', () => {
    const sc = loadScenarioFile(path.join(ROOT, 'scenarios/upgrade-loop.smmu-no-btm.yaml'))
    const policy = (parsePolicyList('start-end') as Exclude<ReturnType<typeof parsePolicyList>, string>)[0]!
    const text = lkmlTimeline({ sc, policy, schedule: ['C0', 'C0', 'D0'], cycle: ['D0', 'D0', 'D0'] })
    const lines = text.split('\n')
    expect(lines[0]).toBe('RO->RW upgrade in place leaves an SMMU without BTM faulting forever')
    expect(text).toContain(
      'threads: CPU-thread-0 = C0 (write_fault P); DEV-thread-0 = D0 (via smmu: write P 7)',
    )
    const heads = lines.filter((l) => l.startsWith('[Time'))
    expect(heads).toHaveLength(6)
    expect(heads[0]).toBe('[Time N] ' + '-'.repeat(69))
    expect(heads[1]!.startsWith('[Time N+1] ---')).toBe(true)
    expect(heads[3]!.startsWith('[Time N+3, repeats forever] ---')).toBe(true)
    for (const h of heads) expect(h.length).toBe(78)
    // After each header: exactly one line per thread, in declaration order.
    for (let i = 0; i < lines.length; i++) {
      if (!lines[i]!.startsWith('[Time')) continue
      expect(lines[i + 1]).toMatch(/^CPU-thread-0 \{.*\}$/)
      expect(lines[i + 2]).toMatch(/^DEV-thread-0 \{.*\}$/)
      expect(lines[i + 3]).toBe('')
    }
    const i0 = lines.indexOf(heads[0]!)
    expect(lines[i0 + 1]).toBe(
      'CPU-thread-0 {write_fault P; mmap_read_lock: take mmap_lock for read; handle_mm_fault: write fault on P}',
    )
    expect(lines[i0 + 2]).toBe('DEV-thread-0 {}')
    const i1 = lines.indexOf(heads[1]!)
    expect(lines[i1 + 1]).toContain(
      'do_wp_page: page is exclusive: wp_page_reuse; ptep_set_access_flags: PTE P := pfn 1 RW dirty',
    )
    const i4 = lines.indexOf(heads[4]!)
    expect(lines[i4 + 1]).toBe('CPU-thread-0 {}')
    expect(lines[i4 + 2]).toContain('handle_pte_fault: spurious write fault')
    expect(text).toContain('=> progress: livelock: D0 can keep faulting forever')
    expect(text.trimEnd().split('\n').at(-1)).toBe('schedule: C0 C0 D0  then forever: D0 D0 D0')
  })

  it('numbers CPU and device threads separately, in declaration order', () => {
    const sc = loadScenarioFile(path.join(ROOT, 'scenarios/cow-ordering.flush-at-end.yaml'))
    expect([...lkmlThreadNames(sc)]).toEqual([
      ['C0', 'CPU-thread-0'],
      ['C1', 'CPU-thread-1'],
      ['C2', 'CPU-thread-2'],
      ['D0', 'DEV-thread-0'],
    ])
  })
})
