/**
 * Page migration (NUMA balancing, compaction, move_pages), v6.6 mm/migrate.c
 * migrate_pages_batch() and mm/rmap.c try_to_migrate_one(): unmap to a migration entry,
 * try_to_unmap_flush(), folio_migrate_mapping() (refcount check) and copy, then
 * remove_migration_ptes() installs the new page; the old page is freed at the end.
 *
 * Both rmap walks (try_to_migrate, remove_migration_ptes: rmap_walk_anon over the folio's
 * anon_vma) visit every VMA mapping the folio: with a fork child, a page still shared after
 * fork (a COW page neither side has written) is mapped by the process's VMA and the child's
 * (rmap.ts walkVmas: the parent's first). try_to_migrate_one runs per VMA on that VMA's mm:
 * its own range_start/end (the child's mm has no subscribers), PTL and batched flush. The walk
 * is anon_vma_interval_tree_foreach over the folio's anon_vma (v6.6 rmap_walk_anon): the
 * process's anon_vma holds the process's VMA and, after fork, the child's (anon_vma_clone);
 * a folio the child allocated (PFrame.avc) hangs off the child's own anon_vma, which holds
 * only the child's VMA. Each VMA visited gets its range_start before page_vma_mapped_walk
 * looks at the PTE (try_to_migrate_one), so a VMA that no longer maps the folio (the parent
 * wrote after fork and COW-copied: the old folio is mapped by the child alone) still gets a
 * range_start/end pair on its mm, with that mm's subscribers; its map_pte() takes the PTL only
 * for a present PTE (a different pfn: check_pte fails, unlock), none for a none or non-present
 * one. The walk stops once the folio is unmapped (rwc.done = folio_not_mapped). A VMA is taken
 * to be in the tree while it exists or its PTE still maps the folio (munmap's
 * unlink_anon_vmas comes at free_pgtables, after the zap). A migration entry that fork copied
 * into the child (copy_nonpresent_pte: made read-only for a COW mapping) is replaced like the
 * parent's by remove_migration_ptes.
 *
 * The op's migrate_mode (`migrate P [async|sync_light|sync]`, the `mode` local as an index of
 * MIGRATE_MODES): migrate_pages() runs migrate_pages_batch(MIGRATE_ASYNC) for async, and for
 * the sync modes migrate_pages_sync(), which also tries migrate_pages_batch(..., MIGRATE_ASYNC,
 * ...) first ("Try to migrate in batch with MIGRATE_ASYNC mode firstly", 2ef7dbb26990, v6.3)
 * and retries the folios that failed one by one in the caller's mode. try_to_migrate(src,
 * mode == MIGRATE_ASYNC ? TTU_BATCH_FLUSH : 0): so the first pass always batches the flush, and
 * only a sync retry clears with ptep_clear_flush() (no batch, nothing left pending). The model
 * fails a pass where the kernel's folio_migrate_mapping() does: the source has references
 * besides the migration's own (-EAGAIN); migrate_folio_undo_src() restores the PTE
 * (remove_migration_ptes(src, src)). An async pass is not repeated (the kernel repeats it up to
 * NR_MAX_MIGRATE_ASYNC_RETRY times with the same outcome while the reference is held); a sync
 * mode then runs one sync pass.
 *
 * LRU isolation and the folio locks (v6.6 migrate_folio_unmap / migrate_folio_move): the
 * caller isolated the source (folio_isolate_lru; a folio another thread isolated fails: -EBUSY,
 * as add_page_for_migration returns); migrate_folio_unmap() takes its lock with
 * folio_trylock(), and when that fails MIGRATE_ASYNC gives up (-EAGAIN) while the sync modes'
 * retry (migrate_pages_sync, one folio) waits in folio_lock(). The destination is locked
 * (folio_trylock(dst) on a new folio) until remove_migration_ptes() has mapped it in every
 * VMA (`out_unlock_both`), so a reclaim meanwhile fails its folio_trylock; the source stays
 * isolated across a retry and is freed off the LRU, or put back (putback_movable_pages).
 *
 * Batched flush: x86 arch_tlbbatch_add_pending() calls the arch hook with (0, -1) for every
 * page added and defers the CPU flush to arch_tlbbatch_flush(); arm64 issues the per-page
 * TLBI (and hook) at add time. v4.15 used ptep_clear_flush() there without a notify ("it will
 * synchronize against the special swap migration pte"): ->invalidate_range came at range_end,
 * still before the copy (reference 3.8).
 */
