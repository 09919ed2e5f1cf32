/**
 * Reclaim and migration of a PMD-mapped anon THP (the scenario's `thp:` huge page), v6.6. The
 * folio is the huge page: its subpages' frames (local `pfns`) go together. It is found through
 * the thread's huge PMD or, when the thread's mm maps the subpage through a PTE, through a fork
 * child's (or the process's) huge PMD that still maps it (hugeFolioOf: the folio stays large
 * while any mm maps it with a PMD). A subpage no huge PMD maps when the op isolates it
 * (`mapped: pte`, or split in every mm, zapped and refaulted meanwhile) takes the small-page
 * path (kernel/reclaim.ts, kernel/migrate.ts).
 *
 * MODELLING NOTE (a large folio that no PMD maps): v6.6 still sees one large folio there.
 * shrink_folio_list() splits it first: `if (!folio_entire_mapcount(folio) &&
 * split_folio_to_list(folio, folio_list)) goto activate_locked;` (split_huge_page: unmap_folio's
 * try_to_migrate freezes every PTE into a migration entry, each VMA with its own range over the
 * folio and ptep_clear_flush; remap_page puts the same pages back), and the tail pages then get
 * their own pass through the same list; add_to_swap() keeps a folio whole only when a PMD maps
 * it. migrate_pages_batch() with ARCH_ENABLE_THP_MIGRATION migrates a PTE-mapped THP whole. The
 * model has no large-folio state for PTE-mapped frames (which of them still form one folio after
 * split_huge_page, a COW copy or a collapse), so it reclaims or migrates the named subpage as a
 * small folio: the split adds only invalidations of translations that stay the same, and the
 * other subpages are left mapped (as in a pass that kept them).
 *
 * The walks (thpWalkSelect, thpMigSelect): with a fork child, try_to_unmap(), try_to_migrate()
 * and split_huge_page()'s unmap_folio() go through rmap_walk_anon() over the folio's anon_vma,
 * the process's VMA and then the child's (anon_vma_clone() linked it after its parent's), each
 * with its own range_start/end on its own mm (the child's has no subscribers), its own pmd_lock
 * and PTL; a VMA of the tree that no longer maps the folio still gets its split and its range
 * before page_vma_mapped_walk() finds nothing, and the walk stops once the folio is unmapped
 * (rwc->done). remove_migration_ptes() and remap_page() visit each VMA that holds a migration
 * entry of the folio. MODELLING NOTE: after a successful split, v6.6 remap_page() runs
 * remove_migration_ptes() once per new small folio (A in every VMA, then B); the model restores
 * each VMA's entries together under its PTL (no flush either way: the entries were not present).
 *
 * Reclaim, v6.6 mm/vmscan.c shrink_folio_list(): add_to_swap() keeps a PMD-mappable folio whole
 * (THP_SWAP, selected on x86_64 and arm64 with 4K pages: one swap entry per subpage, here one
 * slot each), then try_to_unmap(folio, TTU_BATCH_FLUSH | TTU_SPLIT_HUGE_PMD) (`if
 * (folio_test_pmd_mappable(folio)) flags |= TTU_SPLIT_HUGE_PMD`): mm/rmap.c try_to_unmap_one()
 * first splits the PMD (split_huge_pmd_address(vma, address, false, folio): the
 * __split_huge_pmd sequence with its own MMU_NOTIFY_CLEAR range, kernel/thp.ts), then
 * range_start(MMU_NOTIFY_CLEAR) over the folio (vma_address_end: the whole huge page) and the
 * page_vma_mapped_walk over its PTEs under the PTL: per subpage, ptep_get_and_clear with the
 * flush batched (set_tlb_ubc_flush_pending: x86 arch_tlbbatch_add_pending calls the arch hook
 * with (0, -1) and defers the CPU flush; arm64 issues the page's TLBI and hook now; v4.15 an
 * explicit ->invalidate_range), the swap entry, page_remove_rmap, folio_put; range_end. Then
 * try_to_unmap_flush_dirty(), pageout() of every subpage, and __remove_mapping() frees the folio.
 *
 * Migration, v6.6 mm/migrate.c migrate_pages_batch(): thp_migration_supported() on x86_64 and
 * arm64 (ARCH_ENABLE_THP_MIGRATION), so the folio is not split. migrate_folio_unmap():
 * try_to_migrate(src, mode == MIGRATE_ASYNC ? TTU_BATCH_FLUSH : 0), no TTU_SPLIT_HUGE_PMD.
 * try_to_migrate_one(): range_start(MMU_NOTIFY_CLEAR) over the folio; page_vma_mapped_walk finds
 * the huge PMD and takes pmd_lock; set_pmd_migration_entry(): pmdp_invalidate() (its
 * flush_pmd_tlb_range -> flush_tlb_range flushes now, CPU and arch hook: TTU_BATCH_FLUSH does
 * not apply to a PMD), then set_pmd_at(PMD migration entry, write and dirty kept),
 * page_remove_rmap(page, vma, true), folio_put; unlock; range_end (v4.15: ->invalidate_range,
 * before the copy). A PMD split meanwhile is walked PTE by PTE like reclaim's walk, batched in
 * the async pass (and ptep_clear_flush in a sync retry). try_to_unmap_flush(); move_to_new_folio
 * (the refcount check: -EAGAIN undoes it, and a sync mode retries in its own mode, as for small
 * pages) and the copy of every subpage; remove_migration_ptes() -> remove_migration_pmd() under
 * pmd_lock: set_pmd_at(the new huge page) ("No need to invalidate - it was non-present before"),
 * or remove_migration_pte() for PTE migration entries left by a split; the source is freed.
 */
import type { Ctx } from '../ctx'
import type { CallFrame, Pte } from '../state'
import { MIGRATE_MODES, type ThpDecl } from '../types'
import { afterNotifier, decodePte, encodePte, flag, list, num, type PcHandler, type Proc } from './proc'
import { installEntry, noteBatched, scenarioHasChild, tryToUnmapFlush, selectWalkVma, walkVmas } from './rmap'
import { hugeArg, pmdHuge, pmdMapped, pmdMigration } from './thp'
import { count } from '../plural'

