/**
 * Zapping user mappings with an mmu_gather, v6.6: munmap (unmap_region -> unmap_vmas),
 * madvise(MADV_DONTNEED) (zap_page_range_single), zap_pmd_range() (a huge page's PMD: kernel/thp.ts
 * zapPmdPath), zap_pte_range(), tlb_end_vma(), tlb_flush_mmu_tlbonly() and tlb_finish_mmu()
 * (mm/memory.c, mm/mmu_gather.c, include/asm-generic/tlb.h, mm/mmap.c, mm/madvise.c).
 *
 * The gather (range to flush, pages queued for freeing) lives in the op's root frame.
 *
 * File pages (kind: file, MAP_SHARED) follow zap_present_pte() v6.6: a dirty PTE marks the
 * folio dirty (folio_mark_dirty) and, with delay_rmap (5df397dec7c4, v6.2), defers
 * page_remove_rmap() until after the forced TLB flush (tlb_flush_rmaps(), still under the
 * PTL), so folio_mkclean() cannot see the folio unmapped while a TLB may still write to it.
 * Two older eras are toggles under `kernel:`: `delay_rmap: false` is 1cf35d47712d (2014..v6.1:
 * the flush is forced under the PTL, but the mapcount already dropped in the loop), and
 * `dirty_flush_under_ptl: false` is before 1cf35d47712d (no forced flush for dirty PTEs; a
 * forced flush for a full batch ran after pte_unmap_unlock, in tlb_flush_mmu).
 */
import type { Ctx } from '../ctx'
import { tableCount, tablePages, ZERO_PFN, type CallFrame } from '../state'
import type { ThpDecl } from '../types'
import { afterNotifier, flag, list, nextPte, num, vmaRuns, type Proc } from './proc'
import { flushTlbBatchedPending, walkVmaAt, walkVmas } from './rmap'
import { count } from '../plural'
import { hugeArg, pmdHuge, thpSplitVma, zapHugePmd, zapPmdPath } from './thp'

function root(c: Ctx): CallFrame {
  return c.thread.stack[0]!
}

/** tlb_gather_mmu(): an empty gather. */
export function gatherInit(c: Ctx): void {
  root(c).l.g_range = []
  root(c).l.g_queue = []
  c.tlbFlushPending(c.mmIndex, 1)
}

/**
 * tlb_finish_mmu() (v6.6 mm/mmu_gather.c): if another gather on this mm is in flight
 * (mm_tlb_flush_nested: parallel zaps under mmap_read_lock, 99baac21e458), flush the whole mm
 * (fullmm) whatever this gather recorded; then flush and free; dec_tlb_flush_pending().
 */
export function gatherFinish(c: Ctx, pages: readonly number[]): void {
  gatherFinishFlush(c, pages)
  gatherFinishFree(c)
}

/** tlb_finish_mmu()'s flush (the part that calls notifiers). */
export function gatherFinishFlush(c: Ctx, pages: readonly number[]): void {
  const mm = c.mmIndex
  if (c.tlbFlushNested(mm)) {
    c.emit(
      'info',
      'tlb_finish_mmu',
      'mm_tlb_flush_nested(): a parallel gather is in flight, flush the whole mm',
    )
    c.flushTlb(mm, 'mm', [], 'tlb_flush (tlb_finish_mmu, fullmm)')
    c.invalidateRange(mm, pages, 'tlb_flush_mmu_tlbonly')
    root(c).l.g_range = []
  } else gatherFlush(c, 'tlb_finish_mmu')
}

/** tlb_finish_mmu()'s tail: free the batch, dec_tlb_flush_pending(). */
export function gatherFinishFree(c: Ctx): void {
  gatherFree(c)
  c.tlbFlushPending(c.mmIndex, -1)
}

/**
 * tlb_flush_mmu_tlbonly(): if a range was recorded, tlb_flush() (CPU flush, and under
 * arch-hook the secondary hook inside it), then mmu_notifier_invalidate_range() (v4.15 through
 * v6.5: the invalidate-range preset's ->invalidate_range), then __tlb_reset_range(). One rule for
 * every gather: zaps (munmap, MADV_DONTNEED, unmap_mapping_range, exit) and mprotect, which
 * flushes through the mmu_gather since 4a18419f71cd (v6.6), at tlb_end_vma and tlb_finish_mmu.
 */
export function gatherFlush(c: Ctx, fn: string): void {
  const range = list(root(c), 'g_range')
  if (range.length === 0) return
  const mm = c.mmIndex
  c.flushTlb(mm, 'range', range, `tlb_flush (${fn})`)
  c.invalidateRange(mm, range, 'tlb_flush_mmu_tlbonly')
  root(c).l.g_range = []
}

/** tlb_batch_pages_flush(): free_pages_and_swap_cache() on the queued pages. */
export function gatherFree(c: Ctx): void {
  const q = list(root(c), 'g_queue')
  if (q.length === 0) return
  c.emit('frame', 'tlb_batch_pages_flush', `release ${count(q.length, 'queued page')}`)
  for (const pfn of q) c.putFrame(pfn, 'free_pages_and_swap_cache')
  root(c).l.g_queue = []
}

