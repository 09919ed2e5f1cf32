/**
 * The rmap-walk unmap shared by migration and reclaim, v6.6 mm/rmap.c try_to_migrate_one()
 * and try_to_unmap_one() with TTU_BATCH_FLUSH (of an anon page here; of a file folio over
 * every mapping of its offset: fileRmapWalk()): under the PTL, clear the PTE, queue the TLB
 * flush in the batch (set_tlb_ubc_flush_pending -> arch_tlbbatch_add_pending: x86 calls the
 * arch hook with (0, -1) for every page and defers the CPU flush to arch_tlbbatch_flush;
 * arm64 issues the per-page TLBI and hook now), mark the folio dirty, install the non-present
 * entry, page_remove_rmap() and folio_put() the PTE's reference. Without TTU_BATCH_FLUSH (a
 * migration pass in a sync mode: the frame's `ttu_sync` local) the clear is ptep_clear_flush().
 *
 * Every batched unmap leaves mm->tlb_flush_batched pending, and the page-table walkers that
 * may find the cleared PTE call flush_tlb_batched_pending() right after taking the PTL
 * (3ea277194daa, v4.13): see flushTlbBatchedPending().
 */
import type { Ctx } from '../ctx'
import { ZERO_PFN, type CallFrame, type Pte } from '../state'
import type { Scenario } from '../types'
import { afterNotifier, decodePte, encodePte, flag, num, type PcHandler, type Proc } from './proc'

/**
 * The common start of migrate_folio_unmap(), shrink_folio_list() and migrate_vma_collect_pmd():
 * find the mapped anon folio of the frame's page, take a reference and keep its pfn in `f.l.pfn`.
 * With `busy` (reclaim's isolate_lru_folios, migrate_pages' caller's folio_isolate_lru) the
 * reference is the isolation's and the folio leaves the LRU; a folio another thread isolated
 * is not on it (folio_test_clear_lru fails): an op event ends the op with `busy`
 * (migration's -EBUSY, reclaim skipping it). Without `busy`, a plain folio_get (migrate_vma
 * collects first and isolates in migrate_device_unmap).
 * Returns the pfn, or null (after an info or op event and ret) when there is no such folio.
 */
export function isolateMappedFolio(
  c: Ctx,
  f: CallFrame,
  kfn: string,
  what: string,
  busy?: string,
): number | null {
  const page = num(f, 'page')
  const pte = c.pte(c.mmIndex, page)
  if (!pte || !pte.present || pte.pfn === ZERO_PFN) {
    c.emit('info', kfn, `${c.pageName(page)}: no mapped anon page to ${what}`)
    c.ret()
    return null
  }
  if (busy !== undefined) {
    if (!c.isolateLru(pte.pfn, kfn === 'shrink_folio_list' ? 'isolate_lru_folios' : 'folio_isolate_lru')) {
      c.emit('op', what, `${c.pageName(page)}: ${busy}`)
      c.ret()
      return null
    }
  }
  c.getFrame(pte.pfn)
  f.l.pfn = pte.pfn
  return pte.pfn
}

/**
 * PageAnonExclusive of anon page `pfn` that try_to_unmap_one() unmaps, as the model
 * approximates it. The kernel clears the flag when fork shares the page (copy_present_pte ->
 * page_try_dup_anon_rmap) and sets it on a page a fault allocates or reuses for one process; the
 * model keeps no such flag: a page is exclusive while only this PTE maps it (a fork under way
 * that copied the PTE already made it shared) and no fork child exists; while one does, even
 * the child's own copy counts as shared. do_swap_page() then falls back on
 * `folio_ref_count(folio) == 1`, as the kernel does for a swap entry without SWP_EXCLUSIVE.
 */
export function anonExclusive(c: Ctx, pfn: number): boolean {
  return c.folio(pfn).map === 1 && !(scenarioHasChild(c.sc) && c.mmLive(1))
}