/** The huge page whose subpage the op names (local `page`): the folio reclaimed or migrated. */
function hpOf(c: Ctx, f: CallFrame): ThpDecl {
  return c.hugeOf(num(f, 'page'))!
}
function pfnsOf(f: CallFrame): readonly number[] {
  return list(f, 'pfns')
}

/**
 * Whether the huge folio (local `pfns`) is in `mm`'s VMA of the anon_vma interval tree, as
 * rmap.ts anonVmaHas for a small folio: the child's VMA once fork cloned the process's anon_vma
 * (its mm live), a VMA while it exists or while a subpage's entry (the huge PMD, a PTE, a
 * migration entry) still maps the folio (munmap unlinks it at free_pgtables, after the zap).
 */
function thpInAnonVma(c: Ctx, f: CallFrame, mm: number): boolean {
  const hp = hpOf(c, f)
  const pfns = pfnsOf(f)
  if (c.folio(pfns[0]!).avc === true && mm === 0) return false
  if (mm === 1 && !c.mmLive(1)) return false
  return hp.pages.some((p, i) => {
    if (c.vma(mm, p) !== null) return true
    const pte = c.pte(mm, p)
    return pte !== null && pte.pfn === pfns[i] && pte.swp === undefined
  })
}

/**
 * rmap_walk_anon() over the huge folio's anon_vma (v6.6 mm/rmap.c), for try_to_unmap(),
 * try_to_migrate() and split_huge_page()'s unmap_folio(): from VMA `from` of walkVmas() on
 * (the process's, then the fork child's: anon_vma_clone() put it after its parent's in the
 * interval tree), the next VMA of the folio's anon_vma. Every VMA of the tree is visited,
 * whether or not it still maps the folio: try_to_unmap_one() and try_to_migrate_one() split the
 * PMD and call range_start before page_vma_mapped_walk() looks (the rule of the small-page walks,
 * rmap.ts anonWalkNext), unless the folio is unmapped already (rwc->done = folio_not_mapped,
 * checked after each VMA). Sets locals `vi` and `mm` (c.mmIndex: vma->vm_mm for the code under
 * it) and returns true; at the end drops `mm` and returns false.
 */
function thpWalkSelect(c: Ctx, f: CallFrame, from: number): boolean {
  const ms = walkVmas(c.sc, num(f, 'page'))
  let vi = from
  if (vi > 0 && pfnsOf(f).every((pfn) => c.folio(pfn).map === 0)) vi = ms.length
  while (vi < ms.length && !thpInAnonVma(c, f, ms[vi]!.mm)) vi++
  return selectWalkVma(c, f, vi, ms.length)
}

/** Whether `mm` holds a migration entry of the folio: its PMD migration entry or a PTE one. */
function hasMigEntry(c: Ctx, f: CallFrame, mm: number): boolean {
  const hp = hpOf(c, f)
  const pfns = pfnsOf(f)
  if (pmdMigration(c, hp, mm)) return c.pte(mm, hp.pages[0]!)!.pfn === pfns[0]
  return hp.pages.some((p, i) => {
    const pte = c.pte(mm, p)
    return pte?.mig === true && !pte.huge && pte.pfn === pfns[i]
  })
}

/**
 * remove_migration_ptes()' walk (rmap_walk over the folio's anon_vma; remap_page's too): from
 * VMA `from` on, the next whose mm holds a migration entry of the folio (hasMigEntry), locals
 * `vi` and `mm` set; false (and `mm` dropped) when there is none. The first call (`from` 0) with
 * no entry anywhere selects the process's VMA, whose step reports the entries gone.
 */
function thpMigSelect(c: Ctx, f: CallFrame, from: number): boolean {
  const ms = walkVmas(c.sc, num(f, 'page'))
  let vi = from
  while (vi < ms.length && !hasMigEntry(c, f, ms[vi]!.mm)) vi++
  if (vi >= ms.length && from === 0) vi = 0
  return selectWalkVma(c, f, vi, ms.length)
}

/**
 * The huge folio the op's page belongs to, as its subpages' pfns: the thread's huge PMD, or,
 * when the thread's mm maps the page through a PTE (split there), another mm's huge PMD that
 * maps the same pfn (with a fork child the folio stays large, PMD-mapped in the other mm:
 * folio_test_pmd_mappable, folio_entire_mapcount). Null when no huge PMD maps it: a small folio
 * for the model (the module note).
 */
export function hugeFolioOf(c: Ctx, hp: ThpDecl, page: number): readonly number[] | null {
  const own = c.mmIndex
  if (pmdMapped(c, hp, own)) return hp.pages.map((p) => c.pte(own, p)!.pfn)
  const pte = c.pte(own, page)
  if (!pte?.present || pte.huge) return null
  for (const v of walkVmas(c.sc, page)) {
    if (v.mm === own || (v.mm === 1 && !c.mmLive(1)) || !pmdMapped(c, hp, v.mm)) continue
    if (c.pte(v.mm, page)!.pfn === pte.pfn) return hp.pages.map((p) => c.pte(v.mm, p)!.pfn)
  }
  return null
}

/**
 * Isolation and folio lock of the huge folio when a huge PMD maps it (hugeFolioOf;
 * folio_isolate_lru, a reference on each subpage's frame here): false if none does now.
 */
function isolateHuge(c: Ctx, f: CallFrame, kfn: string): boolean {
  const hp = hpOf(c, f)
  const pfns = hugeFolioOf(c, hp, num(f, 'page'))
  if (pfns === null) return false
  for (const pfn of pfns) c.getFrame(pfn)
  f.l.pfns = pfns
  c.emit(
    'info',
    kfn,
    pmdMapped(c, hp, c.mmIndex)
      ? `${hp.name} is PMD-mapped: isolate and lock the huge folio (pfns ${pfns.join(',')})`
      : `${hp.name} is PTE-mapped here but still PMD-mapped in the other mm: isolate and lock the huge folio (pfns ${pfns.join(',')})`,
  )
  return true
}

