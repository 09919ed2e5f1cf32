/**
 * Protection changes: mprotect(2) (do_mprotect_pkey -> mprotect_fixup -> change_protection,
 * v6.6 mm/mprotect.c, with the mmu_gather of 4a18419f71cd) and fork(2) (dup_mmap ->
 * copy_page_range -> copy_present_pte, v6.6 kernel/fork.c, mm/memory.c).
 */
import type { Ctx } from '../ctx'
import { ZERO_PFN, type Pte } from '../state'
import type { Prot } from '../types'
import { count } from '../plural'
import { afterNotifier, list, num, type Proc } from './proc'
import { flushTlbBatchedPending, swapCacheRefs } from './rmap'
import {
  changeHugePmdHandlers,
  copyHugePmdHandler,
  hugeArg,
  pmdHuge,
  thpMprotectPmd,
  thpSplitVma,
} from './thp'
import {
  gatherFinishFlush,
  gatherFinishFree,
  gatherFlush,
  gatherInit,
  nextPteIn,
  nextRun,
  runCount,
  runPages,
  startRuns,
  tableEnd,
} from './unmap'

type Frame = Parameters<Proc[string]['run']>[1]

/**
 * change_pmd_range() / copy_pmd_range(): from index i (a table's first page in `pages`), the
 * index of the first page whose PMD is populated (`if (pmd_none(*pmd)) goto next;`): it links
 * a PTE table or is a huge page's huge PMD (`thp:`); or -1.
 */
function populatedFrom(c: Ctx, mm: number, pages: readonly number[], i: number): number {
  while (i < pages.length) {
    if (hugePmdAt(c, mm, pages, i) || c.pmdPopulated(mm, pages[i]!)) return i
    i = tableEnd(c, pages, i)
  }
  return -1
}

/** Whether pages[i]'s PMD in `mm` is a huge page's huge PMD or PMD migration entry. */
function hugePmdAt(c: Ctx, mm: number, pages: readonly number[], i: number): boolean {
  const hp = c.hugeOf(pages[i]!)
  return hp !== null && pmdHuge(c, hp, mm)
}

/**
 * change_pmd_range()'s loop body at the PMD of pages[i] (not none): a huge PMD goes to
 * change_huge_pmd or a split (kernel/thp.ts thpMprotectPmd), a PTE table to change_pte_range.
 */
function changePmd(c: Ctx, f: Frame, pages: readonly number[], i: number): void {
  if (thpMprotectPmd(c, f, pages, i)) return
  c.goto('lock')
}

/**
 * change_pmd_range()'s `next:` after change_huge_pmd(): the next PMD that is not none after the
 * huge page's table, or the VMA's range_end.
 */
function changeNextPmd(c: Ctx, f: Frame): void {
  const pages = runPages(f, num(f, 'vi'))
  const j = populatedFrom(c, c.mmIndex, pages, tableEnd(c, pages, num(f, 'i')))
  delete f.l.hp
  if (j < 0) {
    c.goto('vma_end')
    return
  }
  f.l.i = j
  changePmd(c, f, pages, j)
}

/**
 * pte_needs_flush(oldpte, newpte). x86 (arch/x86/include/asm/tlbflush.h, v6.6, c9fe66560bf2):
 * no flush if the old PTE was not present; flush if the pfn changed, if PRESENT or DIRTY was
 * cleared, or if RW changed in either direction. arm64 has no override in v6.6: always true.
 */
export function pteNeedsFlush(arch: string, old: Pte, next: Pte): boolean {
  if (arch !== 'x86_64') return true
  if (!old.present) return false
  if (old.pfn !== next.pfn) return true
  if (old.present && !next.present) return true
  if (old.dirty && !next.dirty) return true
  return old.write !== next.write
}

/**
 * pte_modify() with the VMA's new vm_page_prot (private writable VMAs use PAGE_COPY, which
 * has no RW), then MM_CP_TRY_CHANGE_WRITABLE: can_change_pte_writable() makes an exclusive
 * anon page writable again; a shared (COW) page stays read-only.
 */