/**
 * folio_unlock() of anon folio `pfn` if this thread holds its lock (a path shared by a caller
 * that took it and one that did not: a failed folio_trylock).
 */
export function unlockIfHeld(c: Ctx, pfn: number, label: string, fn = 'folio_unlock'): void {
  if (c.folio(pfn).lk === c.t) c.anonUnlock(pfn, label, fn)
}

/**
 * After a present PTE of an anon page was cleared: the dirty bit goes to the folio, the
 * non-present entry (migration or swap) is installed, page_remove_rmap() and folio_put() of the
 * PTE's reference (try_to_*_one(), migrate_vma_collect_pmd()).
 */
export function installEntry(c: Ctx, mm: number, page: number, pte: Pte, entry: Pte, entryFn: string): void {
  if (pte.dirty) c.emit('frame', 'folio_mark_dirty', `pfn ${pte.pfn}`)
  // try_to_unmap_one() (v6.6 mm/rmap.c): swap_duplicate(entry) before the swap PTE goes in, so
  // the slot's swap_map count is the number of PTEs that refer to it.
  // `if (anon_exclusive) swp_pte = pte_swp_mkexclusive(swp_pte);` (d7c0e68dab98, v5.19)
  if (entry.swp !== undefined) {
    c.swapDup(entry.swp)
    if (anonExclusive(c, pte.pfn)) entry = { ...entry, excl: true }
  }
  c.setPte(mm, page, entry, entryFn)
  const fr = c.folioW(pte.pfn)
  fr.map--
  c.emit('frame', 'page_remove_rmap', `pfn ${pte.pfn} mapcount ${fr.map}`)
  c.putFrame(pte.pfn, 'folio_put (the PTE reference)')
}

/**
 * rmap_walk_anon()'s anon_vma_lock_read() at the walk's first VMA (local `av` while held; the
 * guard waits for a writer: a collapse, split_huge_page), for the guard of a walk's step.
 */
export function anonWalkGuard(c: Ctx, f: CallFrame): string | null {
  return flag(f, 'av') || c.anonVmaReadable() ? null : 'anon_vma lock held for write'
}
export function anonWalkLock(c: Ctx, f: CallFrame): void {
  if (flag(f, 'av')) return
  c.anonVmaRead(1, 'rmap_walk_anon: anon_vma_lock_read')
  f.l.av = true
}
/** anon_vma_unlock_read() when the walk is over (a no-op if it never took it). */
export function anonWalkUnlock(c: Ctx, f: CallFrame): void {
  if (!flag(f, 'av')) return
  c.anonVmaRead(-1, 'rmap_walk_anon: anon_vma_unlock_read')
  delete f.l.av
}

/**
 * try_to_*_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR), then the unmap step;
 * the walk's anon_vma_lock_read at its first VMA.
 */
export const rmapRangeStart: PcHandler = {
  guard: anonWalkGuard,
  run: (c, f) => {
    anonWalkLock(c, f)
    c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_CLEAR')
    c.goto('unmap')
  },
}

/**
 * rmap_walk_anon()'s next VMA for try_to_unmap() / try_to_migrate(): from VMA `from` of
 * walkVmas() on, the next VMA of the folio's (local `pfn`) anon_vma interval tree (anonVmaHas),
 * unless the folio is unmapped already (rwc->done: folio_not_mapped, checked after each VMA);
 * with it selected (locals `vi`, `mm`) goes to `found`, else (the walk is over: `mm` dropped) to
 * `done`. A VMA of the tree whose PTE no longer maps the folio is still visited: v6.6
 * try_to_unmap_one / try_to_migrate_one call mmu_notifier_invalidate_range_start before
 * page_vma_mapped_walk, which then finds nothing there (rmapUnmap's not-found path).
 */
