/**
 * Migration of a file page's page-cache folio, v6.6 mm/migrate.c migrate_pages() ->
 * migrate_pages_batch() (its first pass, MIGRATE_ASYNC, which every mode runs first since
 * 2ef7dbb26990): migrate_folio_unmap() -> try_to_migrate(src, TTU_BATCH_FLUSH) over the file's
 * rmap (every address of the offset: mm/rmap.c try_to_migrate_one per mapping: range_start
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
import type { CallFrame, Pte } from '../state'
import { afterNotifier, decodePte, encodePte, flag, list, num, type Proc } from './proc'

function mappings(c: Ctx, page: number): number[] {
  const owner = c.sc.pages[page]!.fileOf ?? page
  return [owner, ...c.sc.pages.flatMap((pg, i) => (pg.fileOf === owner ? [i] : []))]
}

function at(c: Ctx, f: CallFrame): number {
  return mappings(c, num(f, 'page'))[num(f, 'vi')]!
}

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
      f.l.pages = []
      c.folioLock(page, 'migrate_folio_unmap: folio_trylock')
      f.l.vi = 0
      next(c, f)
    },
  },
  /** try_to_migrate_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR). */
  rs: {
    run: (c, f) => {
      c.rangeStart(0, [at(c, f)], 'MMU_NOTIFY_CLEAR')
      afterNotifier(c, f, 'unmap', (cc) => cc.goto('unmap'))
    },
  },
  /** page_vma_mapped_walk (PTL), ptep_get_and_clear, set_tlb_ubc_flush_pending. */
  unmap: {
    guard: (c) => (c.ptlFree(0) ? null : 'page-table lock held'),
    run: (c, f) => {
      const page = at(c, f)
      c.lockPtl(0, 'page_vma_mapped_walk')
      const pte = c.pte(0, page)
      if (!pte || !pte.present || pte.pfn !== num(f, 'pfn')) {
        c.unlockPtl(0)
        c.goto('re')
        return
      }
      c.setPte(0, page, null, 'ptep_get_and_clear')
      // set_tlb_ubc_flush_pending()'s tlb_flush_batched bump, before the notifier call: read only
      // under this PTL, so the order is invisible, and an atc-first driver's command stays last.
      c.setTlbBatched(0, true)
      if (c.sc.arch === 'x86_64') {
        c.emit('cpu-flush', 'arch_tlbbatch_add_pending', 'CPU flush deferred to arch_tlbbatch_flush', {
          pages: [c.pageName(page)],
        })
        c.archHook(0, null)
        f.l.batched = true
      } else c.flushTlb(0, 'page', [page], 'arch_tlbbatch_add_pending (__flush_tlb_page_nosync)')
      f.l.old = encodePte(pte)
      afterNotifier(c, f, 'unmap_rest', unmapRest)
    },
  },
  unmap_rest: { run: (c, f) => unmapRest(c, f) },
  re: {
    run: (c, f) => {
      c.rangeEnd(0, [at(c, f)], false)
      f.l.vi = num(f, 'vi') + 1
      afterNotifier(c, f, 'next', next)
    },
  },
  next: { run: (c, f) => next(c, f) },
  /**
   * try_to_unmap_flush(); move_to_new_folio(): folio_migrate_mapping() checks the refcount,
   * moves the page cache slot to the new folio, folio_migrate_copy(). On -EAGAIN the old folio
   * goes back into its PTEs.
   */
  move: {
    guard: (c) => (c.ptlFree(0) ? null : 'page-table lock held'),
    run: (c, f) => {
      if (flag(f, 'batched')) c.flushTlb(0, 'mm', [], 'arch_tlbbatch_flush (try_to_unmap_flush)', false)
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

/** The dirty bit, the migration entry, page_remove_rmap and the PTE's reference. */
function unmapRest(c: Ctx, f: CallFrame): void {
  const page = at(c, f)
  const pte = decodePte(f.l.old!)!
  delete f.l.old
  if (pte.dirty) c.folioMarkDirty(page, 'try_to_migrate_one: folio_mark_dirty (pte_dirty)')
  const entry: Pte = { pfn: pte.pfn, present: false, write: pte.write, dirty: pte.dirty, mig: true }
  c.setPte(0, page, entry, 'set_pte_at (migration entry)')
  const fr = c.folioW(pte.pfn)
  fr.map--
  c.emit('frame', 'page_remove_rmap', `pfn ${pte.pfn} mapcount ${fr.map}`)
  c.putFrame(pte.pfn, 'folio_put (the PTE reference)')
  f.l.pages = [...list(f, 'pages'), page]
  c.unlockPtl(0)
  c.goto('re')
}

/** The next mapping of the folio to unmap, or the move once none is left. */
function next(c: Ctx, f: CallFrame): void {
  const ms = mappings(c, num(f, 'page'))
  const pfn = num(f, 'pfn')
  let vi = num(f, 'vi')
  while (vi < ms.length && c.pte(0, ms[vi]!)?.pfn !== pfn) vi++
  f.l.vi = vi
  if (vi < ms.length && c.folio(pfn).map > 0) c.goto('rs')
  else c.goto('move')
}

/** remove_migration_ptes(): each migration entry this call installed maps `to` again. */
function restore(c: Ctx, f: CallFrame, to: number, fn: string): void {
  for (const page of list(f, 'pages')) {
    const pte = c.pte(0, page)
    if (!pte?.mig) continue
    c.setPte(0, page, { pfn: to, present: true, write: pte.write, dirty: pte.dirty }, fn)
    const fr = c.folioW(to)
    fr.map++
    fr.ref++
    c.emit('frame', 'page_add_file_rmap', `pfn ${to} mapcount ${fr.map}`)
  }
}
