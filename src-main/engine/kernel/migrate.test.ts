/**
 * Page migration (v6.6 migrate_pages_batch with TTU_BATCH_FLUSH; reference 3.8): the x86
 * batched flush calls the arch hook with (0, -1) at add time and defers the CPU flush;
 * invalidate-range fires at range_end before the copy; a device meeting the migration entry
 * waits in migration_entry_wait and then reads the migrated page.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { blockedReason } from '../step'
import { runExecution, ScheduleError, scriptedChooser } from '../explore'
import { allEvents, lines, runUnder, traced } from './traceTestkit'

const sc = (arch: string) =>
  scenarioOf(
    `
      title: migrate
      arch: ${arch}
      pages:
        P: { value: 5, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker, cached: [P] }
      cpus:
        kcompactd: [migrate P]
      devices:
        D0: { via: iommu, ops: [read P -> r0] }
    `,
    'migrate.test.yaml',
  )

describe('migrate: try_to_migrate_one, try_to_unmap_flush, copy, remove_migration_ptes', () => {
  it('x86 arch-hook: a whole-address-space invalidation at arch_tlbbatch_add_pending, the CPU flush later without a hook', () => {
    const ex = traced(sc('x86_64'), makePolicy('arch-hook'), [0, 0, 0, 0, 0, 0, 0, 0])
    const l = lines(ex, { thread: 'kcompactd', kinds: ['notifier', 'cpu-flush', 'pte', 'sec-inval'] })
    expect(l).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'pte ptep_get_and_clear: PTE P := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entry dropped)',
      'pte set_pte_at (migration entry): PTE P := migration entry (pfn 1, writable)',
      'notifier mmu_notifier_invalidate_range_end: P',
      'cpu-flush arch_tlbbatch_flush: flush CPU TLBs: P',
      'pte set_pte_at (remove_migration_pte): PTE P := pfn 2 RW dirty',
    ])
    expect(allEvents(ex).some((e) => e.text === 'free pfn 1 (gen 1)')).toBe(true)
  })

  it('invalidate-range: ->invalidate_range at range_end, before folio_migrate_copy', () => {
    const ex = traced(sc('x86_64'), makePolicy('invalidate-range'), [0, 0, 0, 0, 0, 0, 0, 0])
    const l = lines(ex, { thread: 'kcompactd', kinds: ['sec-inval', 'frame'] })
    const inval = l.indexOf(
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate P (1 entry dropped)',
    )
    const copy = l.findIndex((x) => x.startsWith('frame folio_migrate_copy'))
    expect(inval).toBeGreaterThanOrEqual(0)
    expect(copy).toBeGreaterThan(inval)
  })

  it('a device page request on the migration entry waits until remove_migration_ptes, then reads the new page', () => {
    const s = sc('arm64')
    // kcompactd isolates, locks and unmaps (4 steps); D0 misses, faults, snapshots the
    // migration entry and waits.
    const cut = runExecution(s, makePolicy('arch-hook'), scriptedChooser([0, 0, 0, 0, 1, 1]), {
      tracing: true,
      maxSteps: 6,
    })
    const waiting = cut.final
    expect(blockedReason(s, makePolicy('arch-hook'), waiting, 1)).toBe(
      'migration_entry_wait: page under migration',
    )
    const done = traced(s, makePolicy('arch-hook'), [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    expect(allEvents(done).some((e) => e.fn === 'migration_entry_wait' && e.thread === 'D0')).toBe(true)
    expect(done.final.regs[0]).toBe(5)
    expect(done.violations).toEqual([])
  })
})

describe('migrate_vma (HMM, v6.6 mm/migrate_device.c) and 60bae7370896', () => {
  const vma = (fix: boolean, sec = 'hw-walker') =>
    scenarioOf(
      `
        title: migrate_vma
        arch: x86_64
        kernel: { migrate_vma_flush_under_ptl: ${fix} }
        pages:
          P: { value: 5, prot: rw }
        secondary:
          - { name: dev, type: ${sec}, cached: [P] }
        cpus:
          C0: [migrate_vma P]
          C1: [madvise_dontneed P]
        devices:
          D0: { via: dev, ops: [read P -> r0, read P -> r1] }
      `,
      'migrate_vma.test.yaml',
    )

  it('v6.6: the clear, the migration entry and flush_tlb_range (with the arch hook) all under the PTL', () => {
    const ex = traced(vma(true), makePolicy('arch-hook'))
    expect(lines(ex, { thread: 'C0', kinds: ['lock', 'pte', 'cpu-flush', 'notifier'] }).slice(0, 9)).toEqual([
      "lock lock_page (the driver's destination): lock the folio pfn 2 (P new)",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_MIGRATE P',
      'lock migrate_vma_collect_pmd: take the page-table lock',
      'lock migrate_vma_collect_pmd: trylock_page: lock the folio pfn 1 (P)',
      'pte ptep_get_and_clear: PTE P := none',
      'pte set_pte_at (migration entry): PTE P := migration entry (pfn 1, writable)',
      'cpu-flush flush_tlb_range (migrate_vma_collect_pmd, under the PTL): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'lock pte_unmap_unlock: release the page-table lock',
    ])
  })

  it('before the fix the flush comes after pte_unmap_unlock; only the arch hook inherits the window', () => {
    const ex = traced(vma(false), makePolicy('arch-hook'))
    const l = lines(ex, { thread: 'C0', kinds: ['lock', 'cpu-flush'] })
    expect(l.indexOf('lock pte_unmap_unlock: release the page-table lock')).toBeLessThan(
      l.indexOf('cpu-flush flush_tlb_range (migrate_vma_collect_pmd, after the unlock): flush CPU TLBs: P'),
    )
    const verdicts = (s: ReturnType<typeof vma>) =>
      (['start-end', 'invalidate-range', 'arch-hook'] as const).map((p) => runUnder(s, p).verdict)
    expect(verdicts(vma(false))).toEqual(['holds', 'holds', 'violated'])
    expect(verdicts(vma(true))).toEqual(['holds', 'holds', 'holds'])
    // HMM (an interval-notifier mirror) holds either way (reference row 16).
    expect(verdicts(vma(false, 'sw-mirror'))).toEqual(['holds', 'holds', 'holds'])
  })
})

describe('migrate_mode (v6.6 migrate_pages / migrate_pages_sync)', () => {
  const pinned = (mode: string) =>
    scenarioOf(
      `
        title: migrate with a reference held
        arch: x86_64
        pages:
          P: { value: 5, prot: rw }
        secondary:
          - { name: iommu, type: hw-walker, cached: [P] }
        cpus:
          drv: [migrate_vma P]
          mover: [migrate P ${mode}]
      `,
      'migrate-mode.test.yaml',
    )
  // drv's first step (migrate_vma_setup) takes its folio_get() reference, not yet the folio
  // lock (migrate_vma_collect_pmd's trylock_page comes later); then the migration runs alone
  // until it returns. (ksmd would hold the lock too: mover's folio_trylock would fail first.)
  function run(mode: string): ReturnType<typeof traced> {
    for (let n = 30; n > 0; n--) {
      try {
        return traced(pinned(mode), makePolicy('arch-hook'), [0, ...new Array<number>(n).fill(1)])
      } catch (e) {
        if (!(e instanceof ScheduleError)) throw e
      }
    }
    throw new Error('mover cannot run')
  }
  const moverLines = (ex: ReturnType<typeof traced>) =>
    lines(ex, { thread: 'mover', kinds: ['pte', 'cpu-flush', 'info', 'op'] })

  it('sync: the first pass is MIGRATE_ASYNC with the batched flush; -EAGAIN on the extra reference restores the PTE; the sync retry clears with ptep_clear_flush', () => {
    const l = moverLines(run('sync'))
    expect(l).toEqual([
      'op migrate: mover: migrate P sync',
      'pte ptep_get_and_clear: PTE P := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'pte set_pte_at (migration entry): PTE P := migration entry (pfn 1, writable)',
      'cpu-flush arch_tlbbatch_flush: flush CPU TLBs: P',
      "info folio_migrate_mapping: pfn 1 has references besides the migration's (refcount 2): -EAGAIN",
      'pte set_pte_at (remove_migration_pte: the source back): PTE P := pfn 1 RW dirty',
      'info migrate_pages_sync: retry P in MIGRATE_SYNC: try_to_migrate(src, 0)',
      'pte ptep_clear_flush: PTE P := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P',
      'pte set_pte_at (migration entry): PTE P := migration entry (pfn 1, writable)',
      "info folio_migrate_mapping: pfn 1 has references besides the migration's (refcount 2): -EAGAIN",
      'pte set_pte_at (remove_migration_pte: the source back): PTE P := pfn 1 RW dirty',
      'op migrate: P: -EAGAIN, not migrated',
    ])
  })

  it('async: no retry after -EAGAIN, and an unpinned page migrates in one batched pass in every mode', () => {
    const l = moverLines(run('async'))
    expect(l.filter((x) => x.startsWith('pte ptep_clear_flush'))).toEqual([])
    expect(l.at(-1)).toBe('op migrate: P: -EAGAIN, not migrated')
    for (const mode of ['async', 'sync_light', 'sync']) {
      const ex = traced(
        scenarioOf(
          `
            title: m
            arch: x86_64
            pages:
              P: { value: 5, prot: rw }
            cpus:
              mover: [migrate P ${mode}]
          `,
          'm.yaml',
        ),
        makePolicy('arch-hook'),
      )
      const m = moverLines(ex)
      expect(m, mode).toContain(
        'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      )
      expect(
        m.filter((x) => x.startsWith('pte ptep_clear_flush')),
        mode,
      ).toEqual([])
      expect(m.at(-1), mode).toBe('op migrate: P: pfn 1 -> pfn 2')
    }
  })

  it('the default mode is async, and a bad mode is a located error with a suggestion', () => {
    const sc = pinned('')
    expect(sc.threads[1]!.ops[0]).toEqual({ kind: 'migrate', page: 0, mode: 'async' })
    expect(() => pinned('sync-light')).toThrow(
      /9:\d+: migrate takes a page, then optionally a migrate_mode: async, sync_light, sync; found 'sync-light' \(did you mean 'sync_light'\?\)/,
    )
  })
})