/**
 * The index in `pages` of the first page past pages[i]'s PTE table (pages.length at the end):
 * the `next = pmd_addr_end(addr, end)` of a page-table walk.
 */
export function tableEnd(c: Ctx, pages: readonly number[], i: number): number {
  let j = i + 1
  while (j < pages.length && c.sameTable(pages[j]!, pages[i]!)) j++
  return j
}

/** The index of the next page in [from, end) whose PTE is not pte_none, or -1. */
export function nextPteIn(c: Ctx, pages: readonly number[], from: number, end: number): number {
  return nextPte(c, pages.slice(0, end), from)
}

/**
 * zap_pmd_range()'s `if (pmd_none(*pmd)) continue;` from index i: the index of the first page
 * whose PMD links a PTE page or (with more than one table) is a huge PMD, or -1. `say`: each
 * skipped table is an info event.
 */
function firstPopulated(c: Ctx, pages: readonly number[], i: number, say: boolean): number {
  const mm = c.mmIndex
  const multi = tableCount(c.sc) > 1
  while (i >= 0 && i < pages.length) {
    const p = pages[i]!
    if (c.pmdPopulated(mm, p)) return i
    const hp = multi ? c.hugeOf(p) : null
    if (hp !== null && pmdHuge(c, hp, mm)) return i
    if (say) c.emit('info', 'zap_pmd_range', `pmd_none: no ${c.tableName(c.tableOf(p), 'PTE table')} to zap`)
    i = tableEnd(c, pages, i)
  }
  return -1
}

/** Whether index i is where zap_pmd_range() reaches a new PMD (a table's first page in `pages`). */
function pmdStart(c: Ctx, pages: readonly number[], i: number): boolean {
  return i === 0 || (i > 0 && i < pages.length && !c.sameTable(pages[i - 1]!, pages[i]!))
}

/**
 * zap_pmd_range() at the PMD of pages[i] (a table's first page): with a huge page there
 * (kernel/thp.ts zapPmdPath), 'zap' or 'split'; null: zap_pte_range (or a none PMD).
 */
function hugeAt(c: Ctx, pages: readonly number[], i: number): { hp: ThpDecl; path: 'zap' | 'split' } | null {
  const page = pages[i]
  if (page === undefined) return null
  const hp = c.hugeOf(page)
  if (hp === null) return null
  const path = zapPmdPath(c, hp, pages)
  return path === null ? null : { hp, path }
}

/**
 * unmap_single_vma() -> unmap_page_range() -> zap_pmd_range() -> zap_pte_range() for one VMA
 * (locals: pages, i; pp: a page of the PTE table whose lock is held). zap_pmd_range() walks the
 * VMA one PMD at a time and skips a none PMD; zap_pte_range() takes that table's split PTL
 * (pte_offset_map_lock) and clears its PTEs, one per step under the PTL: hardware walkers take
 * no lock and can walk between two clears. A VMA over two PTE tables takes their PTLs in turn;
 * over two huge pages (or a huge page and small pages) each huge PMD is zapped or split in turn,
 * under its own pmd_lock, into the same gather.
 */
