import path from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  parsePolicyList,
  runExecution,
  scheduleIndices,
  scriptedChooser,
  type Policy,
  type StepRecord,
} from '../../engine'
import { loadScenarioFile } from '../scenarioFiles'
import { foldLines, LKML_WIDTH, lkmlThreadNames, lkmlTimeline, wrapLine } from './lkml'

const ROOT = path.join(__dirname, '../../..')
const UPGRADE = path.join(ROOT, 'scenarios/upgrade-loop.smmu-no-btm.yaml')
const COW = path.join(ROOT, 'scenarios/cow-ordering.invalidate-range-needed.yaml')
// The forbid counterexample of start-end on the COW example (mnlab run ... --policy start-end).
const COW_SCHEDULE = 'C0 C0 C0 C0 C1 C2 C2 D1 C0 C0 C1 C1 C1 C1 C1 C1 C2 C2 C2 D0 D0 C0'.split(' ')

function policy(name: string): Policy {
  const ps = parsePolicyList(name)
  if (typeof ps === 'string') throw new Error(ps)
  return ps[0]!
}

/** Lines of the [Time ...] block that starts at `head`: up to the next blank line. */
function block(lines: readonly string[], head: string): string[] {
  const i = lines.indexOf(head)
  expect(i, `no line ${head}`).toBeGreaterThanOrEqual(0)
  const end = lines.indexOf('', i)
  return lines.slice(i, end)
}

describe('wrapLine', () => {
  it('breaks at spaces within the width, continuation lines after their prefix', () => {
    expect(wrapLine('aaa bbb ccc ddd', '> ', '  ', 9)).toEqual(['> aaa bbb', '  ccc ddd'])
    expect(wrapLine('short', 'x: ', '   ', 72)).toEqual(['x: short'])
  })
  it('cuts a word longer than a line, and keeps double spaces inside a line', () => {
    expect(wrapLine('abcdefghijkl', '', '  ', 5)).toEqual(['abcde', '  fgh', '  ijk', '  l'])
    expect(wrapLine('C0 D0  then forever: D0', '', '', 72)).toEqual(['C0 D0  then forever: D0'])
  })
})