/** The next subpage index from `from` whose PTE still maps the folio's subpage, or -1. */
function nextMapped(c: Ctx, f: CallFrame, from: number): number {
  const hp = hpOf(c, f)
  const pfns = pfnsOf(f)
  for (let i = from; i < hp.pages.length; i++) {
    const pte = c.pte(c.mmIndex, hp.pages[i]!)
    // pte_present() for the kernel: a PROT_NONE PTE still maps the subpage.
    if (pte && !pte.huge && !pte.mig && pte.swp === undefined && pte.pfn === pfns[i]) return i
  }
  return -1
}

/**
 * page_vma_mapped_walk() over the folio's PTEs (the PMD links a PTE table) with
 * try_to_unmap_one() / try_to_migrate_one(), one subpage per step under the PTL taken at the
 * first: `entry` is the non-present PTE for subpage `i`. Sets `mapped` and `batched`, then 'rs_end'.
 */
function pteWalk(
  entry: (pte: Pte, f: CallFrame, i: number) => Pte,
  entryFn: string,
  v415Invalidate: boolean,
): { walk_ptes: PcHandler; unmap: PcHandler; unmap_rest: PcHandler } {
  const clear = (c: Ctx, f: CallFrame): void => {
    const hp = hpOf(c, f)
    const mm = c.mmIndex
    const i = num(f, 'i')
    const page = hp.pages[i]!
    const pte = c.pte(mm, page)!
    if (flag(f, 'ttu_sync')) {
      // No TTU_BATCH_FLUSH: ptep_clear_flush(), the CPU flush and the v6.6 arch hook now.
      c.setPte(mm, page, null, 'ptep_clear_flush')
      c.flushTlb(mm, 'page', [page], 'flush_tlb_page (ptep_clear_flush)')
    } else {
      c.setPte(mm, page, null, 'ptep_get_and_clear')
      // set_tlb_ubc_flush_pending(): mm->tlb_flush_batched, bumped before the notifier call
      // (read only under this PTL: the order is invisible; an atc-first command stays last).
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
    }
    if (v415Invalidate) c.invalidateRange(mm, [page], 'try_to_unmap_one')
    f.l.old = encodePte(pte)
    afterNotifier(c, f, 'unmap_rest', rest)
  }
  /** The entry, page_remove_rmap and folio_put of the subpage; the next one, or unlock. */
  const rest = (c: Ctx, f: CallFrame): void => {
    const hp = hpOf(c, f)
    const i = num(f, 'i')
    const pte = decodePte(f.l.old!)!
    delete f.l.old
    installEntry(c, c.mmIndex, hp.pages[i]!, pte, entry(pte, f, i), entryFn)
    f.l.mapped = true
    const next = nextMapped(c, f, i + 1)
    f.l.i = next
    if (next >= 0) {
      c.goto('unmap')
      return
    }
    c.unlockPtl(c.mmIndex, hp.pages[0]!, 'page_vma_mapped_walk_done')
    c.goto('rs_end')
  }
  return {
    /** The walk reaches the PTE table: pte_offset_map_lock at the first subpage it maps. */
    walk_ptes: {
      guard: (c, f) => (c.ptlFree(c.mmIndex, hpOf(c, f).pages[0]!) ? null : 'page-table lock held'),
      run: (c, f) => {
        const hp = hpOf(c, f)
        const i = nextMapped(c, f, 0)
        if (i < 0) {
          c.emit('info', 'page_vma_mapped_walk', `no PTE maps the folio of ${hp.name} any more`)
          c.goto('rs_end')
          return
        }
        c.lockPtl(c.mmIndex, hp.pages[0]!, 'page_vma_mapped_walk')
        f.l.i = i
        clear(c, f)
      },
    },
    unmap: { run: clear },
    unmap_rest: { run: rest },
  }
}

/** The walk after range_start: the PTE walk if the PMD links a table, else nothing maps it. */
function walkGuard(c: Ctx, f: CallFrame, mm = c.mmIndex): string | null {
  const hp = hpOf(c, f)
  return c.pmdPopulated(mm, hp.pages[0]!) && !c.ptlFree(mm, hp.pages[0]!) ? 'page-table lock held' : null
}
function startWalk(c: Ctx, f: CallFrame, walk: PcHandler): void {
  const hp = hpOf(c, f)
  if (!c.pmdPopulated(c.mmIndex, hp.pages[0]!)) {
    c.emit(
      'info',
      'page_vma_mapped_walk',
      `the PMD of ${hp.name} maps no PTE table (zapped): nothing to unmap`,
    )
    c.goto('rs_end')
    return
  }
  walk.run(c, f)
}

const reclaimWalk = pteWalk(
  (_pte, f, i) => ({ pfn: -1, present: false, write: false, dirty: false, swp: list(f, 'slots')[i]! }),
  'set_pte_at (swap entry)',
  true,
)