function modify(c: Ctx, page: number, old: Pte, prot: Prot): Pte {
  if (prot === 'none') return { pfn: old.pfn, present: false, write: false, dirty: old.dirty }
  if (prot === 'ro') return { pfn: old.pfn, present: true, write: false, dirty: old.dirty }
  const fr = c.folioW(old.pfn)
  // can_change_pte_writable(): a shared (file) mapping may become writable only if the PTE
  // is already dirty (writenotify: a clean one must fault so the folio is marked dirty).
  if (c.sc.pages[page]!.kind === 'file')
    return { pfn: old.pfn, present: true, write: old.dirty, dirty: old.dirty }
  const exclusive = old.pfn !== ZERO_PFN && fr.map === 1 && fr.ref === 1 + swapCacheRefs(c, old.pfn)
  return { pfn: old.pfn, present: true, write: exclusive, dirty: old.dirty }
}

export const mprotect: Proc = {
  /** mmap_write_lock; mprotect_fixup() sets the new vm_flags; tlb_gather_mmu(). */
  start: {
    guard: (c) => (c.mmapWritable(c.mmIndex) ? null : 'mmap_lock held'),
    run: (c, f) => {
      const mm = c.mmIndex
      c.mmapWriteLock(mm)
      const pages = startRuns(c, f, list(f, 'req'))
      if (pages.length !== list(f, 'req').length)
        c.emit('op', 'mprotect', '-ENOMEM for the part of the range without a VMA')
      if (pages.length === 0) {
        c.mmapWriteUnlock(mm)
        c.ret()
        return
      }
      // A VMA boundary inside a huge page: split_vma splits the PMD first (kernel/thp.ts).
      const hp = thpSplitVma(c, pages)
      if (hp !== null) {
        c.call('thp_split', { held: true, ...hugeArg(c, hp) }, 'fixup')
        return
      }
      mprotectFixup(c, f)
    },
  },
  /** After a split_vma's PMD split: the other boundary's huge page (two huge pages), then the fixup. */
  fixup: {
    run: (c, f) => {
      const hp = c.sc.thp.length > 1 ? thpSplitVma(c, list(f, 'pages')) : null
      if (hp !== null) {
        c.call('thp_split', { held: true, ...hugeArg(c, hp) }, 'fixup')
        return
      }
      mprotectFixup(c, f)
    },
  },
  /**
   * change_pmd_range() walks the VMA one PMD at a time: a none PMD is skipped, and
   * range_start(MMU_NOTIFY_PROTECTION_VMA) comes at the first populated one, from its address
   * to the VMA's end (local `rsi`: that page's index).
   */
  vma: {
    run: (c, f) => {
      const pages = runPages(f, num(f, 'vi'))
      f.l.i = 0
      // pmd_none() everywhere: no page table, nothing to change and no notifier range at all.
      const i = populatedFrom(c, c.mmIndex, pages, 0)
      if (i < 0) {
        c.goto('vma_end')
        return
      }
      c.rangeStart(c.mmIndex, pages.slice(i), 'MMU_NOTIFY_PROTECTION_VMA')
      f.l.rs = true
      // (A huge PMD first in the VMA: the range is the whole VMA, as rsi 0.)
      if (i > 0 || !hugePmdAt(c, c.mmIndex, pages, i)) f.l.rsi = i
      f.l.i = i
      changePmd(c, f, pages, i)
    },
  },
  /** change_pte_range(): the split PTL of the table at `i` (pte_offset_map_lock). */
  lock: {
    guard: (c, f) =>
      c.ptlFree(c.mmIndex, runPages(f, num(f, 'vi'))[num(f, 'i')]!) ? null : 'page-table lock held',
    run: (c, f) => {
      const page = runPages(f, num(f, 'vi'))[num(f, 'i')]!
      f.l.pp = page
      c.lockPtl(c.mmIndex, page, 'change_pte_range: pte_offset_map_lock')
      // flush_tlb_batched_pending(vma->vm_mm) right after the lock (3ea277194daa).
      flushTlbBatchedPending(c, c.mmIndex, 'change_pte_range')
      afterNotifier(c, f, 'lock_rest', changeStart)
    },
  },
  lock_rest: { run: (c, f) => changeStart(c, f) },
  ...changeHugePmdHandlers(changeNextPmd),
  /** ptep_modify_prot_start/commit; if pte_needs_flush(): tlb_flush_pte_range() (deferred). */
  pte: {
    run: (c, f) => {
      const mm = c.mmIndex
      const pages = runPages(f, num(f, 'vi'))
      const i = num(f, 'i')
      const page = pages[i]!
      const old = c.pte(mm, page)!
      if (old.swp !== undefined) {
        // change_pte_range() (v6.6): a non-present PTE that is a plain swap entry keeps
        // `newpte = oldpte`; `if (!pte_same(oldpte, newpte))` fails, so nothing is written.
        c.emit('info', 'change_pte_range', `${c.pageName(page)}: swap entry, left unchanged`)
      } else if (old.mig) {
        // is_writable_migration_entry(): "A protection check is difficult so just be safe and
        // disable write" (make_readable_exclusive_migration_entry), whatever the new prot;
        // a readable one is left as it is. Not in any TLB: no flush.
        if (old.write) c.setPte(mm, page, { ...old, write: false }, 'set_pte_at (readable migration entry)')
        else
          c.emit('info', 'change_pte_range', `${c.pageName(page)}: readable migration entry, left unchanged`)
      } else {
        const next = modify(c, page, old, protOf(f.l.prot as number))
        c.setPte(mm, page, next, 'ptep_modify_prot_commit')
        if (pteNeedsFlush(c.sc.arch, old, next)) {
          const r = c.thread.stack[0]!
          r.l.g_range = [...list(r, 'g_range'), page]
        } else c.emit('info', 'pte_needs_flush', `${c.pageName(page)}: no flush needed on ${c.sc.arch}`)
      }
      const end = tableEnd(c, pages, i)
      const n = nextPteIn(c, pages, i + 1, end)
      if (n < 0) changeUnlock(c, f, end)
      else {
        f.l.i = n
        c.goto('pte')
      }
    },
  },
  /** range_end (v4.15: ->invalidate_range here, before the CPU flush), over range_start's range. */
  vma_end: {
    run: (c, f) => {
      const mm = c.mmIndex
      const pages = runPages(f, num(f, 'vi'))
      if (f.l.rs === true) c.rangeEnd(mm, pages.slice(typeof f.l.rsi === 'number' ? f.l.rsi : 0), false)
      delete f.l.rs
      delete f.l.rsi
      if (c.sc.arch === 'arm64' && list(c.thread.stack[0]!, 'g_range').length > 0) {
        c.goto('end_vma')
        return
      }
      nextVma(c, f)
    },
  },
  /** arm64 tlb_end_vma(): the CPU flush (and arch hook) after range_end. */
  end_vma: {
    run: (c, f) => {
      gatherFlush(c, 'tlb_end_vma')
      nextVma(c, f)
    },
  },
  /** tlb_finish_mmu(): x86 flushes here, after every range_end, before the syscall returns. */
  finish: {
    run: (c, f) => {
      gatherFinishFlush(c, list(f, 'pages'))
      afterNotifier(c, f, 'finish_done', mprotectDone)
    },
  },
  finish_done: { run: (c, f) => mprotectDone(c, f) },
}