import type { Ctx } from '../ctx'
import type { CallFrame, Pte } from '../state'
import { MIGRATE_MODES } from '../types'
import { afterNotifier, flag, num, type PcHandler, type Proc } from './proc'
import { finalizeAndMap } from './hmm'
import {
  anonWalkGuard,
  anonWalkLock,
  anonWalkNext,
  anonWalkUnlock,
  installEntry,
  scenarioHasChild,
  isolateMappedFolio,
  rmapRangeStart,
  rmapUnmap,
  swapCacheRefs,
  tryToUnmapFlush,
  unlockIfHeld,
  selectWalkVma,
  walkVmas,
} from './rmap'

/** The held-lock labels of a migration's source and destination folios. */
const srcLabel = (c: Ctx, f: CallFrame): string => c.pageName(num(f, 'page'))
const dstLabel = (c: Ctx, f: CallFrame): string => `${c.pageName(num(f, 'page'))} new`

/**
 * A migration that does not go ahead: the destination unlocked and freed, the source unlocked
 * (if this thread locked it), put back on the LRU if this thread isolated it (local `lru`), and
 * the reference dropped.
 */
function giveUp(c: Ctx, f: CallFrame, dst: string, src: string): void {
  const pfn = num(f, 'pfn')
  unlockIfHeld(c, num(f, 'new'), dstLabel(c, f))
  c.putFrame(num(f, 'new'), dst)
  unlockIfHeld(c, pfn, srcLabel(c, f))
  if (flag(f, 'lru')) c.putbackLru(pfn)
  c.putFrame(pfn, src)
}

/**
 * remove_migration_pte() of remove_migration_ptes(src, src) on the walk's current VMA (c.mmIndex):
 * under its PTL, a migration entry for the source becomes the source again (with the PTE's
 * reference and mapcount). Shared by the failed migration's undo and migrate_vma's restore.
 */
function sourceBack(c: Ctx, f: CallFrame, why: string): { page: number; pfn: number } {
  const mm = c.mmIndex
  const page = num(f, 'page')
  const pfn = num(f, 'pfn')
  c.lockPtl(mm, page, `remove_migration_pte (${why})`)
  const pte = c.pte(mm, page)
  if (pte?.mig && pte.pfn === pfn) {
    c.getFrame(pfn)
    c.folioW(pfn).map++
    c.setPte(
      mm,
      page,
      { pfn, present: true, write: pte.write, dirty: pte.dirty },
      'set_pte_at (remove_migration_pte: the source back)',
    )
  }
  c.unlockPtl(mm, page)
  return { page, pfn }
}

/** try_to_migrate()'s walk (rmap.ts anonWalkNext). */
const unmapWalk = anonWalkNext

/**
 * remove_migration_ptes()' walk: from VMA `from` on, the first whose PTE is a migration entry
 * for the folio (locals `vi`, `mm`); returns whether there is one (else `mm` is dropped). A
 * migrate_vma frame (no `vi`: one VMA, its thread's mm) has no other.
 */
function migEntryWalk(c: Ctx, f: CallFrame, from: number): boolean {
  if (f.l.vi === undefined) return false
  const ms = walkVmas(c.sc, num(f, 'page'))
  const pfn = num(f, 'pfn')
  let vi = from
  while (vi < ms.length) {
    const pte = c.pte(ms[vi]!.mm, ms[vi]!.page)
    if (pte?.mig && pte.pfn === pfn) break
    vi++
  }
  return selectWalkVma(c, f, vi, ms.length)
}