/** shrink_folio_list() of the huge folio (`reclaim P` of one of its subpages). */
export const reclaimThp: Proc = {
  /** Isolate and lock the folio; add_to_swap(): the folio whole in the swap cache (THP_SWAP). */
  start: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      if (!isolateHuge(c, f, 'shrink_folio_list')) {
        c.emit(
          'info',
          'shrink_folio_list',
          `${c.pageName(num(f, 'page'))} is not mapped by ${hp.name}'s huge PMD: reclaimed as a small folio`,
        )
        c.call('reclaim', { page: num(f, 'page') }, 'small')
        return
      }
      const pfns = pfnsOf(f)
      f.l.slots = pfns.map((pfn) => c.swapAlloc(pfn))
      c.emit(
        'info',
        'add_to_swap',
        `the huge folio stays whole (THP_SWAP): pfns ${pfns.join(',')} -> swap slots ${list(f, 'slots').join(',')}`,
      )
      // try_to_unmap() -> rmap_walk_anon(): every VMA of the anon_vma (thpWalkSelect).
      thpWalkSelect(c, f, 0)
      c.goto('split')
    },
  },
  small: { run: (c) => c.ret() },
  /** try_to_unmap_one(): TTU_SPLIT_HUGE_PMD -> split_huge_pmd_address(vma, address, false, folio). */
  split: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      c.emit('info', 'try_to_unmap_one', `TTU_SPLIT_HUGE_PMD: split_huge_pmd_address(${hp.name}) first`)
      c.call('thp_split', { held: true, pfn: pfnsOf(f)[0]!, ...hugeArg(c, hp) }, 'rs')
    },
  },
  /** mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR, address, vma_address_end): the folio. */
  rs: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      c.rangeStart(c.mmIndex, hp.pages, 'MMU_NOTIFY_CLEAR')
      c.goto('walk')
    },
  },
  walk: {
    guard: (c, f) => walkGuard(c, f),
    run: (c, f) => {
      const hp = hpOf(c, f)
      if (pmdHuge(c, hp, c.mmIndex)) {
        // split_huge_pmd_address() left a huge PMD: it maps another folio (refaulted meanwhile).
        c.emit('info', 'page_vma_mapped_walk', `${hp.name}'s PMD maps another folio: nothing to unmap`)
        c.goto('rs_end')
        return
      }
      startWalk(c, f, reclaimWalk.walk_ptes)
    },
  },
  unmap: reclaimWalk.unmap,
  unmap_rest: reclaimWalk.unmap_rest,
  /** range_end; then rmap_walk_anon's next VMA (the fork child's), or the flush and pageout. */
  rs_end: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      c.rangeEnd(c.mmIndex, hp.pages, false)
      afterNotifier(c, f, 'next_vma', reclaimNextVma)
    },
  },
  next_vma: { run: (c, f) => reclaimNextVma(c, f) },
  /** try_to_unmap_flush_dirty() (x86 arch_tlbbatch_flush: IPIs, no hook), then pageout(). */
  pageout: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      const pfns = pfnsOf(f)
      const slots = list(f, 'slots')
      // One arch_tlbbatch_flush for the CPUs of every mm the walk batched (the child's too).
      tryToUnmapFlush(c, f, 'range', hp.pages, 'arch_tlbbatch_flush (try_to_unmap_flush_dirty)')
      if (!flag(f, 'mapped')) {
        c.emit('info', 'shrink_folio_list', 'the folio was unmapped meanwhile: keep it')
        for (const s of slots) c.swapUncache(s)
        for (const pfn of pfns) c.putFrame(pfn, 'folio_putback_lru')
        c.ret()
        return
      }
      f.l.w = pfns.map((pfn, i) => {
        const src = c.folio(pfn)
        c.swapWrite(slots[i]!, src.v)
        return src.w
      })
      c.emit('frame', 'swap_writepage', `pfns ${pfns.join(',')} -> swap slots ${slots.join(',')}`)
      c.goto('free')
    },
  },
  /** __remove_mapping(): only if nobody mapped the folio again; delete_from_swap_cache, free. */
  free: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      const pfns = pfnsOf(f)
      const slots = list(f, 'slots')
      const w = list(f, 'w')
      const child = scenarioHasChild(c.sc)
      if (pfns.some((pfn) => c.folio(pfn).map > 0 || c.folio(pfn).ref > 1)) {
        c.emit(
          'info',
          '__remove_mapping',
          `the huge folio was mapped again (swap-in from the swap cache): keep it`,
        )
        // The folio stays in the swap cache (do_swap_page's swap_free leaves it there), which
        // gets its references back from reclaim (see Ctx.swapAlloc).
        pfns.forEach((pfn, i) => {
          if (c.swapCached(slots[i]!) === pfn) c.swapCacheAdd(slots[i]!, pfn, false)
          else c.putFrame(pfn, 'folio_putback_lru')
        })
        c.ret()
        return
      }
      pfns.forEach((pfn, i) => {
        const fr = c.folioW(pfn)
        // Lost while an address (the process's or the child's) still maps the swap slot.
        const swapped = walkVmas(c.sc, hp.pages[i]!).some((v) => c.pte(v.mm, hp.pages[i]!)?.swp === slots[i])
        if (swapped && fr.w !== w[i]) {
          c.violate(
            'lost-write',
            `pfn ${pfn} was written after pageout() wrote it to swap slot ${slots[i]}; the huge folio is freed and a swap-in of ${c.pageName(hp.pages[i]!)} will not have that write`,
          )
        }
        fr.sup = true
      })
      for (const s of slots) {
        c.swapUncache(s)
        // A swap-in may have taken the slot's last count while the folio was still reclaim's.
        if (child && c.swapCount(s) === 0) c.swapWrite(s, null)
      }
      for (const pfn of pfns) c.putFrame(pfn, 'free_unref_folios')
      c.emit('op', 'reclaim', `${hp.name} swapped out to slots ${slots.join(',')}`)
      c.ret()
    },
  },
}

/** try_to_unmap_one() on rmap_walk_anon's next VMA (its PMD split first), else try_to_unmap_flush_dirty. */
function reclaimNextVma(c: Ctx, f: CallFrame): void {
  c.goto(thpWalkSelect(c, f, num(f, 'vi') + 1) ? 'split' : 'pageout')
}

const migrateWalk = pteWalk(
  (pte) => ({ pfn: pte.pfn, present: false, write: pte.write, dirty: pte.dirty, mig: true }),
  'set_pte_at (migration entry)',
  false,
)

/** mk_huge_pmd / mk_pte with the VMA's vm_page_prot: a PROT_NONE VMA maps PROT_NONE. */
function vmaAccessible(c: Ctx, hp: ThpDecl, i: number): boolean {
  return c.vma(c.mmIndex, hp.pages[i]!) !== 'none'
}

