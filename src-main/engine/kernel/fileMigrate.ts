/**
 * Migration of a file page's page-cache folio, v6.6 mm/migrate.c migrate_pages() ->
 * migrate_pages_batch() (its first pass, MIGRATE_ASYNC, which every mode runs first since
 * 2ef7dbb26990): migrate_folio_unmap() -> try_to_migrate(src, TTU_BATCH_FLUSH) over the file's
 * rmap (every address of the offset, in the process and in a fork child: rmap.ts walkVmas;
 * mm/rmap.c try_to_migrate_one per mapping, on its mm: range_start
 * MMU_NOTIFY_CLEAR, the PTL, ptep_get_and_clear with the flush batched, a dirty PTE's bit to
 * the folio, a migration entry, page_remove_rmap, folio_put; range_end), try_to_unmap_flush(),
 * then move_to_new_folio() -> filemap_migrate_folio() -> folio_migrate_mapping() (the page
 * cache slot now holds the new folio, if the refcount is only the page cache's and the
 * isolation's: otherwise -EAGAIN and remove_migration_ptes(src, src) puts the old one back),
 * folio_migrate_copy(), remove_migration_ptes(src, dst), and the old folio is freed. The sync
 * modes' one-by-one retry of a failed folio is not modelled for file pages. Faults on a
 * migration entry wait (fault.ts mig_wait).
 */
import type { Ctx } from '../ctx'
import type { CallFrame } from '../state'
import { list, num, type Proc } from './proc'
import { fileRmapWalk, fileWalkLock, fileWalkUnlock, tryToUnmapFlush, walkVmas } from './rmap'

export const fileMigrate: Proc = {
  /** isolate the folio (a reference), folio_trylock (MIGRATE_ASYNC: no waiting). */
  start: {
    run: (c, f) => {
      const page = num(f, 'page')
      const pfn = c.file(page).pfn
      if (pfn < 0 || !c.folioLockFree(page)) {
        c.emit(
          'info',
          'migrate_folio_unmap',
          `${c.pageName(page)}: ${pfn < 0 ? 'not in the page cache' : 'folio_trylock fails: -EAGAIN'}`,
        )
        c.ret()
        return
      }
      c.getFrame(pfn)
      f.l.pfn = pfn
      f.l.migs = []
      c.folioLock(page, 'migrate_folio_unmap: folio_trylock')
      f.l.vi = 0
      // try_to_unmap()/try_to_migrate() only if folio_mapped(): rmap_walk_file's i_mmap_lock_read.
      if (c.folio(pfn).map > 0) fileWalkLock(c, f)
      next(c, f)
    },
  },
  /**
   * try_to_migrate_one() per mapping (rmap.ts fileRmapWalk): range_start, the PTL,
   * ptep_get_and_clear with the flush batched, the dirty bit, the migration entry (its VMA's
   * walk index kept in local `migs`), page_remove_rmap, folio_put; range_end.
   */
  ...fileRmapWalk('try_to_migrate_one', next, {
    pte: (pte) => ({ pfn: pte.pfn, present: false, write: pte.write, dirty: pte.dirty, mig: true }),
    fn: 'set_pte_at (migration entry)',
    installed: (f, vi) => (f.l.migs = [...list(f, 'migs'), vi]),
  }),
  /**
   * try_to_unmap_flush(); move_to_new_folio(): folio_migrate_mapping() checks the refcount,
   * moves the page cache slot to the new folio, folio_migrate_copy(). On -EAGAIN the old folio
   * goes back into its PTEs.
   */
  move: {
    // remove_migration_ptes() takes the PTL of each mapping's table in turn.
    guard: (c, f) => (migPtlsFree(c, f) ? null : 'page-table lock held'),
    run: (c, f) => {
      tryToUnmapFlush(c, f, 'mm', [], 'arch_tlbbatch_flush (try_to_unmap_flush)')
      const page = num(f, 'page')
      const src = num(f, 'pfn')
      const fr = c.folio(src)
      if (fr.ref !== 2 || fr.map !== 0) {
        c.emit('info', 'folio_migrate_mapping', `pfn ${src}: refcount ${fr.ref}, expected 2: -EAGAIN`)
        restore(c, f, src, 'remove_migration_ptes (src, src)')
        c.folioUnlock(page)
        c.putFrame(src, 'folio_putback_lru')
        c.emit('op', 'migrate', `${c.pageName(page)}: -EAGAIN, the folio stays`)
        c.ret()
        return
      }
      const dst = c.allocFrame(fr.v, 'alloc_migration_target')
      c.fileMigrateSlot(page, dst)
      // folio_ref_unfreeze(src, expected - 1): the page cache's reference moved to dst.
      c.putFrame(src, 'folio_migrate_mapping (the page cache reference moves)')
      const s = c.folioW(src)
      s.sup = true
      c.emit('frame', 'folio_migrate_copy', `pfn ${src} -> pfn ${dst} (value ${fr.v})`)
      f.l.new = dst
      restore(c, f, dst, 'remove_migration_ptes (src, dst)')
      c.folioUnlock(page)
      c.putFrame(src, 'migrate_folio_done: folio_put (the isolation reference)')
      c.putFrame(dst, 'migrate_folio_done: the destination reference')
      c.emit('op', 'migrate', `${c.pageName(page)} moved to pfn ${dst}`)
      c.ret()
    },
  },
}

/** The next VMA linked in the i_mmap tree (try_to_migrate_one on each), or the move once the walk is over. */
function next(c: Ctx, f: CallFrame): void {
  const ms = walkVmas(c.sc, num(f, 'page'))
  const pfn = num(f, 'pfn')
  let vi = num(f, 'vi')
  // vma_interval_tree_foreach: every VMA linked in the i_mmap tree, whether or not its PTE
  // maps the folio (try_to_*_one's range_start comes before page_vma_mapped_walk).
  while (vi < ms.length && c.folio(pfn).map > 0 && !c.imapLinked(ms[vi]!.mm, ms[vi]!.page)) vi++
  f.l.vi = vi
  if (vi < ms.length && c.folio(pfn).map > 0) {
    c.goto('rs')
    return
  }
  fileWalkUnlock(c, f)
  c.goto('move')
}

/**
 * The page-table locks remove_migration_ptes() takes (one per mm with a migration entry of the
 * folio) are free: the step that takes them all waits for them (the model runs the walk in one
 * step).
 */
function migPtlsFree(c: Ctx, f: CallFrame): boolean {
  const ms = walkVmas(c.sc, num(f, 'page'))
  return c.ptlFree(0, num(f, 'page')) && list(f, 'migs').every((vi) => c.ptlFree(ms[vi]!.mm, ms[vi]!.page))
}

/**
 * remove_migration_ptes(): each migration entry this call installed maps `to` again. (A shared
 * file VMA is not copied by fork, so a migration entry never reaches a child's PTE.)
 */
function restore(c: Ctx, f: CallFrame, to: number, fn: string): void {
  const ms = walkVmas(c.sc, num(f, 'page'))
  for (const vi of list(f, 'migs')) {
    const { mm, page } = ms[vi]!
    const pte = c.pte(mm, page)
    if (!pte?.mig) continue
    c.setPte(mm, page, { pfn: to, present: true, write: pte.write, dirty: pte.dirty }, fn)
    const fr = c.folioW(to)
    fr.map++
    fr.ref++
    c.emit('frame', 'page_add_file_rmap', `pfn ${to} mapcount ${fr.map}`)
  }
}
