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
import { defaultRunOptions, runPolicy } from '../run'
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

describe('migrate_vma (HMM, v6.6 mm/migrate_device.c) and 60bae7370896', () => {
  const vma = (fix: boolean, sec = 'hw-walker') =>
    loadScenarioText(
      dedent(`
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
      `),
      'migrate_vma.test.yaml',
    )

  it('v6.6: the clear, the migration entry and flush_tlb_range (with the arch hook) all under the PTL', () => {
    const ex = traced(vma(true), makePolicy('arch-hook'))
    expect(lines(ex, { thread: 'C0', kinds: ['lock', 'pte', 'cpu-flush', 'notifier'] }).slice(0, 7)).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_MIGRATE P',
      'lock migrate_vma_collect_pmd: take the page-table lock',
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
      (['start-end', 'invalidate-range', 'arch-hook'] as const).map(
        (p) => runPolicy(s, makePolicy(p), defaultRunOptions(s)).verdict,
      )
    expect(verdicts(vma(false))).toEqual(['holds', 'holds', 'violated'])
    expect(verdicts(vma(true))).toEqual(['holds', 'holds', 'holds'])
    // HMM (an interval-notifier mirror) holds either way (reference row 16).
    expect(verdicts(vma(false, 'sw-mirror'))).toEqual(['holds', 'holds', 'holds'])
  })
})