/** make_writable_migration_entry() / make_readable_migration_entry(): the pfn, write and dirty kept. */
function migrationEntry(pte: Pte): Pte {
  return { pfn: pte.pfn, present: false, write: pte.write, dirty: pte.dirty, mig: true }
}

export const migrate: Proc = {
  /**
   * migrate_folio_unmap(): isolate and lock the folio mapped at the page in the thread's mm (a
   * reference), allocate the destination; try_to_migrate() walks the VMAs mapping it.
   */
  start: {
    run: (c, f) => {
      // The caller's folio_isolate_lru() (the first pass; a retry keeps the isolation).
      if (!flag(f, 'lru')) {
        const busy = 'folio_isolate_lru fails (another thread isolated the folio): -EBUSY, not migrated'
        if (isolateMappedFolio(c, f, 'migrate_pages', 'migrate', busy) === null) return
        f.l.lru = true
      }
      f.l.new = c.allocFrame(0, 'get_new_folio (destination)')
      c.goto('lock')
    },
  },
  /**
   * migrate_folio_unmap(): `if (!folio_trylock(src)) { if (mode == MIGRATE_ASYNC) goto out; ...
   * folio_lock(src); }`: the MIGRATE_ASYNC pass gives up (-EAGAIN), the sync retry (`ttu_sync`)
   * waits; then folio_trylock(dst) on the new folio; try_to_migrate() walks the VMAs.
   */
  lock: {
    guard: (c, f) => (!flag(f, 'ttu_sync') || c.anonLockFree(num(f, 'pfn')) ? null : 'folio locked'),
    run: (c, f) => {
      const pfn = num(f, 'pfn')
      const page = c.pageName(num(f, 'page'))
      if (flag(f, 'ttu_sync')) c.anonLock(pfn, page, 'migrate_folio_unmap: folio_lock')
      else if (!c.anonTrylock(pfn, page, 'migrate_folio_unmap: folio_trylock')) {
        const mode = MIGRATE_MODES[num(f, 'mode')]!
        if (mode === 'async') {
          giveUp(c, f, 'migrate_folio_undo_dst', 'putback_movable_pages')
          c.emit('op', 'migrate', `${page}: folio locked: -EAGAIN, not migrated`)
          c.ret()
          return
        }
        c.emit(
          'info',
          'migrate_pages_sync',
          `retry ${page} in MIGRATE_${mode.toUpperCase()}: folio_lock waits, try_to_migrate(src, 0)`,
        )
        c.putFrame(num(f, 'new'), 'migrate_folio_undo_dst')
        f.l.ttu_sync = true
        c.goto('start')
        return
      }
      c.anonLock(num(f, 'new'), dstLabel(c, f), 'migrate_folio_unmap: folio_trylock(dst)')
      unmapWalk(c, f, 0, 'rs', 'flush')
    },
  },
  /** try_to_migrate_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR). */
  rs: rmapRangeStart,
  ...rmapUnmap(migrationEntry, 'set_pte_at (migration entry)', false),
  /** range_end (v4.15: ->invalidate_range here, before the copy); then the walk's next VMA. */
  rs_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      unmapWalk(c, f, num(f, 'vi') + 1, 'rs', 'flush')
    },
  },
  /** try_to_unmap_flush() before the copy: x86 arch_tlbbatch_flush() (IPIs, no hook); arm64 a DSB. */
  flush: {
    run: (c, f) => {
      anonWalkUnlock(c, f)
      tryToUnmapFlush(c, f, 'page', [num(f, 'page')], 'arch_tlbbatch_flush')
      if (!flag(f, 'mapped')) {
        c.emit('info', 'migrate_pages', 'the page was unmapped meanwhile: nothing to migrate')
        giveUp(c, f, 'migrate_folio_undo_dst', 'migrate_folio_undo_src')
        c.ret()
        return
      }
      c.goto('copy')
    },
  },
  /**
   * move_to_new_folio() -> migrate_folio(): folio_migrate_mapping() first checks the refcount
   * (`folio_ref_count(folio) != expected_count`: -EAGAIN; an anon folio expects only the
   * migration's own reference once its PTEs are migration entries), then folio_migrate_copy().
   */
  copy: {
    run: (c, f) => {
      const cacheRefs = swapCacheRefs(c, num(f, 'pfn'))
      if (f.l.mode !== undefined && c.folio(num(f, 'pfn')).ref !== 1 + cacheRefs) {
        c.emit(
          'info',
          'folio_migrate_mapping',
          `pfn ${num(f, 'pfn')} has references besides the migration's (refcount ${c.folio(num(f, 'pfn')).ref}): -EAGAIN`,
        )
        if (!migEntryWalk(c, f, 0)) f.l.vi = 0
        c.goto('undo')
        return
      }
      const src = c.folio(num(f, 'pfn'))
      c.folioW(num(f, 'new')).v = src.v
      // folio_migrate_mapping(): newfolio->mapping = folio->mapping (the same anon_vma).
      if (src.avc === true) c.folioW(num(f, 'new')).avc = true
      f.l.w = src.w
      if (cacheRefs > 0) {
        // folio_migrate_mapping() of a swapcache folio: the new folio takes the old one's place
        // in the swap cache, with the cache's reference (folio_ref_add(newfolio, nr)).
        const slot = c.swapSlotOf(num(f, 'pfn'))
        c.swapCacheAdd(slot, num(f, 'new'), true)
        c.putFrame(num(f, 'pfn'))
        c.emit(
          'frame',
          'folio_migrate_mapping',
          `swap slot ${slot}: the swap cache moves to pfn ${num(f, 'new')}`,
        )
      }
      c.emit('frame', 'folio_migrate_copy', `pfn ${num(f, 'pfn')} -> pfn ${num(f, 'new')}`)
      // remove_migration_ptes(src, dst): the walk starts at the first VMA with an entry (the
      // process's, if every one was zapped meanwhile: its step reports the entry gone).
      if (f.l.vi !== undefined && !migEntryWalk(c, f, 0)) f.l.vi = 0
      c.goto('remove')
    },
  },
  /**
   * remove_migration_ptes() -> remove_migration_pte() per VMA of the walk (its mm's PTL): the
   * new page replaces the migration entry, each PTE taking a reference (folio_get); the
   * destination's allocation reference stays the migration's until 'end'.
   */
  remove: {
    guard: (c, f) =>
      anonWalkGuard(c, f) ?? (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const pfn = num(f, 'pfn')
      const dst = num(f, 'new')
      // remove_migration_ptes() -> rmap_walk(): anon_vma_lock_read for the whole walk.
      anonWalkLock(c, f)
      c.lockPtl(mm, page, 'remove_migration_pte')
      const pte = c.pte(mm, page)
      if (pte?.mig && pte.pfn === pfn) {
        const src = c.folioW(pfn)
        if (src.w !== num(f, 'w') && !flag(f, 'installed')) {
          c.violate(
            'lost-write',
            `pfn ${pfn} was written after folio_migrate_copy copied it; ${c.pageName(page)} now maps pfn ${dst} without that write`,
          )
        }
        src.sup = true
        // remove_migration_pte(): folio_get(folio) for the PTE. The migration keeps the
        // destination's allocation reference (and its lock) until migrate_folio_done, so a
        // write fault on a PTE already switched cannot reuse the page while other PTEs of the
        // walk (a fork child's) are still migration entries: do_wp_page copies.
        c.getFrame(dst)
        const d = c.folioW(dst)
        d.map++
        c.setPte(
          mm,
          page,
          { pfn: dst, present: true, write: pte.write, dirty: pte.dirty },
          'set_pte_at (remove_migration_pte)',
        )
        // With a fork child the walk may install more than one PTE: say whose mapcount grew.
        if (f.l.vi !== undefined && walkVmas(c.sc, page).length > 1)
          c.emit('frame', 'page_add_anon_rmap', `pfn ${dst} mapcount ${d.map}`)
        f.l.installed = true
      } else c.emit('info', 'remove_migration_pte', 'the migration entry is gone (zapped meanwhile)')
      c.unlockPtl(mm, page)
      c.goto(migEntryWalk(c, f, num(f, 'vi') + 1) ? 'remove' : 'end')
    },
  },
  /**
   * migrate_folio_undo_src(): remove_migration_ptes(src, src) puts the source back in the PTE
   * (with the PTE's reference); migrate_folio_undo_dst() frees the destination. A sync mode
   * then retries the folio in its own mode (migrate_pages_sync: try_to_migrate(src, 0), so
   * ptep_clear_flush); async (and a failed sync pass) puts it back (migrate_pages returns it).
   */
  undo: {
    guard: (c, f) =>
      anonWalkGuard(c, f) ?? (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      anonWalkLock(c, f)
      const { page, pfn } = sourceBack(c, f, 'undo')
      // remove_migration_ptes(src, src) goes on to the walk's next VMA with an entry.
      if (migEntryWalk(c, f, num(f, 'vi') + 1)) {
        c.goto('undo')
        return
      }
      anonWalkUnlock(c, f)
      c.anonUnlock(num(f, 'new'), dstLabel(c, f), 'migrate_folio_undo_dst: folio_unlock')
      c.putFrame(num(f, 'new'), 'migrate_folio_undo_dst')
      c.anonUnlock(pfn, srcLabel(c, f), 'migrate_folio_undo_src: folio_unlock')
      const mode = MIGRATE_MODES[num(f, 'mode')]!
      if (mode !== 'async' && !flag(f, 'ttu_sync')) {
        c.emit(
          'info',
          'migrate_pages_sync',
          `retry ${c.pageName(page)} in MIGRATE_${mode.toUpperCase()}: try_to_migrate(src, 0)`,
        )
        // The source stays isolated (and referenced) on the retry list.
        delete f.l.mapped
        f.l.ttu_sync = true
        c.goto('start')
        return
      }
      c.putbackLru(pfn)
      c.putFrame(pfn, 'migrate_folio_undo_src (putback)')
      c.emit('op', 'migrate', `${c.pageName(page)}: -EAGAIN, not migrated`)
      c.ret()
    },
  },
  /**
   * out_unlock_both: folio_unlock(dst) (folio_add_lru put it on the LRU before
   * remove_migration_ptes), folio_unlock(src); the source page's last reference goes: it is
   * freed, off the LRU.
   */
  end: {
    run: (c, f) => {
      const pfn = num(f, 'pfn')
      anonWalkUnlock(c, f)
      c.anonUnlock(num(f, 'new'), dstLabel(c, f), 'migrate_folio_move: folio_unlock(dst)')
      c.anonUnlock(pfn, srcLabel(c, f), 'migrate_folio_move: folio_unlock(src)')
      c.lruFreed(pfn)
      c.putFrame(pfn, 'migrate_folio_done (free the source)')
      c.putFrame(
        num(f, 'new'),
        flag(f, 'installed')
          ? "folio_put (the migration's reference on the destination)"
          : 'folio_put (unused destination)',
      )
      c.emit('op', 'migrate', `${c.pageName(num(f, 'page'))}: pfn ${num(f, 'pfn')} -> pfn ${num(f, 'new')}`)
      c.ret()
    },
  },
}