export const zapVma: Proc = {
  /**
   * zap_pmd_range(): at a huge page's PMD (`thp:`), the PMD first (kernel/thp.ts zapPmdPath): a
   * huge PMD or PMD migration entry the range covers goes whole (zap_huge_pmd, under pmd_lock);
   * one it covers in part is split first (__split_huge_pmd, its own MMU_NOTIFY_CLEAR range), then
   * zap_pte_range ('again'). A none PMD has no table: nothing to zap. Otherwise zap_pte_range.
   */
  start: {
    guard: (c, f) => zapPmdGuard(c, f),
    run: (c, f) => zapPmd(c, f),
  },
  /**
   * zap_pte_range() (`again:` after a forced flush), or zap_pmd_range()'s next PMD after a zap
   * or a table's end: at a huge page's PMD that is the PMD step again.
   */
  again: {
    guard: (c, f) =>
      num(f, 'i') > 0 && pmdStart(c, list(f, 'pages'), num(f, 'i')) ? zapPmdGuard(c, f) : zapPteGuard(c, f),
    run: (c, f) =>
      num(f, 'i') > 0 && pmdStart(c, list(f, 'pages'), num(f, 'i')) ? zapPmd(c, f) : zapPteRange(c, f),
  },
  start_rest: { run: (c, f) => zapStart(c, f) },
  pte: {
    run: (c, f) => {
      const mm = c.mmIndex
      const pages = list(f, 'pages')
      const i = num(f, 'i')
      const page = pages[i]!
      const old = c.pte(mm, page)!
      c.setPte(mm, page, null, 'ptep_get_and_clear_full')
      // free_swap_and_cache() (v6.6 mm/swapfile.c): drop the PTE's swap_map count; the slot is
      // freed at 0 (a folio the swap cache holds on its own goes too: __try_to_reclaim_swap).
      if (old.swp !== undefined) {
        const left = c.swapFree(old.swp, 'free_swap_and_cache')
        c.emit(
          'info',
          'free_swap_and_cache',
          `slot ${old.swp}: swap_map count ${left + 1} -> ${left}${left === 0 ? ': the slot is freed' : ''}`,
        )
        if (left === 0) c.swapWrite(old.swp, null)
      }
      const end = tableEnd(c, pages, i)
      if (old.mig || old.swp !== undefined) {
        // A migration or swap entry is in no TLB and holds no page reference: cleared (a swap
        // slot is freed, free_swap_and_cache).
        const next = nextPteIn(c, pages, i + 1, end)
        f.l.i = next >= 0 ? next : end < pages.length ? end : -1
        if (next < 0) zapUnlock(c, f, false)
        else c.goto('pte')
        return
      }
      const r = root(c)
      r.l.g_range = [...list(r, 'g_range'), page]
      let force = false
      if (c.isFile(page)) {
        force = zapFilePte(c, f, page, old.pfn, old.dirty)
      } else if (c.sc.pages[page]!.kind === 'pfnmap') {
        // vm_normal_page() is NULL for a VM_PFNMAP PTE: no rmap, no page to queue; the VMA
        // makes tlb->vma_pfn set (tlb_update_vma_flags).
        r.l.g_pfn = true
      } else if (old.pfn !== ZERO_PFN) {
        // Anon page: page_remove_rmap() now; the PTE's reference moves to the gather.
        const fr = c.folioW(old.pfn)
        fr.map--
        r.l.g_queue = [...list(r, 'g_queue'), old.pfn]
        c.emit(
          'frame',
          'page_remove_rmap + __tlb_remove_page',
          `pfn ${old.pfn} mapcount ${fr.map}, queued for freeing`,
        )
        const batch = c.sc.gatherBatch
        if (batch !== null && list(r, 'g_queue').length >= batch) {
          force = true
          c.emit('info', '__tlb_remove_page', `mmu_gather batch full (${count(batch, 'page')}): force_flush`)
        }
      }
      // The loop ends at the table's end (zap_pte_range covers one PMD); `i` then moves to the
      // next table's first page, which zap_pmd_range() goes on with after the unlock.
      const next = nextPteIn(c, pages, i + 1, end)
      f.l.i = next >= 0 ? next : end < pages.length ? end : -1
      // A full batch breaks out of the loop now. A dirty shared PTE forces the flush at the
      // end of the loop (f.l.ff), a step of its own: lockless walkers and folio_mkclean's
      // folio_mapped() test can run between the last clear and that flush.
      if (force) zapUnlock(c, f, true)
      else if (next >= 0) c.goto('pte')
      else if (f.l.ff === true) c.goto('force_flush')
      else zapUnlock(c, f, false)
    },
  },
  /** `if (force_flush) { tlb_flush_mmu_tlbonly(); tlb_flush_rmaps(); }` after the PTE loop. */
  force_flush: {
    run: (c, f) => zapUnlock(c, f, true),
  },
  zap_rmaps: { run: (c, f) => zapRmaps(c, f) },
  zap_free: { run: (c, f) => zapFree(c, f) },
  /** arm64 (no CONFIG_MMU_GATHER_MERGE_VMAS in v6.6) flushes at every VMA boundary. */
  end_vma: {
    run: (c) => {
      gatherFlush(c, 'tlb_end_vma')
      c.ret()
    },
  },
}

function zapPteGuard(c: Ctx, f: CallFrame): string | null {
  const pages = list(f, 'pages')
  const i = firstPopulated(c, pages, num(f, 'i'), false)
  if (i >= 0 && i !== num(f, 'i')) {
    // A later PMD: a huge one is the PMD step's (its pmd_lock), a table its PTL.
    const at = hugeAt(c, pages, i)
    if (at?.path === 'zap') return c.pmdLockFree(c.mmIndex, at.hp) ? null : 'pmd_lock held'
    if (at) return null
  }
  return i < 0 || c.ptlFree(c.mmIndex, pages[i]!) ? null : 'page-table lock held'
}

/** The guard of zapPmd: the huge PMD's pmd_lock for a zap, else zap_pte_range's. */
function zapPmdGuard(c: Ctx, f: CallFrame): string | null {
  const at = hugeAt(c, list(f, 'pages'), num(f, 'i'))
  if (at?.path === 'zap') return c.pmdLockFree(c.mmIndex, at.hp) ? null : 'pmd_lock held'
  if (at?.path === 'split') return null
  return zapPteGuard(c, f)
}

/**
 * zap_pmd_range() at the PMD of pages[i]: a huge PMD the VMA covers is zapped whole
 * (zap_huge_pmd, then the next PMD), one it covers in part is split first (then zap_pte_range
 * on its new PTEs); otherwise zap_pte_range.
 */
