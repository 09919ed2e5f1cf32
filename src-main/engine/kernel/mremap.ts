/**
 * mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, new) of one page, v6.6 mm/mremap.c:
 * mremap_to() under mmap_write_lock: MREMAP_FIXED's do_munmap(new_addr) unmaps whatever VMA is
 * at the target first (the munmap sequence of kernel/unmap.ts with the lock kept: its
 * MMU_NOTIFY_UNMAP range, the zap, tlb_finish_mmu's flush and free; a target with no VMA finds
 * nothing and notifies nobody) -> move_vma(): copy_vma() makes the new VMA (a file VMA is linked into the i_mmap
 * tree under i_mmap_lock_write; need_rmap_locks is false for a new VMA, so move_page_tables
 * takes no i_mmap lock: truncate can run concurrently with it), then move_page_tables():
 *
 *   mmu_notifier_range_init(MMU_NOTIFY_UNMAP, old range); invalidate_range_start
 *   move_ptes(): old PTL (pte_offset_map_lock), new PTL (`if (new_ptl != old_ptl)
 *     spin_lock_nested(new_ptl, SINGLE_DEPTH_NESTING)`: the new address in another PTE table
 *     has a split PTL of its own, taken in a step of its own; in the same table it is the
 *     same lock), flush_tlb_batched_pending(mm), ptep_get_and_clear(old), set_pte_at(new,
 *     move_pte(pte)), and for a present PTE flush_tlb_range(old) BEFORE the PTLs are dropped
 *     (eb66ae030829, v4.19); spin_unlock(new_ptl), pte_unmap_unlock(old)
 *   invalidate_range_end
 *
 * then do_vmi_munmap() of the old range: the old VMA goes (its range_start/end find no PTE),
 * and unmap_region()'s free_pgtables() frees the old address's PTE table if no VMA is left over
 * its PMD range (the move left another table), flushed by tlb_finish_mmu() before it is freed.
 * `kernel: { mremap_flush_under_ptl: false }` is the order before eb66ae030829
 * (CVE-2018-18281): a dirty PTE was flushed under the lock (force_flush, 5d1904204c99), a
 * clean one only by move_page_tables() after move_ptes() returned (need_flush), so a racing
 * ftruncate (unmap_mapping_range of the new address, then the free) could free the page while
 * a CPU TLB still mapped it at the old address.
 */
import type { Ctx } from '../ctx'
import { tablePages, type CallFrame } from '../state'
import { afterNotifier, decodePte, encodePte, flag, list, num, type Proc } from './proc'
import { flushTlbBatchedPending } from './rmap'