/**
 * Device migration (HMM), v6.6 mm/migrate_device.c: migrate_vma_setup() ->
 * migrate_vma_collect(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_MIGRATE), then
 * migrate_vma_collect_pmd() under the PTL clears each PTE (ptep_get_and_clear), installs a
 * migration entry, drops the rmap and the PTE's reference, and flushes with
 * flush_tlb_range() before pte_unmap_unlock() (60bae7370896, Popple 2022). Before that fix
 * the flush came after the unlock: a concurrent MADV_DONTNEED found only a migration entry,
 * flushed nothing, and returned while the stale translation was still cached (reference 5.9,
 * row 16; `kernel: { migrate_vma_flush_under_ptl: false }`). Then range_end, the driver's
 * copy (migrate_vma_pages), and migrate_vma_finalize() frees the source. The destination is
 * modelled as a system page (the collect phase is what the race is about; a device-private
 * destination would make every later CPU access fault and migrate back).
 */
const collect: PcHandler = {
  guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
  run: (c, f) => {
    const mm = c.mmIndex
    const page = num(f, 'page')
    c.lockPtl(mm, page, 'migrate_vma_collect_pmd')
    const pte = c.pte(mm, page)
    if (!pte || !pte.present || pte.pfn !== num(f, 'pfn')) {
      c.unlockPtl(mm, page)
      f.l.mapped = false
      c.goto('rs_end')
      return
    }
    // `if (trylock_page(page))` set up the migration entry; else put_page, mpfn = 0: skipped.
    if (!c.anonTrylock(pte.pfn, c.pageName(page), 'migrate_vma_collect_pmd: trylock_page')) {
      c.unlockPtl(mm, page)
      f.l.mapped = false
      c.goto('rs_end')
      return
    }
    c.setPte(mm, page, null, 'ptep_get_and_clear')
    installEntry(c, mm, page, pte, migrationEntry(pte), 'set_pte_at (migration entry)')
    f.l.mapped = true
    if (c.sc.kernel.migrateVmaFlushUnderPtl) {
      c.flushTlb(mm, 'range', [page], 'flush_tlb_range (migrate_vma_collect_pmd, under the PTL)')
      afterNotifier(c, f, 'collect_unlock', collectUnlock)
      return
    }
    c.unlockPtl(mm, page)
    c.goto('late_flush')
  },
}