function zapPmd(c: Ctx, f: CallFrame): void {
  const pages = list(f, 'pages')
  const i = num(f, 'i')
  const at = hugeAt(c, pages, i)
  if (at?.path === 'zap') {
    const end = tableEnd(c, pages, i)
    f.l.i = end < pages.length ? end : -1
    if (zapHugePmd(c, at.hp)) {
      // tlb_remove_page_size() -> tlb_flush_mmu(): the flush, then the batch is freed.
      f.l.zf = true
      gatherFlush(c, 'tlb_flush_mmu (tlb_remove_page_size: batch full)')
      afterNotifier(c, f, 'zap_free', zapFree)
      return
    }
    zapFree(c, f)
    return
  }
  if (at?.path === 'split') {
    const part = pages.filter((p) => at.hp.pages.includes(p))
    c.emit(
      'info',
      'zap_pmd_range',
      `${c.pagesText(part)} is part of huge page ${at.hp.name}: __split_huge_pmd first`,
    )
    c.call('thp_split', { held: true, ...hugeArg(c, at.hp) }, 'again')
    return
  }
  zapPteRange(c, f)
}

/**
 * zap_pte_range() for the table at index `i` (zap_pmd_range() goes on from there, one PMD at a
 * time): a none PMD (no PTE page: never faulted in, or zap_huge_pmd or a collapse left none) is
 * skipped, `if (pmd_none(*pmd)) continue`; then pte_offset_map_lock of that table's split PTL and
 * flush_tlb_batched_pending(mm) right after the lock (3ea277194daa): a PTE that reclaim or
 * migration cleared with a batched flush may still be cached by a CPU.
 */
function zapPteRange(c: Ctx, f: CallFrame): void {
  const pages = list(f, 'pages')
  const from = num(f, 'i')
  const i = firstPopulated(c, pages, from, true)
  f.l.i = i
  if (i < 0) {
    zapFree(c, f)
    return
  }
  if (i !== from && hugeAt(c, pages, i) !== null) {
    // Past none PMDs, a huge one: zap_pmd_range()'s PMD step there.
    zapPmd(c, f)
    return
  }
  f.l.pp = pages[i]!
  c.lockPtl(c.mmIndex, pages[i]!, 'zap_pte_range: pte_offset_map_lock')
  flushTlbBatchedPending(c, c.mmIndex, 'zap_pte_range')
  afterNotifier(c, f, 'start_rest', zapStart)
}

/** zap_pte_range() after the lock and flush_tlb_batched_pending(): the table's first PTE to zap. */
function zapStart(c: Ctx, f: CallFrame): void {
  const pages = list(f, 'pages')
  const i = num(f, 'i')
  const end = tableEnd(c, pages, i)
  const next = nextPteIn(c, pages, i, end)
  if (next >= 0) {
    f.l.i = next
    c.goto('pte')
    return
  }
  f.l.i = end < pages.length ? end : -1
  zapUnlock(c, f, false)
}

/**
 * One present PTE of a file page in zap_present_pte() (v6.6 mm/memory.c; the PTE is already
 * cleared and in the flush range). Returns whether a full batch forces the flush now; a
 * dirty PTE sets f.l.ff, the forced flush at the end of the loop.
 */
function zapFilePte(c: Ctx, f: CallFrame, page: number, pfn: number, dirty: boolean): boolean {
  const k = c.sc.kernel
  const r = root(c)
  let delay = false
  if (dirty) {
    c.folioMarkDirty(page, 'zap_present_pte: folio_mark_dirty (pte_dirty)')
    if (k.delayRmap) {
      // tlb_delay_rmap(): delay_rmap = 1; force_flush = 1 (5df397dec7c4).
      delay = true
      f.l.ff = true
    } else if (k.dirtyFlushUnderPtl) {
      // 1cf35d47712d: force_flush = 1, flush before dropping the PTL.
      f.l.ff = true
    }
  }
  const fr = c.folioW(pfn)
  if (delay) {
    r.l.g_rmap = [...list(r, 'g_rmap'), pfn]
    c.emit(
      'frame',
      '__tlb_remove_page (delay_rmap)',
      `pfn ${pfn} queued, page_remove_rmap delayed until after the flush (mapcount stays ${fr.map}); force_flush`,
    )
  } else {
    fr.map--
    c.emit(
      'frame',
      'page_remove_rmap + __tlb_remove_page',
      `pfn ${pfn} mapcount ${fr.map}, queued${f.l.ff === true ? '; force_flush (dirty shared PTE)' : ''}`,
    )
  }
  // The PTE's reference goes with the gather; the page cache keeps its own.
  r.l.g_queue = [...list(r, 'g_queue'), pfn]
  const batch = c.sc.gatherBatch
  if (batch !== null && list(r, 'g_queue').length >= batch) {
    c.emit('info', '__tlb_remove_page', `mmu_gather batch full (${count(batch, 'page')}): force_flush`)
    return true
  }
  return false
}

/** tlb_flush_rmaps() (v6.6 mm/mmu_gather.c): the delayed page_remove_rmap()s, after the flush. */
function flushRmaps(c: Ctx): void {
  const r = root(c)
  const q = list(r, 'g_rmap')
  if (q.length === 0) return
  for (const pfn of q) {
    const fr = c.folioW(pfn)
    fr.map--
    c.emit('frame', 'tlb_flush_rmaps', `page_remove_rmap: pfn ${pfn} mapcount ${fr.map}`)
  }
  delete r.l.g_rmap
}