/**
 * change_pte_range()'s pte_unmap_unlock(), then change_pmd_range()'s next PMD: the next
 * populated table from index `end` (its PTL next), or the VMA's range_end.
 */
function changeUnlock(c: Ctx, f: Frame, end: number): void {
  c.unlockPtl(c.mmIndex, num(f, 'pp'))
  delete f.l.pp
  const pages = runPages(f, num(f, 'vi'))
  const j = populatedFrom(c, c.mmIndex, pages, end)
  if (j < 0) {
    c.goto('vma_end')
    return
  }
  f.l.i = j
  changePmd(c, f, pages, j)
}

/** mprotect_fixup(): the new vm_flags; tlb_gather_mmu(). */
function mprotectFixup(c: Ctx, f: Frame): void {
  const pages = list(f, 'pages')
  const prot = protOf(f.l.prot as number)
  for (const p of pages) c.setVma(c.mmIndex, p, prot)
  c.emit('info', 'mprotect_fixup', `vm_flags of ${c.pagesText(pages)} := ${prot}`)
  gatherInit(c)
  c.goto('vma')
}

/** change_pte_range() after the lock and flush_tlb_batched_pending(): the table's first PTE. */
function changeStart(c: Ctx, f: Frame): void {
  const pages = runPages(f, num(f, 'vi'))
  const i = num(f, 'i')
  const end = tableEnd(c, pages, i)
  const n = nextPteIn(c, pages, i, end)
  if (n < 0) {
    changeUnlock(c, f, end)
    return
  }
  f.l.i = n
  c.goto('pte')
}

