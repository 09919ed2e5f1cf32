/**
 * KSM merging a page into a stable page of equal content: try_to_merge_one_page() ->
 * write_protect_page(), pages_identical(), replace_page(), v6.6 mm/ksm.c. In v4.15 both
 * clears were plain ptep_clear_flush() (Glisse 2017 removed the _notify: "downgrading page
 * table to read only" / "replacing a read only page with another read only page with the same
 * content"), so ->invalidate_range fires only at each range_end.
 *
 * The stable page (kpage) is modelled as already in the stable tree with the page's content
 * when ksmd starts this merge; a write to the page before the compare makes the merge fail.
 * A subpage of a PMD-mapped huge page is split first (split_huge_page, kernel/thpRmap.ts),
 * then merged as a small page. try_to_merge_one_page() takes the page's lock with
 * trylock_page() ("we don't want to wait here"): a page another thread holds locked (reclaim,
 * migration, migrate_vma's collect) is not merged now; unlock_page() at out_unlock.
 */
import type { Ctx } from '../ctx'
import { ZERO_PFN } from '../state'
import { afterNotifier, decodePte, encodePte, num, pteSame, type Proc } from './proc'
import { swapCacheRefs, unlockIfHeld } from './rmap'

function fail(c: Ctx, f: Parameters<Proc[string]['run']>[1], why: string): void {
  c.emit('info', 'try_to_merge_one_page', `no merge: ${why}`)
  unlockIfHeld(c, num(f, 'pfn'), c.pageName(num(f, 'page')), 'try_to_merge_one_page: unlock_page')
  c.putFrame(num(f, 'pfn'), 'put_page (ksmd)')
  c.putFrame(num(f, 'kpage'), 'stable_tree: drop the candidate stable page')
  c.mmapReadUnlock(c.mmIndex)
  c.ret()
}