/** The remove/undo steps: pmd_lock for a PMD migration entry, the PTL for PTE ones. */
function removeGuard(c: Ctx, f: CallFrame): string | null {
  const hp = hpOf(c, f)
  const mm = c.mmIndex
  if (pmdMigration(c, hp, mm)) return c.pmdLockFree(mm, hp) ? null : 'pmd_lock held'
  return c.pmdPopulated(mm, hp.pages[0]!) && !c.ptlFree(mm, hp.pages[0]!) ? 'page-table lock held' : null
}

/**
 * remove_migration_ptes(src, `to`): remove_migration_pmd() under pmd_lock if the folio's PMD
 * migration entry is still there, else remove_migration_pte() for each PTE migration entry of
 * a subpage (a split left them) under the PTL. `install(i, entry)` maps subpage i; returns the
 * subpages installed.
 */
function removeMigrationEntries(
  c: Ctx,
  f: CallFrame,
  fn: string,
  install: (i: number, entry: Pte) => Pte,
): number[] {
  const hp = hpOf(c, f)
  const pfns = pfnsOf(f)
  const done: number[] = []
  const mm = c.mmIndex
  if (pmdMigration(c, hp, mm) && c.pte(mm, hp.pages[0]!)!.pfn === pfns[0]) {
    c.pmdLock(mm, hp, `${fn}: page_vma_mapped_walk`)
    const next = hp.pages.map((p, i) => {
      done.push(i)
      return { ...install(i, c.pte(mm, p)!), huge: true as const }
    })
    c.setPmd(
      mm,
      hp.pages,
      next,
      `set_pmd_at (${fn === 'remove_migration_ptes' ? 'remove_migration_pmd' : fn})`,
      `PMD ${hp.name} := huge page pfns ${next.map((p) => p.pfn).join(',')} ${next[0]!.write ? 'RW' : 'RO'}`,
    )
    c.pmdUnlock(mm, hp)
    return done
  }
  if (!c.pmdPopulated(mm, hp.pages[0]!)) {
    c.emit('info', fn, `the migration entries of ${hp.name} are gone (zapped meanwhile)`)
    return done
  }
  c.lockPtl(mm, hp.pages[0]!, `${fn}: remove_migration_pte`)
  hp.pages.forEach((p, i) => {
    const pte = c.pte(mm, p)
    if (pte?.mig && !pte.huge && pte.pfn === pfns[i]) {
      c.setPte(mm, p, install(i, pte), `set_pte_at (${fn}: remove_migration_pte)`)
      done.push(i)
    }
  })
  if (done.length === 0) c.emit('info', fn, `the migration entries of ${hp.name} are gone (zapped meanwhile)`)
  c.unlockPtl(mm, hp.pages[0]!)
  return done
}