/**
 * End of zap_pte_range(): the forced flush (tlb_flush_mmu_tlbonly) and the delayed rmaps under
 * the PTL, unlock, then free the batch. Before 1cf35d47712d (`dirty_flush_under_ptl: false`)
 * a forced flush ran only after the unlock (tlb_flush_mmu).
 */
function zapUnlock(c: Ctx, f: CallFrame, force: boolean): void {
  delete f.l.ff
  if (force) f.l.zf = true
  if (force && c.sc.kernel.dirtyFlushUnderPtl) {
    gatherFlush(c, 'zap_pte_range force_flush')
    afterNotifier(c, f, 'zap_rmaps', zapRmaps)
    return
  }
  zapRmaps(c, f)
}

/** After a forced flush under the PTL: tlb_flush_rmaps(), unlock; before 2014 the flush now. */
function zapRmaps(c: Ctx, f: CallFrame): void {
  const force = f.l.zf === true
  const underPtl = c.sc.kernel.dirtyFlushUnderPtl
  if (force && underPtl) flushRmaps(c)
  c.unlockPtl(c.mmIndex, num(f, 'pp'))
  delete f.l.pp
  if (force && !underPtl) {
    gatherFlush(c, 'tlb_flush_mmu (force_flush, after the PTL)')
    afterNotifier(c, f, 'zap_free', zapFree)
    return
  }
  zapFree(c, f)
}

/** The forced flush's tlb_batch_pages_flush(), then the next PTE range or the end of the VMA. */
function zapFree(c: Ctx, f: CallFrame): void {
  if (f.l.zf === true) gatherFree(c)
  delete f.l.zf
  if (num(f, 'i') >= 0) {
    // `if (addr != end) goto again` after a forced flush, or zap_pmd_range()'s next PMD.
    c.goto('again')
    return
  }
  zapVmaEnd(c, f)
}

/** unmap_single_vma() done: tlb_end_vma(). */
function zapVmaEnd(c: Ctx, f: CallFrame): void {
  f.l.i = 0
  // tlb_end_vma(): x86 selects MMU_GATHER_MERGE_VMAS and does nothing here.
  // v6.6 tlb_end_vma(): flush if tlb->vma_pfn (VM_PFNMAP/VM_MIXEDMAP, b67fbebd4cf9, v5.19) or
  // the arch lacks CONFIG_MMU_GATHER_MERGE_VMAS (arm64).
  const pfnFlush = c.sc.kernel.pfnmapFlush && root(c).l.g_pfn === true
  // `if (tlb->fullmm) return;` first: exit_mmap's tlb_gather_mmu_fullmm flushes once, at the end.
  const fullmm = root(c).l.g_full === true
  if (!fullmm && (c.sc.arch === 'arm64' || pfnFlush) && list(root(c), 'g_range').length > 0) c.goto('end_vma')
  else c.ret()
}

function runs(c: Ctx, pages: readonly number[], key?: (p: number) => string): number[][] {
  const mm = c.mmIndex
  return vmaRuns(
    pages.filter((p) => c.vma(mm, p) !== null),
    key ?? ((p) => c.vma(mm, p)),
  )
}

/** Run index per page, as a flat local (locals hold flat number lists only). */
function encodeRuns(rs: number[][]): { pages: number[]; runOf: number[] } {
  const pages: number[] = []
  const runOf: number[] = []
  rs.forEach((r, i) => r.forEach((p) => (pages.push(p), runOf.push(i))))
  return { pages, runOf }
}
function runPages(f: CallFrame, i: number): number[] {
  const pages = list(f, 'pages')
  return list(f, 'runOf').flatMap((r, j) => (r === i ? [pages[j]!] : []))
}
function runCount(f: CallFrame): number {
  const r = list(f, 'runOf')
  return r.length === 0 ? 0 : r[r.length - 1]! + 1
}

/**
 * The VMA walk of a range (`req`): the pages that have a VMA as one run per VMA (locals `pages`
 * and `runOf`), starting at the first (`vi` = 0). Returns those pages. `key` tells VMAs apart
 * (default: adjacent pages with the same protection are one VMA).
 */
function startRuns(c: Ctx, f: CallFrame, req: readonly number[], key?: (p: number) => string): number[] {
  const { pages, runOf } = encodeRuns(runs(c, req, key))
  f.l.pages = pages
  f.l.runOf = runOf
  f.l.vi = 0
  return pages
}

/** The walk moves to the next VMA (`vi`); false once the last one is done. */
function nextRun(f: CallFrame): boolean {
  const vi = num(f, 'vi') + 1
  f.l.vi = vi
  return vi < runCount(f)
}

/**
 * unmap_vmas(): unmap_single_vma() of the next VMA (zap_vma, back at 'next_vma'); false once
 * the last one is done (munmap's unmap_region and exit_mmap walk their VMAs alike).
 */
