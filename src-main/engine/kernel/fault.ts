/**
 * The page-fault path, v6.6 mm/memory.c: handle_mm_fault() -> handle_pte_fault() and what
 * it dispatches to (do_anonymous_page, do_swap_page, do_wp_page -> wp_page_reuse /
 * wp_page_copy, the dirty/young update and the spurious-fault fixup). Used by CPU faults, by the IOMMU fault
 * handler (iommu_sva_handle_iopf, FAULT_FLAG_REMOTE), by GUP for sw-mirrors, and by the
 * write_fault / cow_fault ops.
 *
 * Returns 'ok' (the access may be retried), 'retry' (the PTE changed under us: pte_same
 * failed, back off and retry), or 'segv' (no VMA or no permission: SIGSEGV for a CPU,
 * IOMMU_PAGE_RESP_INVALID for a device).
 *
 * File pages (kind: file, a MAP_SHARED mapping with writenotify) fault the page-cache folio
 * in with do_read_fault / do_shared_fault (read: mapped read-only and clean; write: writable,
 * dirty, folio_mark_dirty), and a write to a read-only PTE is do_wp_page -> wp_page_shared():
 * drop the PTL, ->page_mkwrite locks the folio (do_page_mkwrite), finish_mkwrite_fault
 * re-takes the PTL and re-checks pte_same, wp_page_reuse makes the PTE writable and dirty, and
 * fault_dirty_shared_page() marks the folio dirty before folio_unlock(). No copy.
 */
import { pfnmapFault } from './pfnmap'
import { doSetPmd, doSetPmdHuge, hugeArg, thpAnonExclusive } from './thp'
import type { Ctx } from '../ctx'
import { ZERO_PFN, type CallFrame, type Pte } from '../state'
import { afterNotifier, decodePte, encodePte, flag, num, pteSame, type Proc } from './proc'
import { scenarioSwaps } from './rmap'

/**
 * ptep_set_access_flags(vma, addr, ptep, entry, dirty), v6.6:
 * - arm64 (arch/arm64/mm/fault.c): cmpxchg the PTE, then `if (dirty) flush_tlb_page()`
 *   ("invalidate a stale read-only entry") — under arch-hook that flush notifies secondaries.
 * - x86 (arch/x86/mm/pgtable.c): set_pte() only, no flush: a stale entry faults and the
 *   #PF drops it.
 * Returns whether the PTE changed. At the `ptep_set_access_flags` site, a change also calls
 * ptep_set_access_flags_notify()'s mmu_notifier_invalidate_range() under the PTL.
 */
export function ptepSetAccessFlags(c: Ctx, mm: number, page: number, entry: Pte, dirty: boolean): boolean {
  if (pteSame(c.pte(mm, page), entry)) return false
  c.setPte(mm, page, entry, 'ptep_set_access_flags')
  if (c.sc.arch === 'arm64' && dirty) c.flushTlb(mm, 'page', [page], 'flush_tlb_page (ptep_set_access_flags)')
  c.accessFlagsNotify(mm, page)
  return true
}

/**
 * The upgrade pair returned (handle_pte_fault: done; wp_page_reuse: back in its caller, which
 * for wp_page_shared is fault_dirty_shared_page).
 */
function upgDone(c: Ctx, f: CallFrame): void {
  if (f.l.upg === 'shared') {
    delete f.l.upg
    mkwriteTail(c, f)
    return
  }
  finish(c, c.mmIndex, 'ok')
}

/**
 * wp_page_reuse() after ptep_set_access_flags(): unlock, done. At the `wp_page_reuse` site
 * the upgrade pair follows the unlock (f.l.upg, set only then).
 */
function reuseDone(c: Ctx, f: CallFrame): void {
  c.unlockPtl(c.mmIndex, num(f, 'page'))
  c.cost('reuse_fault')
  if (f.l.upg !== undefined) {
    c.goto('upg_start')
    return
  }
  finish(c, c.mmIndex, 'ok')
}

/**
 * handle_pte_fault()'s dirty/young update done: unlock; at the `handle_pte_fault` site (Popple
 * v1) the upgrade pair follows.
 */
function dirtyDone(c: Ctx, f: CallFrame): void {
  c.unlockPtl(c.mmIndex, num(f, 'page'))
  if (f.l.changed === true && c.at('handle_pte_fault')) {
    c.goto('upg_start')
    return
  }
  finish(c, c.mmIndex, 'ok')
}

/**
 * wp_page_shared() after the PTE is made writable: wp_page_reuse's unlock (and at its site
 * the upgrade pair), then fault_dirty_shared_page().
 */
function mkwriteDone(c: Ctx, f: CallFrame): void {
  c.unlockPtl(c.mmIndex, num(f, 'page'))
  if (f.l.upg !== undefined) {
    c.goto('upg_start')
    return
  }
  mkwriteTail(c, f)
}

