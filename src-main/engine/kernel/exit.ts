/**
 * The end of an address space, v6.6: the last thread's exit_mmap() (mm/mmap.c) and the OOM
 * reaper's __oom_reap_task_mm() (mm/oom_kill.c).
 *
 * exit_mmap() starts with mmu_notifier_release() (mm/mmu_notifier.c __mmu_notifier_release:
 * each subscriber's ->release under SRCU, then every subscription unhooked), so the zap that
 * follows calls no hlist subscriber: unmap_vmas()' range_start/end and the mmu_gather's flushes
 * find an empty list (under arch-hook too). An mmu_interval_notifier (HMM) is not unhooked:
 * mn_itree_release invalidates it but leaves it in the interval tree, so unmap_vmas()'
 * MMU_NOTIFY_UNMAP range reaches it again (mn_itree_invalidate, whenever has_itree). A device still running across the exit is kept off
 * the freed memory only by its driver's ->release (ctx.ts mmuNotifierRelease; `release: none`
 * models a driver whose release does nothing). Then mmap_read_lock, tlb_gather_mmu_fullmm,
 * unmap_vmas, mmap_read_unlock; set_bit(MMF_OOM_SKIP); mmap_write_lock, free_pgtables,
 * tlb_finish_mmu (the full-mm flush, then the pages and the page table are freed), remove_vma,
 * mmap_write_unlock. v6.6 exit_mmap no longer reaps an OOM victim itself: "mm: drop oom code
 * from exit_mmap" (2022) removed its __oom_reap_task_mm call and the oom_lock dance.
 *
 * __oom_reap_task_mm() zaps the anonymous and private VMAs of an OOM victim from the
 * oom_reaper kthread under mmap_read_trylock, with mmu_notifier_invalidate_range_start_nonblock:
 * a subscriber that cannot proceed without sleeping returns -EAGAIN and the reaper skips that
 * VMA (tlb_finish_mmu on an empty gather; ret = false, it tries again later). VM_PFNMAP and
 * VM_SHARED (file) VMAs are skipped. The reaper holds the mm by mm_count (mmgrab), not
 * mm_users, and skips it only once MMF_OOM_SKIP is set: from the release to the end of
 * unmap_vmas() it runs beside exit_mmap, both under mmap_lock for read. Its range_start_nonblock
 * then reaches no subscriber (released), and the two zaps meet at each table's PTL: whichever
 * clears a PTE first queues and frees its page; the other finds pte_none.
 */
import type { Ctx } from '../ctx'
import type { CallFrame } from '../state'
import { afterNotifier, list, num, type Proc } from './proc'
import {
  gatherFinishFlush,
  gatherFinishFree,
  gatherInit,
  nextRun,
  runPages,
  startRuns,
  unmapNextVma,
} from './unmap'