/** migrate_pages() of the huge folio (`migrate P [mode]` of one of its subpages). */
export const migrateThp: Proc = {
  /** migrate_folio_unmap(): isolate and lock the folio, allocate a huge destination. */
  start: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      if (!isolateHuge(c, f, 'migrate_pages')) {
        c.emit(
          'info',
          'migrate_pages',
          `${c.pageName(num(f, 'page'))} is not mapped by ${hp.name}'s huge PMD: migrated as a small folio`,
        )
        c.call('migrate', { page: num(f, 'page'), mode: num(f, 'mode') }, 'small')
        return
      }
      f.l.new = pfnsOf(f).map(() => c.allocFrame(0, 'get_new_folio (huge destination)'))
      // try_to_migrate() -> rmap_walk_anon(): every VMA of the anon_vma (thpWalkSelect).
      thpWalkSelect(c, f, 0)
      c.goto('rs')
    },
  },
  small: { run: (c) => c.ret() },
  /** try_to_migrate_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR) over the folio. */
  rs: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      c.rangeStart(c.mmIndex, hp.pages, 'MMU_NOTIFY_CLEAR')
      c.goto('walk')
    },
  },
  /**
   * page_vma_mapped_walk(): a huge PMD mapping the folio: pmd_lock and set_pmd_migration_entry's
   * pmdp_invalidate with its flush; a PTE table (split meanwhile): the PTE walk.
   */
  walk: {
    guard: (c, f) => {
      const hp = hpOf(c, f)
      const mm = c.mmIndex
      return pmdHuge(c, hp, mm) ? (c.pmdLockFree(mm, hp) ? null : 'pmd_lock held') : walkGuard(c, f)
    },
    run: (c, f) => {
      const hp = hpOf(c, f)
      const mm = c.mmIndex
      const pfns = pfnsOf(f)
      if (pmdMapped(c, hp, mm) && c.pte(mm, hp.pages[0]!)!.pfn === pfns[0]) {
        c.pmdLock(mm, hp, 'page_vma_mapped_walk')
        const olds = hp.pages.map((p) => c.pte(mm, p)!)
        f.l.old = encodePte(olds[0]!)
        c.setPmd(
          mm,
          hp.pages,
          olds.map((p) => ({ ...p, present: false })),
          'pmdp_invalidate',
          `PMD ${hp.name} := invalid (set_pmd_migration_entry: pmd_mkinvalid)`,
        )
        c.flushTlb(mm, 'range', hp.pages, 'flush_tlb_range (pmdp_invalidate -> flush_pmd_tlb_range)')
        afterNotifier(c, f, 'pmd_rest', setPmdMigrationEntry)
        return
      }
      if (pmdHuge(c, hp, mm)) {
        c.emit('info', 'page_vma_mapped_walk', `${hp.name}'s PMD no longer maps the folio: nothing to unmap`)
        c.goto('rs_end')
        return
      }
      startWalk(c, f, migrateWalk.walk_ptes)
    },
  },
  pmd_rest: { run: (c, f) => setPmdMigrationEntry(c, f) },
  unmap: migrateWalk.unmap,
  unmap_rest: migrateWalk.unmap_rest,
  /** range_end (v4.15: ->invalidate_range here, before the copy); then the walk's next VMA. */
  rs_end: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      c.rangeEnd(c.mmIndex, hp.pages, false)
      afterNotifier(c, f, 'next_vma', migrateNextVma)
    },
  },
  next_vma: { run: (c, f) => migrateNextVma(c, f) },
  /** try_to_unmap_flush() before the copy: x86 arch_tlbbatch_flush() (a PTE walk only). */
  flush: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      tryToUnmapFlush(c, f, 'range', hp.pages, 'arch_tlbbatch_flush')
      if (!flag(f, 'mapped')) {
        c.emit('info', 'migrate_pages', `${hp.name} was unmapped meanwhile: nothing to migrate`)
        for (const pfn of list(f, 'new')) c.putFrame(pfn, 'migrate_folio_undo_dst')
        for (const pfn of pfnsOf(f)) c.putFrame(pfn, 'migrate_folio_undo_src')
        c.ret()
        return
      }
      c.goto('copy')
    },
  },
  /** move_to_new_folio(): folio_migrate_mapping()'s refcount check, then folio_migrate_copy(). */
  copy: {
    run: (c, f) => {
      const pfns = pfnsOf(f)
      const busy = pfns.find((pfn) => c.folio(pfn).ref !== 1)
      if (busy !== undefined) {
        c.emit(
          'info',
          'folio_migrate_mapping',
          `pfn ${busy} has references besides the migration's (refcount ${c.folio(busy).ref}): -EAGAIN`,
        )
        // remove_migration_ptes(src, src): the first VMA with a migration entry.
        thpMigSelect(c, f, 0)
        c.goto('undo')
        return
      }
      const neu = list(f, 'new')
      f.l.w = pfns.map((pfn, i) => {
        const src = c.folio(pfn)
        c.folioW(neu[i]!).v = src.v
        return src.w
      })
      c.emit('frame', 'folio_migrate_copy', `pfns ${pfns.join(',')} -> pfns ${neu.join(',')}`)
      // remove_migration_ptes(src, dst): the first VMA with a migration entry (thpMigSelect).
      thpMigSelect(c, f, 0)
      c.goto('remove')
    },
  },
  /** remove_migration_ptes(src, dst): the new huge page replaces the migration entries. */
  remove: {
    guard: (c, f) => removeGuard(c, f),
    run: (c, f) => {
      const hp = hpOf(c, f)
      const pfns = pfnsOf(f)
      const neu = list(f, 'new')
      const w = list(f, 'w')
      const before = list(f, 'installed')
      const now = removeMigrationEntries(c, f, 'remove_migration_ptes', (i, entry) => {
        const src = c.folioW(pfns[i]!)
        if (src.w !== w[i] && !before.includes(i)) {
          c.violate(
            'lost-write',
            `pfn ${pfns[i]} was written after folio_migrate_copy copied it; ${c.pageName(hp.pages[i]!)} now maps pfn ${neu[i]} without that write`,
          )
        }
        src.sup = true
        // remove_migration_pmd() / remove_migration_pte(): folio_get() for the mapping; the
        // migration keeps the destination's allocation reference until 'end'.
        c.getFrame(neu[i]!)
        c.folioW(neu[i]!).map++
        return { pfn: neu[i]!, present: vmaAccessible(c, hp, i), write: entry.write, dirty: entry.dirty }
      })
      f.l.installed = [...before, ...now.filter((i) => !before.includes(i))]
      // remove_migration_ptes goes on to the walk's next VMA with an entry (the fork child's).
      c.goto(thpMigSelect(c, f, num(f, 'vi') + 1) ? 'remove' : 'end')
    },
  },
  /**
   * migrate_folio_undo_src(): remove_migration_ptes(src, src) maps the source back (with the
   * mapping's reference); migrate_folio_undo_dst() frees the destination. A sync mode retries in
   * its own mode (try_to_migrate(src, 0)); async gives up.
   */
  undo: {
    guard: (c, f) => removeGuard(c, f),
    run: (c, f) => {
      const hp = hpOf(c, f)
      const pfns = pfnsOf(f)
      removeMigrationEntries(c, f, 'remove_migration_ptes (undo)', (i, entry) => {
        c.getFrame(pfns[i]!)
        c.folioW(pfns[i]!).map++
        return { pfn: pfns[i]!, present: vmaAccessible(c, hp, i), write: entry.write, dirty: entry.dirty }
      })
      if (thpMigSelect(c, f, num(f, 'vi') + 1)) {
        c.goto('undo')
        return
      }
      for (const pfn of list(f, 'new')) c.putFrame(pfn, 'migrate_folio_undo_dst')
      const mode = MIGRATE_MODES[num(f, 'mode')]!
      if (mode !== 'async' && !flag(f, 'ttu_sync')) {
        c.emit(
          'info',
          'migrate_pages_sync',
          `retry ${hp.name} in MIGRATE_${mode.toUpperCase()}: try_to_migrate(src, 0)`,
        )
        for (const pfn of pfns) c.putFrame(pfn, 'migrate_folio_undo_src')
        delete f.l.mapped
        delete f.l.vi
        f.l.ttu_sync = true
        c.goto('start')
        return
      }
      for (const pfn of pfns) c.putFrame(pfn, 'migrate_folio_undo_src (putback)')
      c.emit('op', 'migrate', `${hp.name}: -EAGAIN, not migrated`)
      c.ret()
    },
  },
  /** The source folio's last reference goes: freed; an unused destination too. */
  end: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      const installed = list(f, 'installed')
      for (const pfn of pfnsOf(f)) c.putFrame(pfn, 'migrate_folio_done (free the source)')
      // migrate_folio_done(): the destination's allocation reference (freed if nothing maps it).
      list(f, 'new').forEach((pfn, i) => {
        c.putFrame(
          pfn,
          installed.includes(i) ? 'migrate_folio_done (folio_put of dst)' : 'folio_put (unused destination)',
        )
      })
      c.emit(
        'op',
        'migrate',
        installed.length > 0
          ? `${hp.name}: pfns ${pfnsOf(f).join(',')} -> pfns ${list(f, 'new').join(',')}`
          : `${hp.name}: its migration entries were zapped meanwhile; the source is freed, nothing maps the copy`,
      )
      c.ret()
    },
  },
}

