/**
 * Transparent huge pages: a PMD-mapped THP split into PTEs, and khugepaged collapsing a
 * PTE-mapped range back into a huge page (reference §3.10, §5.8, rows 11-13, SC-10). The
 * scenario's huge page is a handful of subpages standing for the 512 of a 2 MiB PMD range.
 *
 * Split, v6.6 mm/huge_memory.c __split_huge_pmd(): mmu_notifier_invalidate_range_start
 * (MMU_NOTIFY_CLEAR, the 2 MiB range) -> pmd_lock -> __split_huge_pmd_locked(): anon:
 * pmdp_invalidate() (mm/pgtable-generic.c: pmdp_establish(pmd_mkinvalid) +
 * flush_pmd_tlb_range -> flush_tlb_range: the CPU flush, and under arch-hook the secondary
 * hook inside it), pgtable_trans_huge_withdraw(), the PTEs of the SAME pages written into the
 * withdrawn table, pmd_populate() -> spin_unlock -> mmu_notifier_invalidate_range_end.
 * v4.15 used mmu_notifier_invalidate_range_only_end() there (Glisse: "No need to invalidate
 * secondary tlb entry they are all still valid"), so the invalidate-range preset has no
 * ->invalidate_range at all. The callers (madvise, mprotect, mremap, ...) hold mmap_lock; the
 * model takes it for read.
 *
 * Collapse (anon), v6.6 mm/khugepaged.c collapse_huge_page(): alloc_charge_hpage() ->
 * mmap_write_lock -> anon_vma_lock_write -> range_start(MMU_NOTIFY_CLEAR) -> pmd_lock ->
 * pmdp_collapse_flush() (clear the PMD, flush_tlb_range: CPU flush and arch hook) -> unlock ->
 * range_end (v4.15: ->invalidate_range here, before the copy) -> tlb_remove_table_sync_one()
 * (2ba99c5e0881, the GUP-fast IPI; `kernel: gup_fast_ipi`) -> pte_offset_map_lock:
 * __collapse_huge_page_isolate -> anon_vma_unlock_write -> __collapse_huge_page_copy() (copy,
 * then __collapse_huge_page_copy_succeeded: ptep_clear under the PTL, page_remove_rmap,
 * free_page_and_swap_cache: the old pages are freed) -> pmd_lock: page_add_new_anon_rmap,
 * pgtable_trans_huge_deposit (the old PTE table is deposited, not freed), set_pmd_at(huge)
 * -> mmap_write_unlock. __collapse_huge_page_isolate takes each old page's folio lock
 * (trylock_page) and isolates it (isolate_lru_page); a page another thread holds locked or
 * isolated fails the collapse (SCAN_PAGE_LOCK / SCAN_DEL_PAGE_LRU), which puts the detached
 * table back (pmd_populate) and frees the new huge page. (The isolate's refcount check against
 * GUP pins is not modelled.) With a fork child, subpages the child still maps count against
 * max_ptes_shared (exceedsSharedPtes) and keep the child's reference when the process's goes.
 *
 * Collapse (file/shmem, `thp: { kind: file }`): collapse_pte_mapped_thp() /
 * retract_page_tables() -> collapse_and_free_pmd() as in v6.1 + f268f6cf875f (CVE-2022-48991):
 * mmap_write_lock -> range_start -> pmd_lock -> pmdp_collapse_flush -> unlock ->
 * tlb_remove_table_sync_one -> range_end -> pte_free (the page table is freed). Before the
 * fix (`kernel: collapse_notify: false`) there is no notifier at all. MODELLING NOTE: the
 * subpages of a `kind: file` huge page are page-cache pages (scenario/thp.ts makes them
 * `kind: file`; the page cache holds a reference on each frame). After the table is freed the
 * old pages are copied into a new huge page, which takes their page-cache slots (condensing
 * collapse_file, which replaces them in the page cache before retract_page_tables), and the
 * old pages are freed; the new page is mapped by set_pmd_at (standing for the next fault's
 * do_set_pmd) before mmap_write_unlock. v6.6 itself
 * (Hugh Dickins's rework) frees the table with pte_free_defer (RCU), which GUP-fast's
 * IRQs-off section holds off as the IPI did: `gup_fast_ipi: true` stands for both.
 *
 * The other ops reach the huge PMD here too (v6.6): zap_pmd_range's zap_huge_pmd for a zap that
 * covers it (zapPmdPath, zapHugePmd: munmap, MADV_DONTNEED, exit_mmap, the OOM reaper), the
 * split for one that covers part of it or for split_vma (thpSplitVma: mprotect, munmap), and a
 * PMD migration entry (kernel/thpRmap.ts set_pmd_migration_entry) met by a split (PTE migration
 * entries, no flush), a zap (no page reference) or change_huge_pmd (made readable).
 *
 * A file (shmem, MAP_SHARED) huge PMD: the split zaps it (splitFilePmd: __split_huge_pmd_locked
 * for a VMA that is not anonymous), zap_huge_pmd frees nothing (the page cache keeps the
 * folio), and a fault on the none PMD maps the folio whole again if one VMA still covers it
 * (doSetPmd), else a PTE (kernel/fault.ts file_map).
 *
 * fork copies the huge PMD (copyHugePmd: copy_huge_pmd), after which each mm has its own huge
 * PMD and pmd_lock; the split, the zap and split_vma act on the mm of the thread that runs
 * them (c.mmIndex), so a fork child's write fault splits the child's PMD
 * (do_huge_pmd_wp_page's fallback, kernel/fault.ts). With `freeze` the split installs
 * migration entries (split_huge_page's unmap_folio, kernel/thpRmap.ts splitHugePage).
 */
import type { Ctx } from '../ctx'
import { ZERO_PFN, type CallFrame, type Pte } from '../state'
import type { ThpDecl } from '../types'
import { afterNotifier, flag, list, type PcHandler, type Proc } from './proc'
import { count } from '../plural'

const EVENT = 'MMU_NOTIFY_CLEAR'

/**
 * The huge page a THP frame works on: local `hp` (an index into the scenario's `thp:`, absent
 * for the first), set by the `thp_split H` / `thp_collapse H` op or by the caller of a split.
 */
export function frameHuge(c: Ctx, f: CallFrame): ThpDecl {
  return c.sc.thp[typeof f.l.hp === 'number' ? f.l.hp : 0]!
}
/** The locals that name huge page `hp` in a call (none for the first: old frames unchanged). */
export function hugeArg(c: Ctx, hp: ThpDecl): { hp?: number } {
  const i = c.sc.thp.indexOf(hp)
  return i > 0 ? { hp: i } : {}
}
function isFile(hp: ThpDecl): boolean {
  return hp.kind === 'file'
}
/** Whether this collapse calls the notifiers: anon always; file/shmem since f268f6cf875f. */
function notifies(c: Ctx, hp: ThpDecl): boolean {
  return !isFile(hp) || c.sc.kernel.collapseNotify
}

/**
 * The range is PMD-mapped: every subpage's translation is the huge PMD (present, PROT_NONE, or
 * made invalid by a pmdp_invalidate() in progress: still pmd_trans_huge), not a migration entry.
 */