describe('LKML timeline', () => {
  it('the upgrade-loop counterexample: one block per step, naming only the thread that acts', () => {
    const sc = loadScenarioFile(UPGRADE)
    const text = lkmlTimeline({
      sc,
      policy: policy('start-end'),
      schedule: ['C0', 'C0', 'D0'],
      cycle: ['D0', 'D0', 'D0'],
    })
    const lines = text.split('\n')
    expect(lines[0]).toBe('RO->RW upgrade in place leaves an SMMU without BTM faulting forever')
    expect(text).toContain(
      'threads:\n  CPU-thread-0 = C0: write_fault P\n  DEV-thread-0 = D0: via smmu: write P 7\n',
    )
    const heads = lines.filter((l) => l.startsWith('[Time'))
    expect(heads).toHaveLength(6)
    expect(heads[0]).toBe('[Time N] ' + '-'.repeat(LKML_WIDTH - 9))
    expect(heads[3]!.startsWith('[Time N+3, repeats forever] ---')).toBe(true)
    for (const h of heads) expect(h.length).toBe(LKML_WIDTH)
    expect(block(lines, heads[0]!)).toEqual([
      heads[0],
      'CPU-thread-0  {write_fault P; mmap_read_lock: take mmap_lock for read;',
      '               handle_mm_fault: write fault on P}',
    ])
    expect(block(lines, heads[1]!).join('\n')).toContain(
      'do_wp_page: page is exclusive: wp_page_reuse;\n               ptep_set_access_flags: PTE P := pfn 1 RW dirty;',
    )
    const b4 = block(lines, heads[4]!)
    expect(b4[1]).toMatch(/^DEV-thread-0 {2}\{/)
    expect(b4.join(' ')).toContain('handle_pte_fault: spurious write fault')
    expect(text).toContain('=> progress: livelock: D0 can keep faulting forever')
    expect(text.trimEnd().split('\n').at(-1)).toBe('schedule: C0 C0 D0  then forever: D0 D0 D0')
  })

  it('the COW forbid counterexample: every line within 72 columns, no empty thread, each step once', () => {
    const sc = loadScenarioFile(COW)
    const text = lkmlTimeline({ sc, policy: policy('start-end'), schedule: COW_SCHEDULE, cycle: null })
    const lines = text.trimEnd().split('\n')
    const long = lines.filter((l) => l.length > LKML_WIDTH)
    expect(long, long.join('\n')).toEqual([])
    expect(lines.filter((l) => /\{\s*\}/.test(l))).toEqual([])
    const heads = lines.filter((l) => l.startsWith('[Time'))
    expect(heads).toHaveLength(COW_SCHEDULE.length)
    const names = lkmlThreadNames(sc)
    // Each block names exactly the thread the schedule ran at that step, on the line after its header.
    heads.forEach((h, i) => {
      const b = block(lines, h)
      expect(b[1]!.startsWith(`${names.get(COW_SCHEDULE[i]!)}  {`), b.join('\n')).toBe(true)
      // Continuation lines sit under the text, never start a thread of their own.
      for (const l of b.slice(2)) expect(l).toMatch(/^ {15}\S/)
    })
    // The race, as mmu_notifier.rst tells it: the device walks A to the old page while C0 holds the PTL.
    expect(block(lines, heads[7]!).join(' ')).toMatch(
      /DEV-thread-1 {2}\{read A -> r2; IOMMU page walk: iommu TLB A -> pfn 1 RO;/,
    )
    expect(text).toContain('=> forbid: the final state satisfies forbid: r1 == 1 && r0 == 0')
  })

  it('collapse folds each run of quiet steps, of any threads, into one line, keeps the rest', () => {
    const sc = loadScenarioFile(COW)
    const pol = policy('start-end')
    const full = lkmlTimeline({ sc, policy: pol, schedule: COW_SCHEDULE, cycle: null })
    const short = lkmlTimeline({ sc, policy: pol, schedule: COW_SCHEDULE, cycle: null, collapse: true })
    const fullLines = full.trimEnd().split('\n')
    const lines = short.trimEnd().split('\n')
    expect(lines.filter((l) => l.length > LKML_WIDTH)).toEqual([])
    // The engine's own record of which steps change nothing decides what folds.
    const ex = runExecution(sc, pol, scriptedChooser(scheduleIndices(sc, COW_SCHEDULE)), {
      tracing: true,
      maxSteps: COW_SCHEDULE.length,
    })
    const quiet = ex.records.map(
      (r) => r.changes.length === 0 && !r.events.some((e) => e.kind === 'violation'),
    )
    // The maximal runs of consecutive quiet steps, whatever their threads.
    const runs: Array<[number, number]> = []
    quiet.forEach((q, i) => {
      if (!q) return
      const last = runs[runs.length - 1]
      if (last && last[1] === i - 1) last[1] = i
      else runs.push([i, i])
    })
    // The COW schedule has quiet runs that mix threads (the reviewer's case: folding one
    // thread's steps at a time saved 9 of 119 lines).
    const mixed = runs.filter(([a, b]) => new Set(ex.records.slice(a, b + 1).map((r) => r.thread)).size > 1)
    expect(mixed.length).toBeGreaterThan(0)
    // Markedly shorter: a step's block is at least 3 lines (header, thread, blank), a whole run
    // folds into 2 (its line, blank).
    const saved = runs.reduce((n, [a, b]) => n + 3 * (b - a + 1) - 2, 0)
    expect(lines.length).toBeLessThanOrEqual(fullLines.length - saved)
    expect(saved).toBeGreaterThanOrEqual(runs.length * 3)
    // One fold line per run, naming each thread's count.
    const folds = lines.filter((l) => l.includes('no visible change'))
    expect(folds.length).toBe(runs.length)
    for (const [[a, b], l] of runs.map((r, k) => [r, folds[k]!] as const)) {
      const span =
        a === b ? `[Time ${a === 0 ? 'N' : `N+${a}`}]` : `[Time N${a === 0 ? '' : `+${a}`}..N+${b}]`
      expect(l.startsWith(`${span} ${b - a + 1} step`), l).toBe(true)
      const counts = new Map<string, number>()
      for (const r of ex.records.slice(a, b + 1)) counts.set(r.thread, (counts.get(r.thread) ?? 0) + 1)
      for (const [t, k] of counts) expect(l).toContain(k === 1 ? `${t}` : `${t} x${k}`)
    }
    // Every step is accounted for exactly once: a block for a visible change, a fold otherwise.
    let covered = 0
    for (const l of lines) {
      const m = /^\[Time N(?:\+(\d+))?(?:\.\.N\+(\d+))?\] (-+|.*no visible change)/.exec(l)
      if (!m) continue
      const from = Number(m[1] ?? 0)
      const to = m[2] ? Number(m[2]) : from
      for (let s = from; s <= to; s++)
        expect(l.endsWith('-') ? !quiet[s] : quiet[s], `step ${s}: ${l}`).toBe(true)
      covered += to - from + 1
    }
    expect(covered).toBe(COW_SCHEDULE.length)
    // Steps with a visible change keep their block.
    expect(short).toContain('[Time N+7] ---')
    expect(short).toContain('iommu TLB A -> pfn 1 RO')
  })

  it('collapse never folds the violating step, nor the first step of the cycle', () => {
    const sc = loadScenarioFile(UPGRADE)
    const text = lkmlTimeline({
      sc,
      policy: policy('start-end'),
      schedule: ['C0', 'C0', 'D0'],
      cycle: ['D0', 'D0', 'D0'],
      collapse: true,
    })
    expect(text).toContain('[Time N+2] 1 step with no visible change (D0')
    // The cycle's first step keeps its block, so the reader sees where the repetition starts.
    expect(text).toContain('[Time N+3, repeats forever] ---')
    expect(text).toMatch(/\[Time N\+4\.\.N\+5, repeats forever\] 2 steps with no visible change \(D0 x2/)
    for (const l of text.split('\n')) expect(l.length, l).toBeLessThanOrEqual(LKML_WIDTH)
    expect(text).toContain('=> progress: livelock')
  })

  it('a fold is one line within the width, its function names cut with ...', () => {
    const rec = (step: number, thread: string, fns: string[]) => ({
      step,
      thread,
      events: fns.map((fn) => ({ step, thread, kind: 'lock' as const, fn, text: '', locks: [] })),
      changes: [],
    })
    const run = [
      rec(0, 'C1', ['lock', 'walk']),
      rec(1, 'D0', ['fault']),
      rec(2, 'C1', ['pte_offset_map_lock']),
      rec(3, 'D0', ['fault']),
    ] as unknown as StepRecord[]
    const lines = foldLines(run, 'N..N+3')
    expect(lines).toHaveLength(1)
    expect(lines[0]!.length).toBeLessThanOrEqual(LKML_WIDTH)
    expect(lines[0]).toMatch(
      /^\[Time N\.\.N\+3\] 4 steps with no visible change \(C1 x2, D0 x2: lock, .*\.\.\.\)$/,
    )
    expect(foldLines(run.slice(1, 2), 'N+1')).toEqual([
      '[Time N+1] 1 step with no visible change (D0: fault)',
    ])
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