function unmapNextVma(c: Ctx, f: CallFrame): boolean {
  if (!nextRun(f)) return false
  c.call('zap_vma', { pages: runPages(f, num(f, 'vi')), i: 0 }, 'next_vma')
  return true
}

/**
 * munmap(2): __vm_munmap -> do_vmi_align_munmap -> unmap_region, v6.6 mm/mmap.c. With `held`
 * it is do_munmap() called by a holder of mmap_lock for write (mremap_to's unmap of the target,
 * MREMAP_FIXED): do_vmi_munmap(..., unlock = false) neither downgrades nor drops the lock, and
 * returns to the caller.
 */
export const munmap: Proc = {
  /**
   * mmap_write_lock; do_vmi_align_munmap(): a range boundary inside a huge page splits its VMA
   * first, and __split_vma() -> vma_adjust_trans_huge() -> split_huge_pmd_address() splits the
   * PMD (kernel/thp.ts thpSplitVma, the __split_huge_pmd sequence); then the VMAs are detached.
   */
  start: {
    guard: (c, f) => (flag(f, 'held') || c.mmapWritable(c.mmIndex) ? null : 'mmap_lock held'),
    run: (c, f) => {
      if (!flag(f, 'held')) c.mmapWriteLock(c.mmIndex)
      const pages = startRuns(c, f, list(f, 'req'))
      const hp = thpSplitVma(c, pages)
      if (hp !== null) {
        c.call('thp_split', { held: true, ...hugeArg(c, hp) }, 'detach')
        return
      }
      munmapDetach(c, f)
    },
  },
  /** After a split_vma's PMD split: the other boundary's huge page (two huge pages), then detach. */
  detach: {
    run: (c, f) => {
      const hp = c.sc.thp.length > 1 ? thpSplitVma(c, list(f, 'pages')) : null
      if (hp !== null) {
        c.call('thp_split', { held: true, ...hugeArg(c, hp) }, 'detach')
        return
      }
      munmapDetach(c, f)
    },
  },
  /** unmap_vmas(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_UNMAP) over the whole range. */
  rs: {
    run: (c, f) => {
      c.rangeStart(c.mmIndex, list(f, 'pages'), 'MMU_NOTIFY_UNMAP')
      c.call('zap_vma', { pages: runPages(f, 0), i: 0 }, 'next_vma')
    },
  },
  next_vma: {
    run: (c, f) => {
      if (unmapNextVma(c, f)) return
      // v4.15: range_end calls ->invalidate_range over the whole range (not _only_end).
      c.rangeEnd(c.mmIndex, list(f, 'pages'), false)
      c.goto('pgtables')
    },
  },
  /** free_pgtables(); tlb_finish_mmu(): flush what is left, then free the queued pages. */
  /**
   * free_pgtables(): unlink_file_vma() takes the file VMAs out of the i_mmap tree (under
   * i_mmap_lock_write): from here unmap_mapping_range() no longer finds them. Then the PTE page.
   */
  pgtables: {
    guard: (c) => (c.imapWritable(c.mmIndex) ? null : 'i_mmap_rwsem held for read'),
    run: (c, f) => {
      const mm = c.mmIndex
      for (const p of list(f, 'pages')) {
        if (c.imapLinked(mm, p)) {
          c.imapUnlink(mm, p)
          c.emit('info', 'unlink_file_vma', `${c.pageName(p)}: VMA unlinked from the file's i_mmap tree`)
        }
      }
      const freed = c.freePgtables(mm, list(f, 'pages'))
      if (freed.length > 0) f.l.ft = freed
      freedTablesFlush(c, freed)
      c.goto('finish')
    },
  },
  /**
   * tlb_finish_mmu(). The PTE page free_pgtables() queued is freed through tlb_remove_table()
   * after an RCU grace period (MMU_GATHER_RCU_TABLE_FREE), which a GUP-fast walker's IRQs-off
   * section holds off: a walker that read the PMD before the unlink finishes first.
   */
  finish: {
    guard: (c, f) =>
      list(f, 'ft').length > 0 && !c.gupFastIdle(c.mmIndex)
        ? 'tlb_remove_table: the RCU grace period waits for a GUP-fast walker (IRQs off)'
        : null,
    run: (c, f) => {
      gatherFinishFlush(c, list(f, 'pages'))
      afterNotifier(c, f, 'finish_done', munmapDone)
    },
  },
  finish_done: { run: (c, f) => munmapDone(c, f) },
}

/**
 * pte_free_tlb() (v6.6 include/asm-generic/tlb.h) of each table free_pgtables() unlinked:
 * tlb_flush_pmd_range(tlb, addr, PAGE_SIZE) at the PMD range's first address (the table's first
 * user page here) and tlb->freed_tables = 1, so tlb_finish_mmu() flushes even after arm64's
 * tlb_end_vma() emptied the range, and flushes non-leaf: arm64 tlb_flush() passes last_level =
 * !freed_tables; x86 flush_tlb_mm_range(..., freed_tables) (arch/x86/mm/tlb.c) calls the v6.6
 * arch hook over the range. The secondaries' invalidations from that flush (arch-hook; v4.15
 * ->invalidate_range from tlb_flush_mmu_tlbonly) are non-leaf in the drivers modelled:
 * arm-smmu-v3-sva.c invalidates with leaf=false, intel/svm.c with ih=0; they cover that table's
 * PMD range only, hence that table's walk-cache entry.
 */