/** pte_unmap_unlock() after the flush under the PTL. */
function collectUnlock(c: Ctx, f: CallFrame): void {
  c.unlockPtl(c.mmIndex, num(f, 'page'))
  c.goto('rs_end')
}

/**
 * After migrate_vma_collect()'s range_end: copy, or undo if the page went away meanwhile. With
 * a fork child, migrate_vma_unmap() -> migrate_device_unmap() (v6.6 mm/migrate_device.c):
 * `if (folio_mapped(folio)) try_to_migrate(folio, 0)` unmaps the mappings collect did not
 * see (the other process's: rmap_walk_anon, each VMA on its own mm with its own range_start/end
 * MMU_NOTIFY_CLEAR, and, with no TTU_BATCH_FLUSH, ptep_clear_flush under its PTL); and
 * migrate_vma_finalize()'s remove_migration_ptes() walks every VMA (local `vi` set).
 */
function collected(c: Ctx, f: CallFrame): void {
  if (!flag(f, 'mapped')) {
    c.emit(
      'info',
      'migrate_vma_setup',
      'the page was unmapped (or its folio locked) meanwhile: nothing to migrate',
    )
    giveUp(c, f, 'migrate_vma_finalize (unused destination)', 'migrate_vma_finalize (source)')
    c.ret()
    return
  }
  if (scenarioHasChild(c.sc)) f.l.vi = 0
  // migrate_device_unmap(): `if (!folio_isolate_lru(folio))` the page is restored, not migrated.
  if (!c.isolateLru(num(f, 'pfn'), 'migrate_device_unmap: folio_isolate_lru')) {
    c.emit(
      'info',
      'migrate_device_unmap',
      `pfn ${num(f, 'pfn')} is isolated by another thread: restore it, not migrated`,
    )
    if (!migEntryWalk(c, f, 0)) f.l.vi = 0
    c.goto('restore')
    return
  }
  f.l.lru = true
  if (scenarioHasChild(c.sc)) {
    if (stillPmdMapped(c, f)) return
    if (c.folio(num(f, 'pfn')).map > 0) {
      c.emit(
        'info',
        'migrate_device_unmap',
        `pfn ${num(f, 'pfn')} is still mapped (mapcount ${c.folio(num(f, 'pfn')).map}): try_to_migrate(folio, 0)`,
      )
      f.l.ttu_sync = true
      anonWalkNext(c, f, 0, 'tm_rs', 'tm_done')
      return
    }
  }
  c.goto('copy')
}

