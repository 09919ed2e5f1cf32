/**
 * Reclaim of an anon page to swap, v6.6 mm/vmscan.c shrink_folio_list(): add_to_swap(),
 * try_to_unmap() with TTU_BATCH_FLUSH (mm/rmap.c try_to_unmap_one()), try_to_unmap_flush_dirty()
 * before pageout(), and __remove_mapping() + free once written. A later fault swaps the page
 * back in (do_swap_page).
 *
 * Secondary notification: v6.6 as migration (arch hook at arch_tlbbatch_add_pending: (0, -1)
 * per page on x86, the page on arm64). v4.15 called ->invalidate_range explicitly under the
 * PTL right after the clear in the swap path ("We have to invalidate as we cleared the pte",
 * Glisse 2017), and again at range_end (reference 3.9).
 */
import { flag, num, type Proc } from './proc'
import { isolateMappedFolio, rmapRangeStart, rmapUnmap, tryToUnmapFlush } from './rmap'

export const reclaim: Proc = {
  /** Isolate and lock the folio (a reference), add_to_swap(): a slot, the folio in the swap cache. */
  start: {
    run: (c, f) => {
      const pfn = isolateMappedFolio(c, f, 'shrink_folio_list', 'reclaim')
      if (pfn === null) return
      f.l.slot = c.swapAlloc(pfn)
      c.emit('info', 'add_to_swap', `pfn ${pfn} -> swap slot ${num(f, 'slot')}`)
      c.goto('rs')
    },
  },
  rs: rmapRangeStart,
  ...rmapUnmap(
    (_pte, f) => ({ pfn: -1, present: false, write: false, dirty: false, swp: num(f, 'slot') }),
    'set_pte_at (swap entry)',
    true,
  ),
  rs_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      c.goto('pageout')
    },
  },
  /** try_to_unmap_flush_dirty(), then pageout() -> swap_writepage(): the contents go to swap. */
  pageout: {
    run: (c, f) => {
      tryToUnmapFlush(c, f, 'page', [num(f, 'page')], 'arch_tlbbatch_flush (try_to_unmap_flush_dirty)')
      const src = c.folio(num(f, 'pfn'))
      if (!flag(f, 'mapped')) {
        c.emit('info', 'shrink_folio_list', 'the page was unmapped meanwhile: keep it')
        c.swapUncache(num(f, 'slot'))
        c.putFrame(num(f, 'pfn'), 'folio_putback_lru')
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
   * __remove_mapping(): only if nobody took the folio again (a swap-in maps the swap-cache
   * folio back); then delete_from_swap_cache() and the free.
   */
  free: {
    run: (c, f) => {
      const pfn = num(f, 'pfn')
      const fr = c.folioW(pfn)
      if (fr.map > 0 || fr.ref > 1) {
        c.emit(
          'info',
          '__remove_mapping',
          `pfn ${pfn} was mapped again (swap-in from the swap cache): keep it`,
        )
        c.putFrame(pfn, 'folio_putback_lru')
        c.ret()
        return
      }
      // Lost only while the address still maps this swap slot: a later swap-in will miss the
      // write. (If a zap such as MADV_DONTNEED removed the entry, the data is discarded by design.)
      const pte = c.pte(c.mmIndex, num(f, 'page'))
      if (pte?.swp === num(f, 'slot') && fr.w !== num(f, 'w')) {
        c.violate(
          'lost-write',
          `pfn ${pfn} was written after pageout() wrote it to swap slot ${num(f, 'slot')}; the page is freed and a swap-in will not have that write`,
        )
      }
      fr.sup = true
      c.swapUncache(num(f, 'slot'))
      c.putFrame(pfn, 'free_unref_folios')
      c.emit('op', 'reclaim', `${c.pageName(num(f, 'page'))} swapped out to slot ${num(f, 'slot')}`)
      c.ret()
    },
  },
}
