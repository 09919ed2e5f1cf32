/**
 * Lenient replays and the distinguishing schedule (compare.ts): skips are recorded where a
 * strict replay refuses, a found schedule replays to different outcomes, it is no longer than
 * the shortest counterexample, no shorter schedule distinguishes (checked by brute force on
 * small scenarios), and two policies that agree are proven to.
 */
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadScenarioFile } from '../node/scenarioFiles'
import { distinguish, maskNames, outcomeMask, replayLenient } from './compare'
import { exploreExhaustive, runExecution, ScheduleError, scriptedChooser } from './explore'
import { makePolicy, type Policy, type Preset } from './policy'
import { blockedReason, enabledThreads, step } from './step'
import { initialState, type LabState } from './state'
import { zeroMetrics } from './results'
import type { Scenario } from './types'

const ROOT = path.resolve(__dirname, '..', '..')
const load = (name: string): Scenario => loadScenarioFile(path.join(ROOT, 'scenarios', name))
const COW = 'cow-ordering.invalidate-range-needed.yaml'
const P = (p: Preset): Policy => makePolicy(p)

const outcome = (sc: Scenario, p: Policy, sched: readonly number[]): string[] =>
  maskNames(outcomeMask(replayLenient(sc, p, sched, { tracing: false }).ex))

/**
 * A schedule whose last entry names a thread that is blocked at its turn (breadth first over
 * schedules, so the first such state found), then the reference schedule's choice from there.
 */
function scheduleWithBlockedEntry(
  sc: Scenario,
  p: Policy,
  blocked: (reason: string) => boolean,
): { sched: number[]; t: number; reason: string } | null {
  const metrics = zeroMetrics()
  let level: Array<{ s: LabState; sched: number[] }> = [{ s: initialState(sc), sched: [] }]
  for (let depth = 0; depth < 40 && level.length; depth++) {
    const next: typeof level = []
    for (const { s, sched } of level.slice(0, 2_000)) {
      const en = enabledThreads(sc, p, s)
      for (let t = 0; t < s.threads.length; t++) {
        const reason = s.threads[t]!.done || en.includes(t) ? null : blockedReason(sc, p, s, t)
        if (reason !== null && blocked(reason)) return { sched: [...sched, t], t, reason }
      }
      for (const t of en)
        next.push({ s: step(sc, p, s, t, sched.length, false, metrics).next, sched: [...sched, t] })
    }
    level = next
  }
  return null
}

describe('replayLenient', () => {
  it('skips an entry whose thread is blocked (where a strict replay refuses) and says why', () => {
    for (const [file, lock] of [
      [COW, /lock|ptl/i],
      ['fork-isolation.flush-at-start.yaml', /fork/],
    ] as const) {
      const sc = load(file)
      const p = P('start-end')
      const found = scheduleWithBlockedEntry(sc, p, (r) => lock.test(r))
      expect(found, `${file} has a state where a thread waits (${lock})`).not.toBeNull()
      const { sched, t, reason } = found!
      const at = sched.length - 1
      expect(() =>
        runExecution(sc, p, scriptedChooser(sched), { tracing: false, maxSteps: sched.length + 100 }),
      ).toThrow(ScheduleError)
      const r = replayLenient(sc, p, sched, { tracing: true })
      expect(r.skipped).toEqual([{ index: at, thread: t, reason }])
      // Every other entry ran, in order, and the positions say which; then the reference schedule.
      expect(r.ex.schedule.slice(0, at)).toEqual(sched.slice(0, at))
      expect(r.positions.slice(0, at)).toEqual(sched.slice(0, at).map((_, i) => i))
      expect(r.positions.slice(at).every((x) => x === null)).toBe(true)
      expect(r.ex.records).toHaveLength(r.ex.schedule.length)
    }
  })

  it('skips entries of a finished thread, and runs a followable schedule exactly as the strict replay does', () => {
    const sc = load(COW)
    const p = P('start-end')
    const cx = exploreExhaustive(sc, p, {
      maxStates: 2_000_000,
      maxSteps: 10_000,
      order: 'bfs',
      stopAt: () => true,
    }).found[0]!
    const strict = runExecution(sc, p, scriptedChooser(cx.schedule), {
      tracing: true,
      maxSteps: cx.schedule.length + 100,
    })
    const lenient = replayLenient(sc, p, cx.schedule, { tracing: true })
    expect(lenient.skipped).toEqual([])
    expect(lenient.ex.schedule).toEqual(strict.schedule)
    expect(lenient.ex.violations.map((v) => v.invariant)).toEqual(strict.violations.map((v) => v.invariant))
    expect(lenient.ex.records.map((r) => r.events.length)).toEqual(strict.records.map((r) => r.events.length))
    // The same schedule with five more entries of the first thread: it has finished by then.
    const longer = replayLenient(sc, p, [...cx.schedule, 0, 0, 0, 0, 0], { tracing: false })
    expect(longer.skipped.map((k) => [k.index, k.reason])).toEqual(
      [0, 1, 2, 3, 4].map((i) => [cx.schedule.length + i, 'finished']),
    )
    expect(longer.positions.filter((x) => x === null)).toHaveLength(
      longer.ex.schedule.length - cx.schedule.length,
    )
  })
})

