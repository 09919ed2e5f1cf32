/**
 * Writeback of one file page (kind: file), v6.6:
 * - mm/page-writeback.c write_cache_pages(): folio_lock(); skip a folio that is no longer
 *   dirty; folio_clear_dirty_for_io(); ->writepage (the I/O), folio_end_writeback.
 * - folio_clear_dirty_for_io(): `if (folio_mkclean(folio)) folio_mark_dirty(folio);` then
 *   folio_test_clear_dirty(): PTE dirty bits move to PG_dirty, and PG_dirty is cleared.
 * - mm/rmap.c folio_mkclean(): `if (!folio_mapped(folio)) return 0;` — no rmap walk at all
 *   when the mapcount is 0. That early return is what a zap that drops the mapcount before
 *   its TLB flush races with (Linus 2014 1cf35d47712d, 2022 5df397dec7c4; reference §5.5).
 *   Otherwise rmap_walk_file() under i_mmap_lock_read, page_mkclean_one() per VMA of the
 *   i_mmap tree that maps the offset (vma_interval_tree_foreach; invalid_mkclean_vma keeps the
 *   VM_SHARED ones, which every file VMA here is): each address declared `file:` of the page,
 *   and a fork child's VMAs, which dup_mmap linked right after their parent's (rmap.ts
 *   walkVmas). folio_mkclean() returns the sum of what each cleaned; the walk has no
 *   rwc->done, so it visits every VMA even once the folio is clean.
 * - page_vma_mkclean_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_PROTECTION_PAGE);
 *   page_vma_mapped_walk() takes the PTL; a writable or dirty PTE is ptep_clear_flush()ed
 *   (CPU flush; the arch hook inside it), made pte_wrprotect(pte_mkclean()) and set_pte_at();
 *   unlock; mmu_notifier_invalidate_range_end(). v4.15 dropped the _notify here (Glisse: a
 *   downgrade may wait for range_end), so ->invalidate_range fires only at range_end. The
 *   range is on that VMA's mm (vma->vm_mm): a fork child's has no subscribers, and its PTL
 *   and CPU flush are the child's.
 *
 * The folio lock serialises this with the write-fault path (wp_page_shared ->
 * do_page_mkwrite / fault_dirty_shared_page), as the comment in folio_clear_dirty_for_io
 * says; it does not serialise with zap_pte_range, which marks the folio dirty without it.
 */
import type { Ctx } from '../ctx'
import type { CallFrame } from '../state'
import { afterNotifier, decodePte, encodePte, num, type Proc } from './proc'
import { walkVmaAt, walkVmas, type WalkVma } from './rmap'

/**
 * The page under writeback is the op's `page` local; `cleaned` is folio_mkclean's count, `vi`
 * the VMA of the walk (and `mm` its mm) page_mkclean_one is at.
 */
export const writeback: Proc = {
  /** write_cache_pages(): folio_lock(); `if (!folio_test_dirty(folio))` someone wrote it for us. */
  start: {
    guard: (c, f) => (c.folioLockFree(num(f, 'page')) ? null : 'folio locked'),
    run: (c, f) => {
      const page = num(f, 'page')
      c.folioLock(page)
      if (!c.file(page).dirty) {
        c.emit('info', 'write_cache_pages', `${c.pageName(page)}: folio not dirty, nothing to write`)
        c.folioUnlock(page)
        c.emit('op', 'writeback', 'returns')
        c.ret()
        return
      }
      c.goto('clear_io')
    },
  },
  /**
   * folio_clear_dirty_for_io() -> folio_mkclean(): `if (!folio_mapped(folio)) return 0;`
   * else rmap_walk_file() with i_mmap_lock_read over the VMAs still linked in the i_mmap tree.
   */
  clear_io: {
    run: (c, f) => {
      const page = num(f, 'page')
      const pfn = c.file(page).pfn
      const map = c.folio(pfn).map
      if (map === 0) {
        c.emit('info', 'folio_mkclean', `${c.pageName(page)}: !folio_mapped() (mapcount 0): no rmap walk`)
        clearDirty(c, f)
        return
      }
      c.imapRead(0, 1)
      f.l.cleaned = 0
      if (!mkWalk(c, f, 0)) {
        c.emit('info', 'rmap_walk_file', `${c.pageName(page)}: no VMA in the i_mmap tree`)
        mkDone(c, f)
      }
    },
  },
  /** page_vma_mkclean_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_PROTECTION_PAGE). */
  mk_rs: {
    run: (c, f) => {
      c.rangeStart(c.mmIndex, [walkVmaAt(c, f).page], 'MMU_NOTIFY_PROTECTION_PAGE')
      c.goto('mk_pte')
    },
  },
  /**
   * page_vma_mapped_walk() (PTL); `if (!pte_dirty(entry) && !pte_write(entry)) continue;`
   * ptep_clear_flush(); pte_wrprotect(); pte_mkclean(); set_pte_at(); unlock.
   */
  mk_pte: {
    guard: (c) => (c.ptlFree(c.mmIndex) ? null : 'page-table lock held'),
    run: (c, f) => {
      const v = walkVmaAt(c, f)
      const { mm, page } = v
      const pfn = c.file(page).pfn
      c.lockPtl(mm, 'page_vma_mapped_walk')
      const pte = c.pte(mm, page)
      if (!pte || pte.pfn !== pfn || pte.mig || pte.swp !== undefined) {
        c.emit('info', 'page_vma_mapped_walk', `${vmaName(c, v)}: no PTE maps pfn ${pfn}`)
      } else if (!pte.dirty && !pte.write) {
        c.emit('info', 'page_vma_mkclean_one', `${vmaName(c, v)}: PTE already read-only and clean`)
      } else {
        c.setPte(mm, page, null, 'ptep_clear_flush')
        // flush_tlb_page() only if pte_accessible(): a PROT_NONE PTE is in no TLB.
        if (pte.present) c.flushTlb(mm, 'page', [page], 'flush_tlb_page (ptep_clear_flush)')
        f.l.old = encodePte(pte)
        afterNotifier(c, f, 'mk_set', mkSet)
        return
      }
      c.unlockPtl(mm)
      c.goto('mk_re')
    },
  },
  mk_set: { run: (c, f) => mkSet(c, f) },
  /**
   * mmu_notifier_invalidate_range_end(); then page_mkclean_one() of the walk's next VMA, or
   * i_mmap_unlock_read() and back in folio_clear_dirty_for_io.
   */
  mk_re: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [walkVmaAt(c, f).page], false)
      afterNotifier(c, f, 'mk_done', mkNext)
    },
  },
  mk_done: { run: (c, f) => mkNext(c, f) },
  /**
   * ->writepage: the I/O takes the folio's contents as they are now (a write through a stale
   * TLB entry before this step still reaches disk; one after it does not), then
   * folio_unlock() (the filesystem unlocks the folio once it is under writeback) and
   * folio_end_writeback() at I/O completion.
   */
  io: {
    run: (c, f) => {
      const page = num(f, 'page')
      c.diskWrite(page, 'submit_bio (->writepage)')
      c.folioUnlock(page)
      c.emit('op', 'writeback', 'returns')
      c.ret()
    },
  },
}

