/** Regression tests for problems found in review (each failed before its fix). */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { defaultRunOptions, makePolicy, runPolicy } from '../engine'
import { traced, allEvents } from '../engine/kernel/traceTestkit'
import { main } from './cli'
import { loadScenarioText, ScenarioLoadError } from './scenarioFiles'

function issues(text: string) {
  try {
    loadScenarioText(text, 'r.yaml')
  } catch (e) {
    if (e instanceof ScenarioLoadError) return e.issues
    throw e
  }
  throw new Error('expected an error')
}

const BASE = `title: t
arch: arm64
pages:
  P: { value: 0, prot: rw }
cpus:
  C0: [write P 1]
`

describe('review regressions', () => {
  afterEach(() => vi.restoreAllMocks())

  it('YAML syntax errors point at the offending line, not 1:1', () => {
    const list = issues('title: t\narch: [arm64\npages: {}\n')
    expect(list[0]!.line).toBe(3)
    expect(list[0]!.column).toBe(1)
  })

  it('a duplicate key is reported at the second occurrence', () => {
    const list = issues(BASE + 'title: again\n')
    expect(list.map((i) => [i.line, i.message])).toEqual([
      [7, "YAML: key 'title' is given twice in this mapping (first on line 1)"],
    ])
  })

  it('a page declared with an error is not reported again where it is used', () => {
    const list = issues(`title: t
arch: arm64
pages:
  P: { value: 0, prot: rw, cow: true, mapped: rw }
secondary:
  - { name: smmu, type: hw-walker, cached: [P] }
cpus:
  C0: [write P 1, cow_fault P]
`)
    expect(list).toHaveLength(1)
    expect(list[0]!.message).toMatch(/cow: true pages are mapped read-only/)
  })

  it('mprotect after MADV_DONTNEED still notifies: the PTE page (a populated PMD) remains', () => {
    const sc = loadScenarioText(
      `title: t
arch: x86_64
pages:
  A: { value: 1, prot: rw }
secondary:
  - { name: kvm, type: sw-mirror }
cpus:
  C0: [madvise_dontneed A, mprotect A ro]
`,
      'r.yaml',
    )
    const ex = traced(sc, makePolicy('start-end'))
    const mprotectEvents = allEvents(ex).filter(
      (e) => e.kind === 'notifier' && e.text.includes('PROTECTION_VMA'),
    )
    expect(mprotectEvents).toHaveLength(1)
  })

  it('munmap of every VMA frees the PTE page, so a later mprotect of nothing sends no range', () => {
    const sc = loadScenarioText(BASE.replace('[write P 1]', '[munmap P, mprotect P ro]'), 'r.yaml')
    const ev = allEvents(traced(sc, makePolicy('start-end')))
    expect(ev.some((e) => e.fn === 'free_pgtables')).toBe(true)
  })

  it('check counts a scenario without expect in its summary', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mnlab-reg-'))
    writeFileSync(path.join(dir, 'a.yaml'), BASE)
    const out: string[] = []
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true))
    expect(await main(['check', dir])).toBe(1)
    expect(out.join('')).toMatch(/^0 passed, 1 failed$/m)
  })
})

describe('review regressions (property-test findings)', () => {
  const run = (yaml: string, preset: 'start-end' | 'invalidate-range' | 'arch-hook') =>
    runPolicy(loadScenarioText(yaml, 'r.yaml'), makePolicy(preset), {
      ...defaultRunOptions(loadScenarioText(yaml, 'r.yaml')),
      mode: 'exhaustive',
    })

  it.each(['x86_64', 'arm64'])(
    'two concurrent MADV_DONTNEED on %s: tlb_finish_mmu sees the nested gather and flushes the whole mm',
    (arch) => {
      const yaml = `title: t
arch: ${arch}
pages: { P: { value: 1, prot: rw } }
secondary: [ { name: sec, type: hw-walker, cached: [P] } ]
cpus: { C0: [madvise_dontneed P], C1: [madvise_dontneed P] }
devices: { D0: { via: sec, ops: [read P -> r0] } }
`
      expect(run(yaml, 'arch-hook').verdict).toBe('holds')
      expect(run(yaml, 'invalidate-range').verdict).toBe('holds')
    },
  )

  it('a device write racing MADV_DONTNEED and a refault is discarded, not a lost write', () => {
    const yaml = `title: t
arch: x86_64
pages: { P: { value: 1, prot: rw } }
secondary: [ { name: sec, type: hw-walker, cached: [P] } ]
cpus: { C0: [madvise_dontneed P], C1: [write_fault P] }
devices: { D0: { via: sec, ops: [write P 7] } }
`
    expect(run(yaml, 'arch-hook').invariants['lost-write']).toBe('holds')
    expect(run(yaml, 'invalidate-range').verdict).toBe('holds')
  })
})

describe('review regressions (robustness sweep)', () => {
  it('memory values must fit 32 bits: 1e20 is refused at its position instead of being truncated', () => {
    const list = issues(BASE.replace('{ value: 0, prot: rw }', '{ value: 99999999999999999999, prot: rw }'))
    expect(list.map((i) => [i.line, i.column, i.message])).toEqual([
      [4, 15, 'value must be an integer from -2147483648 to 2147483647; found number 100000000000000000000'],
    ])
    const w = issues(BASE.replace('[write P 1]', '[write P 4294967296]'))
    expect(w[0]!.message).toMatch(/^write needs an integer value from -2147483648 to 2147483647/)
  })
})
