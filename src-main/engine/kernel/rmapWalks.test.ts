/**
 * Walks over every VMA that maps a folio (kernel/rmap.ts walkVmas), v6.6: folio_mkclean's
 * rmap_walk_file over two VMAs of one file and over a fork child's VMA (mm/rmap.c), truncate's
 * unmap_mapping_range_tree (mm/memory.c), try_to_migrate and remove_migration_ptes over a page
 * shared with a fork child (mm/rmap.c, mm/migrate.c), fork's copy of a migration entry and of
 * a VM_PFNMAP mapping (copy_nonpresent_pte, copy_present_pte), and exit_mmap while a fork child
 * still maps the COW-shared frames (mm/mmap.c). Expectations come from the kernel source.
 */
import { describe, expect, it } from 'vitest'
import { loadScenarioText, ScenarioLoadError } from '../../node/scenarioFiles'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { initialState } from '../state'
import { first, lines, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'rmap-walks.test.yaml')
const archHook = makePolicy('arch-hook')

describe('writeback: folio_mkclean -> rmap_walk_file -> page_mkclean_one per VMA', () => {
  /** page_vma_mkclean_one() of a writable, dirty PTE under arch-hook (x86). */
  const mkclean = (p: string, dropped: string) => [
    `notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE ${p}`,
    'lock page_vma_mapped_walk: take the page-table lock',
    `pte ptep_clear_flush: PTE ${p} := none`,
    `cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: ${p}`,
    `notifier mmu_notifier_arch_invalidate_secondary_tlbs: ${p}`,
    `sec-inval arch_invalidate_secondary_tlbs: smmu: invalidate ${p} (${dropped} dropped)`,
    `pte set_pte_at (pte_wrprotect + pte_mkclean): PTE ${p} := pfn 1 RO clean`,
    'lock pte_unmap_unlock: release the page-table lock',
    `notifier mmu_notifier_invalidate_range_end: ${p}`,
  ]

  it('two VMAs of one file: each gets its own range, PTL and flush, in the i_mmap tree order; folio_mkclean counts both', () => {
    const sc = load(`
      title: writeback of a folio mapped at two addresses
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file }
        G: { kind: file, file: F }
      secondary:
        - { name: smmu, type: hw-walker, cached: [G] }
      cpus:
        WB: [writeback F]
    `)
    const ex = traced(sc, archHook)
    expect(lines(ex, { thread: 'WB' })).toEqual([
      'lock folio_lock: lock the page-cache folio of F',
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
      ...mkclean('F', '0 entries'),
      ...mkclean('G', '1 entry'),
      "lock i_mmap_unlock_read: the mapping's i_mmap tree",
      'frame folio_clear_dirty_for_io: folio_mkclean() cleaned 2 PTEs: F (pfn 1): PG_dirty (already set)',
      'frame folio_test_clear_dirty: F (pfn 1): PG_dirty was 1, now 0',
      'frame submit_bio (->writepage): disk(F) := 1 (contents of pfn 1)',
      'lock folio_unlock: unlock the page-cache folio of F',
    ])
    expect(ex.final.mms[0]!.ptes.map((p) => p && { write: p.write, dirty: p.dirty })).toEqual([
      { write: false, dirty: false },
      { write: false, dirty: false },
    ])
    // The second VMA's clean runs under the folio lock and the i_mmap rwsem, like the first's.
    expect(first(ex, 'pte ptep_clear_flush: PTE G').locks).toEqual([
      'folio_lock(F)',
      'i_mmap_rwsem(r)',
      'ptl',
    ])
  })

  it("a fork child's VMA is cleaned on the child's mm: no notifier, the child's PTL and CPUs; its next write faults (wp_page_shared)", () => {
    const sc = load(`
      title: writeback with a fork child that wrote the folio
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: ro }
      secondary:
        - { name: iommu, type: hw-walker }
      cpus:
        C0: [fork, writeback F]
        K: { mm: child, ops: [write F 2, write F 3] }
    `)
    // fork (2 steps); K's write faults F in (4 steps); then C0's writeback runs to the end.
    const ex = traced(sc, archHook, [0, 0, 1, 1, 1, 1])
    expect(lines(ex, { op: 'C0: writeback F' })).toEqual([
      'lock folio_lock: lock the page-cache folio of F',
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
      // The process's VMA: its PTE is read-only and clean already (page_vma_mkclean_one skips it).
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE F',
      'lock page_vma_mapped_walk: take the page-table lock',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: F',
      // The child's VMA, right after its parent's in the i_mmap tree.
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_clear_flush: PTE F (child) := none',
      'cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: F',
      'pte set_pte_at (pte_wrprotect + pte_mkclean): PTE F (child) := pfn 1 RO clean',
      'lock pte_unmap_unlock: release the page-table lock',
      "lock i_mmap_unlock_read: the mapping's i_mmap tree",
      'frame folio_clear_dirty_for_io: folio_mkclean() cleaned a PTE: F (pfn 1): PG_dirty (already set)',
      'frame folio_test_clear_dirty: F (pfn 1): PG_dirty was 1, now 0',
      'frame submit_bio (->writepage): disk(F) := 1 (contents of pfn 1)',
      'lock folio_unlock: unlock the page-cache folio of F',
    ])
    expect(first(ex, 'pte ptep_clear_flush: PTE F (child)').locks).toEqual([
      'folio_lock(F)',
      'i_mmap_rwsem(r)',
      'ptl(child)',
    ])
    // K's store after writeback faults: wp_page_shared makes the PTE writable and dirties the folio.
    const k = lines(ex, { thread: 'K', kinds: ['pte', 'frame'] })
    expect(k.slice(-2)).toEqual([
      'pte ptep_set_access_flags: PTE F (child) := pfn 1 RW dirty',
      'frame fault_dirty_shared_page: folio_mark_dirty: F (pfn 1): PG_dirty := 1',
    ])
    expect(ex.violations).toEqual([])
    expect(ex.final.files[0]).toMatchObject({ dirty: true, disk: 1 })
  })
})