/** exit(2) of the process's last thread: exit_mmap() (v6.6 mm/mmap.c). */
export const exitMmap: Proc = {
  /** mmu_notifier_release(mm): the drivers' ->release, then no subscriber is left. */
  start: {
    // A KVM vCPU's fault in flight holds mm_users (the vCPU is a thread of the process), and so
    // does an HMM dmirror_fault (mmget_not_zero .. mmput around dmirror_range_fault): the last
    // mmput, and so exit_mmap, comes only after it is done.
    guard: (c) =>
      c.mmUnused(c.mmIndex) ? null : 'mm_users: a mirror fault (vCPU or dmirror_fault) still holds the mm',
    run: (c, f) => {
      c.emit('op', 'exit_mmap', "the mm's last user is gone (mmput -> __mmput -> exit_mmap)")
      c.mmuNotifierRelease(c.mmIndex)
      afterNotifier(c, f, 'unmap', () => c.goto('unmap'))
    },
  },
  /** mmap_read_lock, tlb_gather_mmu_fullmm, unmap_vmas(0, ULONG_MAX). */
  unmap: {
    guard: (c) => (c.mmapReadable(c.mmIndex) ? null : 'mmap_lock held for write'),
    run: (c, f) => {
      const mm = c.mmIndex
      c.mmapReadLock(mm)
      const pages = startRuns(
        c,
        f,
        c.sc.pages.map((_, i) => i).filter((p) => !c.isKernelPage(p)),
      )
      gatherInit(c)
      // tlb_gather_mmu_fullmm(): tlb->fullmm = 1 (tlb_end_vma then does nothing).
      f.l.g_full = true
      if (pages.length === 0) {
        c.emit('info', 'exit_mmap', 'no VMA left')
        c.goto('unmapped')
        return
      }
      f.l.unmap_pages = pages
      if (c.hasRangeSubscribers(mm)) {
        // unmap_vmas(): one MMU_NOTIFY_UNMAP range over every VMA. After mmu_notifier_release
        // only mmu_interval_notifiers hear it (mn_itree_release left them in the tree).
        c.rangeStart(mm, pages, 'MMU_NOTIFY_UNMAP')
      } else
        c.emit(
          'info',
          'unmap_vmas',
          `${c.pagesText(pages)}: mmu_notifier_invalidate_range_start/end find no subscriber (released)`,
        )
      c.call('zap_vma', { pages: runPages(f, 0), i: 0 }, 'next_vma')
    },
  },
  next_vma: {
    run: (c, f) => {
      if (!unmapNextVma(c, f)) c.goto('unmapped')
    },
  },
  /** mmap_read_unlock. */
  unmapped: {
    run: (c, f) => {
      // unmap_vmas()' range_end, for the interval notifiers still in the tree.
      if (f.l.unmap_pages !== undefined && c.hasRangeSubscribers(c.mmIndex))
        c.rangeEnd(c.mmIndex, list(f, 'unmap_pages'), false)
      c.mmapReadUnlock(c.mmIndex)
      c.goto('oom_skip')
    },
  },
  /**
   * set_bit(MMF_OOM_SKIP, &mm->flags), a step after the unlock: a reaper whose
   * mmap_read_trylock comes in between still reaps (and finds every PTE none).
   */
  oom_skip: {
    run: (c) => {
      c.setOomSkip(c.mmIndex)
      c.goto('pgtables')
    },
  },
  /**
   * mmap_write_lock; free_pgtables (unlink_file_vma, the PTE page unlinked and queued);
   * tlb_finish_mmu: the fullmm flush (x86 flush_tlb_mm_range(TLB_FLUSH_ALL); arm64 flush_tlb_mm
   * since freed_tables), then the queued pages and the page table are freed; remove_vma.
   */
  pgtables: {
    // The page table goes through tlb_remove_table() after an RCU grace period, which a GUP-fast
    // walker's IRQs-off section holds off (only THP scenarios model GUP-fast walks).
    guard: (c) =>
      !c.mmapWritable(c.mmIndex)
        ? 'mmap_lock held'
        : !c.imapWritable(c.mmIndex)
          ? 'i_mmap_rwsem held for read'
          : c.gupFastIdle(c.mmIndex)
            ? null
            : 'tlb_remove_table: the RCU grace period waits for a GUP-fast walker (IRQs off)',
    run: (c, f) => {
      const mm = c.mmIndex
      c.mmapWriteLock(mm)
      for (const p of list(f, 'pages')) {
        if (c.imapLinked(mm, p)) {
          c.imapUnlink(mm, p)
          c.emit('info', 'unlink_file_vma', `${c.pageName(p)}: VMA unlinked from the file's i_mmap tree`)
        }
        c.setVma(mm, p, null)
      }
      // free_pgtables(&tlb, &mas, vma, FIRST_USER_ADDRESS, USER_PGTABLES_CEILING): every table.
      const unlinked = c.freePgtables(
        mm,
        c.sc.pages.map((_, i) => i).filter((p) => !c.isKernelPage(p)),
      )
      c.flushTlb(mm, 'mm', [], 'tlb_flush (tlb_finish_mmu, fullmm)')
      c.thread.stack[0]!.l.g_range = []
      c.freeDetachedTable(mm, unlinked)
      gatherFinishFree(c)
      c.emit('info', 'remove_vma', `${c.pagesText(list(f, 'pages'))}: VMAs freed`)
      c.mmapWriteUnlock(mm)
      c.emit('op', 'exit', 'the address space is gone')
      c.ret()
    },
  },
}