/** try_to_migrate_one() on rmap_walk_anon's next VMA, else try_to_unmap_flush() and the copy. */
function migrateNextVma(c: Ctx, f: CallFrame): void {
  c.goto(thpWalkSelect(c, f, num(f, 'vi') + 1) ? 'rs' : 'flush')
}

/**
 * set_pmd_migration_entry() after pmdp_invalidate()'s flush, still under pmd_lock: the dirty bit
 * to the folio, set_pmd_at(the PMD migration entry, writable if the PMD was),
 * page_remove_rmap(page, vma, true), folio_put() of the PMD's reference; unlock.
 */
function setPmdMigrationEntry(c: Ctx, f: CallFrame): void {
  const hp = hpOf(c, f)
  const mm = c.mmIndex
  const old = decodePte(f.l.old!)!
  delete f.l.old
  const pfns = pfnsOf(f)
  if (old.dirty) c.emit('frame', 'folio_mark_dirty', `the huge folio (pfns ${pfns.join(',')})`)
  c.setPmd(
    mm,
    hp.pages,
    pfns.map((pfn) => ({
      pfn,
      present: false,
      write: old.write,
      dirty: old.dirty,
      mig: true as const,
      huge: true as const,
    })),
    'set_pmd_at (PMD migration entry)',
    `PMD ${hp.name} := migration entry (pfns ${pfns.join(',')}, ${old.write ? 'writable' : 'read-only'})`,
  )
  for (const pfn of pfns) c.folioW(pfn).map--
  c.emit('frame', 'page_remove_rmap (compound)', `pfns ${pfns.join(',')} mapcount ${c.folio(pfns[0]!).map}`)
  for (const pfn of pfns) c.putFrame(pfn, 'folio_put (the PMD reference)')
  c.pmdUnlock(mm, hp)
  f.l.mapped = true
  c.goto('rs_end')
}

/**
 * split_huge_page() of the huge folio (v6.6 mm/huge_memory.c split_huge_page_to_list), called
 * with the folio locked and a reference held by the caller (local `pin`: the pfn of the subpage
 * it got): KSM's try_to_merge_one_page (`if (PageTransCompound(page)) split_huge_page(page)`)
 * and migrate_vma_collect_pmd (get_page, trylock_page, split_huge_page). Returns 'ok' or 'fail'
 * (-EAGAIN). anon_vma_lock_write(); can_split_folio() (no reference besides the mappings and the
 * caller's); unmap_folio(): try_to_migrate(folio, TTU_RMAP_LOCKED | TTU_SYNC | TTU_SPLIT_HUGE_PMD)
 * -> try_to_migrate_one(): split_huge_pmd_address(vma, address, true, folio) (the __split_huge_pmd
 * sequence, its own MMU_NOTIFY_CLEAR range and pmdp_invalidate's flush, with freeze: migration
 * entries), then its range_start(MMU_NOTIFY_CLEAR) over the folio and page_vma_mapped_walk
 * (PVMW_SYNC: under the PTL), which finds no present PTE left, and range_end;
 * folio_ref_freeze(folio, 1 + extra_pins); __split_huge_page(): the subpages become small
 * folios; remap_page() -> remove_migration_ptes() under the PTL (no flush: the entries were not
 * present); or, if the freeze failed, remap_page() alone and -EAGAIN. anon_vma_unlock_write().
 * Only a PMD-mapped huge page is split here: a subpage already PTE-mapped (`mapped: pte`, or
 * split earlier) is treated as a small folio (the module note above: that split only adds
 * invalidations). The model's huge folio is its subpages' frames: the caller's reference is
 * held on each of them (local `pfns`) for the length of the split.
 */
