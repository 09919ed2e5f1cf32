/**
 * File pages in more shapes: two addresses of one file offset (`file: P`), reclaim of a file
 * folio (v6.6 mm/vmscan.c shrink_folio_list, mm/rmap.c try_to_unmap_one), migration of a
 * page-cache folio (mm/migrate.c), fork of a MAP_SHARED mapping (mm/memory.c vma_needs_copy).
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { initialState } from '../state'
import { allEvents, lines, traced } from './traceTestkit'

const twoVmas = (op: string, mapped = 'ro') =>
  scenarioOf(
    `
      title: file shapes
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: ${mapped} }
        G: { kind: file, file: F, mapped: ${mapped} }
      secondary:
        - { name: iommu, type: hw-walker, cached: [G] }
      cpus:
        K: [${op}]
    `,
    'file-shapes.test.yaml',
  )

describe('two addresses of one file offset', () => {
  it("both PTEs map the one page-cache folio: mapcount 2, one reference each and the page cache's", () => {
    const s = initialState(twoVmas('reclaim F'))
    expect(s.mms[0]!.ptes.map((p) => p?.pfn)).toEqual([1, 1])
    expect(s.frames[1]).toMatchObject({ map: 2, ref: 3 })
    expect(s.files).toEqual([{ pfn: 1, dirty: false, lock: -1, disk: 1 }, null])
  })
})

describe('reclaim of a file folio', () => {
  it('try_to_unmap over both mappings (each with its notifier range and the batched flush), __remove_mapping, then try_to_unmap_flush and the free', () => {
    const ex = traced(twoVmas('reclaim F'), makePolicy('arch-hook'))
    expect(lines(ex, { thread: 'K', kinds: ['pte', 'notifier', 'cpu-flush', 'frame'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR F',
      'pte ptep_get_and_clear: PTE F := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'notifier mmu_notifier_invalidate_range_end: F',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR G',
      'pte ptep_get_and_clear: PTE G := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'notifier mmu_notifier_invalidate_range_end: G',
      'frame __remove_mapping: F: pfn 1 leaves the page cache (clean)',
      'cpu-flush arch_tlbbatch_flush (try_to_unmap_flush): flush CPU TLBs: whole mm',
      'frame free_unref_folios (the isolation reference): free pfn 1 (gen 1)',
    ])
    expect(ex.final.files[0]).toMatchObject({ pfn: -1, dirty: false })
    expect(ex.violations).toEqual([])
  })

  it('a dirty PTE moves its bit to the folio, and the dirty folio is kept for the flusher', () => {
    const ex = traced(twoVmas('reclaim F', 'rw'), makePolicy('start-end'))
    expect(allEvents(ex).some((e) => e.text.includes('keep (PG_dirty'))).toBe(true)
    expect(ex.final.files[0]).toMatchObject({ pfn: 1, dirty: true })
    expect(ex.final.frames[1]!.free).toBe(false)
  })
})

describe('migration of a page-cache folio', () => {
  it('migration entries in both mappings, the flush, the page cache slot moved, the copy, both PTEs on the new folio, the old one freed', () => {
    const ex = traced(twoVmas('migrate F'), makePolicy('start-end'))
    const l = lines(ex, { thread: 'K', kinds: ['pte', 'cpu-flush', 'frame'] })
    expect(l.filter((x) => x.startsWith('pte'))).toEqual([
      'pte ptep_get_and_clear: PTE F := none',
      'pte set_pte_at (migration entry): PTE F := migration entry (pfn 1, read-only)',
      'pte ptep_get_and_clear: PTE G := none',
      'pte set_pte_at (migration entry): PTE G := migration entry (pfn 1, read-only)',
      'pte remove_migration_ptes (src, dst): PTE F := pfn 2 RO clean',
      'pte remove_migration_ptes (src, dst): PTE G := pfn 2 RO clean',
    ])
    const flush = l.indexOf('cpu-flush arch_tlbbatch_flush (try_to_unmap_flush): flush CPU TLBs: whole mm')
    expect(flush).toBeLessThan(l.findIndex((x) => x.startsWith('frame folio_migrate_copy')))
    expect(l[l.length - 1]).toBe(
      'frame migrate_folio_done: folio_put (the isolation reference): free pfn 1 (gen 1)',
    )
    expect(ex.final.files[0]!.pfn).toBe(2)
    expect(ex.final.frames[2]).toMatchObject({ map: 2, ref: 3, v: 1 })
  })
})

describe('fork of a MAP_SHARED file mapping', () => {
  it('no PTE is copied (vma_needs_copy); the child faults the same folio in', () => {
    const sc = scenarioOf(
      `
        title: fork shared
        arch: x86_64
        pages:
          F: { value: 1, prot: rw, kind: file, mapped: ro }
        cpus:
          C0: [fork]
          K: { mm: child, ops: [read F -> r0] }
      `,
      'fork-shared.test.yaml',
    )
    const ex = traced(sc, makePolicy('start-end'))
    expect(lines(ex, { thread: 'C0', kinds: ['pte'] })).toEqual([])
    expect(lines(ex, { thread: 'K', kinds: ['pte'] })).toEqual([
      'pte do_read_fault: set_pte_at: PTE F (child) := pfn 1 RO clean',
    ])
    expect(ex.final.mms[1]!.ptes[0]!.pfn).toBe(ex.final.mms[0]!.ptes[0]!.pfn)
    expect(ex.final.regs[0]).toBe(1)
  })
})