export function anonWalkNext(c: Ctx, f: CallFrame, from: number, found: string, done: string): void {
  const ms = walkVmas(c.sc, num(f, 'page'))
  const pfn = num(f, 'pfn')
  let vi = from
  if (c.folio(pfn).map === 0) vi = ms.length
  while (vi < ms.length && !anonVmaHas(c, pfn, ms[vi]!.mm, ms[vi]!.page)) vi++
  c.goto(selectWalkVma(c, f, vi, ms.length) ? found : done)
}
/**
 * Whether the folio `pfn`'s anon_vma interval tree holds the VMA of `mm` at `page`: a folio of
 * the child's own anon_vma (avc) only the child's; the process's anon_vma both, the child's
 * once fork cloned it (the child's mm is live). A VMA is there while it exists, or while its
 * PTE still maps the folio (detached by munmap but not yet unlinked by free_pgtables).
 */
function anonVmaHas(c: Ctx, pfn: number, mm: number, page: number): boolean {
  if (c.folio(pfn).avc === true && mm === 0) return false
  if (mm === 1 && !c.mmLive(1)) return false
  const pte = c.pte(mm, page)
  return c.vma(mm, page) !== null || (pte?.present === true && pte.pfn === pfn)
}

/**
 * The unmap step: `entry` is the non-present PTE to install (migration or swap entry);
 * `v415Invalidate` adds v4.15's explicit ->invalidate_range right after the clear (the swap
 * path: "We have to invalidate as we cleared the pte"). Sets f.l.mapped (and, for a batched x86
 * clear, the mm in f.l.bmm: noteBatched) and continues at `pcs.next` ('rs_end'); the step after
 * the flush's notifier is `pcs.rest` ('unmap_rest'). It works on c.mmIndex: the mm of the VMA
 * the walk is at (walkVmaAt).
 */
export function rmapUnmap(
  entry: (pte: Pte, f: CallFrame) => Pte,
  entryFn: string,
  v415Invalidate: boolean,
  pcs: { readonly rest: string; readonly next: string } = { rest: 'unmap_rest', next: 'rs_end' },
): { unmap: PcHandler; unmap_rest: PcHandler } {
  /** After the flush (and its notifiers): the non-present entry, the rmap and the reference. */
  const rest = (c: Ctx, f: CallFrame): void => {
    const mm = c.mmIndex
    const page = num(f, 'page')
    const pte = decodePte(f.l.old!)!
    delete f.l.old
    installEntry(c, mm, page, pte, entry(pte, f), entryFn)
    c.unlockPtl(mm, page)
    f.l.mapped = true
    c.goto(pcs.next)
  }
  const unmap: PcHandler = {
    guard: (c, f) => pvmwGuard(c, c.mmIndex, num(f, 'page')),
    run: (c: Ctx, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      if (!pvmwMapPte(c, mm, page)) {
        if (f.l.mapped !== true) f.l.mapped = false
        c.goto(pcs.next)
        return
      }
      const pte = c.pte(mm, page)
      if (!pte || !pte.present || pte.pfn !== num(f, 'pfn')) {
        // check_pte(): another folio (the VMA's own COW copy); not_found, unlock.
        c.emit('info', 'page_vma_mapped_walk', `${c.pageName(page)}: the PTE maps another folio`)
        c.unlockPtl(mm, page)
        // Another VMA of the walk may have unmapped it already.
        if (f.l.mapped !== true) f.l.mapped = false
        c.goto(pcs.next)
        return
      }
      if (flag(f, 'ttu_sync')) {
        // No TTU_BATCH_FLUSH (should_defer_flush() false): ptep_clear_flush(), the CPU flush
        // (and the v6.6 arch hook inside it) now, under the PTL; nothing left pending.
        c.setPte(mm, page, null, 'ptep_clear_flush')
        c.flushTlb(mm, 'page', [page], 'flush_tlb_page (ptep_clear_flush)')
      } else {
        c.setPte(mm, page, null, 'ptep_get_and_clear')
        // set_tlb_ubc_flush_pending(): atomic_inc(&mm->tlb_flush_batched) (pending moves ahead
        // of flushed until a flush_tlb_batched_pending(); try_to_unmap_flush() does not reset it).
        // The kernel bumps it just after arch_tlbbatch_add_pending(). Setting it first, in the
        // step that clears the PTE, leaves the notifier call (an atc-first driver's owed
        // command) last; a walker of another PTE table (its own PTL) that reads it before that
        // command completes only flushes earlier, for a PTE that is already clear.
        c.setTlbBatched(mm, true)
        if (c.sc.arch === 'x86_64') {
          c.emit('cpu-flush', 'arch_tlbbatch_add_pending', 'CPU flush deferred to arch_tlbbatch_flush', {
            pages: [c.pageName(page)],
          })
          c.archHook(mm, null, 'arch_tlbbatch_add_pending')
          noteBatched(f, mm)
        } else {
          c.flushTlb(
            mm,
            'page',
            [page],
            'arch_tlbbatch_add_pending (__flush_tlb_page_nosync)',
            'arch_tlbbatch_add_pending',
          )
        }
      }
      if (v415Invalidate) c.invalidateRange(mm, [page], 'try_to_unmap_one')
      f.l.old = encodePte(pte)
      afterNotifier(c, f, pcs.rest, rest)
    },
  }
  return { unmap, unmap_rest: { run: rest } }
}

