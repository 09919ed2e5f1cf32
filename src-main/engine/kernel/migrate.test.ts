/**
 * Page migration (v6.6 migrate_pages_batch with TTU_BATCH_FLUSH; reference 3.8): the x86
 * batched flush calls the arch hook with (0, -1) at add time and defers the CPU flush;
 * invalidate-range fires at range_end before the copy; a device meeting the migration entry
 * waits in migration_entry_wait and then reads the migrated page.
 */
import { describe, expect, it } from 'vitest'
import { loadScenarioText } from '../../node/scenarioFiles'
import { makePolicy } from '../policy'
import { blockedReason } from '../step'
import { runExecution, scriptedChooser } from '../explore'
import { allEvents, dedent, lines, traced } from './traceTestkit'

const sc = (arch: string) =>
  loadScenarioText(
    dedent(`
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
    `),
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
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate all (1 entries dropped)',
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
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate P (1 entries dropped)',
    )
    const copy = l.findIndex((x) => x.startsWith('frame folio_migrate_copy'))
    expect(inval).toBeGreaterThanOrEqual(0)
    expect(copy).toBeGreaterThan(inval)
  })

  it('a device page request on the migration entry waits until remove_migration_ptes, then reads the new page', () => {
    const s = sc('arm64')
    // kcompactd unmaps (3 steps); D0 misses, faults, snapshots the migration entry and waits.
    const cut = runExecution(s, makePolicy('arch-hook'), scriptedChooser([0, 0, 0, 1, 1]), {
      tracing: true,
      maxSteps: 5,
    })
    const waiting = cut.final
    expect(blockedReason(s, makePolicy('arch-hook'), waiting, 1)).toBe(
      'migration_entry_wait: page under migration',
    )
    const done = traced(s, makePolicy('arch-hook'), [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    expect(allEvents(done).some((e) => e.fn === 'migration_entry_wait' && e.thread === 'D0')).toBe(true)
    expect(done.final.regs[0]).toBe(5)
    expect(done.violations).toEqual([])
  })
})