describe("truncate: unmap_mapping_range_tree zaps a fork child's VMA too", () => {
  it("the process's VMA (with its notifiers), then the child's (none: its mm has no subscribers, the child's CPUs flushed), then the folio leaves the page cache", () => {
    const sc = load(`
      title: truncate with a fork child mapping the page
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: ro }
      secondary:
        - { name: iommu, type: hw-walker, cached: [F] }
      cpus:
        C0: [fork, truncate F]
        K: { mm: child, ops: [read F -> r0] }
    `)
    // fork; K faults F in and reads it (its TLB holds F); then the truncate.
    const ex = traced(sc, archHook, [0, 0, 1, 1, 1, 1])
    expect(lines(ex, { op: 'C0: truncate F' })).toEqual([
      'frame i_size_write: F is beyond the new end of file',
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR F',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
      'pte ptep_get_and_clear_full: PTE F := none',
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 1, queued',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: F',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: F',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: F',
      'sec-inval arch_invalidate_secondary_tlbs: iommu: invalidate F (0 entries dropped)',
      'frame tlb_batch_pages_flush: release 1 queued page',
      // unmap_mapping_pages() holds i_mmap_lock_read across unmap_mapping_range_tree.
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
      'pte ptep_get_and_clear_full: PTE F (child) := none',
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued',
      'lock pte_unmap_unlock: release the page-table lock',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: F',
      'frame tlb_batch_pages_flush: release 1 queued page',
      "lock i_mmap_unlock_read: the mapping's i_mmap tree",
      'lock find_lock_entries: folio_lock: lock the page-cache folio of F',
      'frame filemap_remove_folio: F: pfn 1 leaves the page cache',
      'lock folio_unlock: unlock the page-cache folio of F',
      'frame folio_batch_release (the page cache reference): free pfn 1 (gen 1)',
    ])
    // The child's zap holds the child's PTL, and its flush empties the child CPU's TLB.
    expect(first(ex, 'pte ptep_get_and_clear_full: PTE F (child)').locks).toEqual([
      'i_mmap_rwsem(r)',
      'ptl(child)',
    ])
    expect(ex.final.tlbs[1]).toEqual([])
    expect(ex.violations).toEqual([])
  })
})

