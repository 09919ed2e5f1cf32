/** CLI printing of explanations: culprit marks in traces, stale flags, wrapped why lines. */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { explainExecution, makePolicy, runExecution, scheduleIndices, scriptedChooser } from '../engine'
import { culpritLines, formatExecution, wrap } from './format'
import { loadScenarioText } from './scenarioFiles'

const FILE = path.join(__dirname, '../../scenarios/cow-ordering.invalidate-range-needed.yaml')
const SCHEDULE = 'C0 C0 C0 C0 C1 C2 C2 D1 C0 C0 C1 C1 C1 C1 C1 C1 C2 C2 C2 D0 D0 C0'

describe('formatExecution with an explanation', () => {
  const sc = loadScenarioText(readFileSync(FILE, 'utf8'), FILE)
  const policy = makePolicy('start-end')
  const ex = runExecution(sc, policy, scriptedChooser(scheduleIndices(sc, SCHEDULE.split(' '))), {
    tracing: true,
    maxSteps: 100,
  })
  const out = formatExecution(sc, ex, explainExecution(sc, policy, ex))

  it('marks the culprit steps in the trace and flags the entry the step it goes stale', () => {
    expect(out).toMatch(/^\[7\] D1 {2}<< fill$/m)
    expect(out).toMatch(/^\[8\] C0 {2}<< pte-change, missed-flush$/m)
    expect(out).toMatch(/^\[20\] D0 {2}<< stale-use$/m)
    expect(out).toMatch(/^\[10\] C1$/m)
    const stale = out.split('\n').filter((l) => l.includes('! stale:'))
    // Once when it starts to disagree (none), once when the disagreement changes (pfn 3).
    expect(stale).toEqual([
      '      ! stale: iommu TLB A -> pfn 1 RO, but PTE A is none',
      '      ! stale: iommu TLB A -> pfn 1 RO, but PTE A maps pfn 3',
    ])
  })

  it('ends with the why and the culprits; without an explanation, neither', () => {
    expect(out).toMatch(/^why: r1 == 1 && r0 == 0 at the end .*too late/m)
    expect(out).toMatch(/^culprits:\n {2}fill@7 D1: IOMMU page walk/m)
    const bare = formatExecution(sc, ex)
    expect(bare).not.toContain('why:')
    expect(bare).not.toContain('<<')
    expect(formatExecution(sc, ex, explainExecution(sc, policy, ex), { explanation: false })).not.toContain(
      'culprits:',
    )
  })
})

describe('wrap and culpritLines', () => {
  it('wraps at word boundaries, keeps the first line indent and indents the rest', () => {
    const lines = wrap(`  ${'word '.repeat(40).trim()}`, 30, '    ')
    expect(lines.length).toBeGreaterThan(5)
    expect(lines[0]!.startsWith('  word')).toBe(true)
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(30)
    for (const l of lines.slice(1)) expect(l.startsWith('    word')).toBe(true)
    expect(lines.join(' ').replace(/\s+/g, ' ').trim()).toBe('word '.repeat(40).trim())
  })

  it('prints nothing for no culprits, and role@step thread: text for each', () => {
    expect(culpritLines([], '  ')).toEqual([])
    expect(culpritLines([{ step: 3, thread: 'D0', role: 'fill', text: 'IOMMU page walk' }], '  ')).toEqual([
      '  culprits:',
      '    fill@3 D0: IOMMU page walk',
    ])
  })
})