/** fault_dirty_shared_page(): folio_mark_dirty, folio_unlock; folio_put of the fault's reference. */
function mkwriteTail(c: Ctx, f: CallFrame): void {
  const page = num(f, 'page')
  c.folioMarkDirty(page, 'fault_dirty_shared_page: folio_mark_dirty')
  c.folioUnlock(page)
  c.putFrame(decodePte(f.l.orig!)!.pfn)
  c.cost('reuse_fault')
  finish(c, c.mmIndex, 'ok')
}

/** wp_page_copy() after range_end: drop the references, done (or retry if it backed off). */
function cowDone(c: Ctx, f: CallFrame): void {
  const old = decodePte(f.l.orig!)!
  if (f.l.copied === true) c.putFrame(old.pfn)
  else c.putFrame(num(f, 'new'))
  c.putFrame(old.pfn)
  c.cost('cow_copy_fault')
  finish(c, c.mmIndex, f.l.copied === true ? 'ok' : 'retry')
}

/** do_huge_pmd_wp_page() after pmdp_set_access_flags(): spin_unlock, done. */
function thpWpDone(c: Ctx, f: CallFrame): void {
  c.pmdUnlock(c.mmIndex, c.hugeOf(num(f, 'page'))!)
  c.cost('reuse_fault')
  finish(c, c.mmIndex, 'ok')
}

/**
 * A subpage of the huge folio mapped by a PTE after fork (PageAnonExclusive cleared): v6.6
 * do_wp_page()'s wp_can_reuse_anon_folio() gives up on it (`folio_ref_count(folio) > 3`: every
 * PTE-mapped subpage holds a reference on the large folio; reusing a PTE-mapped THP came in
 * v6.8), so the subpage is copied even once the other side has unmapped it.
 */
function sharedThpSubpage(c: Ctx, page: number): boolean {
  return c.isThp(page) && c.mmLive(1)
}

/**
 * do_wp_page() (v6.6 mm/memory.c) on an anon or zero page, entered with the PTL held and
 * vmf->orig_pte = `orig` (from handle_pte_fault, or inline from do_swap_page). The anon reuse
 * test: PageAnonExclusive, else `folio_ref_count(folio) > 1 + folio_test_swapcache(folio)` copies;
 * folio_trylock; `if (folio_test_swapcache(folio)) folio_free_swap(folio)` (which succeeds only
 * when no swap PTE shares the slot); `folio_ref_count(folio) != 1` copies; else reuse. The model
 * keeps no PageAnonExclusive (rmap.ts anonExclusive) and decides on the counts alone.
 */
function doWpPage(c: Ctx, f: CallFrame, mm: number, page: number, orig: Pte): void {
  if (orig.pfn !== ZERO_PFN && scenarioSwaps(c.sc) && c.folio(orig.pfn).map === 1) {
    const slot = c.swapSlotOf(orig.pfn)
    // Not while reclaim holds the folio (folio_trylock fails): its count is then above 2 anyway.
    if (slot >= 0 && c.folioRefCount(orig.pfn) === 2 && c.folioFreeSwap(slot, 'do_wp_page: folio_free_swap'))
      c.emit(
        'info',
        'do_wp_page',
        `folio_free_swap: pfn ${orig.pfn} leaves the swap cache, slot ${slot} is freed (no swap PTE shares it)`,
      )
  }
  const fr = c.folio(orig.pfn)
  if (orig.pfn !== ZERO_PFN && fr.map === 1 && fr.ref === 1 && !sharedThpSubpage(c, page)) {
    // wp_page_reuse(): exclusive anon page, upgrade in place. No mmu_notifier range at
    // all in v6.6 (and v4.15); Popple's v1 did not cover this path either (the
    // `wp_page_reuse` site adds the pair it would need).
    c.emit('fault', 'do_wp_page', 'page is exclusive: wp_page_reuse')
    const changed = ptepSetAccessFlags(c, mm, page, { ...orig, write: true, dirty: true }, true)
    if (changed && c.at('wp_page_reuse')) f.l.upg = 'anon'
    afterNotifier(c, f, 'reuse_done', reuseDone)
    return
  }
  // Shared page or zero page: folio_get(), drop the PTL, wp_page_copy().
  c.emit(
    'fault',
    'do_wp_page',
    orig.pfn === ZERO_PFN ? 'zero page: wp_page_copy' : `page shared (mapcount ${fr.map}): wp_page_copy`,
  )
  c.getFrame(orig.pfn)
  c.unlockPtl(mm, num(f, 'page'))
  // wp_page_copy(): allocate and copy (__wp_page_copy_user) before any notifier.
  const src = c.folio(orig.pfn)
  const pfn = c.allocFrame(orig.pfn === ZERO_PFN ? 0 : src.v, 'wp_page_copy (alloc + __wp_page_copy_user)')
  f.l.new = pfn
  f.l.w = src.w
  // wp_page_copy's folio_add_new_anon_rmap(): the child's copy hangs off its own anon_vma.
  if (mm === 1) c.folioW(pfn).avc = true
  c.goto('cow_rs')
}

