/**
 * Reclaim of an anon page to swap, v6.6 mm/vmscan.c shrink_folio_list(): add_to_swap(),
 * try_to_unmap() with TTU_BATCH_FLUSH (mm/rmap.c try_to_unmap_one()), try_to_unmap_flush_dirty()
 * before pageout(), and __remove_mapping() + free once written. A later fault swaps the page
 * back in (do_swap_page).
 *
 * With a fork child, try_to_unmap() walks the folio's anon_vma (rmap_walk_anon, rmap.ts
 * walkVmas: the process's VMA, then the child's) and try_to_unmap_one() runs on each VMA that
 * maps the folio, on that VMA's mm: its own range_start/end (the child's mm has no
 * subscribers), PTL and batched flush, swap_duplicate() and a swap PTE for the one slot, so the
 * slot's swap_map count is the number of PTEs sharing it (Ctx.swapDup). try_to_unmap_flush()
 * flushes the CPUs of both mms. do_swap_page() and zap_pte_range() drop the count (fault.ts,
 * unmap.ts); a folio reclaim keeps because it was mapped again stays in the swap cache (as does
 * a folio a read fault swapped in through it), until folio_free_swap (do_swap_page's
 * should_try_to_free_swap, do_wp_page, free_swap_cache at unmap) or a later reclaim, which
 * reuses its slot.
 *
 * LRU isolation and the folio lock (v6.6 shrink_folio_list() works on the folios
 * isolate_lru_folios() took off the LRU): a folio another thread isolated (a migration) is not
 * on the LRU, so this reclaim does not see it; a folio locked by another thread (KSM's
 * trylock_page, migrate_vma's collect, a migration's destination until it is mapped in every
 * VMA) fails folio_trylock() and is kept (`goto keep`: putback_lru_page). The lock is held
 * until the folio is freed or kept.
 *
 * Secondary notification: v6.6 as migration (arch hook at arch_tlbbatch_add_pending: (0, -1)
 * per page on x86, the page on arm64). v4.15 called ->invalidate_range explicitly under the
 * PTL right after the clear in the swap path ("We have to invalidate as we cleared the pte",
 * Glisse 2017), and again at range_end (reference 3.9).
 */
import type { Ctx } from '../ctx'
import type { CallFrame } from '../state'
import { flag, num, type Proc } from './proc'
import {
  anonWalkNext,
  anonWalkUnlock,
  isolateMappedFolio,
  rmapRangeStart,
  rmapUnmap,
  scenarioHasChild,
  tryToUnmapFlush,
  walkVmas,
} from './rmap'

/** `keep`: folio_unlock(), putback_lru_page() and the isolation's reference (folio_putback_lru). */
function keep(c: Ctx, f: CallFrame, fn = 'folio_putback_lru'): void {
  const pfn = num(f, 'pfn')
  c.anonUnlock(pfn, c.pageName(num(f, 'page')), 'shrink_folio_list: folio_unlock (keep)')
  c.putbackLru(pfn)
  c.putFrame(pfn, fn)
}

