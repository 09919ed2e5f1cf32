/**
 * Page-table layer of the step context: PTEs and PMDs, the PTE pages themselves
 * (free_pgtables() and the mmu_gather's deferred table free), the huge page's deposited PTE
 * table and GUP-fast, hw-walker walk caches, VMAs, an mm's pending TLB flushes, and the life of
 * an address space (live, mm_users, released by exit_mmap).
 */
import { Res } from '../footprint'
import { mmuWritable, type Pte, tableCount, tablePages, tablesOf } from '../state'
import type { Scenario, ThpDecl } from '../types'
import { pteText } from './base'
import { CtxLocks } from './locks'

export class CtxTables extends CtxLocks {
  // ---- PTEs and PMDs -----------------------------------------------------------------
  pte(mm: number, page: number): Pte | null {
    this.rd(Res.pte(mm, page))
    return this.s.mms[mm]!.ptes[page]!
  }
  setPte(mm: number, page: number, pte: Pte | null, fn: string): void {
    this.wr(Res.pte(mm, page))
    this.ptesW(mm)[page] = pte
    const m = this.s.mms[mm]!
    const k = this.tableOf(page)
    if (pte && !pte.huge && !m.pt[k]) {
      // __pte_alloc(): a new PTE page is linked in the PMD.
      this.wr(Res.pt(mm, k))
      m.pt = m.pt.slice()
      m.pt[k] = true
      this.checkNoStaleWalkCache(mm, k)
    }
    this.emit('pte', fn, `PTE ${this.pageName(page)}${mm === 1 ? ' (child)' : ''} := ${pteText(pte)}`)
  }
  /**
   * A PMD-level change seen by every subpage at once (set_pmd_at, pmdp_invalidate,
   * pmdp_collapse_flush, pmd_populate): one event, one write per subpage.
   */
  setPmd(
    mm: number,
    pages: readonly number[],
    ptes: ReadonlyArray<Pte | null>,
    fn: string,
    text: string,
  ): void {
    const w = this.ptesW(mm)
    pages.forEach((p, j) => {
      this.wr(Res.pte(mm, p))
      w[p] = ptes[j] ?? null
    })
    this.emit('pte', fn, text)
  }
  /**
   * A new PTE page is linked in table k's PMD. A walk-cache entry for the table can only point
   * at this one: a table is freed only when no VMA is left over its PMD range, and no op makes
   * a VMA there again (mremap's target has one from the start), so a PMD never links a second
   * PTE page while an entry for a freed first one survives. Checked, not assumed.
   */
  private checkNoStaleWalkCache(mm: number, k: number): void {
    if (this.s.mms[mm]!.tbl[k] !== null) return
    // A walk cache holds tables of the mm its device is bound to (types.ts SecondaryMm).
    if (this.s.secs.some((x, i) => x.wc[k] === true && (this.sc.secondaries[i]!.mm ?? 0) === mm))
      throw new Error(
        `model bug: a PTE page is linked in table ${k}'s PMD while a walk cache points at its freed one`,
      )
  }
  /**
   * Whether the PMD of the table `page` lives in is populated (a PTE page exists), as
   * change_pmd_range() and zap_pmd_range() test with pmd_none().
   */
  pmdPopulated(mm: number, page: number): boolean {
    const k = this.tableOf(page)
    this.rd(Res.pt(mm, k))
    return this.s.mms[mm]!.pt[k]!
  }
  mmuWritable(pte: Pte): boolean {
    return mmuWritable(this.sc.arch, pte)
  }
  // ---- PTE pages: free_pgtables and the mmu_gather's table free ----------------------
  /** The tables of the scenario, 0 .. tableCount - 1. */
  get tables(): number[] {
    return Array.from({ length: tableCount(this.sc) }, (_, k) => k)
  }
  /**
   * free_pgtables() (v6.6 mm/mmap.c, called by unmap_region() after unmap_vmas(), over the
   * unmapped VMAs `pages`): free_pgd_range() -> free_pmd_range() -> free_pte_range() for every
   * PMD range the unmapped VMAs touch that no other VMA overlaps (the floor and ceiling of the
   * neighbouring VMAs): here, each table of `pages` with no VMA left on any of its pages. A
   * table with a VMA left stays (a partial free_pgtables). free_pte_range() does pmd_clear()
   * and pte_free_tlb(): the page is unlinked from the PMD and queued in the mmu_gather
   * (tlb_remove_table / tlb_remove_page), not freed yet; tlb_finish_mmu() frees it after its
   * flush (see freeDetachedTable). The unlinked page's (empty) PTEs are kept in `tbl` until
   * then (with `thp:`, the huge page's table: a PMD split earlier linked it), so a walk cache
   * that still points at it reads it, and a walk after the free is a use-after-free. A none PMD
   * (zap_huge_pmd freed the deposited table itself) has nothing to free. Returns the tables
   * unlinked.
   */
  freePgtables(mm: number, pages: readonly number[]): number[] {
    const freed = this.pgtablesToFree(mm, pages)
    for (const k of freed) {
      this.wr(Res.pt(mm, k))
      const w = this.mmW(mm)
      w.pt = w.pt.slice()
      w.pt[k] = false
      const multi = tableCount(this.sc) > 1
      const left = multi ? `no VMA left over table ${k}'s PMD range` : 'no VMA left'
      w.tbl = w.tbl.slice()
      w.tbl[k] = w.ptes.slice()
      this.emit(
        'info',
        'free_pgtables',
        `${left}: free_pte_range: pmd_clear, pte_free_tlb (${this.tableName(k)} is unlinked and queued in the mmu_gather; freed_tables = 1)`,
      )
    }
    return freed
  }
  /** The tables free_pgtables() over `pages` would unlink (freePgtables), changing nothing. */
  pgtablesToFree(mm: number, pages: readonly number[]): number[] {
    const out: number[] = []
    for (const k of tablesOf(this.sc, pages)) {
      if (tablePages(this.sc, k).some((p) => this.vma(mm, p) !== null)) continue
      this.rd(Res.pt(mm, k))
      if (this.s.mms[mm]!.pt[k]) out.push(k)
    }
    return out
  }
  /**
   * tlb_finish_mmu() -> tlb_flush_mmu() -> tlb_flush_mmu_free() -> tlb_table_flush() (v6.6
   * mm/mmu_gather.c): after the TLB flush, the PTE pages that free_pgtables() queued are freed
   * (x86 and arm64 select MMU_GATHER_RCU_TABLE_FREE: after an RCU grace period or the IPI of
   * tlb_remove_table_sync_one, neither of which an IOMMU walk waits for). `queued`: the tables
   * this gather's free_pgtables() unlinked (freePgtables; with `thp:` an unlinked `tbl` may
   * otherwise be the table deposited under a huge PMD, which is not the gather's to free).
   */
  freeDetachedTable(mm: number, queued: readonly number[]): void {
    for (const k of queued) {
      this.rd(Res.pt(mm, k))
      if (this.s.mms[mm]!.tbl[k] === null) continue
      this.wr(Res.pt(mm, k))
      const w = this.mmW(mm)
      w.tbl = w.tbl.slice()
      w.tbl[k] = null
      this.emit(
        'frame',
        'tlb_finish_mmu: tlb_table_flush',
        `${this.tableName(k)} unlinked by free_pgtables is freed`,
      )
    }
  }
  /**
   * A PTE page that free_pgtables() unlinked from table k's PMD and tlb_finish_mmu() has not
   * freed yet (its PTEs), or null (linked, or freed). The huge page's is table().
   */
  unlinkedTable(mm: number, k: number): ReadonlyArray<Pte | null> | null {
    this.rd(Res.pt(mm, k))
    return this.s.mms[mm]!.tbl[k]!
  }
  // ---- THP: the huge page's PTE table, GUP-fast --------------------------------------
  /** Huge page `hp`'s PTE table while it is unlinked (detached or deposited); null if none. */
  table(mm: number, hp: ThpDecl): ReadonlyArray<Pte | null> | null {
    const k = this.hugeTable(hp)
    this.rd(Res.pt(mm, k))
    return this.s.mms[mm]!.tbl[k]!
  }
  /**
   * Replaces huge page `hp`'s unlinked table (null: it is freed or linked); `pt` says whether
   * the PMD links one.
   */
  setTable(mm: number, hp: ThpDecl, tbl: Array<Pte | null> | null, pt: boolean): void {
    const k = this.hugeTable(hp)
    this.wr(Res.pt(mm, k))
    const m = this.mmW(mm)
    m.tbl = m.tbl.slice()
    m.tbl[k] = tbl
    m.pt = m.pt.slice()
    m.pt[k] = pt
  }
  /** A GUP-fast walker enters (+1) or leaves (-1) its IRQs-off section (local_irq_save). */
  gupFast(mm: number, delta: number): void {
    this.inc(Res.gupf(mm))
    this.mmW(mm).gupf += delta
    if (delta > 0) this.thread.locks.push('irqs off (gup-fast)')
    else this.dropLock('irqs off (gup-fast)')
  }
  /** No GUP-fast walker is inside its IRQs-off section: tlb_remove_table_sync_one's IPI returns. */
  gupFastIdle(mm: number): boolean {
    this.rd(Res.gupf(mm))
    return this.s.mms[mm]!.gupf === 0
  }
  // ---- hw-walker walk caches (paging-structure caches) -------------------------------
  /** The walk cache of hw-walker `i` holds the PMD's pointer to the PTE table `page` lives in. */
  walkCached(i: number, page: number): boolean {
    return this.walkCache(i, this.tableOf(page))
  }
  setWalkCache(i: number, page: number, v: boolean): void {
    this.setWalkCacheOf(i, this.tableOf(page), v)
  }
  protected walkCache(i: number, k: number): boolean {
    this.rd(Res.wc(i, k))
    return this.s.secs[i]!.wc[k]!
  }
  protected setWalkCacheOf(i: number, k: number, v: boolean): void {
    this.wr(Res.wc(i, k))
    const sec = this.secW(i)
    sec.wc = sec.wc.slice()
    sec.wc[k] = v
  }
  // ---- VMAs --------------------------------------------------------------------------
  vma(mm: number, page: number): 'rw' | 'ro' | 'none' | null {
    this.rd(Res.vma(mm, page))
    return this.s.mms[mm]!.vmas[page]!
  }
  setVma(mm: number, page: number, v: 'rw' | 'ro' | 'none' | null): void {
    this.wr(Res.vma(mm, page))
    this.vmasW(mm)[page] = v
  }
  // ---- pending TLB flushes of an mm --------------------------------------------------
  /** inc_tlb_flush_pending() / dec_tlb_flush_pending(): a commutative count of gathers in flight. */
  tlbFlushPending(mm: number, delta: number): void {
    this.inc(Res.tfp(mm))
    this.mmW(mm).tfp += delta
  }
  /** mm_tlb_flush_pending(): some mmu_gather (or change_protection) on this mm is in flight. */
  tlbFlushPendingAny(mm: number): boolean {
    this.rd(Res.tfp(mm))
    return this.s.mms[mm]!.tfp > 0
  }
  /** mm_tlb_flush_nested(): another mmu_gather on this mm is in flight. */
  tlbFlushNested(mm: number): boolean {
    this.rd(Res.tfp(mm))
    return this.s.mms[mm]!.tfp > 1
  }
  /** mm->tlb_flush_batched: a batched unmap's flush is pending (pending != flushed). */
  tlbBatched(mm: number): boolean {
    // Only reclaim and migration unmap with TTU_BATCH_FLUSH: elsewhere it is never set, and not
    // reading it keeps every zap and mprotect independent of each other (fewer states).
    if (!scenarioBatches(this.sc)) return false
    this.rd(Res.tfb(mm))
    return this.s.mms[mm]!.tfb === true
  }
  /** set_tlb_ubc_flush_pending() (true) / flush_tlb_batched_pending()'s cmpxchg (false). */
  setTlbBatched(mm: number, v: boolean): void {
    if (v && !scenarioBatches(this.sc))
      throw new Error('model bug: a batched unmap outside reclaim/migrate: add its op to scenarioBatches')
    this.wr(Res.tfb(mm))
    if (v) this.mmW(mm).tfb = true
    else delete this.mmW(mm).tfb
  }
  // ---- the mm's life: live, mm_users, released ---------------------------------------
  /** The child address space exists (fork returned, or cow pages imply one). */
  mmLive(mm: number): boolean {
    this.rd(Res.live(mm))
    return this.s.mms[mm]!.live
  }
  setLive(mm: number): void {
    this.wr(Res.live(mm))
    this.mmW(mm).live = true
  }
  /**
   * Whether exit_mmap() already ran mmu_notifier_release() on `mm` (MmState.rel). Read (and
   * recorded) only in scenarios with an `exit` op: elsewhere it is never set.
   */
  mmReleased(mm: number): boolean {
    if (!scenarioExits(this.sc)) return false
    this.rd(Res.live(mm))
    return this.s.mms[mm]!.rel === true
  }
  /** MMF_OOM_SKIP on `mm` (MmState.oomSkip): exit_mmap() is done with unmap_vmas(). */
  mmOomSkip(mm: number): boolean {
    if (!scenarioExits(this.sc)) return false
    this.rd(Res.live(mm))
    return this.s.mms[mm]!.oomSkip === true
  }
  /** MMF_UNSTABLE on `mm` (MmState.unstable): the OOM reaper has started on it. */
  mmUnstable(mm: number): boolean {
    if (!scenarioReaps(this.sc)) return false
    this.rd(Res.live(mm))
    return this.s.mms[mm]!.unstable === true
  }
  /** __oom_reap_task_mm(): set_bit(MMF_UNSTABLE, &mm->flags), before the first VMA. */
  setUnstable(mm: number): void {
    this.wr(Res.live(mm))
    this.mmW(mm).unstable = true
    this.emit(
      'info',
      '__oom_reap_task_mm',
      'set_bit(MMF_UNSTABLE): check_stable_address_space() fails every new anonymous page from now on',
    )
  }
  /** exit_mmap(): set_bit(MMF_OOM_SKIP, &mm->flags). */
  setOomSkip(mm: number): void {
    this.wr(Res.live(mm))
    this.mmW(mm).oomSkip = true
    this.emit('info', 'exit_mmap', 'set_bit(MMF_OOM_SKIP): the OOM reaper skips this mm from now on')
  }
  /**
   * A KVM vCPU fault, or an HMM driver's dmirror_fault (`who`), takes (+1) or drops (-1) its
   * mm_users reference (MmState.users): the vCPU is a thread of the process (kvm_vcpu_ioctl:
   * kvm->mm == current->mm); dmirror_fault mmget_not_zero()s the mm around dmirror_range_fault.
   * While one holds it, the process's last mmput, and exit_mmap(), cannot happen.
   */
  mmUsers(mm: number, delta: number, who = 'vCPU fault'): void {
    this.wr(Res.live(mm))
    const m = this.mmW(mm)
    const n = (m.users ?? 0) + delta
    if (n > 0) m.users = n
    else delete m.users
    if (delta > 0) this.thread.locks.push(`mm_users (${who})`)
    else this.dropLock(`mm_users (${who})`)
  }
  /** No mirror fault holds the mm: exit_mmap() may run (the last mmput). */
  mmUnused(mm: number): boolean {
    this.rd(Res.live(mm))
    return (this.s.mms[mm]!.users ?? 0) === 0
  }
}

const BATCHES = new WeakMap<Scenario, boolean>()
/** Whether some thread runs an op that unmaps with TTU_BATCH_FLUSH (reclaim, migrate). */
function scenarioBatches(sc: Scenario): boolean {
  let x = BATCHES.get(sc)
  if (x === undefined)
    BATCHES.set(
      sc,
      (x = sc.threads.some((t) => t.ops.some((o) => o.kind === 'reclaim' || o.kind === 'migrate'))),
    )
  return x
}

const EXITS = new WeakMap<Scenario, boolean>()
/** Whether some thread of the scenario runs `exit` (only then can an mm be released). */
const REAPS = new WeakMap<Scenario, boolean>()
/** Whether a thread runs the OOM reaper (MMF_UNSTABLE can be set). */
export function scenarioReaps(sc: Scenario): boolean {
  let x = REAPS.get(sc)
  if (x === undefined) REAPS.set(sc, (x = sc.threads.some((t) => t.ops.some((o) => o.kind === 'oom_reap'))))
  return x
}
export function scenarioExits(sc: Scenario): boolean {
  let x = EXITS.get(sc)
  if (x === undefined) EXITS.set(sc, (x = sc.threads.some((t) => t.ops.some((o) => o.kind === 'exit'))))
  return x
}