export function pmdMapped(c: Ctx, hp: ThpDecl, mm = 0): boolean {
  return hp.pages.every((p) => {
    const pte = c.pte(mm, p)
    return pte?.huge === true && !pte.mig
  })
}
/** The PMD is a PMD migration entry (set_pmd_migration_entry; is_pmd_migration_entry). */
export function pmdMigration(c: Ctx, hp: ThpDecl, mm = 0): boolean {
  return hp.pages.every((p) => {
    const pte = c.pte(mm, p)
    return pte?.huge === true && pte.mig === true
  })
}
/**
 * `is_swap_pmd(*pmd) || pmd_trans_huge(*pmd)`: a huge PMD or a PMD migration entry, what
 * split_huge_pmd(), zap_pmd_range() and change_pmd_range() act on at PMD level.
 */
export function pmdHuge(c: Ctx, hp: ThpDecl, mm = 0): boolean {
  return hp.pages.every((p) => c.pte(mm, p)?.huge === true)
}

/** The range is mapped by a PTE table with every subpage present (what khugepaged collapses). */
function pteMapped(c: Ctx, hp: ThpDecl): boolean {
  return (
    c.pmdPopulated(0, hp.pages[0]!) &&
    hp.pages.every((p) => {
      const pte = c.pte(0, p)
      return pte !== null && pte.present && !pte.huge && !pte.mig && pte.swp === undefined
    })
  )
}

export const thpSplit: Proc = {
  /**
   * The caller's mmap_read_lock; split_huge_pmd() acts on a huge PMD or a PMD migration entry.
   * Called with `held` (mprotect's and munmap's split_vma under mmap_write_lock, zap_pmd_range
   * under the zap's mmap_read_lock, try_to_unmap_one under the anon_vma lock), it starts at
   * __split_huge_pmd() itself; try_to_unmap_one's split_huge_pmd_address() passes its folio
   * (`pfn`, the head page), and a PMD that maps another folio is left alone.
   */
  start: {
    guard: (c, f) => (flag(f, 'held') || c.mmapReadable(c.mmIndex) ? null : 'mmap_lock held for write'),
    run: (c, f) => {
      const hp = frameHuge(c, f)
      if (flag(f, 'held')) {
        c.rangeStart(c.mmIndex, hp.pages, EVENT)
        c.goto('invalidate')
        return
      }
      c.mmapReadLock(c.mmIndex)
      if (!pmdHuge(c, hp, c.mmIndex)) {
        c.emit('info', 'split_huge_pmd', `${hp.name} is not PMD-mapped: nothing to split`)
        c.mmapReadUnlock(c.mmIndex)
        c.ret()
        return
      }
      c.goto('rs')
    },
  },
  /** __split_huge_pmd(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR, haddr, haddr + HPAGE_PMD_SIZE). */
  rs: {
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.rangeStart(c.mmIndex, hp.pages, EVENT)
      c.goto('invalidate')
    },
  },
  /**
   * pmd_lock(); __split_huge_pmd_locked(): old_pmd = pmdp_invalidate(): the PMD stays
   * pmd_present for the kernel but no MMU can use it; flush_pmd_tlb_range() -> flush_tlb_range().
   * A PMD migration entry is split without a flush (nothing caches it): PTE migration entries
   * of the same pages, pmd_populate(), all under this lock.
   */
  invalidate: {
    guard: (c, f) => (c.pmdLockFree(c.mmIndex, frameHuge(c, f)) ? null : 'pmd_lock held'),
    run: (c, f) => {
      const hp = frameHuge(c, f)
      const mm = c.mmIndex
      c.pmdLock(mm, hp)
      // __split_huge_pmd() re-checks under the lock: `if (pmd_trans_huge(*pmd) || ... ||
      // is_pmd_migration_entry(*pmd))`, and `if (folio && folio != page_folio(pmd_page(*pmd)))`.
      const folio = typeof f.l.pfn === 'number' ? f.l.pfn : null
      if (!pmdHuge(c, hp, mm) || (folio !== null && c.pte(mm, hp.pages[0]!)!.pfn !== folio)) {
        c.emit(
          'info',
          '__split_huge_pmd',
          pmdHuge(c, hp, mm)
            ? `${hp.name} maps another folio now: nothing to do`
            : `${hp.name} is no longer a huge PMD (split or zapped meanwhile): nothing to do`,
        )
        c.pmdUnlock(mm, hp)
        c.goto('re')
        return
      }
      if (isFile(hp)) {
        splitFilePmd(c, f, hp)
        return
      }
      const olds = hp.pages.map((p) => c.pte(mm, p)!)
      if (pmdMigration(c, hp, mm)) {
        // pmd_migration: write, young and dirty from the entry; one migration entry per subpage.
        c.setTable(mm, hp, null, true)
        c.setPmd(
          mm,
          hp.pages,
          olds.map((p) => ({
            pfn: p.pfn,
            present: false,
            write: p.write,
            dirty: p.dirty,
            mig: true as const,
          })),
          'pmd_populate',
          `PMD ${hp.name} := the withdrawn PTE table, PTEs ${c.pagesText(hp.pages)} := migration entries (pfns ${olds.map((p) => p.pfn).join(',')}): a PMD migration entry needs no flush`,
        )
        c.pmdUnlock(mm, hp)
        c.goto('re')
        return
      }
      f.l.pfns = olds.map((p) => p.pfn)
      f.l.wr = olds[0]!.write
      f.l.dirty = olds[0]!.dirty
      c.setPmd(
        mm,
        hp.pages,
        olds.map((p) => ({ ...p, present: false })),
        'pmdp_invalidate',
        `PMD ${hp.name} := invalid (pmd_mkinvalid)`,
      )
      c.flushTlb(mm, 'range', hp.pages, 'flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range)')
      c.goto('populate')
    },
  },
  /**
   * pgtable_trans_huge_withdraw(); set_pte_at() of every subpage (the same pages, mk_pte with
   * the VMA's vm_page_prot: PROT_NONE stays so; the huge PMD's write and dirty bits) into the
   * withdrawn table; smp_wmb(); pmd_populate(); unlock. With `freeze` (split_huge_page's
   * try_to_migrate_one: split_huge_pmd_address(vma, address, true, folio)) the entries are
   * migration entries (`if (freeze || pmd_migration)`), and each subpage's rmap and reference go.
   */
  populate: {
    run: (c, f) => {
      const hp = frameHuge(c, f)
      const mm = c.mmIndex
      const pfns = list(f, 'pfns')
      const write = flag(f, 'wr')
      const dirty = flag(f, 'dirty')
      c.setTable(mm, hp, null, true)
      if (flag(f, 'freeze')) {
        // freeze (split_huge_page's unmap_folio): a migration entry per subpage instead of a PTE,
        // then page_remove_rmap() and put_page() of each subpage (the caller's reference stays).
        c.setPmd(
          mm,
          hp.pages,
          pfns.map((pfn) => ({ pfn, present: false, write, dirty, mig: true as const })),
          'pmd_populate',
          `PMD ${hp.name} := the withdrawn PTE table, PTEs ${c.pagesText(hp.pages)} := migration entries (pfns ${pfns.join(',')}, freeze)`,
        )
        for (const pfn of pfns) c.folioW(pfn).map--
        c.emit('frame', 'page_remove_rmap', `pfns ${pfns.join(',')} mapcount ${c.folio(pfns[0]!).map}`)
        for (const pfn of pfns) c.putFrame(pfn, 'put_page (the PMD reference, freeze)')
        c.pmdUnlock(mm, hp)
        c.goto('re')
        return
      }
      c.setPmd(
        mm,
        hp.pages,
        pfns.map((pfn, i) => ({ pfn, present: c.vma(mm, hp.pages[i]!) !== 'none', write, dirty })),
        'pmd_populate',
        `PMD ${hp.name} := the withdrawn PTE table, PTEs ${c.pagesText(hp.pages)} -> pfns ${pfns.join(',')} (same pages)`,
      )
      c.pmdUnlock(mm, hp)
      c.goto('re')
    },
  },
  /** file: the rest of __split_huge_pmd_locked() after pmdp_huge_clear_flush's flush. */
  file_put: { run: (c, f) => splitFilePut(c, f) },
  /** v6.6 mmu_notifier_invalidate_range_end(); v4.15 mmu_notifier_invalidate_range_only_end(). */
  re: {
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.rangeEnd(c.mmIndex, hp.pages, true)
      afterNotifier(c, f, 'done', splitDone)
    },
  },
  done: { run: (c, f) => splitDone(c, f) },
}