/**
 * A subpage of a huge page that a fork child's (or the process's) huge PMD still maps: the
 * folio is large. v6.6 migrate_device_unmap() runs try_to_migrate() on the whole folio (the
 * other mm's PMD becomes a PMD migration entry) and then migrate_vma_check_page() refuses it
 * (`if (PageCompound(page)) return false`: "FIXME support THP"), so remove_migration_ptes()
 * restores every mapping and the page is not migrated. The model restores the collected PTE
 * and leaves the other mm's huge PMD as it is (the round trip there maps the same pages again,
 * only adding that mm's invalidations). Returns whether it took this path.
 */
function stillPmdMapped(c: Ctx, f: CallFrame): boolean {
  const page = num(f, 'page')
  const hp = c.hugeOf(page)
  const pfn = num(f, 'pfn')
  if (
    hp === null ||
    !walkVmas(c.sc, page).some((v) => c.pte(v.mm, page)?.huge === true && c.pte(v.mm, page)!.pfn === pfn)
  )
    return false
  c.emit(
    'info',
    'migrate_vma_check_page',
    `pfn ${pfn} is a subpage of ${hp.name}, still PMD-mapped in the other mm: PageCompound, not migrated`,
  )
  if (!migEntryWalk(c, f, 0)) f.l.vi = 0
  c.goto('restore')
  return true
}