/**
 * pte_offset_map_lock(), then the fault handlers' `if (!pte_same(ptep_get(vmf->pte),
 * vmf->orig_pte))` back-off: unlock, drop what the caller holds (`release`), and return to
 * retry the fault. True with the PTL held when the PTE is still `orig`.
 */
function lockPteSame(
  c: Ctx,
  mm: number,
  page: number,
  orig: Pte | null,
  fn: string,
  why: string,
  lockFn?: string,
  release?: () => void,
): boolean {
  c.lockPtl(mm, page, lockFn)
  if (pteSame(c.pte(mm, page), orig)) return true
  c.emit('fault', fn, `!pte_same(): ${why}, back off`)
  c.unlockPtl(mm, page)
  release?.()
  finish(c, mm, 'retry')
  return false
}

function finish(c: Ctx, mm: number, result: 'ok' | 'retry' | 'segv'): void {
  c.mmapReadUnlock(mm)
  c.ret(result)
}

export const handleMmFault: Proc = {
  /**
   * lock_vma_under_rcu()/mmap_read_lock() + vma_lookup() and the access check
   * (do_user_addr_fault; for devices iommu_sva_handle_iopf's `access_flags & ~vma->vm_flags`),
   * then the lockless read of vmf->orig_pte in handle_pte_fault().
   */
  start: {
    guard: (c) => (c.mmapReadable(c.mmIndex) ? null : 'mmap_lock held for write'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const write = flag(f, 'write')
      c.mmapReadLock(mm)
      const vma = c.vma(mm, page)
      if (vma === null || (write && vma !== 'rw') || vma === 'none') {
        c.emit(
          'fault',
          flag(f, 'remote') ? 'iommu_sva_handle_iopf' : 'do_user_addr_fault',
          `${vma === null ? 'no VMA' : `VMA is ${vma}`} at ${c.pageName(page)}: ${flag(f, 'remote') ? 'IOMMU_PAGE_RESP_INVALID' : 'SIGSEGV'}`,
        )
        finish(c, mm, 'segv')
        return
      }
      f.l.orig = encodePte(c.pte(mm, page))
      c.emit(
        'fault',
        'handle_mm_fault',
        `${write ? 'write' : 'read'} fault on ${c.pageName(page)}${flag(f, 'remote') ? ' (FAULT_FLAG_REMOTE)' : ''}`,
      )
      // do_swap_page() on a migration entry: migration_entry_wait() sleeps until the
      // migration replaces it (remove_migration_ptes), then the access retries.
      const orig = decodePte(f.l.orig)
      c.goto(
        orig?.mig
          ? 'mig_wait'
          : orig?.huge
            ? 'thp_fault'
            : orig?.swp !== undefined
              ? 'swap_in'
              : orig === null && c.isFile(page)
                ? 'file_fault'
                : 'lock',
      )
    },
  },
  /**
   * A huge PMD (v6.6 __handle_mm_fault: pmd_trans_huge(vmf.orig_pmd)): huge_pmd_set_accessed()
   * / do_huge_pmd_wp_page() take pmd_lock and re-check pmd_same(). While a split holds the
   * lock with the PMD made invalid (pmdp_invalidate), the fault waits; afterwards the PMD is
   * either still huge (nothing to do: a spurious fault) or a PTE table (handle_pte_fault). A
   * write to a read-only huge PMD (a PMD migration entry that change_huge_pmd made readable,
   * then restored) is do_huge_pmd_wp_page(): the anon THP is PageAnonExclusive, so `reuse`:
   * pmd_mkyoung, maybe_pmd_mkwrite(pmd_mkdirty), pmdp_set_access_flags (x86: set_pmd, no
   * flush; arm64: ptep_set_access_flags' flush_tlb_page for a dirty upgrade).
   */
  thp_fault: {
    guard: (c, f) =>
      c.pmdLockFree(c.mmIndex, c.hugeOf(num(f, 'page'))!) ? null : 'pmd_lock held (huge PMD being split)',
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const pte = c.pte(mm, page)
      if (pte?.huge && pte.present && flag(f, 'write') && !pte.write && c.isFile(page)) {
        // wp_huge_pmd() for a file/shmem VMA (no ->huge_fault): "COW or write-notify handled on
        // pte level: split pmd" with no lock of its own; the file split zaps the PMD and the
        // write faults the page-cache folio in again (kernel/thp.ts splitFilePmd, doSetPmd).
        const hp = c.hugeOf(page)!
        c.emit(
          'fault',
          'wp_huge_pmd',
          `${hp.name} is a file PMD: write-notify on pte level, __split_huge_pmd, VM_FAULT_FALLBACK`,
        )
        c.call('thp_split', { held: true, ...hugeArg(c, hp) }, 'thp_fallback')
        return
      }
      if (pte?.huge && pte.present && flag(f, 'write') && !pte.write) {
        const hp = c.hugeOf(page)!
        c.pmdLock(mm, hp, 'do_huge_pmd_wp_page: pmd_lock')
        const pages = hp.pages
        // do_huge_pmd_wp_page(): `if (PageAnonExclusive(page)) goto reuse`, else reuse only `if
        // (folio_ref_count(folio) == 1)` (the other side unmapped its PMD); else split and fall back.
        if (!thpAnonExclusive(c, hp, mm)) {
          // unlock_fallback: folio_unlock, spin_unlock; fallback: __split_huge_pmd(vma,
          // vmf->pmd, vmf->address, false, NULL); VM_FAULT_FALLBACK -> handle_pte_fault().
          const fr = c.folio(pte.pfn)
          c.emit(
            'fault',
            'do_huge_pmd_wp_page',
            `${hp.name} is shared (mapcount ${fr.map}, refcount ${fr.ref}): split the PMD, VM_FAULT_FALLBACK`,
          )
          c.pmdUnlock(mm, hp)
          c.call('thp_split', { held: true, ...hugeArg(c, hp) }, 'thp_fallback')
          return
        }
        c.setPmd(
          mm,
          pages,
          pages.map((q) => ({ ...c.pte(mm, q)!, write: true, dirty: true })),
          'pmdp_set_access_flags',
          `PMD ${hp.name} := huge RW dirty (do_huge_pmd_wp_page: ${c.mmLive(1) ? 'folio_ref_count 1, page_move_anon_rmap' : 'PageAnonExclusive'}, reuse)`,
        )
        if (c.sc.arch === 'arm64') c.flushTlb(mm, 'page', [page], 'flush_tlb_page (pmdp_set_access_flags)')
        c.accessFlagsNotify(mm, page)
        afterNotifier(c, f, 'thp_wp_done', thpWpDone)
        return
      }
      if (pte?.huge && pte.present) {
        c.emit(
          'fault',
          'huge_pmd_set_accessed',
          `spurious fault: the huge PMD already maps ${c.pageName(page)}`,
        )
        finish(c, mm, 'ok')
        return
      }
      c.emit(
        'fault',
        'handle_mm_fault',
        `${c.pageName(page)}: the huge PMD changed (split or collapsed), retry`,
      )
      finish(c, mm, 'retry')
    },
  },
  thp_wp_done: { run: (c, f) => thpWpDone(c, f) },
  /**
   * VM_FAULT_FALLBACK: __handle_mm_fault() goes on to handle_pte_fault() on the PTE table the
   * split installed, reading vmf->orig_pte again (locklessly, as at the start).
   */
  thp_fallback: {
    run: (c, f) => {
      const page = num(f, 'page')
      f.l.orig = encodePte(c.pte(c.mmIndex, page))
      const orig = decodePte(f.l.orig)
      c.emit(
        'fault',
        'handle_pte_fault',
        orig === null && c.isFile(page)
          ? `VM_FAULT_FALLBACK: the file PMD of ${c.pageName(page)} is none: do_fault`
          : `VM_FAULT_FALLBACK: ${c.pageName(page)} through the split PTE table`,
      )
      // A file THP's split zapped the PMD (kernel/thp.ts splitFilePmd): the page cache's page.
      c.goto(
        orig?.mig
          ? 'mig_wait'
          : orig?.huge
            ? 'thp_fault'
            : orig?.swp !== undefined
              ? 'swap_in'
              : orig === null && c.isFile(page)
                ? 'file_fault'
                : 'lock',
      )
    },
  },
  mig_wait: {
    guard: (c, f) => {
      const p = decodePte(f.l.orig!)
      return pteSame(c.pte(c.mmIndex, num(f, 'page')), p)
        ? 'migration_entry_wait: page under migration'
        : null
    },
    run: (c, f) => {
      c.emit(
        'fault',
        'migration_entry_wait',
        `${c.pageName(num(f, 'page'))}: the migration entry is gone, retry`,
      )
      finish(c, c.mmIndex, 'retry')
    },
  },
  /**
   * do_swap_page() (v6.6 mm/memory.c), before the PTL: swap_cache_get_folio() finds a folio
   * still in the swap cache (folio_get); on a miss, with the model's swap device
   * (SWP_SYNCHRONOUS_IO, a zram) and `__swap_count(entry) == 1` the page is read into a new folio
   * that skips the swap cache (vma_alloc_folio, swap_readpage: `swapcache` stays NULL); with
   * other swap PTEs sharing the slot (a fork child's), swapin_readahead() ->
   * read_swap_cache_async() adds the new folio to the swap cache (its own reference) for their
   * swap-ins. A slot freed meanwhile (the swap PTE was zapped) gives no folio. The folio lock
   * that follows (folio_lock_or_retry) is not modelled for anon folios yet.
   */
  swap_in: {
    run: (c, f) => {
      const page = num(f, 'page')
      const slot = decodePte(f.l.orig!)!.swp!
      const n = c.swapCount(slot)
      let pfn = c.swapCached(slot)
      f.l.swapcache = pfn >= 0 || n > 1
      if (pfn >= 0) {
        c.getFrame(pfn)
        c.emit('fault', 'do_swap_page', `${c.pageName(page)}: folio pfn ${pfn} still in the swap cache`)
      } else if (n === 1) {
        pfn = c.allocFrame(c.swapRead(slot) ?? 0, 'vma_alloc_folio + swap_readpage (skip the swap cache)')
      } else if (n > 1) {
        pfn = c.allocFrame(c.swapRead(slot) ?? 0, 'swapin_readahead (read from swap)')
        c.swapCacheAdd(slot, pfn, true)
        c.emit(
          'fault',
          'read_swap_cache_async',
          `${c.pageName(page)}: slot ${slot} has ${n} swap PTEs: pfn ${pfn} joins the swap cache`,
        )
      }
      f.l.pfn = pfn
      c.goto('swap_map')
    },
  },
  /**
   * do_swap_page() under the PTL: `if (swapcache)` the folio must still be that slot's
   * (folio_test_swapcache, page_swap_entry: else out_page); pte_offset_map_lock and
   * `pte_same(ptep_get(vmf->pte), vmf->orig_pte)` (else out_nomap: someone else faulted it in,
   * or fork cleared SWP_EXCLUSIVE); `exclusive = pte_swp_exclusive(orig_pte)`, or true for a
   * folio that skipped the swap cache; swap_free(entry); should_try_to_free_swap(): with the
   * folio in the swap cache, folio_free_swap() on a write fault whose folio_ref_count is 2 (ours
   * and the cache's; the VM_LOCKED / mlocked / mem_cgroup_swap_full cases do not arise: no mlock
   * op, a large swap device), which frees it only if no swap PTE still shares the slot; so a read
   * fault leaves the folio in the swap cache. The PTE is writable (maybe_mkwrite(pte_mkdirty))
   * only on a write fault with `exclusive || folio_ref_count(folio) == 1`, which also clears
   * FAULT_FLAG_WRITE; page_add_anon_rmap, set_pte_at, folio_unlock. A write fault still flagged
   * then calls do_wp_page(vmf) right away, under the same PTL, with vmf->orig_pte the new PTE.
   */
  swap_map: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const write = flag(f, 'write')
      const orig = decodePte(f.l.orig!)!
      const slot = orig.swp!
      const pfn = num(f, 'pfn')
      const swapcache = flag(f, 'swapcache')
      delete f.l.pfn
      delete f.l.swapcache
      if (pfn >= 0 && swapcache && c.swapCached(slot) !== pfn) {
        c.emit('fault', 'do_swap_page', `pfn ${pfn} left the swap cache of slot ${slot}: out_page, retry`)
        c.putFrame(pfn)
        finish(c, mm, 'retry')
        return
      }
      const release = () => {
        if (pfn >= 0) c.putFrame(pfn, 'folio_put (out_release)')
      }
      const why = 'the PTE changed since the swap-in began'
      if (!lockPteSame(c, mm, page, orig, 'do_swap_page', why, 'do_swap_page: pte_offset_map_lock', release))
        return
      if (pfn < 0) throw new Error('model bug: no folio for a swap PTE that still names its slot')
      const exclusive = !swapcache || orig.excl === true
      const left = c.swapFree(slot)
      // Without a swap-cache folio (SWAP_HAS_CACHE) the slot is freed with its last count.
      if (left === 0 && c.swapCached(slot) < 0) c.swapWrite(slot, null)
      c.emit('info', 'swap_free', `slot ${slot}: swap_map count ${left + 1} -> ${left}`)
      if (swapcache && write && c.folioRefCount(pfn) === 2) {
        const freed = c.folioFreeSwap(slot, 'do_swap_page: folio_free_swap')
        c.emit(
          'info',
          'should_try_to_free_swap',
          freed
            ? `write fault, refcount 2: folio_free_swap: pfn ${pfn} leaves the swap cache, slot ${slot} is freed`
            : `write fault, refcount 2: folio_free_swap fails, ${left} swap PTE${left === 1 ? '' : 's'} still share${left === 1 ? 's' : ''} slot ${slot}`,
        )
      }
      const fr = c.folioW(pfn)
      fr.map++
      // page_add_anon_rmap() -> __folio_set_anon() of a folio not yet anon: with RMAP_EXCLUSIVE
      // the faulting VMA's anon_vma (the child's own, in it), else the root (the process's).
      if (!swapcache && mm === 1) fr.avc = true
      const w = write && (exclusive || c.folioRefCount(pfn) === 1)
      c.setPte(mm, page, { pfn, present: true, write: w, dirty: w }, 'do_swap_page')
      if (write && !w) {
        c.emit(
          'fault',
          'do_swap_page',
          `${c.pageName(page)}: pfn ${pfn} is not exclusive (no SWP_EXCLUSIVE, refcount ${c.folioRefCount(pfn)}): mapped read-only, FAULT_FLAG_WRITE: do_wp_page under the PTL`,
        )
        f.l.orig = encodePte(c.pte(mm, page))
        doWpPage(c, f, mm, page, decodePte(f.l.orig)!)
        return
      }
      c.unlockPtl(mm, page)
      finish(c, mm, 'ok')
    },
  },
  /** handle_pte_fault(): take the PTL, re-check pte_same(), dispatch on the PTE. */
  lock: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const write = flag(f, 'write')
      const orig = decodePte(f.l.orig!)
      if (!lockPteSame(c, mm, page, orig, 'handle_pte_fault', 'someone else changed the PTE')) return
      if (orig === null && c.sc.pages[page]!.kind === 'pfnmap') {
        // A remap_pfn_range() VMA has no ->fault: VM_FAULT_SIGBUS; a driver's ->fault
        // (fault: insert_pfn) maps the pfn again (kernel/pfnmap.ts).
        const ok = pfnmapFault(c, mm, page)
        c.unlockPtl(mm, num(f, 'page'))
        finish(c, mm, ok ? 'ok' : 'segv')
        return
      }
      if (orig === null && c.mmUnstable(mm)) {
        // do_anonymous_page(): check_stable_address_space() under the PTL (v6.6 mm/memory.c,
        // both the zero-page and the new-page path): the OOM reaper set MMF_UNSTABLE.
        c.emit('fault', 'check_stable_address_space', 'MMF_UNSTABLE (the OOM reaper): VM_FAULT_SIGBUS')
        c.unlockPtl(mm, page)
        finish(c, mm, 'segv')
        return
      }
      if (orig === null) {
        // do_anonymous_page(): read -> map the zero page; write -> a fresh zeroed page.
        if (!write) {
          c.setPte(
            mm,
            page,
            { pfn: ZERO_PFN, present: true, write: false, dirty: false },
            'do_anonymous_page (zero page)',
          )
        } else {
          const pfn = c.allocFrame(0, 'do_anonymous_page')
          c.folioW(pfn).map = 1
          // folio_add_new_anon_rmap(): the faulting VMA's anon_vma (the child's own, in it).
          if (mm === 1) c.folioW(pfn).avc = true
          c.setPte(mm, page, { pfn, present: true, write: true, dirty: true }, 'do_anonymous_page')
        }
        c.unlockPtl(mm, num(f, 'page'))
        c.cost('reuse_fault')
        finish(c, mm, 'ok')
        return
      }
      if (orig.swp !== undefined) throw new Error("model bug: a swap entry reached handle_pte_fault's PTL")
      if (!orig.present) throw new Error('model bug: PROT_NONE PTE under an accessible VMA')
      if (write && !orig.write && c.isFile(page)) {
        // do_wp_page() -> wp_page_shared(): folio_get(), pte_unmap_unlock(), do_page_mkwrite().
        c.emit('fault', 'do_wp_page', 'shared file page: wp_page_shared')
        c.getFrame(orig.pfn)
        c.unlockPtl(mm, num(f, 'page'))
        c.goto('shared_mkwrite')
        return
      }
      if (write && !orig.write) {
        doWpPage(c, f, mm, page, orig)
        return
      }
      if (write && orig.write && !orig.dirty) {
        // handle_pte_fault() tail: entry = pte_mkdirty(pte_mkyoung(orig)); ptep_set_access_flags().
        f.l.changed = ptepSetAccessFlags(c, mm, page, { ...orig, dirty: true }, true)
        afterNotifier(c, f, 'dirty_done', dirtyDone)
        return
      }
      // Nothing to change (a spurious fault): ptep_set_access_flags() returns 0, and for a
      // write flush_tlb_fix_spurious_fault() runs, which is a no-op on arm64
      // (arch/arm64/include/asm/pgtable.h, since ~v5.10) and on x86 (arch/x86/include/asm/pgtable.h).
      c.emit(
        'fault',
        'handle_pte_fault',
        `spurious ${write ? 'write' : 'read'} fault: PTE already allows it; flush_tlb_fix_spurious_fault() is a no-op on ${c.sc.arch}`,
      )
      c.unlockPtl(mm, num(f, 'page'))
      finish(c, mm, 'ok')
    },
  },
  /**
   * do_read_fault() / do_shared_fault() -> __do_fault(): filemap_fault() finds the page-cache
   * folio and returns it locked.
   */
  file_fault: {
    guard: (c, f) => (c.folioLockFree(num(f, 'page')) ? null : 'folio locked (filemap_fault)'),
    run: (c, f) => {
      const page = num(f, 'page')
      if (c.file(page).trunc === true) {
        // filemap_fault(): `if (unlikely(index >= max_idx)) return VM_FAULT_SIGBUS;` (i_size).
        c.emit('fault', 'filemap_fault', `${c.pageName(page)} is beyond i_size (truncated): VM_FAULT_SIGBUS`)
        finish(c, c.mmIndex, 'segv')
        return
      }
      if (c.file(page).pfn < 0) {
        // Reclaim evicted the folio: a page-cache miss reads the page from disk into a new one.
        c.fileReadIn(page)
      }
      c.folioLock(page, 'filemap_fault: folio_lock')
      c.goto('file_map')
    },
  },
  /**
   * finish_fault(): take the PTL; if the PTE is no longer none someone else mapped it
   * (VM_FAULT_NOPAGE: the access retries); else set_pte_at (read: read-only and clean, since
   * writenotify keeps vm_page_prot read-only; write: writable and dirty) and
   * folio_add_file_rmap. A write then runs fault_dirty_shared_page(): folio_mark_dirty.
   */
  file_map: {
    guard: (c, f) => {
      const hp = doSetPmdHuge(c, num(f, 'page'))
      if (hp !== null) return c.pmdLockFree(c.mmIndex, hp) ? null : 'pmd_lock held'
      return c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'
    },
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const write = flag(f, 'write')
      // A page of a file huge page whose PMD is none: do_set_pmd maps the large folio whole.
      const hp = doSetPmdHuge(c, page)
      if (hp !== null) {
        doSetPmd(c, hp, write)
        if (write) for (const p of hp.pages) c.folioMarkDirty(p, 'fault_dirty_shared_page: folio_mark_dirty')
        c.folioUnlock(page)
        finish(c, mm, 'ok')
        return
      }
      const pfn = c.file(page).pfn
      c.lockPtl(mm, num(f, 'page'), 'finish_fault: pte_offset_map_lock')
      if (c.pte(mm, page) !== null) {
        c.emit('fault', 'finish_fault', 'PTE no longer none: VM_FAULT_NOPAGE, retry')
        c.unlockPtl(mm, num(f, 'page'))
        c.folioUnlock(page)
        finish(c, mm, 'retry')
        return
      }
      c.getFrame(pfn)
      const fr = c.folioW(pfn)
      fr.map++
      c.setPte(
        mm,
        page,
        { pfn, present: true, write, dirty: write },
        write ? 'do_shared_fault: set_pte_at' : 'do_read_fault: set_pte_at',
      )
      c.emit('frame', 'folio_add_file_rmap', `pfn ${pfn} mapcount ${fr.map}`)
      c.unlockPtl(mm, num(f, 'page'))
      if (write) c.folioMarkDirty(page, 'fault_dirty_shared_page: folio_mark_dirty')
      c.folioUnlock(page)
      finish(c, mm, 'ok')
    },
  },
  /** wp_page_shared() -> do_page_mkwrite(): ->page_mkwrite locks the folio (VM_FAULT_LOCKED). */
  shared_mkwrite: {
    guard: (c, f) => (c.folioLockFree(num(f, 'page')) ? null : 'folio locked (do_page_mkwrite)'),
    run: (c, f) => {
      const page = num(f, 'page')
      c.folioLock(page, 'do_page_mkwrite: folio_lock')
      const orig = decodePte(f.l.orig!)!
      if (c.file(page).pfn !== orig.pfn) {
        // filemap_page_mkwrite(): `if (folio->mapping != inode->i_mapping)` (truncated meanwhile):
        // folio_unlock, VM_FAULT_NOPAGE; the access retries (and finds the PTE zapped).
        c.emit(
          'fault',
          'filemap_page_mkwrite',
          `${c.pageName(page)}: the folio left the page cache (truncate): VM_FAULT_NOPAGE`,
        )
        c.folioUnlock(page)
        c.putFrame(orig.pfn)
        finish(c, c.mmIndex, 'retry')
        return
      }
      c.goto('shared_finish')
    },
  },
  /**
   * finish_mkwrite_fault(): re-take the PTL, pte_same(orig_pte) or back off; wp_page_reuse()
   * (ptep_set_access_flags with a writable, dirty PTE); unlock; fault_dirty_shared_page():
   * folio_mark_dirty, folio_unlock; folio_put.
   */
  shared_finish: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const orig = decodePte(f.l.orig!)!
      const release = () => {
        c.folioUnlock(page)
        c.putFrame(orig.pfn)
      }
      const lockFn = 'finish_mkwrite_fault: pte_offset_map_lock'
      if (!lockPteSame(c, mm, page, orig, 'finish_mkwrite_fault', 'the PTE changed', lockFn, release)) {
        return
      }
      c.emit('fault', 'wp_page_reuse', `${c.pageName(page)}: make the shared PTE writable and dirty`)
      const changed = ptepSetAccessFlags(c, mm, page, { ...orig, write: true, dirty: true }, true)
      if (changed && c.at('wp_page_reuse')) f.l.upg = 'shared'
      afterNotifier(c, f, 'mkwrite_done', mkwriteDone)
    },
  },
  reuse_done: { run: (c, f) => reuseDone(c, f) },
  dirty_done: { run: (c, f) => dirtyDone(c, f) },
  mkwrite_done: { run: (c, f) => mkwriteDone(c, f) },
  /**
   * The upgrade sites (`handle_pte_fault`: Popple v1; `wp_page_reuse`): after the PTL is
   * dropped, range_start/end(MMU_NOTIFY_PROTECTION_UPGRADE) for the page.
   */
  upg_start: {
    run: (c, f) => {
      c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_PROTECTION_UPGRADE')
      c.goto('upg_end')
    },
  },
  upg_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], false)
      afterNotifier(c, f, 'upg_done', upgDone)
    },
  },
  upg_done: { run: (c, f) => upgDone(c, f) },
  /** wp_page_copy() v6.6 mm/memory.c: mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR). */
  cow_rs: {
    run: (c, f) => {
      c.rangeStart(c.mmIndex, [num(f, 'page')], 'MMU_NOTIFY_CLEAR')
      c.goto('cow_lock')
    },
  },
  /** Re-take the PTL and re-check pte_same(orig_pte); back off if someone resolved the fault. */
  cow_lock: {
    guard: (c, f) => (c.ptlFree(c.mmIndex, num(f, 'page')) ? null : 'page-table lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      c.lockPtl(mm, num(f, 'page'))
      if (pteSame(c.pte(mm, num(f, 'page')), decodePte(f.l.orig!))) {
        c.goto('cow_clear')
        return
      }
      c.emit('fault', 'wp_page_copy', '!pte_same(): fault already resolved, back off (update_mmu_tlb)')
      c.unlockPtl(mm, num(f, 'page'))
      f.l.copied = false
      c.goto('cow_end')
    },
  },
  /**
   * ptep_clear_flush(): clear the PTE, flush_tlb_page() (pte_accessible). v4.15 used
   * ptep_clear_flush_notify() here, which adds ->invalidate_range under the PTL (Glisse's
   * case B: the PTE is about to point at a new page): at that site the clear is named as
   * wp_page_copy calls it (the macro runs ptep_clear_flush, then the notifier).
   */
  cow_clear: {
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const clear = c.names('ptep_clear_flush_notify') ? 'ptep_clear_flush_notify' : 'ptep_clear_flush'
      c.setPte(mm, page, null, clear)
      c.flushTlb(mm, 'page', [page], 'flush_tlb_page (ptep_clear_flush)')
      c.invalidateRange(mm, [page], 'ptep_clear_flush_notify')
      c.goto('cow_set')
    },
  },
  /** set_pte_at_notify(new RW page) (change_pte is a no-op for every subscriber), page_remove_rmap(old), unlock. */
  cow_set: {
    run: (c, f) => {
      const mm = c.mmIndex
      const page = num(f, 'page')
      const old = decodePte(f.l.orig!)!
      const pfn = num(f, 'new')
      const src = c.folioW(old.pfn)
      if (old.pfn !== ZERO_PFN && src.w !== num(f, 'w')) {
        c.violate(
          'lost-write',
          `pfn ${old.pfn} was written after wp_page_copy copied it for ${c.pageName(page)}; the copy installed now (pfn ${pfn}) does not have that write`,
        )
      }
      c.folioW(pfn).map = 1
      c.emit(
        'info',
        'set_pte_at_notify',
        '->change_pte: a no-op for every subscriber (inside start/end since 2012; removed ~v6.10)',
      )
      c.setPte(mm, page, { pfn, present: true, write: true, dirty: true }, 'set_pte_at_notify')
      if (old.pfn !== ZERO_PFN) {
        src.map--
        src.sup = true
        c.emit('frame', 'page_remove_rmap', `pfn ${old.pfn} mapcount ${src.map}`)
      }
      c.unlockPtl(mm, num(f, 'page'))
      f.l.copied = true
      c.goto('cow_end')
    },
  },
  /**
   * mmu_notifier_invalidate_range_end() (v4.15: _only_end, no second ->invalidate_range),
   * then folio_put() of the old page's PTE reference and of the fault's reference: the old
   * page may be freed here, after the end.
   */
  cow_end: {
    run: (c, f) => {
      c.rangeEnd(c.mmIndex, [num(f, 'page')], true)
      afterNotifier(c, f, 'cow_done', cowDone)
    },
  },
  cow_done: { run: (c, f) => cowDone(c, f) },
}