/**
 * __split_huge_pmd_locked() for a file/shmem huge PMD (v6.6 mm/huge_memory.c, `if
 * (!vma_is_anonymous(vma))`): "We are going to unmap this huge page. So just go ahead and zap
 * it": old_pmd = pmdp_huge_clear_flush() (the PMD := none, flush_tlb_range of the 2 MiB range:
 * the CPU flush and under arch-hook the secondary hook inside it); zap_deposited_table() only
 * if arch_needs_pgtable_deposit() (not on x86 or arm64: nothing was deposited). No PTE is
 * installed: the subpages fault back in from the page cache (filemap_fault, kernel/fault.ts).
 * Still under pmd_lock ('file_put'): set_page_dirty() if the PMD was dirty, page_remove_rmap
 * (compound) and put_page() of the PMD's reference; the page cache keeps its own, so nothing is
 * freed.
 */
function splitFilePmd(c: Ctx, f: CallFrame, hp: ThpDecl): void {
  const mm = c.mmIndex
  const olds = hp.pages.map((p) => c.pte(mm, p)!)
  const mig = olds[0]!.mig === true
  f.l.pfns = olds.map((p) => p.pfn)
  f.l.dirty = olds[0]!.dirty
  f.l.mig = mig
  // v4.15 called pmdp_huge_clear_flush_notify() here: ->invalidate_range under pmd_lock (the
  // `ptep_clear_flush_notify` site, the *_clear_flush_notify macros), which is why its
  // __split_huge_pmd() could end with _only_end; v6.6 has the plain pmdp_huge_clear_flush().
  const notify = c.names('ptep_clear_flush_notify')
  c.setPmd(
    mm,
    hp.pages,
    hp.pages.map(() => null),
    notify ? 'pmdp_huge_clear_flush_notify' : 'pmdp_huge_clear_flush',
    `PMD ${hp.name} := none (file THP: zapped, not split into PTEs; was ${mig ? 'a PMD migration entry' : `huge page pfns ${olds.map((p) => p.pfn).join(',')}`})`,
  )
  c.setTable(mm, hp, null, false)
  c.emit(
    'info',
    '__split_huge_pmd_locked',
    `${hp.name} is a file PMD: no deposited table (arch_needs_pgtable_deposit() is false on ${c.sc.arch}); the pages fault back in from the page cache`,
  )
  c.flushTlb(mm, 'range', hp.pages, 'flush_tlb_range (pmdp_huge_clear_flush)')
  c.invalidateRange(mm, hp.pages, 'ptep_clear_flush_notify')
  afterNotifier(c, f, 'file_put', splitFilePut)
}

/** splitFilePmd()'s tail under pmd_lock: set_page_dirty, page_remove_rmap, put_page; unlock. */
function splitFilePut(c: Ctx, f: CallFrame): void {
  const hp = frameHuge(c, f)
  const pfns = list(f, 'pfns')
  if (!flag(f, 'mig')) {
    if (flag(f, 'dirty') && !c.file(hp.pages[0]!).dirty)
      for (const p of hp.pages) c.folioMarkDirty(p, 'set_page_dirty (pmd_dirty)')
    for (const pfn of pfns) c.folioW(pfn).map--
    c.emit('frame', 'page_remove_rmap (compound)', `pfns ${pfns.join(',')} mapcount ${c.folio(pfns[0]!).map}`)
    for (const pfn of pfns) c.putFrame(pfn, 'put_page (the PMD reference)')
    c.emit('info', 'put_page', `the page cache still holds ${hp.name}'s folio: nothing is freed`)
  }
  c.pmdUnlock(c.mmIndex, hp)
  c.goto('re')
}

/**
 * finish_fault() at a none PMD (v6.6 mm/memory.c): `if (pmd_none(*vmf->pmd)) { if
 * (PageTransCompound(page)) ret = do_set_pmd(vmf, page); ... }` (filemap_map_pages'
 * filemap_map_pmd does the same for a read fault). do_set_pmd() maps the folio whole only if
 * it is PMD-order and transhuge_vma_suitable(): one VMA covers the whole 2 MiB (no munmap or
 * mprotect split it). Returns the file huge page whose PMD the fault at `page` would map so, or
 * null (the PTE path: pte_alloc, then set_pte_at).
 */
export function doSetPmdHuge(c: Ctx, page: number): ThpDecl | null {
  const hp = c.hugeOf(page)
  if (hp === null || !isFile(hp)) return null
  const mm = c.mmIndex
  const vma = c.vma(mm, page)
  if (c.pmdPopulated(mm, page) || hp.pages.some((p) => c.pte(mm, p) !== null)) return null
  if (!hp.pages.every((p) => c.vma(mm, p) === vma && c.file(p).large === true && c.file(p).pfn >= 0))
    return null
  return hp
}

/**
 * do_set_pmd() (v6.6 mm/memory.c) under pmd_lock: mk_huge_pmd() of the folio (a write fault:
 * pmd_mkdirty and writable; a read fault read-only and clean, as the model's file pages keep
 * writenotify), page_add_file_rmap(compound), set_pmd_at(), unlock. The fault's reference on
 * the folio becomes the PMD's (one per subpage frame here).
 */
export function doSetPmd(c: Ctx, hp: ThpDecl, write: boolean): void {
  const mm = c.mmIndex
  c.pmdLock(mm, hp, 'do_set_pmd: pmd_lock')
  const pfns = hp.pages.map((p) => c.file(p).pfn)
  for (const pfn of pfns) {
    c.getFrame(pfn)
    c.folioW(pfn).map++
  }
  c.setPmd(
    mm,
    hp.pages,
    pfns.map((pfn) => ({ pfn, present: true, write, dirty: write, huge: true as const })),
    'do_set_pmd: set_pmd_at',
    `PMD ${hp.name} := huge page pfns ${pfns.join(',')} ${write ? 'RW dirty' : 'RO clean'} (the page-cache folio, whole)`,
  )
  c.emit('frame', 'page_add_file_rmap (compound)', `pfns ${pfns.join(',')} mapcount ${c.folio(pfns[0]!).map}`)
  c.pmdUnlock(mm, hp)
}