export const reclaim: Proc = {
  /** Isolate and lock the folio (a reference), add_to_swap(): a slot, the folio in the swap cache. */
  start: {
    run: (c, f) => {
      const pfn = isolateMappedFolio(
        c,
        f,
        'shrink_folio_list',
        'reclaim',
        'not on the LRU (another thread isolated the folio): isolate_lru_folios does not take it, not reclaimed',
      )
      if (pfn === null) return
      // shrink_folio_list(): `if (!folio_trylock(folio)) goto keep;`
      if (!c.anonTrylock(pfn, c.pageName(num(f, 'page')), 'shrink_folio_list: folio_trylock')) {
        c.putbackLru(pfn)
        c.putFrame(pfn, 'folio_putback_lru')
        c.emit(
          'op',
          'reclaim',
          `${c.pageName(num(f, 'page'))}: folio locked by another thread: kept, not reclaimed`,
        )
        c.ret()
        return
      }
      const cached = c.swapSlotOf(pfn)
      if (cached >= 0) {
        // `if (!folio_test_swapcache(folio))` add_to_swap(): a folio a swap-in left in the swap
        // cache keeps its slot (the swap still holds its contents until pageout rewrites them).
        // A second reclaim never gets here while one holds it: isolate_lru_folios failed.
        f.l.slot = cached
        c.swapCacheFold(cached)
        c.emit('info', 'shrink_folio_list', `pfn ${pfn} is in the swap cache already: swap slot ${cached}`)
      } else {
        f.l.slot = c.swapAlloc(pfn)
        c.emit('info', 'add_to_swap', `pfn ${pfn} -> swap slot ${num(f, 'slot')}`)
      }
      // try_to_unmap() -> rmap_walk_anon(): with a fork child, every VMA of the anon_vma.
      if (scenarioHasChild(c.sc)) anonWalkNext(c, f, 0, 'rs', 'pageout')
      else c.goto('rs')
    },
  },
  rs: rmapRangeStart,
  ...rmapUnmap(
    (_pte, f) => ({ pfn: -1, present: false, write: false, dirty: false, swp: num(f, 'slot') }),
    'set_pte_at (swap entry)',
    true,
  ),
  /** range_end; then rmap_walk_anon's next VMA that maps the folio (with a fork child). */
  rs_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      if (f.l.vi !== undefined) anonWalkNext(c, f, num(f, 'vi') + 1, 'rs', 'pageout')
      else c.goto('pageout')
    },
  },
  /** try_to_unmap_flush_dirty(), then pageout() -> swap_writepage(): the contents go to swap. */
  pageout: {
    run: (c, f) => {
      anonWalkUnlock(c, f)
      tryToUnmapFlush(c, f, 'page', [num(f, 'page')], 'arch_tlbbatch_flush (try_to_unmap_flush_dirty)')
      const src = c.folio(num(f, 'pfn'))
      if (!flag(f, 'mapped')) {
        c.emit('info', 'shrink_folio_list', 'the page was unmapped meanwhile: keep it')
        // The swap cache keeps the folio while swap PTEs share the slot; else it goes.
        if (c.swapCount(num(f, 'slot')) > 0) c.swapCacheAdd(num(f, 'slot'), num(f, 'pfn'), false)
        else c.swapUncache(num(f, 'slot'))
        keep(c, f)
        c.ret()
        return
      }
      c.swapWrite(num(f, 'slot'), src.v)
      f.l.w = src.w
      c.emit('frame', 'swap_writepage', `pfn ${num(f, 'pfn')} -> swap slot ${num(f, 'slot')}`)
      c.goto('free')
    },
  },
  /**
   * __remove_mapping(): only if nobody took the folio again (folio_ref_freeze of reclaim's and
   * the swap cache's references fails once a swap-in mapped it back); then
   * __delete_from_swap_cache, put_swap_folio (the slot is freed if no swap PTE refers to it)
   * and the free. Kept, the folio stays in the swap cache, which gets its own reference back.
   */
  free: {
    run: (c, f) => {
      const pfn = num(f, 'pfn')
      const fr = c.folioW(pfn)
      const slot = num(f, 'slot')
      if (fr.map > 0 || fr.ref > 1) {
        c.emit(
          'info',
          '__remove_mapping',
          `pfn ${pfn} was mapped again (swap-in from the swap cache): keep it`,
        )
        // The folio stays in the swap cache (the cache's reference is the one reclaim held),
        // for the swap-ins of the swap PTEs that share the slot, or until a write fault's
        // should_try_to_free_swap or a zap frees it.
        c.swapCacheAdd(slot, pfn, false)
        c.anonUnlock(pfn, c.pageName(num(f, 'page')), 'shrink_folio_list: folio_unlock (keep)')
        c.putbackLru(pfn)
        c.emit('info', 'folio_putback_lru', `pfn ${pfn} stays in the swap cache of slot ${slot}`)
        c.ret()
        return
      }
      // Lost only while an address still maps this swap slot: a later swap-in will miss the
      // write. (If a zap such as MADV_DONTNEED removed the entry, the data is discarded by design.)
      const swapped = walkVmas(c.sc, num(f, 'page')).some((v) => c.pte(v.mm, v.page)?.swp === slot)
      if (swapped && fr.w !== num(f, 'w')) {
        c.violate(
          'lost-write',
          `pfn ${pfn} was written after pageout() wrote it to swap slot ${num(f, 'slot')}; the page is freed and a swap-in will not have that write`,
        )
      }
      fr.sup = true
      // __remove_mapping(), then folio_unlock() and free_it: an isolated folio is freed off the LRU.
      c.anonUnlock(pfn, c.pageName(num(f, 'page')), 'shrink_folio_list: folio_unlock')
      c.lruFreed(pfn)
      c.swapUncache(num(f, 'slot'))
      // A swap-in may have taken the slot's last count while reclaim held the folio (it stays
      // in the swap cache then): no PTE refers to the slot, put_swap_folio frees it.
      if (c.swapCount(slot) === 0) c.swapWrite(slot, null)
      c.putFrame(pfn, 'free_unref_folios')
      c.emit('op', 'reclaim', `${c.pageName(num(f, 'page'))} swapped out to slot ${num(f, 'slot')}`)
      c.ret()
    },
  },
}
