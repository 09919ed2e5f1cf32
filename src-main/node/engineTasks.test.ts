import { describe, expect, it } from 'vitest'
import { replayTask } from './engineTasks'

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