/** A VMA of the walk, as traces name it: its address, and `(child)` in the fork child. */
function vmaName(c: Ctx, v: WalkVma): string {
  return `${c.pageName(v.page)}${v.mm === 1 ? ' (child)' : ''}`
}

/**
 * vma_interval_tree_foreach from VMA `from` on: the next VMA still linked in the i_mmap tree
 * (locals `vi`, `mm`), whose page_mkclean_one() starts at 'mk_rs'. Returns false when the walk
 * is over (`mm` dropped).
 */
function mkWalk(c: Ctx, f: CallFrame, from: number): boolean {
  const ms = walkVmas(c.sc, num(f, 'page'))
  let vi = from
  while (vi < ms.length && !c.imapLinked(ms[vi]!.mm, ms[vi]!.page)) vi++
  f.l.vi = vi
  if (vi >= ms.length) {
    delete f.l.mm
    return false
  }
  walkVmaAt(c, f)
  c.goto('mk_rs')
  return true
}

/** After a VMA's range_end: the next VMA of the walk, or the end of folio_mkclean(). */
function mkNext(c: Ctx, f: CallFrame): void {
  if (!mkWalk(c, f, num(f, 'vi') + 1)) mkDone(c, f)
}

/** page_vma_mkclean_one() after ptep_clear_flush(): the write-protected, clean PTE; unlock. */
function mkSet(c: Ctx, f: CallFrame): void {
  const { mm, page } = walkVmaAt(c, f)
  const pte = decodePte(f.l.old!)!
  delete f.l.old
  c.setPte(mm, page, { ...pte, write: false, dirty: false }, 'set_pte_at (pte_wrprotect + pte_mkclean)')
  f.l.cleaned = num(f, 'cleaned') + 1
  c.unlockPtl(mm)
  c.goto('mk_re')
}

/** The walk is over: i_mmap_unlock_read(), then folio_clear_dirty_for_io()'s bookkeeping. */
function mkDone(c: Ctx, f: CallFrame): void {
  const page = num(f, 'page')
  delete f.l.vi
  c.imapRead(0, -1)
  const cleaned = num(f, 'cleaned')
  if (cleaned > 0)
    c.folioMarkDirty(
      page,
      `folio_clear_dirty_for_io: folio_mkclean() cleaned ${cleaned === 1 ? 'a PTE' : `${cleaned} PTEs`}`,
    )
  delete f.l.cleaned
  clearDirty(c, f)
}

/** folio_test_clear_dirty() at the end of folio_clear_dirty_for_io(); writes only if it was dirty. */
function clearDirty(c: Ctx, f: { l: Record<string, unknown> }): void {
  const page = f.l.page as number
  if (c.folioTestClearDirty(page)) {
    c.emit('info', 'folio_start_writeback', `${c.pageName(page)}: clean, under writeback`)
    c.goto('io')
    return
  }
  c.folioUnlock(page)
  c.emit('op', 'writeback', 'returns')
  c.ret()
}
