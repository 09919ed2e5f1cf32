/**
 * HMM mirrors (protocol: hmm): the interval-notifier protocol of Documentation/mm/hmm.rst
 * (v6.6) and lib/test_hmm.c: ->invalidate sets the sequence and zaps under the driver lock at
 * range_start; mmu_interval_read_begin waits while that invalidation runs; the fault programs
 * the device only if mmu_interval_read_retry says nothing reached the notifier meanwhile; the
 * driver's own MMU_NOTIFY_MIGRATE is skipped and it maps the destination itself.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, PRESETS } from '../policy'
import { blockedReason } from '../step'
import { runExecution, scriptedChooser } from '../explore'
import { lines, runUnder, traced } from './traceTestkit'

const sc = (mirror: string, cpu: string, dev = 'read P -> r0') =>
  scenarioOf(
    `
      title: hmm
      arch: x86_64
      pages:
        P: { value: 5, prot: rw }
      secondary:
        - ${mirror}
      cpus:
        C0: [${cpu}]
      devices:
        D0: { via: hmm, ops: [${dev}] }
    `,
    'hmm.test.yaml',
  )
const HMM = '{ name: hmm, type: sw-mirror, protocol: hmm }'
const NO_RETRY = '{ name: hmm, type: sw-mirror, protocol: hmm, hmm_retry: false }'
const C0 = 0
const D0 = 1

describe('HMM interval notifier: read_begin, hmm_range_fault, driver lock, read_retry', () => {
  it('->invalidate runs at range_start (set_seq + zap under the driver lock); range_end only ends the active range', () => {
    const s = sc('{ name: hmm, type: sw-mirror, protocol: hmm, cached: [P] }', 'munmap P', 'signal x')
    const ex = traced(s, makePolicy('start-end'))
    const l = lines(ex, { thread: 'C0', kinds: ['notifier', 'sec-inval', 'pte'] })
    expect(l).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP P',
      'sec-inval dmirror_interval_invalidate: hmm: mutex_lock, mmu_interval_set_seq (seq 1), zap 1 mirror entry, mutex_unlock',
      'pte ptep_get_and_clear_full: PTE P := none',
      'notifier mmu_notifier_invalidate_range_end: P',
      'sec-inval mn_itree_inv_end: hmm: last active range: invalidate_seq even, wake_up_all',
    ])
  })

  it('mmu_interval_read_begin sleeps while an invalidation that reached the notifier runs', () => {
    const s = sc(HMM, 'munmap P')
    // D0 misses; C0 takes mmap_lock, detaches, then range_start: the notifier's seq is odd.
    const cut = runExecution(s, makePolicy('start-end'), scriptedChooser([D0, C0, C0]), {
      tracing: true,
      maxSteps: 3,
    })
    expect(cut.violations).toEqual([])
    expect(blockedReason(s, makePolicy('start-end'), cut.final, D0)).toBe(
      'mmu_interval_read_begin: an invalidation is running (wait_event until mn_itree_inv_end)',
    )
    // After range_end it reads the new (even) sequence.
    const done = traced(s, makePolicy('start-end'), [D0, C0, C0, C0, C0, C0, D0])
    expect(lines(done, { thread: 'D0', kinds: ['info'] })[0]).toBe(
      'info mmu_interval_read_begin: hmm: notifier_seq = 2',
    )
  })

  it('an invalidation between hmm_range_fault and the driver lock makes mmu_interval_read_retry send it back to read_begin', () => {
    const s = sc(HMM, 'munmap P')
    // C0 detaches the VMA; D0 misses, takes its notifier_seq and walks (the PTE is still there);
    // C0 range_start, zaps, range_end, frees the table, flushes and frees the page; D0 takes the lock.
    const ex = traced(s, makePolicy('start-end'), [C0, D0, D0, D0, C0, C0, C0, C0, C0, C0, D0])
    const l = lines(ex, { thread: 'D0', kinds: ['fault', 'info', 'fill'] })
    const walk = l.indexOf('info hmm_range_fault: P -> pfn 1 RW')
    const retry = l.findIndex((x) =>
      x.startsWith('fault mmu_interval_read_retry: hmm: mutex_lock; an invalidation'),
    )
    expect(walk).toBeGreaterThanOrEqual(0)
    expect(retry).toBeGreaterThan(walk)
    expect(l[retry + 1]).toBe('info mmu_interval_read_begin: hmm: notifier_seq = 2')
    expect(l.some((x) => x.startsWith('fill dmirror_do_fault'))).toBe(false)
    expect(ex.violations).toEqual([])
  })

  it('hmm_retry: false programs the freed pfn, and the next access is a use-after-free', () => {
    const s = sc(NO_RETRY, 'munmap P', 'read P -> r0, read P -> r1')
    const ex = traced(s, makePolicy('start-end'), [C0, D0, D0, D0, C0, C0, C0, C0, C0, C0, D0, D0])
    const l = lines(ex, { thread: 'D0', kinds: ['fill'] })
    expect(l).toEqual([
      'fill dmirror_do_fault: hmm: mutex_lock, no mmu_interval_read_retry, mirror P -> pfn 1 RW, mutex_unlock',
    ])
    expect(ex.violations.map((v) => v.invariant)).toContain('use-after-free')
  })

  it("hmm_range_fault's own mmu_interval_check_retry: an invalidation before the walk gives -EBUSY, even without read_retry", () => {
    // C0 detaches the VMA; D0 misses and takes its notifier_seq; C0 range_start (the seq moves);
    // D0's walk returns -EBUSY and dmirror_range_fault goes back to read_begin, which sleeps.
    const s = sc(NO_RETRY, 'munmap P', 'read P -> r0, read P -> r1')
    const ex = traced(s, makePolicy('start-end'), [C0, D0, D0, C0, D0])
    const l = lines(ex, { thread: 'D0', kinds: ['fault', 'info', 'fill'] })
    const busy = l.findIndex((x) => x.startsWith('fault hmm_range_fault: hmm: mmu_interval_check_retry'))
    expect(busy).toBeGreaterThanOrEqual(0)
    expect(l.slice(0, busy).some((x) => x.startsWith('info hmm_range_fault: P ->'))).toBe(false)
    expect(ex.violations).toEqual([])
  })

  it('exhaustively: the retry holds, its absence is caught, under every policy', () => {
    const ok = sc(HMM, 'munmap P', 'read P -> r0, read P -> r1')
    const bad = sc(NO_RETRY, 'munmap P', 'read P -> r0, read P -> r1')
    for (const p of PRESETS) {
      expect(runUnder(ok, p).invariants['use-after-free']).toBe('holds')
      expect(runUnder(bad, p).invariants['use-after-free']).toBe('violated')
    }
  })
})

describe('HMM mirror across exit (mn_itree_release)', () => {
  it('release zaps the mirror and leaves the sequence even (an invalidation that started and ended), so no read_begin sleeps forever', () => {
    const s = sc('{ name: hmm, type: sw-mirror, protocol: hmm, cached: [P] }', 'exit', 'signal x')
    const ex = traced(s, makePolicy('start-end'))
    expect(ex.violations).toEqual([])
    expect(ex.final.secs[0]!.entries).toEqual([])
    // mn_itree_release (+2), then unmap_vmas' MMU_NOTIFY_UNMAP range (+2): the interval
    // notifier stays in the tree after release, so exit_mmap's zap still reaches it.
    expect(ex.final.secs[0]!.seq).toBe(4)
    const l = lines(ex, { thread: 'C0', kinds: ['notifier'] })
    expect(l).toContain('notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP P')
  })

  it('exhaustively: a device faulting across exit never keeps a freed page', () => {
    const s = sc(HMM, 'exit', 'read P -> r0, read P -> r1')
    for (const p of PRESETS) expect(runUnder(s, p).verdict).toBe('holds')
  })
})

describe('migrate_vma owner filter (dmirror_interval_invalidate, dmirror_migrate_finalize_and_map)', () => {
  const CACHED = '{ name: hmm, type: sw-mirror, protocol: hmm, cached: [P] }'

  it("the owner's own MMU_NOTIFY_MIGRATE is skipped: no set_seq, no zap; the driver maps the destination before remove_migration_ptes", () => {
    const ex = traced(sc(CACHED, 'migrate_vma P owner hmm', 'signal x'), makePolicy('start-end'))
    const l = lines(ex, { thread: 'C0', kinds: ['notifier', 'sec-inval', 'frame', 'fill', 'pte'] })
    const skip = l.findIndex((x) =>
      x.startsWith('sec-inval dmirror_interval_invalidate: hmm: MMU_NOTIFY_MIGRATE with range->owner'),
    )
    const copy = l.findIndex((x) => x.startsWith('frame folio_migrate_copy'))
    const map = l.findIndex((x) =>
      x.startsWith('fill dmirror_migrate_finalize_and_map: hmm: mutex_lock, mirror P -> pfn 2 RW'),
    )
    const remove = l.findIndex((x) => x.startsWith('pte set_pte_at (remove_migration_pte)'))
    expect(skip).toBeGreaterThanOrEqual(0)
    expect(l.some((x) => x.includes('mmu_interval_set_seq'))).toBe(false)
    expect(copy).toBeGreaterThan(skip)
    expect(map).toBeGreaterThan(copy)
    expect(remove).toBeGreaterThan(map)
    expect(ex.violations).toEqual([])
  })

  it("another owner's migration reaches ->invalidate (set_seq and zap)", () => {
    const ex = traced(sc(CACHED, 'migrate_vma P', 'signal x'), makePolicy('start-end'))
    const l = lines(ex, { thread: 'C0', kinds: ['sec-inval', 'fill'] })
    expect(l[0]).toBe(
      'sec-inval dmirror_interval_invalidate: hmm: mutex_lock, mmu_interval_set_seq (seq 1), zap 1 mirror entry, mutex_unlock',
    )
    expect(l.some((x) => x.startsWith('fill dmirror_migrate_finalize_and_map'))).toBe(false)
  })
})

describe('dmirror_fault holds mm_users: exit_mmap waits for a fault in flight', () => {
  // lib/test_hmm.c (v6.6) dmirror_fault: `if (!mmget_not_zero(mm)) return 0;` ...
  // dmirror_range_fault ... mmput(mm). exit_mmap runs from the last mmput.
  const s = sc('{ name: hmm, type: sw-mirror, protocol: hmm }', 'exit')

  it('a fault past mmget_not_zero keeps exit_mmap from starting until it has programmed the mirror; then mn_itree_release zaps it', () => {
    // D0 misses and takes mm_users: C0 cannot start exit_mmap.
    expect(() => traced(s, makePolicy('start-end'), [D0, C0])).toThrow(
      'C0 cannot run at step 1: mm_users: a mirror fault (vCPU or dmirror_fault) still holds the mm',
    )
    const mid = runExecution(s, makePolicy('start-end'), scriptedChooser([D0]), {
      tracing: true,
      maxSteps: 1,
    })
    expect(mid.final.mms[0]!.users).toBe(1)
    expect(mid.final.threads[D0]!.locks).toEqual(['mm_users (dmirror_fault)'])
    // D0 goes on alone (read_begin, hmm_range_fault, the install and mmput, the read from the
    // mirror); exit comes after.
    const ex = traced(s, makePolicy('start-end'), [D0, D0, D0, D0, D0])
    const ev = ex.records.flatMap((r) => r.events).map((e) => `${e.thread} ${e.kind} ${e.fn}`)
    const fill = ev.indexOf('D0 fill dmirror_do_fault')
    const release = ev.indexOf('C0 notifier mmu_notifier_release')
    expect(fill).toBeGreaterThanOrEqual(0)
    expect(release).toBeGreaterThan(fill)
    expect(ex.final.regs[0]).toBe(5)
    // mn_itree_release (release: block) zapped what the fault programmed.
    expect(ex.final.secs[0]!.entries).toEqual([])
    expect(ex.final.mms[0]!.users).toBeUndefined()
    expect(ex.violations).toEqual([])
    // No fault gives up on a released mm half-way any more: only the first check can fail.
    expect(ex.records.flatMap((r) => r.events).some((e) => e.text.includes('modelled as passing'))).toBe(
      false,
    )
    // After the install's mmput the exit may come before D0 reads the mirror: the release zaps
    // the entry, and the read's next dmirror_fault fails at mmget_not_zero.
    const late = traced(s, makePolicy('start-end'), [D0, D0, D0, D0, C0])
    expect(late.final.regs[0]).toBeNull()
    expect(late.violations).toEqual([])
  })

  it('a fault that starts after the release fails at mmget_not_zero and takes no reference', () => {
    const ex = traced(s, makePolicy('start-end'), [C0, D0])
    expect(lines(ex, { thread: 'D0', kinds: ['fault'] })).toEqual([
      'fault dmirror_fault: hmm: mmget_not_zero() fails: the process exited; the access fails',
    ])
    expect(ex.final.regs[0]).toBeNull()
    expect(ex.final.mms[0]!.users).toBeUndefined()
  })
})