/** __split_huge_pmd() returned: mmap_read_unlock() in the caller (not when mprotect holds it). */
function splitDone(c: Ctx, f: CallFrame): void {
  const hp = frameHuge(c, f)
  if (flag(f, 'held')) {
    c.emit(
      'info',
      '__split_huge_pmd',
      `${hp.name} ${isFile(hp) ? 'zapped (file THP)' : 'split into PTEs'}; back in the caller`,
    )
    c.ret()
    return
  }
  c.mmapReadUnlock(c.mmIndex)
  c.emit(
    'op',
    'thp_split',
    isFile(hp)
      ? `${hp.name}'s PMD zapped (file THP: the pages refault from the page cache)`
      : `${hp.name} split into PTEs`,
  )
  c.ret()
}

/**
 * khugepaged's max_ptes_shared (v6.6 mm/khugepaged.c, default HPAGE_PMD_NR / 2): a PTE whose
 * page is mapped elsewhere too (`page_mapcount(page) > 1`: a fork child still shares it) counts
 * as shared, and more than max_ptes_shared of them fail the collapse (SCAN_EXCEED_SHARED_PTE),
 * in hpage_collapse_scan_pmd() and again in __collapse_huge_page_isolate(). The scenario's
 * subpages stand for the 512 PTEs in equal parts, so more than half of them shared exceeds it.
 * MODELLING NOTE: the model checks once, under mmap_write_lock before the range (no fork can
 * add sharing after that; a child's COW or zap only removes it), and gives up there, where the
 * kernel's isolate would give up after pmdp_collapse_flush and restore the PMD (a back-out the
 * model does not have); a child zap between the two that would let the kernel's isolate pass is
 * not followed. Returns whether it exceeds (after an info event).
 */
function exceedsSharedPtes(c: Ctx, hp: ThpDecl): boolean {
  const shared = hp.pages.filter((p) => c.folio(c.pte(0, p)!.pfn).map > 1)
  if (shared.length === 0) return false
  const over = shared.length * 2 > hp.pages.length
  c.emit(
    'info',
    'hpage_collapse_scan_pmd',
    `${c.pagesText(shared)} ${shared.length === 1 ? 'is' : 'are'} mapped by the fork child too (page_mapcount > 1): ${count(shared.length, 'shared PTE')} of ${hp.pages.length}, standing for ${(shared.length * 512) / hp.pages.length} of 512; max_ptes_shared 256${over ? ': SCAN_EXCEED_SHARED_PTE, no collapse' : ''}`,
  )
  return over
}

/** spin_unlock(pmd_ptl) after pmdp_collapse_flush(). */
function collapseUnlock(c: Ctx, f: CallFrame): void {
  const hp = frameHuge(c, f)
  c.pmdUnlock(0, hp)
  c.goto(isFile(hp) ? 'sync' : 're')
}

function oldPfns(f: CallFrame): readonly number[] {
  return list(f, 'old')
}