/**
 * page_vma_mapped_walk() -> map_pte() without PVMW_SYNC (v6.6 mm/page_vma_mapped.c): the PTE
 * is read locklessly (pte_offset_map_nolock) and the PTL taken only for a present PTE; a none
 * or non-present one (migration, swap entry) is not_found with no lock. Returns whether the PTL
 * is now held; an info event says why not.
 */
export function pvmwMapPte(c: Ctx, mm: number, page: number): boolean {
  const pte = c.pte(mm, page)
  if (!pte?.present) {
    c.emit(
      'info',
      'page_vma_mapped_walk',
      `${c.pageName(page)}${mm === 1 ? ' (child)' : ''}: no present PTE: not found, no PTL`,
    )
    return false
  }
  c.lockPtl(mm, page, 'page_vma_mapped_walk')
  return true
}
/** map_pte()'s spin_lock waits only when the PTE it read is present (pvmwMapPte). */
export function pvmwGuard(c: Ctx, mm: number, page: number): string | null {
  return c.pte(mm, page)?.present !== true || c.ptlFree(mm, page) ? null : 'page-table lock held'
}

/**
 * flush_tlb_batched_pending(mm), v6.6 mm/rmap.c (3ea277194daa, v4.13; the arch split is
 * 43b3dfdd0455, v6.5): called right after taking the PTL by change_pte_range (mprotect),
 * zap_pte_range (munmap, MADV_DONTNEED, unmap_mapping_range), move_ptes (mremap) and the madvise
 * walkers. If a batched unmap (try_to_unmap_one / try_to_migrate_one with TTU_BATCH_FLUSH) left
 * the mm's pending count ahead of its flushed count, arch_flush_tlb_batched_pending(mm) runs:
 * - x86: flush_tlb_mm(mm), i.e. flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, ...): every CPU of the
 *   mm, and under the v6.6 arch hook mmu_notifier_arch_invalidate_secondary_tlbs(mm, 0, -1);
 * - arm64: dsb(ish), waiting for the TLBIs that arch_tlbbatch_add_pending already issued (the
 *   model applies a TLBI when it is issued): no flush, nothing for the secondaries.
 * then the cmpxchg makes flushed = pending (one step here; a set_tlb_ubc_flush_pending under
 * another table's PTL lands before or after it, and the kernel's cmpxchg keeps a bump that came
 * in between pending). The caller holds the PTL of its table and continues with
 * afterNotifier(): the flush may leave a driver command owed. Returns whether it flushed.
 */