export const ksmMerge: Proc = {
  /** ksmd: mmap_read_lock, find the VMA, get_page() on the mapped anon page. */
  start: {
    guard: (c) => (c.mmapReadable(c.mmIndex) ? null : 'mmap_lock held for write'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      c.mmapReadLock(mm)
      const pte = c.pte(mm, page)
      if (c.vma(mm, page) === null || !pte || !pte.present || pte.pfn === ZERO_PFN) {
        c.emit('info', 'cmp_and_merge_page', `${c.pageName(page)}: no mapped anon page to merge`)
        c.mmapReadUnlock(mm)
        c.ret()
        return
      }
      c.getFrame(pte.pfn)
      f.l.pfn = pte.pfn
      const kpage = c.allocFrame(c.folio(pte.pfn).v, 'stable_tree_search (stable page of equal content)')
      f.l.kpage = kpage
      c.goto('trylock')
    },
  },
  /**
   * try_to_merge_one_page(): `if (!trylock_page(page)) goto out;` (a step of its own: ksmd
   * holds its reference from the scan on, the lock only from here).
   */
  trylock: {
    run: (c, f) => {
      const page = num(f, 'page')
      const pfn = num(f, 'pfn')
      if (!c.anonTrylock(pfn, c.pageName(page), 'try_to_merge_one_page: trylock_page')) {
        fail(c, f, 'trylock_page fails')
        return
      }
      const pte = c.pte(c.mmIndex, page)
      if (pte?.huge === true && pte.present && pte.pfn === pfn) {
        // try_to_merge_one_page(): `if (PageTransCompound(page)) { if (split_huge_page(page))
        // goto out_unlock; }` (kernel/thpRmap.ts splitHugePage).
        c.call('split_huge_page', { page, pin: pfn }, 'split_done')
        return
      }
      c.goto('wp_rs')
    },
  },
  /** split_huge_page() returned: write_protect_page() on the small page, or no merge (-EAGAIN). */
  split_done: {
    run: (c, f) => {
      if (f.l.ret === 'fail') {
        fail(c, f, 'split_huge_page failed')
        return
      }
      c.goto('wp_rs')
    },
  },
  /** write_protect_page(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR). */
  wp_rs: {
    run: (c, f) => {
      c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_CLEAR')
      c.goto('wp_lock')
    },
  },
  /**
   * page_vma_mapped_walk() takes the PTL. v6.6 write_protect_page(): `if (pte_write(entry) ||
   * pte_dirty(entry) || anon_exclusive || mm_tlb_flush_pending(mm))` the PTE is cleared and
   * flushed (ptep_clear_flush) before the refcount check; a clean read-only PTE of a shared page
   * with no gather in flight is kept as it is.
   */
  wp_lock: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      c.lockPtl(mm, page)
      const pte = c.pte(mm, page)
      if (!pte || !pte.present || pte.pfn !== num(f, 'pfn')) {
        c.unlockPtl(mm, page)
        f.l.ok = false
        c.goto('wp_end')
        return
      }
      f.l.old = encodePte(pte)
      // PageAnonExclusive(): an anon page mapped by this process only (mapcount 1). The model
      // has no separate flag: a page that was shared by fork and is back to one mapping counts
      // as exclusive here (the kernel would clear and flush only if the PTE is dirty), which
      // can only add a flush, never remove one.
      const exclusive = c.folio(pte.pfn).map === 1
      const pending = c.tlbFlushPendingAny(mm)
      if (pte.write || pte.dirty || exclusive || pending) {
        if (!pte.write && !pte.dirty)
          c.emit(
            'info',
            'write_protect_page',
            `${c.pageName(page)}: read-only and clean, but ${exclusive ? 'anon_exclusive' : 'mm_tlb_flush_pending()'}: clear and flush`,
          )
        // "We clear the pte and flush the tlb before the check": no O_DIRECT can start after it.
        c.setPte(mm, page, null, 'ptep_clear_flush')
        c.flushTlb(mm, 'page', [page], 'flush_tlb_page (ptep_clear_flush)')
        c.goto('wp_set')
        return
      }
      f.l.orig = encodePte(pte)
      f.l.ok = true
      c.unlockPtl(mm, page)
      c.goto('wp_end')
    },
  },
  /**
   * page_mapcount + 1 + swapped == page_count, else an extra reference (GUP, O_DIRECT) exists
   * and the PTE is restored; otherwise set_pte_at_notify(pte_wrprotect(pte_mkclean(old))).
   */
  wp_set: {
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const old = decodePte(f.l.old!)!
      const fr = c.folio(old.pfn)
      if (fr.map + 1 + swapCacheRefs(c, old.pfn) !== fr.ref) {
        c.setPte(mm, page, old, 'set_pte_at (restore: the page has extra references)')
        f.l.ok = false
      } else {
        const ro = { ...old, write: false, dirty: false }
        if (old.dirty) c.emit('frame', 'set_page_dirty', `pfn ${old.pfn}`)
        c.setPte(mm, page, ro, 'set_pte_at_notify (write-protect)')
        f.l.orig = encodePte(ro)
        f.l.ok = true
      }
      c.unlockPtl(mm, page)
      c.goto('wp_end')
    },
  },
  /** range_end (v4.15: ->invalidate_range here, the only secondary invalidation of this phase). */
  wp_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      afterNotifier(c, f, 'wp_done', wpDone)
    },
  },
  wp_done: { run: (c, f) => wpDone(c, f) },
  /** pages_identical(page, kpage): the content compare. */
  compare: {
    run: (c, f) => {
      const page = c.folio(num(f, 'pfn'))
      if (page.v !== c.folio(num(f, 'kpage')).v) {
        fail(c, f, `${c.pageName(num(f, 'page'))} changed since the stable page was found`)
        return
      }
      f.l.w = page.w
      c.emit('info', 'pages_identical', `pfn ${num(f, 'pfn')} == stable pfn ${num(f, 'kpage')}`)
      c.goto('rp_rs')
    },
  },
  /** replace_page(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR). */
  rp_rs: {
    run: (c, f) => {
      c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_CLEAR')
      c.goto('rp_lock')
    },
  },
  /** Under the PTL: pte_same(orig_pte), take the kpage reference and rmap, ptep_clear_flush(). */
  rp_lock: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      c.lockPtl(mm, page)
      if (!pteSame(c.pte(mm, page), decodePte(f.l.orig!))) {
        c.unlockPtl(mm, page)
        f.l.ok = false
        c.goto('rp_end')
        return
      }
      const k = c.folioW(num(f, 'kpage'))
      k.ref++
      k.map++
      c.setPte(mm, page, null, 'ptep_clear_flush')
      c.flushTlb(mm, 'page', [page], 'flush_tlb_page (ptep_clear_flush)')
      c.goto('rp_set')
    },
  },
  /** set_pte_at_notify(kpage, read-only), page_remove_rmap(old), folio_put(old), unlock. */
  rp_set: {
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const old = c.folioW(num(f, 'pfn'))
      if (old.w !== num(f, 'w')) {
        c.violate(
          'lost-write',
          `pfn ${num(f, 'pfn')} was written after KSM compared it with the stable page; ${c.pageName(page)} now maps the stable page (pfn ${num(f, 'kpage')}) without that write`,
        )
      }
      c.setPte(
        mm,
        page,
        { pfn: num(f, 'kpage'), present: true, write: false, dirty: false },
        'set_pte_at_notify (stable page)',
      )
      old.map--
      old.sup = true
      c.emit('frame', 'page_remove_rmap', `pfn ${num(f, 'pfn')} mapcount ${old.map}`)
      c.putFrame(num(f, 'pfn'), 'folio_put (the PTE reference)')
      c.unlockPtl(mm, page)
      f.l.ok = true
      c.goto('rp_end')
    },
  },
  /** range_end (v4.15: ->invalidate_range); then ksmd drops its own reference: the old page may be freed. */
  rp_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      afterNotifier(c, f, 'rp_done', rpDone)
    },
  },
  rp_done: { run: (c, f) => rpDone(c, f) },
}

/** write_protect_page() returned: compare next, or give up. */
function wpDone(c: Ctx, f: Parameters<Proc[string]['run']>[1]): void {
  if (f.l.ok !== true) {
    fail(c, f, 'write_protect_page failed')
    return
  }
  c.goto('compare')
}

/** replace_page() returned: ksmd drops its reference to the old page (it may be freed). */
function rpDone(c: Ctx, f: Parameters<Proc[string]['run']>[1]): void {
  if (f.l.ok !== true) {
    fail(c, f, 'replace_page: the PTE changed')
    return
  }
  c.anonUnlock(num(f, 'pfn'), c.pageName(num(f, 'page')), 'try_to_merge_one_page: unlock_page')
  c.putFrame(num(f, 'pfn'), 'put_page (ksmd)')
  c.emit('op', 'ksm_merge', `${c.pageName(num(f, 'page'))} merged into stable pfn ${num(f, 'kpage')}`)
  c.mmapReadUnlock(c.mmIndex)
  c.ret()
}