export const thpCollapse: Proc = {
  /**
   * hpage_collapse_scan_pmd() found the range PTE-mapped; alloc_charge_hpage() allocates the
   * huge page before any lock (anon) — collapse_file() likewise (file).
   */
  start: {
    run: (c, f) => {
      const hp = frameHuge(c, f)
      if (!pteMapped(c, hp)) {
        c.emit(
          'info',
          'hpage_collapse_scan_pmd',
          `${hp.name} is not mapped by a full PTE table: nothing to collapse`,
        )
        c.ret()
        return
      }
      f.l.new = hp.pages.map(() => c.allocFrame(0, 'alloc_charge_hpage'))
      c.goto('lock')
    },
  },
  /**
   * mmap_write_lock(); hugepage_vma_revalidate(); find_pmd_or_thp_or_none(); anon:
   * anon_vma_lock_write(). (file: collapse_pte_mapped_thp's caller holds mmap_write_lock;
   * retract_page_tables takes it with mmap_write_trylock.)
   */
  lock: {
    guard: (c, f) =>
      !c.mmapWritable(0)
        ? 'mmap_lock held'
        : isFile(frameHuge(c, f)) || c.anonVmaWritable()
          ? null
          : 'anon_vma lock held (an rmap walk or a split)',
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.mmapWriteLock(0)
      if (!pteMapped(c, hp)) {
        c.emit('info', 'hugepage_vma_revalidate', `${hp.name} changed meanwhile: SCAN_FAIL`)
        for (const pfn of list(f, 'new')) c.putFrame(pfn, 'folio_put (unused huge page)')
        c.mmapWriteUnlock(0)
        c.ret()
        return
      }
      if (!isFile(hp) && exceedsSharedPtes(c, hp)) {
        for (const pfn of list(f, 'new')) c.putFrame(pfn, 'folio_put (unused huge page)')
        c.mmapWriteUnlock(0)
        c.ret()
        return
      }
      if (!isFile(hp)) c.anonVmaWrite(true, 'anon_vma_lock_write')
      c.goto('rs')
    },
  },
  /** mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR, address, address + HPAGE_PMD_SIZE). */
  rs: {
    run: (c, f) => {
      const hp = frameHuge(c, f)
      if (notifies(c, hp)) c.rangeStart(0, hp.pages, EVENT)
      else
        c.emit(
          'info',
          'collapse_and_free_pmd',
          'before f268f6cf875f (CVE-2022-48991): no mmu_notifier_invalidate_range_start',
        )
      c.goto('flush')
    },
  },
  /**
   * pmd_lock(); _pmd = pmdp_collapse_flush(): pmdp_huge_get_and_clear + flush_tlb_range (the
   * arch hook inside it); spin_unlock(). The PTE table is detached: the PMD is none, the
   * table's PTEs still map the old pages.
   */
  flush: {
    guard: (c, f) => {
      const hp = frameHuge(c, f)
      return c.pmdLockFree(0, hp) ? null : 'pmd_lock held'
    },
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.pmdLock(0, hp)
      const tbl: Array<Pte | null> = c.s.mms[0]!.ptes.slice()
      f.l.old = hp.pages.map((p) => c.pte(0, p)!.pfn)
      c.setTable(0, hp, tbl, false)
      c.setPmd(
        0,
        hp.pages,
        hp.pages.map(() => null),
        'pmdp_collapse_flush',
        `PMD ${hp.name} := none (the PTE table is detached, its PTEs still map pfns ${oldPfns(f).join(',')})`,
      )
      c.flushTlb(0, 'range', hp.pages, 'flush_tlb_range (pmdp_collapse_flush)')
      afterNotifier(c, f, 'flush_unlock', collapseUnlock)
    },
  },
  flush_unlock: { run: (c, f) => collapseUnlock(c, f) },
  /** mmu_notifier_invalidate_range_end() (v4.15: ->invalidate_range from it). */
  re: {
    run: (c, f) => {
      const hp = frameHuge(c, f)
      if (notifies(c, hp)) c.rangeEnd(0, hp.pages, false)
      c.goto(isFile(hp) ? 'pte_free' : 'sync')
    },
  },
  /**
   * tlb_remove_table_sync_one() (2ba99c5e0881): an IPI to every CPU, which returns once no
   * CPU is inside a GUP-fast walk with IRQs off. Before the fix there is none.
   */
  sync: {
    guard: (c) =>
      !c.sc.kernel.gupFastIpi || c.gupFastIdle(0)
        ? null
        : 'tlb_remove_table_sync_one: IPI waits for a GUP-fast walker (IRQs off)',
    run: (c, f) => {
      const hp = frameHuge(c, f)
      if (c.sc.kernel.gupFastIpi)
        c.emit('info', 'tlb_remove_table_sync_one', 'IPI to all CPUs: no GUP-fast walk is in flight')
      else c.emit('info', 'collapse', 'before 2ba99c5e0881: no tlb_remove_table_sync_one()')
      c.goto(isFile(hp) ? 're' : 'isolate')
    },
  },
  /** file: mm_dec_nr_ptes(); pte_free(mm, pmd_pgtable(pmd)): the page-table page is freed. */
  pte_free: {
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.setTable(0, hp, null, false)
      c.emit('frame', 'pte_free', `free the PTE page-table page of ${hp.name}`)
      c.goto('copy')
    },
  },
  /**
   * anon: pte_offset_map_lock(&_pmd); __collapse_huge_page_isolate(): per old page, a
   * non-present PTE fails (SCAN_PTE_NON_PRESENT: reclaim's swap entry or a migration entry
   * installed before pmdp_collapse_flush detached the table), then trylock_page() (SCAN_PAGE_LOCK when another thread holds it: reclaim, a migration, KSM,
   * migrate_vma), isolate_lru_page() (SCAN_DEL_PAGE_LRU when another thread isolated it); on a
   * failure release_pte_pages() unlocks and puts back the pages taken so far. (The refcount
   * check, is_refcount_suitable(), is not modelled.) Then unlock; on failure collapse_huge_page
   * restores the PMD: `pmd_populate(mm, pmd, pmd_pgtable(_pmd))` under pmd_lock (step
   * 'restore'); else anon_vma_unlock_write().
   */
  isolate: {
    guard: (c, f) => {
      const hp = frameHuge(c, f)
      return c.ptlFree(0, hp.pages[0]!) ? null : 'page-table lock held'
    },
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.lockPtl(0, hp.pages[0]!, 'pte_offset_map_lock (the detached table)')
      c.emit('info', '__collapse_huge_page_isolate', `isolate the pages of ${hp.name}`)
      const old = oldPfns(f)
      const tbl = c.table(0, hp)!
      let fail: string | null = null
      let taken = 0
      for (; taken < old.length; taken++) {
        const pfn = old[taken]!
        const label = c.pageName(hp.pages[taken]!)
        // `if (!pte_present(pteval)) { result = SCAN_PTE_NON_PRESENT; goto out; }`: a swap or
        // migration entry that reclaim or a migration installed before pmdp_collapse_flush.
        if (tbl[hp.pages[taken]!]?.present !== true) {
          c.emit(
            'info',
            '__collapse_huge_page_isolate',
            `${label}: no present PTE (a swap or migration entry)`,
          )
          fail = 'SCAN_PTE_NON_PRESENT'
          break
        }
        // is_zero_pfn(): no lock, no isolation.
        if (pfn === ZERO_PFN) continue
        if (!c.anonTrylock(pfn, label, '__collapse_huge_page_isolate: trylock_page')) {
          fail = 'SCAN_PAGE_LOCK'
          break
        }
        if (!c.isolateLru(pfn, '__collapse_huge_page_isolate: isolate_lru_page')) {
          c.anonUnlock(pfn, label, '__collapse_huge_page_isolate: unlock_page')
          fail = 'SCAN_DEL_PAGE_LRU'
          break
        }
        c.getFrame(pfn)
      }
      if (fail !== null) {
        // release_pte_pages(): the pages taken so far are unlocked and put back on the LRU.
        for (let j = 0; j < taken; j++) {
          if (old[j] === ZERO_PFN) continue
          c.anonUnlock(old[j]!, c.pageName(hp.pages[j]!), 'release_pte_pages: unlock_page')
          c.putbackLru(old[j]!, 'release_pte_pages: putback_lru_page')
          c.putFrame(old[j]!, 'release_pte_pages: putback_lru_page')
        }
        c.emit('info', '__collapse_huge_page_isolate', `${fail}: the collapse backs out`)
        c.unlockPtl(0, hp.pages[0]!)
        c.goto('restore')
        return
      }
      c.unlockPtl(0, hp.pages[0]!)
      c.anonVmaWrite(false, 'anon_vma_unlock_write')
      c.goto('copy')
    },
  },
  /**
   * collapse_huge_page() after a failed __collapse_huge_page_isolate(): spin_lock(pmd_ptl);
   * pmd_populate(mm, pmd, pmd_pgtable(_pmd)): the detached table is linked again, its PTEs map
   * the old pages as before; spin_unlock; anon_vma_unlock_write(); mmap_write_unlock(); the new
   * huge page is freed (out_nolock). No flush or notifier: the PMD was none since
   * pmdp_collapse_flush, and the restored PTEs are the ones every TLB had dropped.
   */
  restore: {
    guard: (c, f) => {
      const hp = frameHuge(c, f)
      return c.pmdLockFree(0, hp) ? null : 'pmd_lock held'
    },
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.pmdLock(0, hp, 'collapse_huge_page: pmd_lock')
      const tbl = c.table(0, hp)!
      c.setTable(0, hp, null, true)
      c.setPmd(
        0,
        hp.pages,
        hp.pages.map((p) => tbl[p] ?? null),
        'pmd_populate',
        `PMD ${hp.name} := the detached PTE table again, PTEs ${c.pagesText(hp.pages)} -> pfns ${oldPfns(f).join(',')}`,
      )
      c.pmdUnlock(0, hp)
      c.anonVmaWrite(false, 'anon_vma_unlock_write')
      c.mmapWriteUnlock(0)
      for (const pfn of list(f, 'new')) c.putFrame(pfn, 'folio_put (unused huge page)')
      c.emit('op', 'thp_collapse', `${hp.name}: not collapsed (__collapse_huge_page_isolate failed)`)
      c.ret()
    },
  },
  /** __collapse_huge_page_copy(): copy_mc_user_highpage() of each old page into the huge page. */
  copy: {
    run: (c, f) => {
      const old = oldPfns(f)
      const neu = list(f, 'new')
      f.l.w = old.map((pfn, j) => {
        const src = c.folio(pfn)
        c.folioW(neu[j]!).v = src.v
        return src.w
      })
      c.emit('frame', '__collapse_huge_page_copy', `copy pfns ${old.join(',')} -> pfns ${neu.join(',')}`)
      c.goto('free')
    },
  },
  /**
   * anon: __collapse_huge_page_copy_succeeded(): per PTE, under the PTL, ptep_clear() in the
   * detached table and page_remove_rmap(); free_page_and_swap_cache(): the old pages are freed.
   * file: the old pages leave the page cache and are freed (modelled on anon frames).
   */
  free: {
    guard: (c, f) => {
      const hp = frameHuge(c, f)
      return isFile(hp) || c.ptlFree(0, hp.pages[0]!) ? null : 'page-table lock held'
    },
    run: (c, f) => {
      const hp = frameHuge(c, f)
      const old = oldPfns(f)
      const w = list(f, 'w')
      if (!isFile(hp)) {
        c.lockPtl(0, hp.pages[0]!, '__collapse_huge_page_copy_succeeded: spin_lock(ptl)')
        const t = c.table(0, hp)!.slice()
        for (const p of hp.pages) t[p] = null
        c.setTable(0, hp, t, false)
        c.emit('pte', 'ptep_clear', `the detached table's PTEs ${c.pagesText(hp.pages)} := none`)
        c.unlockPtl(0, hp.pages[0]!)
      }
      old.forEach((pfn, j) => {
        // anon: release_pte_page() (folio_unlock, folio_putback_lru: the isolation's reference)
        // before page_remove_rmap and free_page_and_swap_cache.
        if (!isFile(hp) && pfn !== ZERO_PFN) {
          c.anonUnlock(pfn, c.pageName(hp.pages[j]!), 'release_pte_page: folio_unlock')
          c.putbackLru(pfn, 'release_pte_page: folio_putback_lru')
          c.putFrame(pfn, 'release_pte_page: folio_putback_lru')
        }
        const fr = c.folioW(pfn)
        if (fr.w !== w[j]) {
          c.violate(
            'lost-write',
            `pfn ${pfn} was written after __collapse_huge_page_copy copied it; ${hp.name} will map the huge page without that write`,
          )
        }
        fr.sup = true
        fr.map--
        c.emit('frame', 'page_remove_rmap', `pfn ${pfn} mapcount ${fr.map}`)
        // A page the fork child still maps (max_ptes_shared) keeps the child's reference.
        if (fr.map > 0)
          c.emit('info', 'free_page_and_swap_cache', `pfn ${pfn} is still mapped by the fork child: it stays`)
        if (isFile(hp)) {
          // collapse_file(): the new huge page takes each subpage's slot in the page cache
          // (xas_store), and the old page's page-cache reference goes with it.
          c.fileMigrateSlot(hp.pages[j]!, list(f, 'new')[j]!, 'collapse_file: xas_store')
          c.fileSetLarge(hp.pages[j]!)
          c.putFrame(pfn, "folio_put (the page cache's reference on the old page)")
        }
        c.putFrame(pfn, isFile(hp) ? 'folio_put (old page-cache page)' : 'free_page_and_swap_cache')
      })
      c.goto('install')
    },
  },
  /**
   * pmd_lock(); anon: page_add_new_anon_rmap(), pgtable_trans_huge_deposit() (the emptied old
   * table); set_pmd_at(huge, writable and dirty); spin_unlock(); mmap_write_unlock().
   * file: the huge page mapped by do_set_pmd() at the next fault, condensed here.
   */
  install: {
    guard: (c, f) => {
      const hp = frameHuge(c, f)
      return c.pmdLockFree(0, hp) ? null : 'pmd_lock held'
    },
    run: (c, f) => {
      const hp = frameHuge(c, f)
      const neu = list(f, 'new')
      c.pmdLock(0, hp)
      for (const pfn of neu) c.folioW(pfn).map++
      if (!isFile(hp))
        c.emit('info', 'pgtable_trans_huge_deposit', 'deposit the emptied PTE table under the huge PMD')
      c.setPmd(
        0,
        hp.pages,
        neu.map((pfn) => ({ pfn, present: true, write: true, dirty: true, huge: true as const })),
        isFile(hp) ? 'do_set_pmd (next fault, condensed)' : 'set_pmd_at',
        `PMD ${hp.name} := huge page pfns ${neu.join(',')} RW dirty`,
      )
      c.pmdUnlock(0, hp)
      c.mmapWriteUnlock(0)
      c.emit('op', 'thp_collapse', `${hp.name} collapsed into pfns ${neu.join(',')}`)
      c.ret()
    },
  },
}