/** tlb_finish_mmu()'s tail, mmap_write_unlock(), return. */
function mprotectDone(c: Ctx, f: Frame): void {
  gatherFinishFree(c)
  c.mmapWriteUnlock(c.mmIndex)
  c.markRevoked(c.mmIndex, list(f, 'pages'))
  c.emit('op', 'mprotect', 'returns 0')
  c.ret()
}

function nextVma(c: Ctx, f: Frame): void {
  c.goto(nextRun(f) ? 'vma' : 'finish')
}

const PROTS: readonly Prot[] = ['rw', 'ro', 'none']
export function protCode(p: Prot): number {
  return PROTS.indexOf(p)
}
function protOf(code: number): Prot {
  return PROTS[code]!
}

/** Whether the scenario has VMAs in a file's i_mmap tree (file or pfnmap pages): fork links the child's. */
function hasImapPages(c: Ctx): boolean {
  return c.sc.pages.some((p) => p.kind === 'file' || p.kind === 'pfnmap')
}

/**
 * fork(2): dup_mmap() over every VMA of the parent, v6.6 kernel/fork.c: a private (COW) VMA
 * and a VM_PFNMAP one are copied (copy_page_range), a MAP_SHARED file VMA is not.
 */
export const fork: Proc = {
  start: {
    guard: (c) =>
      !c.mmapWritable(0)
        ? 'mmap_lock held'
        : hasImapPages(c) && !c.imapWritable(0)
          ? 'i_mmap_rwsem held for read'
          : null,
    run: (c, f) => {
      c.mmapWriteLock(0)
      const all = c.sc.pages.map((_, i) => i)
      for (const p of all) c.setVma(1, p, c.vma(0, p))
      // copy_page_range() -> vma_needs_copy() (v6.6 mm/memory.c): a MAP_SHARED file VMA (no
      // anon_vma, not VM_PFNMAP) is not copied: "Don't copy ptes where a page fault will fill
      // them correctly". A VM_PFNMAP VMA is ("if (src_vma->vm_flags & (VM_PFNMAP |
      // VM_MIXEDMAP)) return true"). dup_mmap() links the child's VMA of a file (the regular
      // file's, or the driver's for a pfnmap) into its i_mmap tree under i_mmap_lock_write,
      // right after the parent's (vma_interval_tree_insert_after).
      const shared = all.filter((p) => c.isFile(p) && c.vma(0, p) !== null)
      const pfnmap = all.filter((p) => c.sc.pages[p]!.kind === 'pfnmap' && c.vma(0, p) !== null)
      for (const p of [...shared, ...pfnmap]) c.imapLink(1, p)
      if (shared.length > 0)
        c.emit(
          'info',
          'vma_needs_copy',
          `${c.pagesText(shared)}: MAP_SHARED file VMA, no PTE copied; the child faults the page-cache folio in`,
        )
      // A VM_PFNMAP VMA is a VMA of its own (the driver's mmap), never one with anon pages.
      const pages = startRuns(
        c,
        f,
        all.filter((p) => !shared.includes(p)),
        (p) => `${c.vma(0, p)}/${c.sc.pages[p]!.kind}`,
      )
      c.emit('info', 'dup_mmap', `copy ${count(runCount(f), 'VMA')} into the child`)
      c.goto(pages.length ? 'vma' : 'flush')
    },
  },
  /**
   * copy_page_range(): `if (is_cow)` (a private writable mapping: not a VM_SHARED pfnmap)
   * range_start(MMU_NOTIFY_PROTECTION_PAGE) and write_protect_seq begins. For VM_PFNMAP,
   * track_pfn_copy() first (x86 PAT: the child's reservation of the pfn's memory type; nothing
   * the model tracks). copy_pmd_range() skips a none source PMD.
   */
  vma: {
    run: (c, f) => {
      const pages = runPages(f, num(f, 'vi'))
      if (isCowRun(c, pages)) c.rangeStart(0, pages, 'MMU_NOTIFY_PROTECTION_PAGE')
      else
        c.emit(
          'info',
          'copy_page_range',
          `${c.pagesText(pages)}: VM_PFNMAP, VM_SHARED: track_pfn_copy, no notifier (not is_cow)`,
        )
      const i = populatedFrom(c, 0, pages, 0)
      f.l.i = i
      if (i < 0) c.goto('vma_end')
      else copyPmd(c, f, pages, i)
    },
  },
  huge_pmd: copyHugePmdHandler(forkNextPmd),
  /** copy_pte_range(): the PTL of the source table at `i` (the child's table is private). */
  lock: {
    guard: (c, f) => (c.ptlFree(0, runPages(f, num(f, 'vi'))[num(f, 'i')]!) ? null : 'page-table lock held'),
    run: (c, f) => {
      const pages = runPages(f, num(f, 'vi'))
      const i = num(f, 'i')
      f.l.pp = pages[i]!
      c.lockPtl(0, pages[i]!, 'copy_pte_range: pte_offset_map_lock')
      const end = tableEnd(c, pages, i)
      const n = pages.slice(0, end).findIndex((p, j) => j >= i && c.pte(0, p) !== null)
      if (n < 0) forkUnlock(c, f, end)
      else {
        f.l.i = n
        c.goto('pte')
      }
    },
  },
  /**
   * copy_present_pte(): ptep_set_wrprotect() on the parent (no flush), child PTE read-only, page
   * shared. A VM_PFNMAP PTE (vm_normal_page() NULL: no rmap, no reference; not is_cow: no
   * wrprotect) is copied as it is, made clean (`if (vm_flags & VM_SHARED) pte = pte_mkclean(pte)`).
   * A migration entry (a migration between its clear and remove_migration_ptes) goes through
   * copy_nonpresent_pte(): made read-only in both for a COW mapping, no reference; a swap
   * entry too, the child's PTE sharing the slot (swap_duplicate: one more in its swap_map).
   */
  pte: {
    run: (c, f) => {
      const pages = runPages(f, num(f, 'vi'))
      const i = num(f, 'i')
      const page = pages[i]!
      const pte = c.pte(0, page)!
      if (c.sc.pages[page]!.kind === 'pfnmap') {
        c.setPte(1, page, { ...pte, dirty: false }, 'copy_present_pte (child, VM_PFNMAP: pte_mkclean)')
      } else if (pte.mig) {
        if (pte.write)
          c.setPte(0, page, { ...pte, write: false }, 'set_pte_at (make_readable_migration_entry)')
        c.setPte(1, page, { ...pte, write: false }, 'copy_nonpresent_pte (child)')
      } else if (pte.swp !== undefined) {
        // copy_nonpresent_pte(): a swap entry is shared, swap_duplicate() counts the child's
        // PTE in the slot's swap_map ("Mark the swap entry as shared": no longer exclusive).
        c.swapDup(pte.swp)
        let shared = pte
        if (pte.excl) {
          // `if (pte_swp_exclusive(orig_pte)) { pte = pte_swp_clear_exclusive(orig_pte);
          // set_pte_at(src_mm, addr, src_pte, pte); }`: a swap-in racing with the fork backs off
          // at its pte_same() under the PTL.
          shared = { pfn: pte.pfn, present: false, write: false, dirty: false, swp: pte.swp }
          c.setPte(0, page, shared, 'set_pte_at (pte_swp_clear_exclusive)')
        }
        c.setPte(1, page, shared, 'copy_nonpresent_pte (child: swap_duplicate)')
      } else {
        if (pte.write) c.setPte(0, page, { ...pte, write: false }, 'ptep_set_wrprotect')
        c.setPte(1, page, { ...pte, write: false }, 'copy_present_pte (child)')
        if (pte.pfn !== ZERO_PFN) {
          const fr = c.folioW(pte.pfn)
          fr.map++
          fr.ref++
        }
      }
      const end = tableEnd(c, pages, i)
      let n = -1
      for (let j = i + 1; j < end; j++)
        if (c.pte(0, pages[j]!) !== null) {
          n = j
          break
        }
      if (n < 0) forkUnlock(c, f, end)
      else {
        f.l.i = n
        c.goto('pte')
      }
    },
  },
  /** range_end per COW VMA (v4.15: ->invalidate_range here). */
  vma_end: {
    run: (c, f) => {
      const pages = runPages(f, num(f, 'vi'))
      if (isCowRun(c, pages)) c.rangeEnd(0, pages, false)
      c.goto(nextRun(f) ? 'vma' : 'flush')
    },
  },
  /** After all VMAs: flush_tlb_mm(oldmm) (arch hook: whole mm), mmap_write_unlock, fork returns. */
  flush: {
    run: (c, f) => {
      c.flushTlb(0, 'mm', [], 'flush_tlb_mm (dup_mmap)')
      afterNotifier(c, f, 'flush_done', forkDone)
    },
  },
  flush_done: { run: (c) => forkDone(c) },
}