export const mremap: Proc = {
  /** mmap_write_lock_killable; vma_lookup; mremap_to; move_vma. */
  start: {
    guard: (c) => (c.mmapWritable(c.mmIndex) ? null : 'mmap_lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      c.mmapWriteLock(mm)
      const vma = c.vma(mm, page)
      if (vma === null) {
        c.emit('op', 'mremap', `-EFAULT: no VMA at ${c.pageName(page)}`)
        c.mmapWriteUnlock(mm)
        c.ret()
        return
      }
      const to = num(f, 'to')
      if (c.vma(mm, to) !== null) {
        // mremap_to(): `if (flags & MREMAP_FIXED) { ret = do_munmap(mm, new_addr, new_len, ...) }`
        c.emit('info', 'mremap_to', `MREMAP_FIXED: do_munmap of the VMA at ${c.pageName(to)}`)
        f.l.tgt = true
        c.call('munmap', { req: [to], held: true }, 'copy')
        return
      }
      c.goto('copy')
    },
  },
  /**
   * copy_vma() -> vma_link(): a file VMA is linked into the i_mmap tree under
   * i_mmap_lock_write, which waits for a walk holding it for read (truncate's
   * unmap_mapping_range, an rmap walk) with mmap_lock held for write.
   */
  copy: {
    guard: (c, f) =>
      c.isFile(num(f, 'page')) && !c.imapWritable(0)
        ? 'copy_vma -> vma_link: i_mmap_lock_write: i_mmap_rwsem held for read'
        : null,
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const to = num(f, 'to')
      const vma = c.vma(mm, page)!
      c.setVma(mm, to, vma)
      // vma_link() -> __vma_link_file(): the new file VMA joins the i_mmap tree (the target's
      // old VMA, if any, left it in do_munmap's unlink_file_vma).
      if (c.isFile(page)) c.imapLink(mm, to)
      c.emit('info', 'copy_vma', `new VMA at ${c.pageName(to)} (${vma}); need_rmap_locks = false`)
      c.goto('rs')
    },
  },
  /** move_page_tables(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_UNMAP) over the old range. */
  rs: {
    run: (c, f) => {
      c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_UNMAP')
      c.goto('lock')
    },
  },
  /**
   * move_ptes(): pte_offset_map_lock() of the old PTE table; in the same table new_ptl ==
   * old_ptl and flush_tlb_batched_pending() follows, else the new table's PTL comes next.
   */
  lock: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      if (c.sameTable(page, num(f, 'to'))) {
        c.lockPtl(mm, page, 'move_ptes: pte_offset_map_lock (old); new_ptl == old_ptl')
        locked(c, f)
        return
      }
      c.lockPtl(mm, page, 'move_ptes: pte_offset_map_lock (old)')
      c.goto('lock_new')
    },
  },
  /** `if (new_ptl != old_ptl) spin_lock_nested(new_ptl, SINGLE_DEPTH_NESTING)`, holding the old PTL. */
  lock_new: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'to')) ? null : 'page-table lock held (new_ptl)'),
    run: (c, f) => {
      c.lockPtl(c.mmIndex, num(f, 'to'), 'move_ptes: spin_lock_nested (new_ptl, SINGLE_DEPTH_NESTING)')
      locked(c, f)
    },
  },
  move: { run: (c, f) => movePte(c, f) },
  /** The flush under the PTLs (eb66ae030829), or (before it) for a dirty PTE only. */
  flush: {
    run: (c, f) => {
      const mm = c.mmIndex
      c.flushTlb(mm, 'range', [num(f, 'page')], 'flush_tlb_range (move_ptes, before the PTL is dropped)')
      afterNotifier(c, f, 'unlock', unlock)
    },
  },
  unlock: { run: (c, f) => unlock(c, f) },
  /** Before eb66ae030829: move_page_tables()'s `if (need_flush) flush_tlb_range()` after the unlock. */
  late_flush: {
    run: (c, f) => {
      c.flushTlb(
        c.mmIndex,
        'range',
        [num(f, 'page')],
        'flush_tlb_range (move_page_tables, after the PTL: need_flush)',
      )
      afterNotifier(c, f, 're', (cc) => cc.goto('re'))
    },
  },
  /** mmu_notifier_invalidate_range_end() over the old range. */
  re: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      afterNotifier(c, f, 'unmap_old', (cc) => cc.goto('unmap_old'))
    },
  },
  /**
   * move_vma() -> do_vmi_munmap() of the old range: the VMA is detached (unlinked from the
   * file's i_mmap tree); unmap_region()'s range_start/end find no PTE and nothing to flush or
   * free (the PTE page still maps the new address). mmap_write_unlock, return the new address.
   */
  unmap_old: {
    // unlink_file_vma() takes i_mmap_lock_write: it waits for an rmap or i_mmap walk's reader.
    guard: (c, f) =>
      c.imapLinked(c.mmIndex, num(f, 'page')) && !c.imapWritable(0) ? 'i_mmap_rwsem held for read' : null,
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      c.setVma(mm, page, null)
      if (c.imapLinked(mm, page)) c.imapUnlink(mm, page)
      c.emit('info', 'do_vmi_munmap', `the old VMA at ${c.pageName(page)} is unmapped (no PTE left in it)`)
      c.rangeStart(mm, [page], 'MMU_NOTIFY_UNMAP')
      afterNotifier(c, f, 'unmap_old_end', (cc) => cc.goto('unmap_old_end'))
    },
  },
  unmap_old_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      afterNotifier(c, f, 'old_end_done', oldEndDone)
    },
  },
  old_end_done: { run: (c, f) => oldEndDone(c, f) },
  old_pgtables: { run: (c, f) => oldPgtables(c, f) },
  old_free: { run: (c, f) => oldFree(c, f) },
  done: { run: (c, f) => done(c, f) },
}

