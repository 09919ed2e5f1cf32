/**
 * Truncating a file below a mapped page, v6.6: ftruncate -> do_truncate -> notify_change ->
 * ->setattr -> truncate_setsize() (mm/truncate.c): i_size_write(), then truncate_pagecache():
 *
 *   unmap_mapping_range(mapping, holebegin, 0, 1);   every VMA of the file, with notifiers
 *   truncate_inode_pages(mapping, newsize);          folio_lock, unmap_mapping_folio if a fault
 *                                                    mapped it again, filemap_remove_folio
 *   unmap_mapping_range(mapping, holebegin, 0, 1);   private COWs (none: pages are MAP_SHARED)
 *
 * The first unmap_mapping_range zaps through zap_page_range_single (range_start
 * MMU_NOTIFY_CLEAR, the PTE clears, range_end, tlb_finish_mmu), the same proc as a driver's
 * revoke (unmap.ts), once per VMA of the i_mmap tree that maps the offset, each on its own mm:
 * every address declared `file:` of the page, and a fork child's VMAs, which dup_mmap linked
 * right after their parent's (rmap.ts walkVmas; the child's mm has no subscribers, its zap
 * flushes the child's CPUs). The page-cache folio is freed only afterwards, when
 * truncate_inode_pages drops the page cache's reference. From i_size_write on, filemap_fault
 * refuses the page (SIGBUS for a CPU, IOMMU_PAGE_RESP_INVALID for a device).
 */
import type { Ctx } from '../ctx'
import type { CallFrame } from '../state'
import type { Proc } from './proc'
import { num } from './proc'
import { walkVmas } from './rmap'
import { mappingPages } from './unmap'

/**
 * unmap_mapping_range() -> unmap_mapping_pages(): i_mmap_lock_read(mapping) (local `il`), then
 * unmap_mapping_range_tree(): zap_page_range_single() for each VMA of the file that maps the
 * offset, one after the other (`vi` counts them; a fork child's VMA not linked in the tree is
 * not seen), i_mmap_unlock_read(mapping) after the last; then goes to `next`.
 */
function unmapNext(c: Ctx, f: CallFrame, next: string): void {
  if (f.l.il !== true) {
    c.imapRead(0, 1)
    f.l.il = true
  }
  const ms = walkVmas(c.sc, num(f, 'page'))
  let vi = num(f, 'vi')
  while (vi < ms.length && ms[vi]!.mm !== 0 && !c.imapLinked(ms[vi]!.mm, ms[vi]!.page)) vi++
  if (vi >= ms.length) {
    c.imapRead(0, -1)
    delete f.l.il
    c.goto(next)
    return
  }
  f.l.vi = vi + 1
  const v = ms[vi]!
  c.call(
    'unmap_mapping_range',
    v.mm === 0 ? { page: v.page, nested: true } : { page: v.page, nested: true, mm: v.mm },
    next === 'lock' ? 'unmap' : 'unmap_folio',
  )
}

export const truncate: Proc = {
  /** truncate_setsize(): i_size_write(); truncate_pagecache(): unmap_mapping_range(mapping, holebegin, 0, 1). */
  start: {
    run: (c, f) => {
      // A file huge page's first subpage: every subpage is beyond the new size (one folio).
      for (const p of mappingPages(c, num(f, 'page'))) c.fileShrink(p)
      f.l.vi = 0
      unmapNext(c, f, 'lock')
    },
  },
  unmap: { run: (c, f) => unmapNext(c, f, 'lock') },
  unmap_folio: { run: (c, f) => unmapNext(c, f, 'remove') },
  /**
   * truncate_inode_pages_range() -> find_lock_entries(): folio_lock. truncate_cleanup_folio():
   * `if (folio_mapped(folio)) unmap_mapping_folio(folio);` (a fault that raced the first
   * unmap mapped it again; it held the folio lock until its PTE was in).
   */
  lock: {
    guard: (c, f) => (c.folioLockFree(num(f, 'page')) ? null : 'folio locked'),
    run: (c, f) => {
      const page = num(f, 'page')
      c.folioLock(page, 'find_lock_entries: folio_lock')
      const mapped = mappingPages(c, page).some((p) => c.file(p).pfn >= 0 && c.folio(c.file(p).pfn).map > 0)
      if (mapped) {
        c.emit('info', 'truncate_cleanup_folio', `${c.pageName(page)}: folio_mapped(): unmap_mapping_folio`)
        f.l.vi = 0
        unmapNext(c, f, 'remove')
        return
      }
      c.goto('remove')
    },
  },
  /** filemap_remove_folio (delete_from_page_cache_batch), folio_unlock, the page cache's folio_put. */
  remove: {
    run: (c, f) => {
      const page = num(f, 'page')
      if (c.file(page).pfn < 0) {
        // Reclaim evicted it already: nothing of the page is in the page cache.
        c.emit('info', 'truncate_inode_pages', `${c.pageName(page)}: not in the page cache`)
        c.folioUnlock(page)
      } else {
        // A file huge page: truncate_inode_folio() of the whole large folio, every subpage's slot.
        const pfns = mappingPages(c, page).map((p) => c.fileRemoveFolio(p))
        c.folioUnlock(page)
        for (const pfn of pfns) c.putFrame(pfn, 'folio_batch_release (the page cache reference)')
      }
      // The second unmap_mapping_range finds no private COW of a MAP_SHARED page: nothing to do.
      const vmas = walkVmas(c.sc, page)
      for (const mm of new Set(vmas.map((v) => v.mm)))
        c.markRevoked(
          mm,
          vmas.flatMap((v) => mappingPages(c, v.page)),
          true,
        )
      c.emit('op', 'truncate', 'returns 0')
      c.ret()
    },
  },
}
