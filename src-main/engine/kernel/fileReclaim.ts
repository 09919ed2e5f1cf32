/**
 * Reclaim of a file page's page-cache folio, v6.6 mm/vmscan.c shrink_folio_list():
 *
 *   folio_trylock; folio_mapped -> try_to_unmap(folio, TTU_BATCH_FLUSH): rmap_walk_file over
 *     every VMA of the file that maps the offset (here: the page and the addresses declared
 *     `file:` of it, in the process and in a fork child: rmap.ts walkVmas), try_to_unmap_one
 *     per mapping (mm/rmap.c), on that VMA's mm: range_start(MMU_NOTIFY_CLEAR),
 *     the PTL, ptep_get_and_clear with the flush batched (set_tlb_ubc_flush_pending: x86 calls
 *     the arch hook with (0, -1) and defers the CPU flush; arm64 flushes the page now), a dirty
 *     PTE's bit moved to the folio (folio_mark_dirty), the PTE left none (a file page needs no
 *     swap entry: the page cache finds it again), page_remove_rmap, folio_put; range_end
 *   a dirty folio is kept (kswapd leaves file writeback to the flusher: activate_locked)
 *   a clean one: __remove_mapping (the refcount must be the page cache's and the isolation's
 *     only: a fault that mapped it again keeps it), folio_unlock, try_to_unmap_flush(), free
 *
 * v4.15's try_to_unmap_one called no ->invalidate_range for a file page under the PTL ("a
 * locked file-backed page ... cannot be removed from the page cache and replaced by a new page
 * before mmu_notifier_invalidate_range_end"), so the invalidate-range preset has it at range_end.
 * A later fault reads the page from disk into a new folio (fault.ts, ctx.ts fileReadIn).
 */
import type { Ctx } from '../ctx'
import type { CallFrame } from '../state'
import { num, type Proc } from './proc'
import { fileRmapWalk, fileWalkLock, fileWalkUnlock, tryToUnmapFlush, walkVmas } from './rmap'

export const fileReclaim: Proc = {
  /** isolate_lru_folios (a reference), folio_trylock. */
  start: {
    run: (c, f) => {
      const page = num(f, 'page')
      const pfn = c.file(page).pfn
      if (pfn < 0) {
        c.emit('info', 'shrink_folio_list', `${c.pageName(page)}: not in the page cache`)
        c.ret()
        return
      }
      if (!c.folioLockFree(page)) {
        c.emit('info', 'shrink_folio_list', `${c.pageName(page)}: folio_trylock fails: keep`)
        c.ret()
        return
      }
      c.getFrame(pfn)
      f.l.pfn = pfn
      c.folioLock(page, 'shrink_folio_list: folio_trylock')
      f.l.vi = 0
      // try_to_unmap()/try_to_migrate() only if folio_mapped(): rmap_walk_file's i_mmap_lock_read.
      if (c.folio(pfn).map > 0) fileWalkLock(c, f)
      next(c, f)
    },
  },
  /**
   * try_to_unmap_one() per mapping (rmap.ts fileRmapWalk): range_start, the PTL,
   * ptep_get_and_clear with the flush batched, the dirty bit, the PTE left none,
   * page_remove_rmap, folio_put; range_end; then the next mapping, or the folio's fate.
   */
  ...fileRmapWalk('try_to_unmap_one', next),
  /** try_to_unmap_flush() before the free (x86: arch_tlbbatch_flush, the deferred CPU flush). */
  free: {
    run: (c, f) => {
      const page = num(f, 'page')
      tryToUnmapFlush(c, f, 'mm', [], 'arch_tlbbatch_flush (try_to_unmap_flush)')
      const pfn = num(f, 'pfn')
      c.putFrame(pfn, 'free_unref_folios (the isolation reference)')
      c.emit('op', 'reclaim', `${c.pageName(page)}: the clean folio is reclaimed`)
      c.ret()
    },
  },
}

/**
 * The next VMA of the i_mmap tree (every linked one: try_to_unmap_one's range_start comes
 * before page_vma_mapped_walk, which finds nothing in a VMA whose PTE does not map the folio);
 * after the last (or once the folio is unmapped: rwc.done = folio_not_mapped),
 * i_mmap_unlock_read, then keep a dirty or busy folio, remove a clean one.
 */
function next(c: Ctx, f: CallFrame): void {
  const ms = walkVmas(c.sc, num(f, 'page'))
  let vi = num(f, 'vi')
  const pfn = num(f, 'pfn')
  // vma_interval_tree_foreach: every VMA linked in the i_mmap tree, whether or not its PTE
  // maps the folio (try_to_*_one's range_start comes before page_vma_mapped_walk).
  while (vi < ms.length && c.folio(pfn).map > 0 && !c.imapLinked(ms[vi]!.mm, ms[vi]!.page)) vi++
  f.l.vi = vi
  if (vi < ms.length && c.folio(pfn).map > 0) {
    c.goto('rs')
    return
  }
  fileWalkUnlock(c, f)
  const page = num(f, 'page')
  const fr = c.folio(pfn)
  if (c.file(page).dirty || fr.map > 0 || fr.ref !== 2) {
    const why = c.file(page).dirty
      ? 'PG_dirty: kswapd leaves file writeback to the flusher (activate_locked)'
      : 'mapped or referenced again: __remove_mapping cannot freeze the refcount'
    c.emit('info', 'shrink_folio_list', `${c.pageName(page)}: keep (${why})`)
    c.folioUnlock(page)
    c.putFrame(pfn, 'folio_putback_lru')
    c.ret()
    return
  }
  // __remove_mapping(): folio_ref_freeze, __filemap_remove_folio: the page cache's reference goes.
  c.fileEvict(page)
  c.putFrame(pfn, '__remove_mapping (the page cache reference)')
  c.folioUnlock(page)
  c.goto('free')
}