export function flushTlbBatchedPending(c: Ctx, mm: number, caller: string): boolean {
  if (!c.tlbBatched(mm)) return false
  // flushed = pending first, in this step: no other thread sees the order, and the flush's
  // notifier call (an atc-first driver's owed command) comes last.
  c.setTlbBatched(mm, false)
  if (c.sc.arch === 'x86_64') {
    c.flushTlb(mm, 'mm', [], `flush_tlb_mm (flush_tlb_batched_pending, ${caller})`)
  } else {
    c.emit(
      'info',
      'flush_tlb_batched_pending',
      `${caller}: arch_flush_tlb_batched_pending: dsb(ish), the batched TLBIs were issued at add time`,
    )
  }
  return true
}

/** One VMA an rmap or i_mmap walk visits: its mm (vma->vm_mm) and the page (address) there. */
export interface WalkVma {
  readonly mm: number
  readonly page: number
}

const CHILD = new WeakMap<Scenario, boolean>()
/** Whether the scenario has a fork child: a fork op, or cow pages that imply one. */
export function scenarioHasChild(sc: Scenario): boolean {
  let x = CHILD.get(sc)
  if (x === undefined)
    CHILD.set(
      sc,
      (x = sc.pages.some((p) => p.cow) || sc.threads.some((t) => t.ops.some((o) => o.kind === 'fork'))),
    )
  return x
}

const SWAPS = new WeakMap<Scenario, boolean>()
/**
 * Whether anything can put an anon folio into the swap cache (a reclaim op): only then do the
 * swap-cache checks of do_wp_page and free_pages_and_swap_cache read the swap state, which
 * would otherwise make every such step depend on every allocation.
 */
export function scenarioSwaps(sc: Scenario): boolean {
  let x = SWAPS.get(sc)
  if (x === undefined) SWAPS.set(sc, (x = sc.threads.some((t) => t.ops.some((o) => o.kind === 'reclaim'))))
  return x
}

/**
 * The swap cache's own reference on anon folio `pfn` (1 while a swap-in or a kept reclaim left
 * it in the swap cache, else 0): what the kernel's refcount checks count in besides the mapcount
 * (folio_expected_refs' nr for a swapcache folio, write_protect_page's `swapped`).
 */
export function swapCacheRefs(c: Ctx, pfn: number): number {
  if (!scenarioSwaps(c.sc)) return 0
  const slot = c.swapSlotOf(pfn)
  return slot >= 0 && c.swapCacheRef(slot) ? 1 : 0
}

const WALKS = new WeakMap<Scenario, Map<number, readonly WalkVma[]>>()
/**
 * The VMAs a walk over the folio mapped at `page` visits, in the order the kernel's tree holds
 * them, whether or not they exist yet (a walk skips the VMAs not in its tree: not linked in
 * the i_mmap tree, not in the folio's anon_vma; it visits the others even where the PTE no
 * longer maps the folio): for each address of the page's file offset (the page, or the one it is declared
 * `file:` of, and every page declared `file:` of that one; an anon or pfnmap page has one), the process's VMA and then the fork child's. The child's comes right after its
 * parent's in both trees: dup_mmap() links a shared file VMA with vma_interval_tree_insert_after
 * (the i_mmap tree, v6.6 kernel/fork.c), and anon_vma_fork() -> anon_vma_clone() adds the
 * child's VMA to the parent's anon_vma interval tree, where equal keys go right (after).
 */
export function walkVmas(sc: Scenario, page: number): readonly WalkVma[] {
  let m = WALKS.get(sc)
  if (!m) WALKS.set(sc, (m = new Map()))
  let w = m.get(page)
  if (!w) {
    const pg = sc.pages[page]!
    const owner = pg.fileOf ?? page
    const addrs =
      pg.kind === 'file' ? [owner, ...sc.pages.flatMap((q, i) => (q.fileOf === owner ? [i] : []))] : [page]
    const mms = scenarioHasChild(sc) ? [0, 1] : [0]
    m.set(page, (w = addrs.flatMap((a) => mms.map((mm) => ({ mm, page: a })))))
  }
  return w
}