/** Both PTLs held: flush_tlb_batched_pending(), then the move. */
function locked(c: Ctx, f: CallFrame): void {
  if (flushTlbBatchedPending(c, c.mmIndex, 'move_ptes')) afterNotifier(c, f, 'move', movePte)
  else movePte(c, f)
}

/**
 * After unmap_vmas()' range_end: free_pgtables() comes next, a step of its own (a walker can
 * still read the PMD in between), when it has a table to free; else mremap returns.
 */
function oldEndDone(c: Ctx, f: CallFrame): void {
  if (c.pgtablesToFree(c.mmIndex, [num(f, 'page')]).length > 0) c.goto('old_pgtables')
  else done(c, f)
}

/**
 * unmap_region()'s free_pgtables() for the old range: the old address's PTE table is
 * unlinked when no VMA is left over its PMD range (pte_free_tlb: freed_tables, the PMD's first
 * address in the gather); tlb_finish_mmu() flushes that (x86 flush_tlb_mm_range with
 * freed_tables and the v6.6 arch hook; v4.15 ->invalidate_range from tlb_flush_mmu_tlbonly).
 */
function oldPgtables(c: Ctx, f: CallFrame): void {
  const mm = c.mmIndex
  const freed = c.freePgtables(mm, [num(f, 'page')])
  f.l.ft = freed
  const range = freed.map((k) => tablePages(c.sc, k)[0]!)
  c.flushTlb(mm, 'range', range, 'tlb_flush (tlb_finish_mmu)')
  c.invalidateRange(mm, range, 'tlb_flush_mmu_tlbonly')
  afterNotifier(c, f, 'old_free', oldFree)
}

/** tlb_finish_mmu()'s tlb_table_flush(): the unlinked table is freed, after the flush. */
function oldFree(c: Ctx, f: CallFrame): void {
  c.freeDetachedTable(c.mmIndex, list(f, 'ft'))
  done(c, f)
}

/** The loop of move_ptes() for the one PTE: ptep_get_and_clear, move_pte, set_pte_at. */
function movePte(c: Ctx, f: CallFrame): void {
  const mm = c.mmIndex
  const page = num(f, 'page')
  const to = num(f, 'to')
  const pte = c.pte(mm, page)
  if (pte === null) {
    c.emit('info', 'move_ptes', `${c.pageName(page)}: pte_none, nothing to move`)
    unlock(c, f)
    return
  }
  c.setPte(mm, page, null, 'move_ptes: ptep_get_and_clear')
  c.setPte(mm, to, pte, 'move_ptes: set_pte_at (new address)')
  f.l.old = encodePte(pte)
  const underPtl = c.sc.kernel.mremapFlushUnderPtl !== false
  // eb66ae030829: `if (pte_present(pte)) force_flush = true;` Before it (5d1904204c99):
  // `if (pte_present(pte) && pte_dirty(pte)) force_flush = true;` and need_flush for the rest.
  f.l.late = pte.present && !underPtl && !pte.dirty
  if (pte.present && (underPtl || pte.dirty)) c.goto('flush')
  else unlock(c, f)
}

/** Drop the new and the old PTL; then the late flush (before the fix) or range_end. */
function unlock(c: Ctx, f: CallFrame): void {
  const page = num(f, 'page')
  const to = num(f, 'to')
  if (!c.sameTable(page, to)) c.unlockPtl(c.mmIndex, to, 'move_ptes: spin_unlock (new_ptl)')
  c.unlockPtl(c.mmIndex, page, 'move_ptes: pte_unmap_unlock')
  if (flag(f, 'late')) c.goto('late_flush')
  else c.goto('re')
}

function done(c: Ctx, f: CallFrame): void {
  const mm = c.mmIndex
  c.mmapWriteUnlock(mm)
  const old = decodePte(f.l.old ?? null)
  // What this call removed is the old address's translation of the PTE it moved; a PTE that a
  // racing zap (truncate) cleared first is that zap's to flush and report.
  // And the target's old translation, if mremap_to's do_munmap removed one (f.l.tgt).
  if (old) c.markRevoked(mm, [num(f, 'page')], true)
  if (flag(f, 'tgt')) c.markRevoked(mm, [num(f, 'to')], true)
  c.emit('op', 'mremap', `returns ${c.pageName(num(f, 'to'))}${old ? ` (pfn ${old.pfn} moved)` : ''}`)
  c.ret()
}
