import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { diffTraces } from '../api/traceDiff'
import { LabApiError } from './apiErrors'
import { compareTask, distinguishTask, replayTask } from './engineTasks'

describe('replayTask', () => {
  it('stops a replay that outlives its time budget, with outcome cut and the steps so far', () => {
    const writes = Array.from({ length: 2_000 }, () => 'write A 1').join(', ')
    const text = `title: one long thread\narch: x86_64\npages:\n  A: { value: 0, prot: rw }\ncpus:\n  C0: [${writes}]\n`
    const schedule = Array.from({ length: 2_000 }, () => 'C0')
    const cut = replayTask({ text, file: null, policy: 'arch-hook', schedule }, -1)
    expect(cut.outcome).toBe('cut')
    expect(cut.records.length).toBeLessThan(100)
    const whole = replayTask({ text, file: null, policy: 'arch-hook', schedule: schedule.slice(0, 200) })
    // Within budget it runs to the end (the schedule, then the reference schedule).
    expect(whole.outcome).toBe('done')
    expect(whole.records).toHaveLength(2_000)
  })
})

describe('compareTask and distinguishTask', () => {
  const COW_FILE = path.join(__dirname, '..', '..', 'scenarios', 'cow-ordering.invalidate-range-needed.yaml')
  const COW = readFileSync(COW_FILE, 'utf8')
  const CX = 'C0 C0 C0 C0 C1 D1 C0 C0 C1 C1 C1 C1 C1 C2 C2 D0 D0'.split(' ')

  it('replays one schedule under each policy, with a trace, why and positions for each', () => {
    const r = compareTask({ text: COW, file: COW_FILE, policies: ['all'], schedule: CX })
    expect(r.schedule).toEqual(CX)
    expect(r.replays.map((x) => x.policy)).toEqual(['start-end', 'invalidate-range', 'arch-hook'])
    const [se, ir, ah] = r.replays
    expect(se!.violations.map((v) => v.invariant)).toEqual(['forbid'])
    for (const x of [ir!, ah!]) {
      expect(x.violations).toEqual([])
      expect(x.records.length).toBeGreaterThan(CX.length - 1)
      expect(x.why).not.toBe('')
    }
    for (const x of r.replays) {
      expect(x.positions).toHaveLength(x.records.length)
      expect(x.positions.slice(0, CX.length)).toEqual(CX.map((_, i) => i))
      expect(x.ran.slice(0, CX.length)).toEqual(CX)
    }
  })

  it('one hook hint per holding policy, against the violating replay; hint is the first of them', () => {
    const r = compareTask({ text: COW, file: COW_FILE, policies: ['all'], schedule: CX })
    expect(r.hints.map((h) => h.policy)).toEqual(['invalidate-range', 'arch-hook'])
    // v4.15 wp_page_copy calls ptep_clear_flush_notify: the hint names that caller.
    expect(r.hints[0]!.text).toMatch(
      /^under invalidate-range, mmu_notifier_invalidate_range \(ptep_clear_flush_notify, step 6\) invalidated A's iommu TLB entry between the fill \(step 5\) and the read \(step 16\)$/,
    )
    expect(r.hints[1]!.text).toMatch(
      /^under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs \(ptep_clear_flush, step 6\) invalidated/,
    )
    expect(r.hint).toBe(r.hints[0]!.text)
    // No violating replay: no hints.
    const none = compareTask({
      text: COW,
      file: COW_FILE,
      policies: ['invalidate-range,arch-hook'],
      schedule: CX,
    })
    expect(none.hints).toEqual([])
    expect(none.hint).toBeNull()
  })

  it('bad policies and thread names are LabApiErrors with a clear message', () => {
    const req = { text: COW, file: COW_FILE, policies: ['start-end'], schedule: CX }
    expect(() => compareTask({ ...req, policies: ['nope'] })).toThrow(LabApiError)
    expect(() => compareTask({ ...req, policies: ['nope'] })).toThrow(/^policies: /)
    expect(() => compareTask({ ...req, schedule: ['C0', 'Q7'] })).toThrow(
      /^schedule: schedule step 1: unknown thread 'Q7'/,
    )
    const d = { text: COW, file: COW_FILE, policies: ['all', 'arch-hook'] as [string, string] }
    expect(() => distinguishTask(d)).toThrow(/^policies: distinguish takes two single policies, got 'all'/)
    // The same policy twice (however it is spelt) is refused before any search.
    const twice = { ...d, policies: ['arch-hook', ' arch-hook'] as [string, string] }
    expect(() => distinguishTask(twice)).toThrow(LabApiError)
    expect(() => distinguishTask(twice)).toThrow(
      /^policies: distinguish needs two different policies, got arch-hook twice/,
    )
    expect(() => compareTask({ ...req, schedule: ['C0', 'c1'] })).toThrow(
      "schedule: schedule step 1: unknown thread 'c1' (did you mean 'C1'?); threads are C0, C1, C2, D0, D1",
    )
  })

  it('distinguish: the schedule, both replays and the first difference; a time budget cuts it', () => {
    const d = distinguishTask({ text: COW, file: COW_FILE, policies: ['start-end', 'arch-hook'] })
    expect(d.schedule).toEqual(CX)
    expect(d.replays.map((x) => x.violations.map((v) => v.invariant))).toEqual([['forbid'], []])
    expect(d.firstDifference).not.toBeNull()
    expect(d.hint).toMatch(
      /^under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs \(ptep_clear_flush, step \d+\)/,
    )
    const rows = diffTraces(d.replays[0]!, d.replays[1]!)
    expect(rows.rows[d.firstDifference!]!.differs).toBe(true)
    expect(rows.rows.slice(0, d.firstDifference!).every((row) => !row.differs)).toBe(true)
    const cut = distinguishTask({
      text: COW,
      file: COW_FILE,
      policies: ['start-end', 'arch-hook'],
      timeoutMs: 1,
    })
    expect(cut.schedule).toBeNull()
    expect(cut.complete).toBe(false)
    expect(cut.note).toMatch(/^stopped at the time budget after [\d,]+ state pairs/)
    expect(cut.hint).toBeNull()
  }, 60_000)
})