function freedTablesFlush(c: Ctx, tables: readonly number[]): void {
  const r = root(c)
  for (const k of tables) {
    const first = tablePages(c.sc, k)[0]
    const range = list(r, 'g_range')
    if (first !== undefined && !range.includes(first)) r.l.g_range = [...range, first]
  }
}

/** Detach the VMAs (vma_iter_clear_gfp), then mmap_write_downgrade() and tlb_gather_mmu(). */
function munmapDetach(c: Ctx, f: CallFrame): void {
  const mm = c.mmIndex
  const pages = list(f, 'pages')
  for (const p of pages) c.setVma(mm, p, null)
  c.emit(
    'info',
    'vma_iter_clear_gfp',
    pages.length ? `detach VMA(s) for ${c.pagesText(pages)}` : 'no VMA in range: nothing to unmap',
  )
  if (pages.length === 0) {
    if (!flag(f, 'held')) c.mmapWriteUnlock(mm)
    c.ret()
    return
  }
  if (!flag(f, 'held')) c.mmapWriteDowngrade(mm)
  gatherInit(c)
  c.goto('rs')
}

/** tlb_finish_mmu()'s free, mmap_read_unlock(), return. */
function munmapDone(c: Ctx, f: CallFrame): void {
  // tlb_finish_mmu() -> tlb_flush_mmu_free() -> tlb_table_flush(): the PTE page is freed only
  // now, after the flush above (the one that carried freed_tables).
  c.freeDetachedTable(c.mmIndex, list(f, 'ft'))
  gatherFinishFree(c)
  if (flag(f, 'held')) {
    // The syscall (mremap) has not returned yet: it marks what it revoked when it does.
    c.emit('info', 'do_munmap', `${c.pagesText(list(f, 'pages'))} unmapped`)
    c.ret()
    return
  }
  c.mmapReadUnlock(c.mmIndex)
  c.markRevoked(c.mmIndex, list(f, 'pages'), true)
  c.emit('op', 'munmap', 'returns 0')
  c.ret()
}

/** madvise(MADV_DONTNEED): madvise_dontneed_single_vma -> zap_page_range_single per VMA, v6.6. */
export const madviseDontneed: Proc = {
  start: {
    guard: (c) => (c.mmapReadable(c.mmIndex) ? null : 'mmap_lock held for write'),
    run: (c, f) => {
      c.mmapReadLock(c.mmIndex)
      if (list(f, 'req').some((p) => c.sc.pages[p]!.kind === 'pfnmap')) {
        // madvise_dontneed_free_valid_vma(): VM_PFNMAP VMAs are refused.
        c.emit('op', 'madvise', '-EINVAL: VM_PFNMAP')
        c.mmapReadUnlock(c.mmIndex)
        c.ret()
        return
      }
      const pages = startRuns(c, f, list(f, 'req'))
      if (pages.length === 0) {
        c.emit('op', 'madvise', '-ENOMEM: no VMA in range')
        c.mmapReadUnlock(c.mmIndex)
        c.ret()
        return
      }
      c.goto('vma')
    },
  },
  /** zap_page_range_single(): tlb_gather_mmu, range_start(MMU_NOTIFY_CLEAR), unmap_single_vma. */
  vma: {
    run: (c, f) => {
      gatherInit(c)
      const pages = runPages(f, num(f, 'vi'))
      c.rangeStart(c.mmIndex, pages, 'MMU_NOTIFY_CLEAR')
      c.call('zap_vma', { pages, i: 0 }, 'vma_end')
    },
  },
  vma_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, runPages(f, num(f, 'vi')), false)
      c.goto('vma_finish')
    },
  },
  vma_finish: {
    run: (c, f) => {
      gatherFinishFlush(c, runPages(f, num(f, 'vi')))
      afterNotifier(c, f, 'vma_done', madviseVmaDone)
    },
  },
  vma_done: { run: (c, f) => madviseVmaDone(c, f) },
}

/** zap_page_range_single()'s tlb_finish_mmu() free; the next VMA, or return. */
function madviseVmaDone(c: Ctx, f: CallFrame): void {
  gatherFinishFree(c)
  if (nextRun(f)) {
    c.goto('vma')
    return
  }
  c.mmapReadUnlock(c.mmIndex)
  c.markRevoked(c.mmIndex, list(f, 'pages'), true)
  c.emit('op', 'madvise', 'returns 0')
  c.ret()
}

export { nextRun, runPages, runCount, startRuns, unmapNextVma }