/** copy_pte_range()'s unlock, then copy_pmd_range()'s next populated source PMD or the VMA's end. */
function forkUnlock(c: Ctx, f: Frame, end: number): void {
  c.unlockPtl(0, num(f, 'pp'))
  delete f.l.pp
  const pages = runPages(f, num(f, 'vi'))
  const j = populatedFrom(c, 0, pages, end)
  f.l.i = j
  if (j < 0) c.goto('vma_end')
  else copyPmd(c, f, pages, j)
}

/**
 * copy_pmd_range()'s loop body at the source PMD of pages[i] (not none): `if
 * (is_swap_pmd(*src_pmd) || pmd_trans_huge(*src_pmd))` copy_huge_pmd() of that huge page
 * (local `hp`), else copy_pte_range() under the source table's PTL.
 */
function copyPmd(c: Ctx, f: Frame, pages: readonly number[], i: number): void {
  const hp = c.hugeOf(pages[i]!)
  if (hp !== null && pmdHuge(c, hp, 0)) {
    const arg = hugeArg(c, hp)
    if (arg.hp === undefined) delete f.l.hp
    else f.l.hp = arg.hp
    c.goto('huge_pmd')
    return
  }
  c.goto('lock')
}

/** copy_pmd_range()'s next PMD after copy_huge_pmd(): the next one that is not none, or range_end. */
function forkNextPmd(c: Ctx, f: Frame): void {
  const pages = runPages(f, num(f, 'vi'))
  const j = populatedFrom(c, 0, pages, tableEnd(c, pages, num(f, 'i')))
  delete f.l.hp
  f.l.i = j
  if (j < 0) c.goto('vma_end')
  else copyPmd(c, f, pages, j)
}

/** is_cow_mapping() of a run of fork's copy: its anon pages' private VMA, not a shared pfnmap. */
function isCowRun(c: Ctx, pages: readonly number[]): boolean {
  return c.sc.pages[pages[0]!]!.kind !== 'pfnmap'
}

/** dup_mmap() after its flush: mmap_write_unlock(); the child runs; fork returns. */
function forkDone(c: Ctx): void {
  c.mmapWriteUnlock(0)
  c.setLive(1)
  c.markRevoked(
    0,
    c.sc.pages.map((_, i) => i),
  )
  c.emit('op', 'fork', 'returns the child pid')
  c.ret()
}