describe('migrate: try_to_migrate and remove_migration_ptes over a page shared with a fork child', () => {
  it("both mappings become migration entries (the child's without a notifier), one try_to_unmap_flush for both mms, then both map the new page", () => {
    const sc = load(`
      title: migration of a COW-shared page
      arch: x86_64
      pages:
        A: { value: 5, prot: rw, cow: true }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A] }
      cpus:
        kcompactd: [migrate A]
        K: { mm: child, ops: [read A -> r0] }
    `)
    // K reads A first (its TLB caches the shared frame); then the migration runs.
    const ex = traced(sc, archHook, [1])
    expect(lines(ex, { thread: 'kcompactd', kinds: ['pte', 'cpu-flush', 'notifier', 'frame'] })).toEqual([
      'frame folio_isolate_lru: pfn 1 off the LRU',
      'frame get_new_folio (destination): allocate pfn 2 (gen 1)',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
      'pte ptep_get_and_clear: PTE A := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (migration entry): PTE A := migration entry (pfn 1, read-only)',
      'frame page_remove_rmap: pfn 1 mapcount 1',
      'notifier mmu_notifier_invalidate_range_end: A',
      'pte ptep_get_and_clear: PTE A (child) := none',
      'cpu-flush arch_tlbbatch_add_pending: CPU flush deferred to arch_tlbbatch_flush',
      'frame folio_mark_dirty: pfn 1',
      'pte set_pte_at (migration entry): PTE A (child) := migration entry (pfn 1, read-only)',
      'frame page_remove_rmap: pfn 1 mapcount 0',
      'cpu-flush arch_tlbbatch_flush: flush CPU TLBs: A',
      "cpu-flush arch_tlbbatch_flush: the fork child's CPUs: flush CPU TLBs: A",
      'frame folio_migrate_copy: pfn 1 -> pfn 2',
      'pte set_pte_at (remove_migration_pte): PTE A := pfn 2 RO dirty',
      'frame page_add_anon_rmap: pfn 2 mapcount 1',
      'pte set_pte_at (remove_migration_pte): PTE A (child) := pfn 2 RO dirty',
      'frame page_add_anon_rmap: pfn 2 mapcount 2',
      'frame migrate_folio_done (free the source): free pfn 1 (gen 1)',
    ])
    expect(first(ex, 'pte ptep_get_and_clear: PTE A (child)').locks).toEqual([
      'folio_lock(A)',
      'folio_lock(A new)',
      'anon_vma(r)',
      'ptl(child)',
    ])
    // The child CPU's entry for the old frame went with the batched flush, before the free.
    expect(ex.final.tlbs[1]!.some((e) => e.pfn === 1)).toBe(false)
    expect(ex.final.frames[2]).toMatchObject({ map: 2, ref: 2 })
    expect(ex.violations).toEqual([])
  })

  it('fork between the two walks copies the migration entry (read-only for a COW mapping); remove_migration_ptes replaces it in the child', () => {
    const sc = load(`
      title: fork copies a migration entry
      arch: x86_64
      pages:
        A: { value: 5, prot: rw }
      cpus:
        C0: [fork]
        kcompactd: [migrate A]
        K: { mm: child, ops: [read A -> r0] }
    `)
    // kcompactd installs the parent's migration entry (4 steps: isolate, folio_trylock,
    // range_start, unmap); then fork runs to its end.
    const ex = traced(sc, archHook, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    expect(lines(ex, { kinds: ['pte'] })).toEqual([
      'pte ptep_get_and_clear: PTE A := none',
      'pte set_pte_at (migration entry): PTE A := migration entry (pfn 1, writable)',
      'pte set_pte_at (make_readable_migration_entry): PTE A := migration entry (pfn 1, read-only)',
      'pte copy_nonpresent_pte (child): PTE A (child) := migration entry (pfn 1, read-only)',
      'pte set_pte_at (remove_migration_pte): PTE A := pfn 2 RO dirty',
      'pte set_pte_at (remove_migration_pte): PTE A (child) := pfn 2 RO dirty',
    ])
    // A migration entry holds no reference: the copy took none, and the new page has two.
    expect(ex.final.frames[2]).toMatchObject({ map: 2, ref: 2 })
    expect(ex.final.regs[0]).toBe(5)
    expect(ex.violations).toEqual([])
  })
})

describe('fork of a VM_PFNMAP mapping (copy_page_range: vma_needs_copy is true for VM_PFNMAP)', () => {
  const sc = () =>
    load(`
      title: fork with a BAR mapping, then the driver revokes it
      arch: x86_64
      pages:
        A: { value: 3, prot: rw }
        P: { value: 1, prot: rw, kind: pfnmap }
      secondary:
        - { name: iommu, type: hw-walker, cached: [P] }
      cpus:
        C0: [fork, unmap_mapping_range P]
        K: { mm: child, ops: [read P -> r0] }
    `)

  it('the anon VMA is write-protected inside a notifier range; the pfnmap PTE is copied as it is, made clean, with no notifier and no reference', () => {
    const ex = traced(sc(), archHook)
    expect(lines(ex, { op: 'C0: fork', kinds: ['notifier', 'pte'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_PROTECTION_PAGE A',
      'pte ptep_set_wrprotect: PTE A := pfn 1 RO dirty',
      'pte copy_present_pte (child): PTE A (child) := pfn 1 RO dirty',
      'notifier mmu_notifier_invalidate_range_end: A',
      'pte copy_present_pte (child, VM_PFNMAP: pte_mkclean): PTE P (child) := pfn 2 RW clean',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: range (0, -1): whole address space',
    ])
    expect(ex.final.frames[2]).toMatchObject({ map: 0, ref: 1 })
  })

  it("the driver's revoke walks the i_mmap tree: the process's VMA with notifiers, then the child's on the child's mm", () => {
    const ex = traced(sc(), archHook)
    expect(lines(ex, { op: 'C0: unmap_mapping_range P', kinds: ['notifier', 'pte', 'cpu-flush'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR P',
      'pte ptep_get_and_clear_full: PTE P := none',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'notifier mmu_notifier_invalidate_range_end: P',
      'pte ptep_get_and_clear_full: PTE P (child) := none',
      'cpu-flush tlb_flush (tlb_end_vma): flush CPU TLBs: P',
    ])
    expect(ex.final.mms[1]!.ptes[1]).toBeNull()
  })

  it('cow pages imply a fork before the run: the child maps the pfnmap page (clean) and its file VMAs are in the i_mmap tree', () => {
    const s = initialState(
      load(`
        title: cow child with a BAR and a file page
        arch: x86_64
        pages:
          A: { value: 3, prot: rw, cow: true }
          P: { value: 1, prot: rw, kind: pfnmap }
          F: { value: 2, prot: rw, kind: file, mapped: ro }
        cpus:
          K: { mm: child, ops: [read P] }
      `),
    )
    expect(s.mms[1]!.ptes[1]).toEqual({ pfn: 2, present: true, write: true, dirty: false })
    expect(s.mms[1]!.ptes[2]).toBeNull()
    expect(s.mms[1]!.imap).toEqual([false, true, true])
  })
})

describe('exit_mmap while a fork child still maps the COW-shared frames', () => {
  it("the process's zap drops its mapping and reference; the frame stays with the child, whose write then reuses it in place", () => {
    const sc = load(`
      title: exit with a cow child
      arch: x86_64
      pages:
        A: { value: 1, prot: rw, cow: true }
      cpus:
        C0: [exit]
        K: { mm: child, ops: [write A 2, read A -> r0] }
    `)
    const ex = traced(sc, archHook)
    expect(lines(ex, { thread: 'C0', kinds: ['pte', 'frame'] })).toEqual([
      'pte ptep_get_and_clear_full: PTE A := none',
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 1, queued for freeing',
      'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
      'frame tlb_batch_pages_flush: release 1 queued page',
    ])
    expect(lines(ex, { thread: 'K', kinds: ['fault', 'pte'] })).toContain(
      'fault do_wp_page: page is exclusive: wp_page_reuse',
    )
    expect(ex.final.frames[1]).toMatchObject({ free: false, map: 1, ref: 1, v: 2 })
    expect(ex.final.regs[0]).toBe(2)
  })
})

describe('validation: which walks are modelled with a fork child', () => {
  const issues = (yaml: string): string => {
    try {
      loadScenarioText(yaml, 'x.yaml')
      return ''
    } catch (e) {
      if (e instanceof ScenarioLoadError) return e.message
      throw e
    }
  }
  const withChild = (pages: string, ops: string) =>
    `title: t\narch: x86_64\npages:\n${pages}\ncpus:\n  C0: [fork, ${ops}]\n`

  it('accepted: writeback of two VMAs, writeback and truncate with a child, migrate and file reclaim with a child, exit with a child, fork with pfnmap', () => {
    const file = '  F: { value: 1, prot: rw, kind: file }\n  G: { kind: file, file: F }'
    expect(issues(`title: t\narch: x86_64\npages:\n${file}\ncpus:\n  C0: [writeback F]\n`)).toBe('')
    expect(issues(withChild(file, 'writeback F, truncate F, migrate F, reclaim G'))).toBe('')
    expect(issues(withChild('  A: { value: 1 }', 'migrate A sync, exit'))).toBe('')
    expect(issues(withChild('  P: { value: 1, kind: pfnmap }', 'unmap_mapping_range P'))).toBe('')
    expect(
      issues(
        'title: t\narch: x86_64\npages:\n  A: { value: 1, cow: true, mapped: ro }\ncpus:\n  C0: [exit]\n',
      ),
    ).toBe('')
  })

  it('accepted now: reclaim of an anon page and migrate_vma with a fork child (kernel/swapFork.test.ts)', () => {
    expect(issues(withChild('  A: { value: 1 }', 'reclaim A'))).toBe('')
    expect(issues(withChild('  A: { value: 1 }', 'migrate_vma A'))).toBe('')
    expect(
      issues(
        'title: t\narch: x86_64\npages:\n  A: { value: 1, cow: true }\ncpus:\n  K: { mm: child, ops: [reclaim A, migrate_vma A] }\n',
      ),
    ).toBe('')
  })

  it("refused, at the owner words: migrate_vma P owner M in a thread of the fork child (M's driver migrates the process's memory)", () => {
    const yaml =
      'title: t\narch: x86_64\npages:\n  A: { value: 1, cow: true }\nsecondary:\n  - { name: hmm, type: sw-mirror, protocol: hmm }\ncpus:\n  K: { mm: child, ops: [migrate_vma A owner hmm] }\n'
    expect(issues(yaml)).toMatch(
      /x\.yaml:8:39: owner hmm: hmm's driver migrates the process's memory, which it mirrors; K is a thread of the fork child/,
    )
    expect(
      issues(yaml.replace('{ mm: child, ops: [migrate_vma A owner hmm] }', '[migrate_vma A owner hmm]')),
    ).toBe('')
  })

  it('accepted now: with a fork child, reclaim, migrate and migrate_vma of one anon page in two threads (the folio lock and LRU isolation: kernel/folioLock.test.ts)', () => {
    const two = (a: string, b: string) =>
      `title: t\narch: x86_64\npages:\n  A: { value: 1, cow: true }\ncpus:\n  C0: [${a}]\n  C1: [${b}]\n`
    expect(issues(two('reclaim A', 'migrate A'))).toBe('')
    expect(issues(two('migrate_vma A', 'reclaim A'))).toBe('')
    expect(issues(two('reclaim A, migrate_vma A, migrate A', 'read A'))).toBe('')
    expect(issues(two('migrate A', 'migrate A sync'))).toBe('')
    expect(issues(two('reclaim A', 'migrate_vma A').replace(', cow: true', ''))).toBe('')
  })
})

describe('the i_mmap rwsem is held across a whole file walk (v6.6 rmap_walk_file, unmap_mapping_pages)', () => {
  const twoVmas = (cpu0: string, cpu1: string) =>
    load(`
      title: a walk over two VMAs of one file, and munmap of the second
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file }
        G: { kind: file, file: F }
      cpus:
        C0: [${cpu0}]
        C1: [${cpu1}]
    `)
  const C0 = 0
  const C1 = 1

  it("truncate's unmap_mapping_range takes i_mmap_lock_read once for both VMAs; munmap's unlink_file_vma (i_mmap_lock_write) waits for the whole walk", () => {
    const sc = twoVmas('truncate F', 'munmap G')
    const se = makePolicy('start-end')
    // C0 is inside the walk (F's VMA zapped); C1 detaches and zaps G up to free_pgtables.
    const head = [C0, C0, C0, C0, C0, C1, C1, C1, C1, C1, C1]
    expect(() => traced(sc, se, [...head, C1])).toThrow(
      'C1 cannot run at step 11: i_mmap_rwsem held for read',
    )
    const ex = traced(sc, se, head)
    expect(lines(ex, { thread: 'C0', kinds: ['lock'] }).filter((l) => l.includes('i_mmap'))).toEqual([
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
      "lock i_mmap_unlock_read: the mapping's i_mmap tree",
    ])
    const ev = lines(ex, { kinds: ['lock', 'info'] })
    const unlock = ev.indexOf("lock i_mmap_unlock_read: the mapping's i_mmap tree")
    expect(ev.indexOf("info unlink_file_vma: G: VMA unlinked from the file's i_mmap tree")).toBeGreaterThan(
      unlock,
    )
    // Still linked when the walk reached it, G's VMA was visited: its PTE was already none.
    expect(lines(ex, { thread: 'C0', kinds: ['pte'] })).toEqual([
      'pte ptep_get_and_clear_full: PTE F := none',
    ])
    expect(ex.violations).toEqual([])
  })

  it("mremap of a file VMA: copy_vma's vma_link (i_mmap_lock_write) waits for truncate's walk, holding mmap_lock for write", () => {
    const sc = load(`
      title: mremap against truncate
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file, mapped: ro }
        G: { kind: file, file: F, mapped: none }
      cpus:
        T: [truncate F]
        C0: [mremap F G]
    `)
    // T: i_size_write and i_mmap_lock_read; C0: mmap_write_lock; copy_vma must wait.
    expect(() => traced(sc, makePolicy('start-end'), [0, 1, 1])).toThrow(
      'C0 cannot run at step 2: copy_vma -> vma_link: i_mmap_lock_write: i_mmap_rwsem held for read',
    )
    const ex = traced(sc, makePolicy('start-end'), [0, 1])
    const ev = lines(ex, { kinds: ['lock', 'info'] })
    expect(ev.indexOf('info copy_vma: new VMA at G (rw); need_rmap_locks = false')).toBeGreaterThan(
      ev.indexOf("lock i_mmap_unlock_read: the mapping's i_mmap tree"),
    )
    expect(ex.violations).toEqual([])
  })

  it('file reclaim: try_to_unmap -> rmap_walk_file holds i_mmap_lock_read from the first VMA to the last; an unlink waits', () => {
    const sc = twoVmas('reclaim F', 'munmap G')
    const ex = traced(sc, archHook)
    const l = lines(ex, { thread: 'C0', kinds: ['lock', 'pte'] })
    expect(l.slice(0, 2)).toEqual([
      'lock shrink_folio_list: folio_trylock: lock the page-cache folio of F',
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
    ])
    const unlock = l.indexOf("lock i_mmap_unlock_read: the mapping's i_mmap tree")
    expect(unlock).toBeGreaterThan(l.indexOf('pte ptep_get_and_clear: PTE G := none'))
    expect(l.filter((x) => x.includes('i_mmap'))).toHaveLength(2)
    // C0 in its walk, past F's unmap: C1's munmap reaches free_pgtables and waits.
    let blocked = false
    for (let n = 1; n < 12 && !blocked; n++) {
      try {
        traced(sc, archHook, [...Array<number>(n).fill(C0), ...Array<number>(12).fill(C1)])
      } catch (e) {
        blocked = String(e).includes('i_mmap_rwsem held for read')
      }
    }
    expect(blocked).toBe(true)
  })
})

describe("rmap_walk_anon visits every VMA of the folio's anon_vma; try_to_migrate_one's range_start comes before page_vma_mapped_walk", () => {
  const forked = (parent: string, child: string) =>
    load(`
      title: migrate a page shared with a fork child
      arch: x86_64
      pages:
        A: { value: 1, prot: rw, cow: true }
      secondary:
        - { name: iommu, type: hw-walker, iommu: vt-d }
      cpus:
        C0: [${parent}, signal w]
        K: { mm: child, ops: [wait w, ${child}] }
    `)
  const se = makePolicy('start-end')

  const K = { kinds: ['lock', 'notifier', 'sec-inval', 'pte', 'info'] as const, op: 'K: migrate A' }
  const childUnmap = (pfn: number) => [
    'lock page_vma_mapped_walk: take the page-table lock',
    'pte ptep_get_and_clear: PTE A (child) := none',
    `pte set_pte_at (migration entry): PTE A (child) := migration entry (pfn ${pfn}, read-only)`,
    'lock pte_unmap_unlock: release the page-table lock',
  ]
  const parentPair = (middle: string[]) => [
    'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR A',
    'sec-inval invalidate_range_start: iommu: invalidate A (0 entries dropped)',
    ...middle,
    'notifier mmu_notifier_invalidate_range_end: A',
    'sec-inval invalidate_range_end: iommu: invalidate A (0 entries dropped)',
  ]

  it("the parent COW-copied A: migrating the child's old folio (the parent's anon_vma) gives the parent's VMA a range_start/end pair first; map_pte takes its PTL (a present PTE), check_pte fails", () => {
    const ex = traced(forked('write A 2', 'migrate A'), se)
    expect(lines(ex, K)).toEqual([
      'lock migrate_folio_unmap: folio_trylock: lock the folio pfn 1 (A)',
      'lock migrate_folio_unmap: folio_trylock(dst): lock the folio pfn 3 (A new)',
      'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
      ...parentPair([
        'lock page_vma_mapped_walk: take the page-table lock',
        'info page_vma_mapped_walk: A: the PTE maps another folio',
        'lock pte_unmap_unlock: release the page-table lock',
      ]),
      ...childUnmap(1),
      'lock rmap_walk_anon: anon_vma_unlock_read: release the anon_vma lock',
      'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
      'lock remove_migration_pte: take the page-table lock',
      'pte set_pte_at (remove_migration_pte): PTE A (child) := pfn 3 RO dirty',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock rmap_walk_anon: anon_vma_unlock_read: release the anon_vma lock',
      'lock migrate_folio_move: folio_unlock(dst): unlock the folio pfn 3 (A new)',
      'lock migrate_folio_move: folio_unlock(src): unlock the folio pfn 1 (A)',
    ])
    expect(ex.violations).toEqual([])
  })

  it("the parent's PTE is none (MADV_DONTNEED after fork): the pair still comes, and map_pte takes no PTL", () => {
    const ex = traced(forked('madvise_dontneed A', 'migrate A'), se)
    expect(lines(ex, K).slice(0, 12)).toEqual([
      'lock migrate_folio_unmap: folio_trylock: lock the folio pfn 1 (A)',
      'lock migrate_folio_unmap: folio_trylock(dst): lock the folio pfn 2 (A new)',
      'lock rmap_walk_anon: anon_vma_lock_read: take the anon_vma lock for read',
      ...parentPair(['info page_vma_mapped_walk: A: no present PTE: not found, no PTL']),
      ...childUnmap(1),
    ])
  })

  it("a folio the child allocated (its own COW copy) hangs off its own anon_vma: the walk visits only the child's VMA, no pair on the parent", () => {
    const ex = traced(forked('read A -> r0', 'write A 3, migrate A'), se)
    expect(lines(ex, { ...K, kinds: ['notifier', 'sec-inval'] })).toEqual([])
    expect(lines(ex, { ...K, kinds: ['pte'] })).toEqual([
      'pte ptep_get_and_clear: PTE A (child) := none',
      'pte set_pte_at (migration entry): PTE A (child) := migration entry (pfn 2, writable)',
      'pte set_pte_at (remove_migration_pte): PTE A (child) := pfn 3 RW dirty',
    ])
  })

  it("the walk stops once the folio is unmapped (rwc.done = folio_not_mapped): migrating the parent's own COW copy visits no child VMA", () => {
    const sc = load(`
      title: migrate the parent's copy
      arch: x86_64
      pages:
        A: { value: 1, prot: rw, cow: true }
      cpus:
        C0: [write A 2, migrate A]
    `)
    const ex = traced(sc, se)
    const l = lines(ex, { op: 'C0: migrate A', kinds: ['lock', 'pte', 'info'] })
    expect(l.some((x) => x.includes('(child)'))).toBe(false)
    expect(l).toContain('pte set_pte_at (migration entry): PTE A := migration entry (pfn 2, writable)')
  })
})

describe("rmap_walk_file visits every VMA linked in the i_mmap tree: try_to_unmap_one's pair comes before page_vma_mapped_walk", () => {
  it('file reclaim of F after MADV_DONTNEED of its first mapping: F gets a range_start/end pair (no PTL: none PTE), then G is unmapped', () => {
    const sc = load(`
      title: reclaim a folio whose first mapping was zapped
      arch: x86_64
      pages:
        F: { value: 1, prot: rw, kind: file }
        G: { kind: file, file: F }
      secondary:
        - { name: iommu, type: hw-walker, iommu: vt-d }
      cpus:
        C0: [madvise_dontneed F, reclaim F]
    `)
    const ex = traced(sc, makePolicy('start-end'))
    const l = lines(ex, { op: 'C0: reclaim F', kinds: ['lock', 'notifier', 'pte', 'info'] })
    expect(l.slice(0, 8)).toEqual([
      'lock shrink_folio_list: folio_trylock: lock the page-cache folio of F',
      "lock i_mmap_lock_read: the mapping's i_mmap tree",
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR F',
      'info page_vma_mapped_walk: F: no present PTE: not found, no PTL',
      'notifier mmu_notifier_invalidate_range_end: F',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_CLEAR G',
      'lock page_vma_mapped_walk: take the page-table lock',
      'pte ptep_get_and_clear: PTE G := none',
    ])
  })
})
