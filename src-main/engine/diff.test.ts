import { describe, expect, it } from 'vitest'
import { loadScenarioText } from '../node/scenarioFiles'
import { makePolicy } from './policy'
import { runExecution, scriptedChooser } from './explore'

const SC = `title: t
arch: x86_64
pages:
  A: { value: 4, prot: rw }
secondary:
  - { name: iommu, type: hw-walker, flush_at: start, cached: [A] }
  - { name: kvm, type: sw-mirror }
cpus:
  C0: [munmap A]
devices:
  D0: { via: iommu, ops: [read A -> r0, read A -> r1] }
`

describe('traced step records carry the whole state after the step', () => {
  it('names subjects as the changes do, and shows what munmap left behind', () => {
    const sc = loadScenarioText(SC, 't.yaml')
    // The munmap-uaf counterexample: D0 refills between range_start and the clear, then reads
    // through that entry after tlb_finish_mmu freed the page.
    const ex = runExecution(sc, makePolicy('start-end'), scriptedChooser([0, 0, 1, 0, 0, 0, 0, 0, 1]), {
      tracing: true,
      maxSteps: 50,
    })
    const first = new Map(ex.records[0]!.state)
    expect(first.get('PTE A')).toBe('pfn 1 RW dirty')
    expect(first.get('VMA A')).toBe('none')
    expect(first.get('locks')).toBe('ptl free, mmap_lock read-held by 1')
    expect(first.get('kvm seq')).toBe('0')
    const last = new Map(ex.records.at(-1)!.state)
    expect(last.get('PTE A')).toBe('none')
    expect(last.get('pfn 1')).toBe('free (gen 1)')
    expect(last.get('iommu TLB')).toBe('A -> pfn 1 RW (revoked)')
    expect(last.get('r0')).toBe('4')
    expect(last.get('r1')).toBe('4')
    expect(ex.violations.map((v) => v.invariant)).toEqual(['use-after-free'])
    // Every changed subject is a row of the state.
    for (const r of ex.records)
      for (const c of r.changes)
        expect(r.state!.some(([subject]) => c.startsWith(`${subject}:`) || c.startsWith(`${subject} `))).toBe(
          true,
        )
  })
})

describe('THP state rows', () => {
  it('names the PTE table, pmd_lock and the walk cache as the changes do', () => {
    const sc = loadScenarioText(
      [
        'title: t',
        'arch: x86_64',
        'thp: { H: { pages: [A, B], mapped: pte } }',
        'pages:',
        '  A: { value: 1 }',
        '  B: { value: 2 }',
        'secondary:',
        '  - { name: iommu, type: hw-walker, walk_cache: true }',
        'cpus:',
        '  K: [thp_collapse H]',
        'devices:',
        '  D0: { via: iommu, ops: [read A] }',
        '',
      ].join('\n'),
      'thp.yaml',
    )
    const ex = runExecution(sc, makePolicy('arch-hook'), scriptedChooser([1]), {
      tracing: true,
      maxSteps: 80,
    })
    const first = new Map(ex.records[0]!.state)
    expect(first.get('iommu walk cache')).toBe('PMD -> PTE table')
    expect(first.get('PTE table')).toBe('linked in the PMD')
    const last = new Map(ex.records.at(-1)!.state)
    expect(last.get('PTE table')).toBe('deposited (empty)')
    expect(last.get('iommu walk cache')).toBe('(empty)')
    expect(last.get('PTE A')).toBe('pfn 3 RW dirty (huge PMD)')
    for (const r of ex.records)
      for (const c of r.changes)
        expect(r.state!.some(([subject]) => c.startsWith(`${subject}:`) || c.startsWith(`${subject} `))).toBe(
          true,
        )
  })
})

describe('state rows and changes with two PTE tables', () => {
  const TWO = `title: t
arch: x86_64
pages:
  A: { value: 1 }
  B: { value: 2, table: 1 }
secondary:
  - { name: iommu, type: hw-walker, walk_cache: true }
cpus:
  C0: [munmap B]
devices:
  D0: { via: iommu, ops: [read A, read B] }
`

  it('each table has its ptl#N, its PTE page row and its walk-cache entry; free_pgtables shows as that table', () => {
    const sc = loadScenarioText(TWO, 't.yaml')
    // D0 walks A and B (a walk-cache entry per table), then C0's munmap of B runs to the end.
    const ex = runExecution(sc, makePolicy('start-end'), scriptedChooser([1, 1, 0, 0, 0]), {
      tracing: true,
      maxSteps: 50,
    })
    const walked = new Map(ex.records[1]!.state)
    expect(walked.get('iommu walk cache')).toBe('PMD#0 -> PTE table#0, PMD#1 -> PTE table#1')
    expect(walked.get('PTE page#0')).toBe('linked in the PMD')
    expect(walked.get('locks')).toBe('ptl#0 free, ptl#1 free')
    expect(ex.records[0]!.changes).toContain('iommu walk cache: +PTE table#0')
    const zapping = ex.records.find((r) => r.events.some((e) => e.text.endsWith('ptl#1')))!
    expect(new Map(zapping.state).get('locks')).toBe('ptl#0 free, ptl#1 held by C0, mmap_lock read-held by 1')
    const freed = ex.records.find((r) =>
      r.changes.some((c) => c.startsWith('PTE page#1: linked in the PMD')),
    )!
    expect(freed.changes).toContain(
      'PTE page#1: linked in the PMD -> unlinked by free_pgtables, not yet freed',
    )
    const last = new Map(ex.records.at(-1)!.state)
    expect(last.get('PTE page#0')).toBe('linked in the PMD')
    expect(last.get('PTE page#1')).toBe('none')
  })
})