/**
 * The VMA local `vi` of a walk over local `page` is at (walkVmas). Its mm goes into local `mm`,
 * so that the kernel code under it (Ctx.mmIndex) works on vma->vm_mm.
 */
export function walkVmaAt(c: Ctx, f: CallFrame): WalkVma {
  const v = walkVmas(c.sc, num(f, 'page'))[num(f, 'vi')]!
  f.l.mm = v.mm
  return v
}

/**
 * An rmap walk moves to VMA `vi` of the `n` walkVmas(): true with locals `vi` and `mm` set, or
 * false past the last one (`mm` dropped).
 */
export function selectWalkVma(c: Ctx, f: CallFrame, vi: number, n: number): boolean {
  f.l.vi = vi
  if (vi < n) {
    walkVmaAt(c, f)
    return true
  }
  delete f.l.mm
  return false
}

/** The mapping the walk is at: local `vi` indexes walkVmas() of local `page` (mm in local `mm`). */
export function fileMappingAt(c: Ctx, f: CallFrame): number {
  return walkVmaAt(c, f).page
}

/**
 * The clears of a batched unmap (TTU_BATCH_FLUSH) to be flushed by try_to_unmap_flush(): x86
 * arch_tlbbatch_add_pending() ORs mm_cpumask(mm) into the batch, so arch_tlbbatch_flush()
 * flushes the CPUs of every mm it added. Local `bmm` is the set of those mms, as a bit mask.
 */
export function noteBatched(f: CallFrame, mm: number): void {
  f.l.bmm = (typeof f.l.bmm === 'number' ? f.l.bmm : 0) | (1 << mm)
}

/**
 * try_to_unmap_flush() (x86 arch_tlbbatch_flush: the CPUs of every mm the batch added, no arch
 * hook; arm64 issued its TLBIs at add time: a DSB). `kind`/`pages` as the caller flushes.
 */
export function tryToUnmapFlush(
  c: Ctx,
  f: CallFrame,
  kind: 'page' | 'range' | 'mm',
  pages: readonly number[],
  fn: string,
): void {
  const bmm = typeof f.l.bmm === 'number' ? f.l.bmm : 0
  // One flush of the union of the cpumasks; the model flushes each mm's CPUs in turn.
  for (let mm = 0; mm < 2; mm++)
    if (bmm & (1 << mm)) c.flushTlb(mm, kind, pages, mm === 1 ? `${fn}: the fork child's CPUs` : fn, null)
  delete f.l.bmm
}

/**
 * rmap_walk_file() (v6.6 mm/rmap.c) takes i_mmap_lock_read(mapping) once before
 * vma_interval_tree_foreach and drops it after the last VMA (local `il`): an i_mmap_lock_write
 * (unlink_file_vma, dup_mmap) waits for the whole walk. fileWalkLock() at the walk's start (the
 * caller tested folio_mapped()), fileWalkUnlock() when it is over (a no-op if never taken).
 */
export function fileWalkLock(c: Ctx, f: CallFrame): void {
  c.imapRead(0, 1)
  f.l.il = true
}
export function fileWalkUnlock(c: Ctx, f: CallFrame): void {
  if (f.l.il !== true) return
  c.imapRead(0, -1)
  delete f.l.il
}

/**
 * rmap_walk_file() over a file folio (local `pfn`) with try_to_unmap_one() (reclaim) or
 * try_to_migrate_one() (migration) and TTU_BATCH_FLUSH, per VMA of the walk (walkVmaAt: the
 * process's and the fork child's mappings of the offset): rs: range_start(MMU_NOTIFY_CLEAR) on
 * that VMA's mm (the child's has no subscribers); unmap: its PTL, ptep_get_and_clear with the
 * flush batched (set_tlb_ubc_flush_pending: x86 calls the arch hook with (0, -1) and defers the
 * CPU flush, noting the mm in local `bmm`; arm64 flushes the page now); unmap_rest: a dirty
 * PTE's bit to the folio, `entry` installed (migration: the migration entry; reclaim of a file
 * page leaves the PTE none, the page cache finds it again), page_remove_rmap, folio_put; re:
 * range_end, then `next` (the caller's: the next VMA, or the folio's fate) at step 'next'.
 */