/**
 * A VMA boundary inside a huge page (v6.6): mprotect_fixup()'s split_vma() before the new
 * vm_flags and change_protection(), munmap's do_vmi_align_munmap() before the VMAs are detached:
 * __split_vma() -> vma_adjust_trans_huge() -> split_huge_pmd_if_needed() at the start, then at
 * the end: the PMD is split (__split_huge_pmd, with its own MMU_NOTIFY_CLEAR range). A PMD
 * migration entry is split too. Returns the first huge page (address order: the start boundary's
 * before the end boundary's) that `pages` covers in part and whose PMD is still huge, or null;
 * the caller splits it and asks again.
 */
export function thpSplitVma(c: Ctx, pages: readonly number[]): ThpDecl | null {
  for (const hp of c.sc.thp) {
    if (!pmdHuge(c, hp, c.mmIndex)) continue
    const inside = hp.pages.filter((p) => pages.includes(p))
    if (inside.length === 0 || inside.length === hp.pages.length) continue
    c.emit(
      'info',
      'split_vma',
      `${c.pagesText(inside)} is part of huge page ${hp.name}: vma_adjust_trans_huge -> split_huge_pmd_address`,
    )
    return hp
  }
  return null
}

/**
 * change_pmd_range() (v6.6 mm/mprotect.c) at the PMD of pages[i] (the first page of a table in
 * the VMA's `pages`): with a huge PMD there (pmd_trans_huge or is_swap_pmd), `if (next - addr
 * != HPAGE_PMD_SIZE)` (the VMA covers only part of the huge page) __split_huge_pmd() and
 * change_pte_range() on the new PTEs ('lock' after the split), else change_huge_pmd()
 * ('huge_pmd', local `hp` naming the huge page). Returns false when the PMD is not huge (the
 * PTE path applies). The caller has done range_start at the first PMD that is not none.
 */
export function thpMprotectPmd(c: Ctx, f: CallFrame, pages: readonly number[], i: number): boolean {
  const hp = c.hugeOf(pages[i]!)
  if (hp === null || !pmdHuge(c, hp, c.mmIndex)) return false
  const arg = hugeArg(c, hp)
  if (arg.hp === undefined) delete f.l.hp
  else f.l.hp = arg.hp
  if (hp.pages.every((p) => pages.includes(p))) {
    c.goto('huge_pmd')
    return true
  }
  c.emit(
    'info',
    'change_pmd_range',
    `${c.pagesText(pages.filter((p) => hp.pages.includes(p)))} is part of huge page ${hp.name}: __split_huge_pmd first`,
  )
  c.call('thp_split', { held: true, ...arg }, 'lock')
  return true
}

/**
 * change_huge_pmd() (v6.6 mm/huge_memory.c): pmd_lock; pmdp_invalidate_ad() (arm64, the generic
 * one: pmdp_invalidate -> flush_pmd_tlb_range -> flush_tlb_range, the CPU flush and the arch
 * hook; x86's own makes the PMD invalid with no flush);
 * pmd_modify() to the new protection (a private anon huge page becomes writable only if
 * PageAnonExclusive, can_change_pmd_writable(); a shared one only if dirty); set_pmd_at();
 * unlock; huge_pmd_needs_flush() -> tlb_flush_pmd_range(): the mmu_gather flushes again at
 * tlb_finish_mmu. A PMD split meanwhile goes down the PTE path. A PMD migration entry (THP
 * migration in progress) is only made readable if it was writable ("A protection check is
 * difficult so just be safe and disable write": make_readable_exclusive_migration_entry for an
 * anon page): set_pmd_at, unlock, no flush (no MMU caches it). Then `next`: change_pmd_range()'s
 * next PMD (protect.ts).
 */