describe('distinguish', () => {
  it('COW example, start-end vs arch-hook: a schedule on which start-end breaks forbid and arch-hook holds, no longer than the shortest counterexample', () => {
    const sc = load(COW)
    const [a, b] = [P('start-end'), P('arch-hook')]
    const d = distinguish(sc, a, b)
    expect(d.schedule).not.toBeNull()
    expect(d.outcomes).toEqual([['forbid'], []])
    // Replayed on its own: the outcomes really differ.
    expect(outcome(sc, a, d.schedule!)).toEqual(['forbid'])
    expect(outcome(sc, b, d.schedule!)).toEqual([])
    // The shortest start-end counterexample (breadth first) holds under arch-hook, so it
    // distinguishes the two: the shortest distinguishing schedule is at most its length.
    const bfs = exploreExhaustive(sc, a, {
      maxStates: 2_000_000,
      maxSteps: 10_000,
      order: 'bfs',
      stopAt: () => true,
    })
    const cx = bfs.found.find((f) => f.invariant === 'forbid')!
    expect(outcome(sc, b, cx.schedule)).toEqual([])
    expect(d.schedule!.length).toBeLessThanOrEqual(cx.schedule.length)
    expect(d.depth).toBe(d.schedule!.length)
  }, 120_000)

  it('the same policy twice: the search covers every pair and finds nothing', () => {
    const sc = load('munmap-uaf.flush-at-start.yaml')
    const d = distinguish(sc, P('arch-hook'), P('arch-hook'))
    expect(d.schedule).toBeNull()
    expect(d.complete).toBe(true)
    expect(d.states).toBeGreaterThan(10)
    expect(d.note).toMatch(/^no schedule distinguishes them/)
  })

  it('two policies that both hold on a catalogue file: complete, no schedule', () => {
    const sc = load('munmap-uaf.flush-at-start.yaml')
    const d = distinguish(sc, P('invalidate-range'), P('arch-hook'))
    expect(d.complete).toBe(true)
    expect(d.schedule).toBeNull()
  })

  it('a budget cut says how far it got, with no schedule', () => {
    const sc = load(COW)
    const d = distinguish(sc, P('start-end'), P('arch-hook'), { maxStates: 500 })
    expect(d.schedule).toBeNull()
    expect(d.complete).toBe(false)
    expect(d.note).toMatch(
      /^stopped at the state budget after 500 state pairs: no schedule of \d+ entries or fewer/,
    )
  })

  it('budget notes count correctly: 1 entry, the empty schedule, never "1 entries"', () => {
    const sc = load(COW)
    const notes = Array.from(
      { length: 12 },
      (_, i) => distinguish(sc, P('start-end'), P('arch-hook'), { maxStates: i + 1 }).note,
    )
    expect(notes).toContain(
      'stopped at the state budget after 2 state pairs: the empty schedule does not distinguish them; longer ones were not all tried',
    )
    expect(notes.some((n) => n.includes(': no schedule of 1 entry or fewer distinguishes them;'))).toBe(true)
    for (const n of notes) expect(n).not.toMatch(/\b1 (entries|state pairs)\b/)
  })

  it('no shorter schedule distinguishes (brute force over every schedule up to the found length)', () => {
    for (const [file, pa, pb] of [
      ['munmap-uaf.flush-at-start.yaml', 'start-end', 'arch-hook'],
      ['mprotect-downgrade.flush-at-start.yaml', 'start-end', 'arch-hook'],
      ['ksm-merge.flush-at-start.yaml', 'start-end', 'arch-hook'],
    ] as const) {
      const sc = load(file)
      const [a, b] = [P(pa), P(pb)]
      const d = distinguish(sc, a, b)
      expect(d.schedule, file).not.toBeNull()
      const n = sc.threads.length
      const len = d.schedule!.length
      expect(n ** (len - 1), `${file}: small enough to enumerate`).toBeLessThan(5_000)
      for (let k = 0; k < len; k++) {
        for (let code = 0; code < n ** k; code++) {
          const sched = Array.from({ length: k }, (_, i) => Math.floor(code / n ** i) % n)
          expect(outcome(sc, a, sched), `${file}: ${sched.join(' ')}`).toEqual(outcome(sc, b, sched))
        }
      }
    }
  }, 120_000)

  it('property: on catalogue files, every schedule found replays to different outcomes', () => {
    const files = [
      'upgrade-loop.smmu-no-btm.yaml',
      'munmap-uaf.flush-at-start.yaml',
      'mprotect-downgrade.flush-at-start.yaml',
      'fork-isolation.flush-at-start.yaml',
      'ksm-merge.flush-at-start.yaml',
      'reclaim.flush-at-start.yaml',
      'migrate.flush-at-start.yaml',
    ]
    const pairs: Array<[Preset, Preset]> = [
      ['start-end', 'arch-hook'],
      ['start-end', 'invalidate-range'],
      ['invalidate-range', 'arch-hook'],
    ]
    let found = 0
    for (const f of files) {
      const sc = load(f)
      for (const [pa, pb] of pairs) {
        const d = distinguish(sc, P(pa), P(pb), { maxStates: 50_000 })
        if (!d.schedule) continue
        found++
        const oa = outcome(sc, P(pa), d.schedule)
        const ob = outcome(sc, P(pb), d.schedule)
        expect(oa, `${f} ${pa} vs ${pb}`).not.toEqual(ob)
        expect([oa, ob]).toEqual(d.outcomes)
      }
    }
    expect(found).toBeGreaterThan(3)
  }, 180_000)

  it('agrees with the explorer: proven-agreeing policies violate the same invariants; differing verdicts give a schedule', () => {
    const files = [
      'munmap-uaf.flush-at-start.yaml',
      'munmap-uaf.flush-at-both.yaml',
      'mprotect-downgrade.flush-at-start.yaml',
      'thp-collapse.file-before-cve-2022-48991.yaml',
      'zap-writeback.before-2014.yaml',
      'ksm-merge.flush-at-start.yaml',
    ]
    const safety = (sc: Scenario, p: Policy): string =>
      exploreExhaustive(sc, p, { maxStates: 200_000, maxSteps: 10_000 })
        .found.map((f) => f.invariant)
        .filter((i) => i !== 'progress')
        .sort()
        .join()
    let proven = 0
    let found = 0
    for (const f of files) {
      const sc = load(f)
      const [a, b] = [P('start-end'), P('arch-hook')]
      const d = distinguish(sc, a, b, { maxStates: 200_000 })
      if (d.complete) {
        proven++
        expect(safety(sc, a), f).toBe(safety(sc, b))
      } else {
        expect(d.schedule, f).not.toBeNull()
        found++
      }
      if (safety(sc, a) !== safety(sc, b)) expect(d.schedule, f).not.toBeNull()
    }
    expect(proven).toBeGreaterThan(0)
    expect(found).toBeGreaterThan(0)
  }, 120_000)
})
