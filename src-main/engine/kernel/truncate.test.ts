/**
 * truncate of a MAP_SHARED file page (v6.6 mm/truncate.c truncate_setsize ->
 * truncate_pagecache): i_size_write, unmap_mapping_range, truncate_inode_pages.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { allEvents, first, lines, traced } from './traceTestkit'

const sc = (mapped: string, reader: string) =>
  scenarioOf(
    `
      title: truncate
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: ${mapped} }
      secondary:
        - { name: iommu, type: hw-walker }
      cpus:
        T: [truncate F]
        C1: [${reader}]
    `,
    'truncate.test.yaml',
  )

describe('truncate: unmap_mapping_range, then truncate_inode_pages frees the folio', () => {
  it('i_size_write, the zap with range_start/end and tlb_finish_mmu, then folio_lock, filemap_remove_folio, and the free last', () => {
    const ex = traced(sc('ro', 'read F -> r0'), makePolicy('start-end'), [0, 0, 0, 0, 0, 0, 0])
    expect(lines(ex, { thread: 'T' })).toEqual([
      'frame i_size_write: F is beyond the new end of file',
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR F',
      'sec-inval invalidate_range_start: iommu: invalidate F (0 entries dropped)',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
      'pte ptep_get_and_clear_full: PTE F := none',
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: F',
      'sec-inval invalidate_range_end: iommu: invalidate F (0 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: F',
      'frame tlb_batch_pages_flush: release 1 queued page',
      "lock i_mmap_unlock_read: the mapping's i_mmap tree",
      'lock find_lock_entries: folio_lock: lock the page-cache folio of F',
      'frame filemap_remove_folio: F: pfn 1 leaves the page cache',
      'lock folio_unlock: unlock the page-cache folio of F',
      'frame folio_batch_release (the page cache reference): free pfn 1 (gen 1)',
    ])
    expect(ex.final.files[0]).toMatchObject({ pfn: -1, trunc: true })
    // C1's read afterwards: filemap_fault refuses the page beyond i_size.
    expect(allEvents(ex).some((e) => e.thread === 'C1' && e.text.includes('VM_FAULT_SIGBUS'))).toBe(true)
    expect(ex.final.regs[0]).toBeNull()
    expect(ex.violations).toEqual([])
  })

  it('a read fault that locked the folio before i_size_write maps it after the first unmap; truncate_cleanup_folio unmaps it again', () => {
    // C1: fault entry, filemap_fault (folio_lock); T: i_size_write + the (empty) unmap; C1
    // installs the PTE and unlocks; T: folio_lock, folio_mapped -> unmap_mapping_folio.
    const ex = traced(sc('none', 'read F -> r0'), makePolicy('start-end'), [1, 1, 1, 0, 0, 1])
    expect(first(ex, 'pte do_read_fault: set_pte_at', { thread: 'C1' })).toBeTruthy()
    expect(first(ex, 'lock find_lock_entries', { thread: 'T' })).toBeTruthy()
    const tl = lines(ex, { thread: 'T', kinds: ['pte', 'frame'] })
    expect(tl.indexOf('pte ptep_get_and_clear_full: PTE F := none')).toBeGreaterThan(
      tl.indexOf('frame i_size_write: F is beyond the new end of file'),
    )
    expect(tl[tl.length - 1]).toBe('frame folio_batch_release (the page cache reference): free pfn 1 (gen 1)')
    expect(ex.final.mms[0]!.ptes[0]).toBeNull()
    expect(ex.violations).toEqual([])
  })

  it('a write fault on the read-only PTE whose folio truncate removed meanwhile backs off in filemap_page_mkwrite, then gets SIGBUS', () => {
    // C1 write F: TLB miss, walk finds RO: #PF; handle_mm_fault reads orig; wp_page_shared drops
    // the PTL; T truncates entirely; C1's do_page_mkwrite locks the folio and sees it removed.
    const s = sc('ro', 'write F 7')
    const ex = traced(s, makePolicy('arch-hook'), [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    const c1 = allEvents(ex)
      .filter((e) => e.thread === 'C1')
      .map((e) => e.fn)
    expect(c1).toContain('filemap_page_mkwrite')
    expect(c1.indexOf('filemap_fault')).toBeGreaterThan(c1.indexOf('filemap_page_mkwrite'))
    expect(ex.violations).toEqual([])
  })
})