/**
 * migrate_device_unmap() after try_to_migrate(): `if (folio_mapped(folio) || ...)` the page is
 * restored (remove_migration_ptes(folio, folio): the source back in every migration entry) and
 * not migrated; else the driver copies.
 */
function tmDone(c: Ctx, f: CallFrame): void {
  anonWalkUnlock(c, f)
  delete f.l.ttu_sync
  if (c.folio(num(f, 'pfn')).map > 0) {
    c.emit('info', 'migrate_device_unmap', `pfn ${num(f, 'pfn')} is still mapped: restore it, not migrated`)
    if (!migEntryWalk(c, f, 0)) f.l.vi = 0
    c.goto('restore')
    return
  }
  c.goto('copy')
}

export const migrateVma: Proc = {
  /** migrate_vma_setup(): the driver's destination page; the source is isolated by the walk. */
  start: {
    run: (c, f) => {
      if (isolateMappedFolio(c, f, 'migrate_vma_setup', 'migrate') === null) return
      f.l.new = c.allocFrame(0, "alloc_page (the driver's destination)")
      // The driver locks its destination (lib/test_hmm.c: lock_page(dpage)); migrate_vma_finalize unlocks it.
      c.anonLock(num(f, 'new'), dstLabel(c, f), "lock_page (the driver's destination)")
      c.goto('rs')
    },
  },
  /** migrate_vma_collect(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_MIGRATE). */
  rs: {
    run: (c, f) => {
      const owner = f.l.owner
      c.rangeStart(
        c.mmIndex,
        [num(f, 'page')],
        'MMU_NOTIFY_MIGRATE',
        typeof owner === 'number' ? owner : undefined,
      )
      // migrate_vma_collect_pmd(): `if (pmd_trans_huge(*pmdp))` pmd_lock, get_page, unlock,
      // trylock_page, split_huge_page (kernel/thpRmap.ts splitHugePage), then the PTEs.
      const pte = c.pte(c.mmIndex, num(f, 'page'))
      if (pte?.huge === true && pte.present) {
        c.goto('collect_huge')
        return
      }
      c.goto('collect')
    },
  },
  /** The huge PMD under pmd_lock: get_page (the walk's own reference is `pfn`'s), spin_unlock; split. */
  collect_huge: {
    guard: (c, f) => (c.pmdLockFree(c.mmIndex, c.hugeOf(num(f, 'page'))!) ? null : 'pmd_lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const hp = c.hugeOf(num(f, 'page'))!
      c.pmdLock(mm, hp, 'migrate_vma_collect_pmd: pmd_lock')
      const pte = c.pte(mm, num(f, 'page'))
      c.pmdUnlock(mm, hp)
      if (!(pte?.huge === true && pte.present)) {
        // `if (unlikely(!pmd_trans_huge(*pmdp))) { spin_unlock(ptl); goto again; }`
        c.goto('collect')
        return
      }
      c.call('split_huge_page', { page: num(f, 'page'), pin: num(f, 'pfn') }, 'collect_split')
    },
  },
  /** split_huge_page() returned: collect the PTE, or migrate_vma_collect_skip (-EAGAIN). */
  collect_split: {
    run: (c, f) => {
      if (f.l.ret === 'fail') {
        c.emit('info', 'migrate_vma_collect_pmd', 'split_huge_page failed: migrate_vma_collect_skip')
        f.l.mapped = false
        c.goto('rs_end')
        return
      }
      c.goto('collect')
    },
  },
  collect,
  /** Before 60bae7370896: `if (unmapped) flush_tlb_range()` after pte_unmap_unlock(). */
  late_flush: {
    run: (c, f) => {
      c.flushTlb(
        c.mmIndex,
        'range',
        [num(f, 'page')],
        'flush_tlb_range (migrate_vma_collect_pmd, after the unlock)',
      )
      c.goto('rs_end')
    },
  },
  collect_unlock: { run: (c, f) => collectUnlock(c, f) },
  rs_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      afterNotifier(c, f, 'collected', collected)
    },
  },
  collected: { run: (c, f) => collected(c, f) },
  /** try_to_migrate_one() on the next VMA: range_start(MMU_NOTIFY_CLEAR) on its mm. */
  tm_rs: {
    guard: anonWalkGuard,
    run: (c, f) => {
      anonWalkLock(c, f)
      c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_CLEAR')
      c.goto('tm_unmap')
    },
  },
  ...(({ unmap, unmap_rest }) => ({ tm_unmap: unmap, tm_unmap_rest: unmap_rest }))(
    rmapUnmap(migrationEntry, 'set_pte_at (migration entry)', false, {
      rest: 'tm_unmap_rest',
      next: 'tm_rs_end',
    }),
  ),
  /** try_to_migrate_one()'s range_end; then rmap_walk_anon's next VMA. */
  tm_rs_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      anonWalkNext(c, f, num(f, 'vi') + 1, 'tm_rs', 'tm_done')
    },
  },
  tm_done: { run: (c, f) => tmDone(c, f) },
  /** remove_migration_ptes(folio, folio) per VMA with an entry: the source back; then put both. */
  restore: {
    guard: (c, f) =>
      anonWalkGuard(c, f) ?? (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      anonWalkLock(c, f)
      const { page } = sourceBack(c, f, 'restore')
      if (migEntryWalk(c, f, num(f, 'vi') + 1)) {
        c.goto('restore')
        return
      }
      anonWalkUnlock(c, f)
      giveUp(c, f, 'migrate_vma_finalize (unused destination)', 'folio_put (restored source)')
      c.emit('op', 'migrate_vma', `${c.pageName(page)}: not migrated`)
      c.ret()
    },
  },
  copy: {
    run: (c, f) => {
      migrate.copy!.run(c, f)
      // `migrate_vma P owner M`: the driver maps the destination before migrate_vma_finalize.
      if (f.l.owner !== undefined) c.goto('finalize_map')
    },
  },
  finalize_map: { run: (c, f) => finalizeAndMap(c, f) },
  remove: migrate.remove!,
  end: migrate.end!,
}