/** The oom_reaper kthread: oom_reap_task_mm() -> __oom_reap_task_mm() (v6.6 mm/oom_kill.c). */
export const oomReap: Proc = {
  /**
   * oom_reap_task_mm(): mmap_read_trylock (a failure: try again later); MMF_OOM_SKIP, tested
   * under the read lock (exit_mmap is past unmap_vmas: skip). A release alone does not stop it.
   */
  start: {
    run: (c, f) => {
      const mm = 0
      if (!c.mmapReadable(mm)) {
        c.emit('op', 'oom_reap_task_mm', 'mmap_read_trylock fails: skip_task_reaping, try again later')
        c.ret()
        return
      }
      c.mmapReadLock(mm)
      if (c.mmOomSkip(mm)) {
        c.emit('info', 'oom_reap_task_mm', 'MMF_OOM_SKIP: exit_mmap owns the mm, skip_task_reaping')
        c.mmapReadUnlock(mm)
        c.ret()
        return
      }
      c.setUnstable(mm)
      // for_each_vma: skip VM_HUGETLB|VM_PFNMAP; only vma_is_anonymous || !VM_SHARED.
      const req = c.sc.pages
        .map((pg, i) => (pg.kind === 'anon' ? i : -1))
        .filter((i) => i >= 0 && c.vma(mm, i) !== null)
      const skipped = c.sc.pages.filter(
        (pg, i) => (pg.kind === 'file' || pg.kind === 'pfnmap') && c.vma(mm, i) !== null,
      )
      if (skipped.length > 0)
        c.emit(
          'info',
          '__oom_reap_task_mm',
          `skip ${skipped.map((pg) => `${pg.name} (${pg.kind === 'file' ? 'VM_SHARED' : 'VM_PFNMAP'})`).join(', ')}`,
        )
      const pages = startRuns(c, f, req)
      f.l.ok = true
      if (pages.length === 0) {
        oomDone(c, f)
        return
      }
      c.goto('vma')
    },
  },
  /** tlb_gather_mmu; mmu_notifier_invalidate_range_start_nonblock(MMU_NOTIFY_UNMAP). */
  vma: {
    run: (c, f) => {
      const pages = runPages(f, num(f, 'vi'))
      gatherInit(c)
      if (c.mmReleased(0))
        c.emit(
          'info',
          'mmu_notifier_invalidate_range_start_nonblock',
          `${c.pagesText(pages)}: no subscriber (exit_mmap's mmu_notifier_release unhooked them)`,
        )
      if (!c.rangeStartNonblock(0, pages, 'MMU_NOTIFY_UNMAP')) {
        // tlb_finish_mmu(&tlb); ret = false; continue;
        c.emit('info', '__oom_reap_task_mm', `${c.pagesText(pages)}: -EAGAIN, this VMA is skipped`)
        gatherFinishFree(c)
        f.l.ok = false
        oomNext(c, f)
        return
      }
      afterNotifier(c, f, 'zap', (cc, ff) =>
        cc.call('zap_vma', { pages: runPages(ff, num(ff, 'vi')), i: 0 }, 'vma_end'),
      )
    },
  },
  zap: { run: (c, f) => c.call('zap_vma', { pages: runPages(f, num(f, 'vi')), i: 0 }, 'vma_end') },
  /** unmap_page_range returned: mmu_notifier_invalidate_range_end. */
  vma_end: {
    run: (c, f) => {
      c.rangeEnd(0, runPages(f, num(f, 'vi')), false)
      afterNotifier(c, f, 'vma_finish', (cc) => cc.goto('vma_finish'))
    },
  },
  /** tlb_finish_mmu: flush what the gather recorded, free the pages. */
  vma_finish: {
    run: (c, f) => {
      gatherFinishFlush(c, runPages(f, num(f, 'vi')))
      afterNotifier(c, f, 'vma_free', vmaFree)
    },
  },
  vma_free: { run: (c, f) => vmaFree(c, f) },
}

function vmaFree(c: Ctx, f: CallFrame): void {
  gatherFinishFree(c)
  oomNext(c, f)
}

function oomNext(c: Ctx, f: CallFrame): void {
  if (nextRun(f)) {
    c.goto('vma')
    return
  }
  oomDone(c, f)
}

function oomDone(c: Ctx, f: CallFrame): void {
  c.mmapReadUnlock(0)
  c.emit(
    'op',
    'oom_reap_task_mm',
    f.l.ok === true ? 'reaped' : 'failed to reap part of the address space: try again later',
  )
  c.ret()
}
