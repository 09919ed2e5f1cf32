/**
 * The rmap-walk unmap shared by migration and reclaim, v6.6 mm/rmap.c try_to_migrate_one()
 * and try_to_unmap_one() with TTU_BATCH_FLUSH: under the PTL, clear the PTE, queue the TLB
 * flush in the batch (set_tlb_ubc_flush_pending -> arch_tlbbatch_add_pending: x86 calls the
 * arch hook with (0, -1) for every page and defers the CPU flush to arch_tlbbatch_flush;
 * arm64 issues the per-page TLBI and hook now), mark the folio dirty, install the non-present
 * entry, page_remove_rmap() and folio_put() the PTE's reference.
 */
import type { Ctx } from '../ctx'
import { ZERO_PFN, type CallFrame, type Pte } from '../state'
import { afterNotifier, decodePte, encodePte, num, type PcHandler } from './proc'

/**
 * The common start of migrate_folio_unmap() and shrink_folio_list(): find the mapped anon folio
 * of the frame's page, take a reference (isolate and lock) and keep its pfn in `f.l.pfn`.
 * Returns the pfn, or null (after an info event and ret) when there is no such folio.
 */
export function isolateMappedFolio(c: Ctx, f: CallFrame, kfn: string, what: string): number | null {
  const page = num(f, 'page')
  const pte = c.pte(c.mmIndex, page)
  if (!pte || !pte.present || pte.pfn === ZERO_PFN) {
    c.emit('info', kfn, `${c.pageName(page)}: no mapped anon page to ${what}`)
    c.ret()
    return null
  }
  c.getFrame(pte.pfn)
  f.l.pfn = pte.pfn
  return pte.pfn
}

/**
 * After a present PTE of an anon page was cleared: the dirty bit goes to the folio, the
 * non-present entry (migration or swap) is installed, page_remove_rmap() and folio_put() of the
 * PTE's reference (try_to_*_one(), migrate_vma_collect_pmd()).
 */
export function installEntry(c: Ctx, mm: number, page: number, pte: Pte, entry: Pte, entryFn: string): void {
  if (pte.dirty) c.emit('frame', 'folio_mark_dirty', `pfn ${pte.pfn}`)
  c.setPte(mm, page, entry, entryFn)
  const fr = c.folioW(pte.pfn)
  fr.map--
  c.emit('frame', 'page_remove_rmap', `pfn ${pte.pfn} mapcount ${fr.map}`)
  c.putFrame(pte.pfn, 'folio_put (the PTE reference)')
}

/** try_to_*_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR), then the unmap step. */
export const rmapRangeStart: PcHandler = {
  run: (c, f) => {
    c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_CLEAR')
    c.goto('unmap')
  },
}

/**
 * The unmap step: `entry` is the non-present PTE to install (migration or swap entry);
 * `v415Invalidate` adds v4.15's explicit ->invalidate_range right after the clear (the swap
 * path: "We have to invalidate as we cleared the pte"). Sets f.l.mapped and f.l.batched and
 * continues at 'rs_end'.
 */
export function rmapUnmap(
  entry: (pte: Pte, f: CallFrame) => Pte,
  entryFn: string,
  v415Invalidate: boolean,
): { unmap: PcHandler; unmap_rest: PcHandler } {
  /** After the flush (and its notifiers): the non-present entry, the rmap and the reference. */
  const rest = (c: Ctx, f: CallFrame): void => {
    const mm = c.mmIndex
    const page = num(f, 'page')
    const pte = decodePte(f.l.old!)!
    delete f.l.old
    installEntry(c, mm, page, pte, entry(pte, f), entryFn)
    c.unlockPtl(mm)
    f.l.mapped = true
    c.goto('rs_end')
  }
  const unmap: PcHandler = {
    guard: (c) => (c.ptlFree(c.mmIndex) ? null : 'page-table lock held'),
    run: (c: Ctx, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      c.lockPtl(mm, 'page_vma_mapped_walk')
      const pte = c.pte(mm, page)
      if (!pte || !pte.present || pte.pfn !== num(f, 'pfn')) {
        c.unlockPtl(mm)
        f.l.mapped = false
        c.goto('rs_end')
        return
      }
      c.setPte(mm, page, null, 'ptep_get_and_clear')
      if (c.sc.arch === 'x86_64') {
        c.emit('cpu-flush', 'arch_tlbbatch_add_pending', 'CPU flush deferred to arch_tlbbatch_flush', {
          pages: [c.pageName(page)],
        })
        c.archHook(mm, null)
        f.l.batched = true
      } else {
        c.flushTlb(mm, 'page', [page], 'arch_tlbbatch_add_pending (__flush_tlb_page_nosync)')
      }
      if (v415Invalidate) c.invalidateRange(mm, [page], 'try_to_unmap_one')
      f.l.old = encodePte(pte)
      afterNotifier(c, f, 'unmap_rest', rest)
    },
  }
  return { unmap, unmap_rest: { run: rest } }
}