/**
 * unmap_mapping_range(): a driver revokes a mapping of its device memory (a BAR) by walking
 * the file's i_mmap tree under i_mmap_lock_read and zapping every VMA still linked there
 * (unmap_mapping_range_tree -> zap_page_range_single, on each VMA's mm: the process's, then a
 * fork child's, which dup_mmap linked right after it; rmap.ts walkVmas). It does not see a
 * VMA that munmap already unlinked, even if munmap has not flushed the TLBs yet: Jann Horn's
 * race, closed for VM_PFNMAP by forcing the flush at tlb_end_vma (b67fbebd4cf9; `kernel: {
 * pfnmap_flush: false }` shows it open). The op walks the tree itself (local `vi`, the VMA's
 * mm in `mm`); truncate calls it once per VMA (`nested`, with that VMA's `mm`). v6.6
 * unmap_mapping_pages()/unmap_mapping_range() take i_mmap_lock_read(mapping) once around
 * unmap_mapping_range_tree(), so the op holds it (local `il`) from its first step to its return,
 * across every VMA's zap, and an i_mmap_lock_write (free_pgtables' unlink_file_vma, fork's
 * dup_mmap, mremap's unlink of the old VMA) waits for the whole walk; truncate takes it around
 * its own walk (truncate.ts).
 */
export const unmapMappingRange: Proc = {
  start: {
    run: (c, f) => {
      if (f.l.nested !== true && f.l.il !== true) {
        // unmap_mapping_pages(): i_mmap_lock_read(mapping), once for the whole tree walk.
        c.imapRead(0, 1)
        f.l.il = true
      }
      if (f.l.nested !== true && !revokeWalk(c, f, typeof f.l.vi === 'number' ? f.l.vi : 0)) {
        revokeReturn(c, f)
        return
      }
      const mm = c.mmIndex
      const page = num(f, 'page')
      if (!c.imapLinked(mm, page)) {
        c.emit(
          'info',
          'unmap_mapping_range',
          `${c.pageName(page)}: no VMA in the i_mmap tree, nothing to zap`,
        )
        revokeNext(c, f)
        return
      }
      gatherInit(c)
      c.rangeStart(mm, mappingPages(c, page), 'MMU_NOTIFY_CLEAR')
      c.call('zap_vma', { pages: mappingPages(c, page), i: 0 }, 'end')
    },
  },
  end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, mappingPages(c, num(f, 'page')), false)
      afterNotifier(c, f, 'end_gather', revokeGather)
    },
  },
  end_gather: { run: (c, f) => revokeGather(c, f) },
  end_done: { run: (c, f) => revokeDone(c, f) },
}

/**
 * The pages unmap_mapping_range() zaps from `page` (holebegin) on: the page, or for the first
 * subpage of a file (shmem) huge page the whole huge page (truncate_pagecache's holebegin at
 * its start: zap_pmd_range meets the whole PMD and zap_huge_pmd zaps it).
 */
export function mappingPages(c: Ctx, page: number): readonly number[] {
  const hp = c.hugeOf(page)
  return hp !== null && hp.kind === 'file' && hp.pages[0] === page ? hp.pages : [page]
}

/** zap_page_range_single()'s tlb_finish_mmu() flush. */
function revokeGather(c: Ctx, f: CallFrame): void {
  gatherFinishFlush(c, mappingPages(c, num(f, 'page')))
  afterNotifier(c, f, 'end_done', revokeDone)
}

/** zap_page_range_single()'s free, then the next VMA of the walk, or return. */
function revokeDone(c: Ctx, f: CallFrame): void {
  gatherFinishFree(c)
  revokeNext(c, f)
}

/**
 * The op's walk from VMA `from` on: the process's VMA, or a fork child's still linked in the
 * tree (one that is not was never seen by vma_interval_tree_foreach); selects it (locals `vi`,
 * `mm`) and returns true, or false when the walk is over.
 */
function revokeWalk(c: Ctx, f: CallFrame, from: number): boolean {
  const ms = walkVmas(c.sc, num(f, 'page'))
  let vi = from
  while (vi < ms.length && ms[vi]!.mm !== 0 && !c.imapLinked(ms[vi]!.mm, ms[vi]!.page)) vi++
  if (vi >= ms.length) return false
  f.l.vi = vi
  walkVmaAt(c, f)
  return true
}

/** After a VMA: the op's walk goes on at the next one (a step of its own), or returns. */
function revokeNext(c: Ctx, f: CallFrame): void {
  if (f.l.nested !== true && revokeWalk(c, f, num(f, 'vi') + 1)) {
    c.goto('start')
    return
  }
  revokeReturn(c, f)
}

/**
 * The syscall's return (the revoke op: every CPU and secondary entry of a mapping it removed is
 * now stale, in each mm of the walk), or back to truncate (`nested`), which returns later.
 */
function revokeReturn(c: Ctx, f: CallFrame): void {
  if (f.l.nested !== true) {
    const page = num(f, 'page')
    delete f.l.mm
    // The tree walk is over: i_mmap_unlock_read(mapping).
    c.imapRead(0, -1)
    delete f.l.il
    for (const mm of new Set(walkVmas(c.sc, page).map((v) => v.mm))) c.markRevoked(mm, [page])
    c.emit('op', 'unmap_mapping_range', 'returns')
  }
  c.ret()
}