export const splitHugePage: Proc = {
  start: {
    // anon_vma_lock_write() waits for the rmap walks (anon_vma_lock_read) and a collapse.
    guard: (c) => (c.anonVmaWritable() ? null : 'anon_vma lock held'),
    run: (c, f) => {
      const hp = hpOf(c, f)
      const mm = c.mmIndex
      if (!pmdMapped(c, hp, mm)) {
        c.emit(
          'info',
          'split_huge_page',
          `${c.pageName(num(f, 'page'))} is not mapped by ${hp.name}'s huge PMD: treated as a small folio`,
        )
        c.ret('ok')
        return
      }
      const pfns = hp.pages.map((p) => c.pte(mm, p)!.pfn)
      for (const pfn of pfns) c.getFrame(pfn)
      f.l.pfns = pfns
      c.anonVmaWrite(true, 'anon_vma_lock_write')
      // can_split_folio(): folio_mapcount == folio_ref_count - extra_pins - 1 (the caller's).
      const pin = num(f, 'pin')
      const busy = pfns.find((pfn) => c.folio(pfn).ref !== c.folio(pfn).map + 1 + (pfn === pin ? 1 : 0))
      if (busy !== undefined) {
        f.l.fail = true
        splitHugePageEnd(c, f, `can_split_folio: pfn ${busy} has an extra reference: -EAGAIN`)
        return
      }
      c.emit(
        'info',
        'unmap_folio',
        `try_to_migrate(${hp.name}, TTU_SPLIT_HUGE_PMD | TTU_SYNC): split_huge_pmd_address(freeze) first`,
      )
      // rmap_walk_locked() over the anon_vma: the process's VMA, then the fork child's.
      thpWalkSelect(c, f, 0)
      freezeSplit(c, f)
    },
  },
  /** try_to_migrate_one(): mmu_notifier_invalidate_range_start(MMU_NOTIFY_CLEAR) over the folio. */
  ttm_rs: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      c.rangeStart(c.mmIndex, hp.pages, 'MMU_NOTIFY_CLEAR')
      c.goto('ttm_walk')
    },
  },
  /** page_vma_mapped_walk() (PVMW_SYNC: pte_offset_map_lock): the frozen PTEs are migration entries. */
  ttm_walk: {
    guard: (c, f) => walkGuard(c, f, c.mmIndex),
    run: (c, f) => {
      const hp = hpOf(c, f)
      const mm = c.mmIndex
      if (c.pmdPopulated(mm, hp.pages[0]!) && nextMapped(c, f, 0) >= 0) {
        // A PTE table that still maps subpages of the folio (a fork child whose PMD was split
        // before, by its COW fault): try_to_migrate_one() clears each with ptep_clear_flush()
        // (TTU_SYNC, no TTU_BATCH_FLUSH) and installs a migration entry, as migration's walk.
        f.l.ttu_sync = true
        migrateWalk.walk_ptes.run(c, f)
        return
      }
      if (c.pmdPopulated(mm, hp.pages[0]!)) {
        c.lockPtl(mm, hp.pages[0]!, 'page_vma_mapped_walk (PVMW_SYNC)')
        c.emit(
          'info',
          'page_vma_mapped_walk',
          `no present PTE maps the folio of ${hp.name}: nothing more to unmap`,
        )
        c.unlockPtl(mm, hp.pages[0]!)
      }
      c.goto('ttm_end')
    },
  },
  ttm_end: { run: (c, f) => ttmEnd(c, f) },
  rs_end: { run: (c, f) => ttmEnd(c, f) },
  ttm_next: { run: (c, f) => ttmNext(c, f) },
  /** The PTE walk of a split table (migrateWalk): its steps, and its end at range_end. */
  unmap: migrateWalk.unmap,
  unmap_rest: migrateWalk.unmap_rest,
  /** folio_ref_freeze(folio, 1 + extra_pins); __split_huge_page() or -EAGAIN. */
  freeze: {
    run: (c, f) => {
      const hp = hpOf(c, f)
      const pfns = pfnsOf(f)
      const pin = num(f, 'pin')
      const busy = pfns.find((pfn) => c.folio(pfn).ref !== 1 + (pfn === pin ? 1 : 0))
      if (busy !== undefined) {
        c.emit('info', 'folio_ref_freeze', `pfn ${busy} has an extra reference: remap_page, -EAGAIN`)
        f.l.fail = true
      } else
        c.emit(
          'frame',
          '__split_huge_page',
          `the folio of ${hp.name} (pfns ${pfns.join(',')}) becomes ${pfns.length} small folios`,
        )
      // remove_migration_ptes' walk: the first VMA with a migration entry (thpMigSelect).
      thpMigSelect(c, f, 0)
      c.goto('remap')
    },
  },
  /** remap_page() -> remove_migration_ptes(folio, folio, true): the same pages, present again. */
  remap: {
    guard: (c, f) => walkGuard(c, f, c.mmIndex),
    run: (c, f) => {
      const hp = hpOf(c, f)
      const mm = c.mmIndex
      const pfns = pfnsOf(f)
      const done: number[] = []
      if (c.pmdPopulated(mm, hp.pages[0]!)) {
        c.lockPtl(mm, hp.pages[0]!, 'remove_migration_ptes: remove_migration_pte')
        hp.pages.forEach((p, i) => {
          const pte = c.pte(mm, p)
          if (pte?.mig && !pte.huge && pte.pfn === pfns[i]) {
            c.getFrame(pte.pfn)
            c.folioW(pte.pfn).map++
            c.setPte(
              mm,
              p,
              { pfn: pte.pfn, present: c.vma(mm, p) !== 'none', write: pte.write, dirty: pte.dirty },
              'set_pte_at (remove_migration_pte)',
            )
            done.push(i)
          }
        })
        c.unlockPtl(mm, hp.pages[0]!)
      }
      const frozen = list(f, 'frozen')[mm] ?? pfns.length
      if (done.length < frozen)
        c.emit(
          'info',
          'remap_page',
          `${count(frozen - done.length, 'migration entry')} zapped meanwhile${mm === 1 ? ' (child)' : ''}`,
        )
      // remove_migration_ptes goes on to the next VMA with an entry (the fork child's).
      if (thpMigSelect(c, f, num(f, 'vi') + 1)) {
        c.goto('remap')
        return
      }
      splitHugePageEnd(
        c,
        f,
        flag(f, 'fail') ? 'split_huge_page: -EAGAIN' : `${hp.name} split into small folios`,
      )
    },
  },
}

/** try_to_migrate_one() on the walk's VMA: split_huge_pmd_address(vma, address, true, folio). */
function freezeSplit(c: Ctx, f: CallFrame): void {
  const hp = hpOf(c, f)
  c.call('thp_split', { held: true, pfn: pfnsOf(f)[0]!, freeze: true, ...hugeArg(c, hp) }, 'ttm_rs')
}
/** range_end of try_to_migrate_one() (the PTE walk's end too); the migration entries it left. */
function ttmEnd(c: Ctx, f: CallFrame): void {
  const hp = hpOf(c, f)
  const mm = c.mmIndex
  // The entries this VMA holds now, for remap_page's report of those zapped meanwhile.
  const frozen = list(f, 'frozen').slice()
  while (frozen.length <= mm) frozen.push(0)
  frozen[mm] = hp.pages.filter((p, i) => {
    const pte = c.pte(mm, p)
    return pte?.mig === true && !pte.huge && pte.pfn === pfnsOf(f)[i]
  }).length
  f.l.frozen = frozen
  c.rangeEnd(mm, hp.pages, false)
  afterNotifier(c, f, 'ttm_next', ttmNext)
}
/** unmap_folio()'s walk goes on to the next VMA (the fork child's), else folio_ref_freeze. */
function ttmNext(c: Ctx, f: CallFrame): void {
  if (thpWalkSelect(c, f, num(f, 'vi') + 1)) freezeSplit(c, f)
  else c.goto('freeze')
}

/** anon_vma_unlock_write(); the reference held on each subpage frame goes; return. */
function splitHugePageEnd(c: Ctx, f: CallFrame, text: string): void {
  c.anonVmaWrite(false, 'anon_vma_unlock_write')
  for (const pfn of pfnsOf(f)) c.putFrame(pfn, 'split_huge_page: folio_put')
  c.emit('info', 'split_huge_page', text)
  c.ret(flag(f, 'fail') ? 'fail' : 'ok')
}