export function changeHugePmdHandlers(next: (c: Ctx, f: CallFrame) => void): {
  huge_pmd: PcHandler
  huge_pmd_rest: PcHandler
} {
  return {
    huge_pmd: changeHugePmd(next),
    huge_pmd_rest: { run: (c, f) => changeHugePmdSet(c, f, next) },
  }
}

const changeHugePmd = (next: (c: Ctx, f: CallFrame) => void): PcHandler => ({
  guard: (c, f) => {
    const hp = frameHuge(c, f)
    return c.pmdLockFree(c.mmIndex, hp) ? null : 'pmd_lock held'
  },
  run: (c, f) => {
    const hp = frameHuge(c, f)
    const mm = c.mmIndex
    c.pmdLock(mm, hp)
    if (!pmdHuge(c, hp, mm)) {
      c.emit('info', 'change_pmd_range', `${hp.name} is no longer a huge PMD: change_pte_range`)
      c.pmdUnlock(mm, hp)
      c.goto('lock')
      return
    }
    if (pmdMigration(c, hp, mm)) {
      const olds = hp.pages.map((p) => c.pte(mm, p)!)
      if (olds[0]!.write)
        c.setPmd(
          mm,
          hp.pages,
          olds.map((p) => ({ ...p, write: false })),
          'set_pmd_at (readable PMD migration entry)',
          `PMD ${hp.name} := readable migration entry (is_swap_pmd: make_readable_exclusive_migration_entry)`,
        )
      else c.emit('info', 'change_huge_pmd', `${hp.name}: readable PMD migration entry, left unchanged`)
      c.pmdUnlock(mm, hp)
      next(c, f)
      return
    }
    const olds = hp.pages.map((p) => c.pte(mm, p)!)
    c.setPmd(
      mm,
      hp.pages,
      olds.map((p) => ({ ...p, present: false })),
      'pmdp_invalidate_ad',
      `PMD ${hp.name} := invalid (pmd_mkinvalid)`,
    )
    // x86 defines __HAVE_ARCH_PMDP_INVALIDATE_AD (arch/x86/mm/pgtable.c, v6.6): "No flush is
    // necessary. Once an invalid PTE is established, the PTE's access and dirty bits cannot be
    // updated": only the mmu_gather's flush at tlb_finish_mmu remains. arm64 takes the generic
    // one, pmdp_invalidate() -> flush_pmd_tlb_range().
    if (c.sc.arch === 'x86_64') {
      changeHugePmdSet(c, f, next)
      return
    }
    c.flushTlb(mm, 'range', hp.pages, 'flush_tlb_range (pmdp_invalidate_ad -> flush_pmd_tlb_range)')
    // The flush's notifier call may leave an atc-first driver's IOTLB command owed: the rest runs
    // in the next step, still under pmd_lock.
    afterNotifier(c, f, 'huge_pmd_rest', (cc, ff) => changeHugePmdSet(cc, ff, next))
  },
})

/**
 * change_huge_pmd() after pmdp_invalidate_ad(): the new protection with set_pmd_at, under the
 * same pmd_lock. The invalidated PMD still carries the old pfn, write and dirty bits (nothing
 * can change it while the lock is held), so they are read back from it.
 */
function changeHugePmdSet(c: Ctx, f: CallFrame, next: (c: Ctx, f: CallFrame) => void): void {
  const hp = frameHuge(c, f)
  const mm = c.mmIndex
  const prot = PROT_CODES[f.l.prot as number]!
  const olds = hp.pages.map((p) => c.pte(mm, p)!)
  const old = olds[0]!
  // can_change_pmd_writable(): anon needs PageAnonExclusive, which fork's copy_huge_pmd cleared.
  const exclusive = isFile(hp) ? old.dirty : thpAnonExclusive(c, hp, mm)
  const write = prot === 'rw' && (old.write || exclusive)
  const ptes = olds.map((p) => ({
    pfn: p.pfn,
    present: prot !== 'none',
    write,
    dirty: p.dirty,
    huge: true as const,
  }))
  c.setPmd(
    mm,
    hp.pages,
    ptes,
    'set_pmd_at',
    `PMD ${hp.name} := huge ${prot === 'none' ? 'PROT_NONE' : write ? 'RW' : 'RO'}`,
  )
  c.pmdUnlock(mm, hp)
  const needsFlush = c.sc.arch !== 'x86_64' || old.write !== write || prot === 'none'
  if (needsFlush) {
    const r = c.thread.stack[0]!
    r.l.g_range = [...list(r, 'g_range'), ...hp.pages]
  } else c.emit('info', 'huge_pmd_needs_flush', `${hp.name}: no flush needed on ${c.sc.arch}`)
  next(c, f)
}

/** protect.ts protCode() order. */
const PROT_CODES = ['rw', 'ro', 'none'] as const

/**
 * zap_pmd_range() (v6.6 mm/memory.c) at the huge page's PMD, for a zap of `pages` (one VMA's
 * part of a munmap, MADV_DONTNEED, exit_mmap or the OOM reaper): a huge PMD or a PMD migration
 * entry (`is_swap_pmd || pmd_trans_huge`) is zapped whole by zap_huge_pmd() when the range
 * covers the whole 2 MiB ('zap'); `if (next - addr != HPAGE_PMD_SIZE)` it is split first
 * ('split': __split_huge_pmd(vma, pmd, addr, false, NULL), then zap_pte_range on the new PTEs).
 * null: no huge PMD here, zap_pte_range as for small pages. The read is lockless, as the
 * kernel's; zap_huge_pmd re-checks under pmd_lock (__pmd_trans_huge_lock).
 */
export function zapPmdPath(c: Ctx, hp: ThpDecl, pages: readonly number[]): 'zap' | 'split' | null {
  if (!pages.some((p) => hp.pages.includes(p)) || !pmdHuge(c, hp, c.mmIndex)) return null
  return hp.pages.every((p) => pages.includes(p)) ? 'zap' : 'split'
}

/**
 * zap_huge_pmd() (v6.6 mm/huge_memory.c), one step under pmd_lock (__pmd_trans_huge_lock):
 * pmdp_huge_get_and_clear_full(); tlb_remove_pmd_tlb_entry() adds the 2 MiB range to the
 * gather (tlb->cleared_pmds; no flush here); a present PMD: page_remove_rmap(page, vma, true)
 * (the compound mapcount); a PMD migration entry holds no page reference (flush_needed = 0);
 * anon: zap_deposited_table() -> pte_free() of the deposited PTE table, at once (not through
 * the gather: no MMU can reach a deposited table, unless a walk cache kept a pointer to it
 * from when it was linked); spin_unlock(); tlb_remove_page_size(): the folio's reference goes
 * to the gather, freed after its flush. Returns whether that filled the gather's batch
 * (`mmu_gather: batch`, the folio counted once): the caller then runs tlb_flush_mmu().
 */