export function fileRmapWalk(
  kfn: 'try_to_unmap_one' | 'try_to_migrate_one',
  next: (c: Ctx, f: CallFrame) => void,
  entry?: {
    readonly pte: (pte: Pte) => Pte
    readonly fn: string
    readonly installed: (f: CallFrame, vi: number) => void
  },
): Proc {
  /** The dirty bit, the non-present entry, page_remove_rmap and the PTE's reference. */
  const rest = (c: Ctx, f: CallFrame): void => {
    const page = fileMappingAt(c, f)
    const mm = c.mmIndex
    const pte = decodePte(f.l.old!)!
    delete f.l.old
    if (pte.dirty) c.folioMarkDirty(page, `${kfn}: folio_mark_dirty (pte_dirty)`)
    if (entry) c.setPte(mm, page, entry.pte(pte), entry.fn)
    const fr = c.folioW(pte.pfn)
    fr.map--
    c.emit('frame', 'page_remove_rmap', `pfn ${pte.pfn} mapcount ${fr.map}`)
    c.putFrame(pte.pfn, 'folio_put (the PTE reference)')
    entry?.installed(f, num(f, 'vi'))
    c.unlockPtl(mm, page)
    c.goto('re')
  }
  return {
    /** mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR). */
    rs: {
      run: (c, f) => {
        const page = fileMappingAt(c, f)
        c.rangeStart(c.mmIndex, [page], 'MMU_NOTIFY_CLEAR')
        afterNotifier(c, f, 'unmap', (cc) => cc.goto('unmap'))
      },
    },
    /** page_vma_mapped_walk (PTL), ptep_get_and_clear, set_tlb_ubc_flush_pending. */
    unmap: {
      guard: (c, f) => pvmwGuard(c, c.mmIndex, fileMappingAt(c, f)),
      run: (c, f) => {
        const page = fileMappingAt(c, f)
        const mm = c.mmIndex
        if (!pvmwMapPte(c, mm, page)) {
          c.goto('re')
          return
        }
        const pte = c.pte(mm, page)
        if (!pte || !pte.present || pte.pfn !== num(f, 'pfn')) {
          c.emit('info', 'page_vma_mapped_walk', `${c.pageName(page)}: the PTE maps another folio`)
          c.unlockPtl(mm, page)
          c.goto('re')
          return
        }
        c.setPte(mm, page, null, 'ptep_get_and_clear')
        // set_tlb_ubc_flush_pending()'s tlb_flush_batched bump, before the notifier call, in the
        // clearing step (see rmapUnmap): an atc-first driver's command stays last.
        c.setTlbBatched(mm, true)
        if (c.sc.arch === 'x86_64') {
          c.emit('cpu-flush', 'arch_tlbbatch_add_pending', 'CPU flush deferred to arch_tlbbatch_flush', {
            pages: [c.pageName(page)],
          })
          c.archHook(mm, null, 'arch_tlbbatch_add_pending')
          noteBatched(f, mm)
        } else
          c.flushTlb(
            mm,
            'page',
            [page],
            'arch_tlbbatch_add_pending (__flush_tlb_page_nosync)',
            'arch_tlbbatch_add_pending',
          )
        f.l.old = encodePte(pte)
        afterNotifier(c, f, 'unmap_rest', rest)
      },
    },
    unmap_rest: { run: rest },
    /** mmu_notifier_invalidate_range_end(); then the next VMA, or the folio's fate. */
    re: {
      run: (c, f) => {
        const page = fileMappingAt(c, f)
        c.rangeEnd(c.mmIndex, [page], false)
        f.l.vi = num(f, 'vi') + 1
        delete f.l.mm
        afterNotifier(c, f, 'next', next)
      },
    },
    next: { run: next },
  }
}