export function zapHugePmd(c: Ctx, hp: ThpDecl): boolean {
  const mm = c.mmIndex
  const r = c.thread.stack[0]!
  c.pmdLock(mm, hp, 'zap_huge_pmd: __pmd_trans_huge_lock')
  const olds = hp.pages.map((p) => c.pte(mm, p)!)
  const mig = olds[0]!.mig === true
  c.setPmd(
    mm,
    hp.pages,
    hp.pages.map(() => null),
    'pmdp_huge_get_and_clear_full',
    `PMD ${hp.name} := none (was ${mig ? 'a PMD migration entry' : `huge page pfns ${olds.map((p) => p.pfn).join(',')}`})`,
  )
  const range = list(r, 'g_range')
  r.l.g_range = [...range, ...hp.pages.filter((p) => !range.includes(p))]
  c.emit('info', 'tlb_remove_pmd_tlb_entry', `the gather's range covers ${hp.name} (2 MiB, cleared_pmds)`)
  if (mig) {
    c.emit(
      'info',
      'zap_huge_pmd',
      `${hp.name}: a PMD migration entry holds no page reference (flush_needed = 0); the migration finds it gone`,
    )
  } else {
    for (const p of olds) c.folioW(p.pfn).map--
    c.emit(
      'frame',
      'page_remove_rmap (compound)',
      `pfns ${olds.map((p) => p.pfn).join(',')} mapcount ${c.folio(olds[0]!.pfn).map}`,
    )
  }
  c.setTable(mm, hp, null, false)
  if (isFile(hp))
    // `if (PageAnon(page)) zap_deposited_table(); else { if (arch_needs_pgtable_deposit())
    // zap_deposited_table(); add_mm_counter(mm_counter_file) }`: nothing deposited on x86/arm64.
    c.emit(
      'info',
      'zap_huge_pmd',
      `${hp.name} is a file PMD: no deposited table (arch_needs_pgtable_deposit() is false)`,
    )
  else c.emit('frame', 'zap_deposited_table', `pte_free: the PTE table deposited under ${hp.name} is freed`)
  c.pmdUnlock(mm, hp)
  if (mig) return false
  const queued = list(r, 'g_queue')
  r.l.g_queue = [...queued, ...olds.map((p) => p.pfn)]
  c.emit(
    'frame',
    'tlb_remove_page_size',
    isFile(hp)
      ? `the PMD's reference on the huge folio (pfns ${olds.map((p) => p.pfn).join(',')}) is dropped after the flush; the page cache keeps the folio`
      : `the huge folio (pfns ${olds.map((p) => p.pfn).join(',')}) is queued for freeing after the flush`,
  )
  // The batch counts the pages queued before it (small ones here) and the huge folio as one.
  const batch = c.sc.gatherBatch
  if (batch !== null && queued.length + 1 >= batch) {
    c.emit('info', 'tlb_remove_page_size', `mmu_gather batch full (${count(batch, 'page')}): tlb_flush_mmu`)
    return true
  }
  return false
}

/**
 * PageAnonExclusive of huge page `hp`'s folio that `mm`'s PMD maps: set until fork's
 * copy_huge_pmd (page_try_dup_anon_rmap) clears it. After fork the model counts the folio
 * exclusive again once nobody else maps or holds it (mapcount 1, refcount 1), which is when
 * do_huge_pmd_wp_page's `folio_ref_count(folio) == 1` reuse (page_move_anon_rmap) would set it.
 */
export function thpAnonExclusive(c: Ctx, hp: ThpDecl, mm: number): boolean {
  if (!c.mmLive(1)) return true
  return hp.pages.every((p) => {
    const pte = c.pte(mm, p)
    if (!pte) return false
    const fr = c.folio(pte.pfn)
    return fr.map === 1 && fr.ref === 1
  })
}

/**
 * copy_huge_pmd() (v6.6 mm/huge_memory.c), fork's copy_pmd_range() at a huge PMD or a PMD
 * migration entry (huge page `hp`, the frame's local), inside copy_page_range()'s
 * MMU_NOTIFY_PROTECTION_PAGE range: pte_alloc_one() (the child's table to deposit), dst_ptl =
 * pmd_lock(dst_mm), spin_lock_nested(src_ptl). A writable PMD migration entry is made readable
 * in the parent and copied (no page reference, mm counters only). A huge PMD:
 * page_try_dup_anon_rmap(src_page, true, src_vma) (it fails only for a pinned page, which the
 * model has no pins for; the mapcount and folio_get), pgtable_trans_huge_deposit() into the
 * child, pmdp_set_wrprotect() on the parent (no flush: dup_mmap's flush_tlb_mm(oldmm) comes at
 * the end), set_pmd_at(child, pmd_mkold(pmd_wrprotect(pmd))). spin_unlock(src_ptl),
 * spin_unlock(dst_ptl). Then `next`: copy_pmd_range()'s next PMD (protect.ts).
 */
export function copyHugePmdHandler(next: (c: Ctx, f: CallFrame) => void): PcHandler {
  return {
    guard: (c, f) => {
      const hp = frameHuge(c, f)
      return !c.pmdLockFree(1, hp) ? 'pmd_lock held (child)' : !c.pmdLockFree(0, hp) ? 'pmd_lock held' : null
    },
    run: (c, f) => {
      const hp = frameHuge(c, f)
      c.pmdLock(1, hp, 'copy_huge_pmd: pmd_lock (dst_mm)')
      c.pmdLock(0, hp, 'copy_huge_pmd: spin_lock_nested (src_mm)')
      const olds = hp.pages.map((p) => c.pte(0, p)!)
      // The child's pte_alloc_one() table, deposited under its PMD: empty.
      c.setTable(1, hp, new Array<Pte | null>(c.sc.pages.length).fill(null), false)
      if (olds[0]!.mig === true) {
        if (olds[0]!.write)
          c.setPmd(
            0,
            hp.pages,
            olds.map((p) => ({ ...p, write: false })),
            'set_pmd_at (make_readable_migration_entry)',
            `PMD ${hp.name} := readable migration entry`,
          )
        c.setPmd(
          1,
          hp.pages,
          olds.map((p) => ({ ...p, write: false })),
          'set_pmd_at (child, PMD migration entry)',
          `PMD ${hp.name} (child) := readable migration entry (pfns ${olds.map((p) => p.pfn).join(',')})`,
        )
      } else {
        for (const p of olds) {
          const fr = c.folioW(p.pfn)
          fr.map++
          fr.ref++
        }
        c.emit(
          'frame',
          'page_try_dup_anon_rmap',
          `pfns ${olds.map((p) => p.pfn).join(',')} mapcount ${c.folio(olds[0]!.pfn).map} (PageAnonExclusive cleared)`,
        )
        c.emit(
          'info',
          'pgtable_trans_huge_deposit',
          `deposit the child's new PTE table under its PMD ${hp.name}`,
        )
        if (olds[0]!.write)
          c.setPmd(
            0,
            hp.pages,
            olds.map((p) => ({ ...p, write: false })),
            'pmdp_set_wrprotect',
            `PMD ${hp.name} := huge RO (no flush)`,
          )
        c.setPmd(
          1,
          hp.pages,
          olds.map((p) => ({ ...p, write: false })),
          'set_pmd_at (child)',
          `PMD ${hp.name} (child) := huge page pfns ${olds.map((p) => p.pfn).join(',')} RO (pmd_mkold(pmd_wrprotect(pmd)))`,
        )
      }
      c.pmdUnlock(0, hp, 'spin_unlock (src_ptl)')
      c.pmdUnlock(1, hp, 'spin_unlock (dst_ptl)')
      next(c, f)
    },
  }
}
