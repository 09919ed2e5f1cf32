/**
 * The step context: the primitives every kernel sequence is lowered onto (the LKMM ".def"
 * idea). Kernel sequences in kernel/*.ts call these by their kernel names; the policy decides
 * here, and only here, which notifier calls reach which secondary.
 */
import { COSTS, type CostKey, invalidationCost, type InvalidationKinds } from './costs'
import { Res, type Footprint } from './footprint'
import { count } from './plural'
import { hasSite, siteBit, type ArchSite, type Policy, type Site } from './policy'
import type { EventDetail, EventKind, Metrics, TraceEvent, Violation } from './results'
import {
  frameLabels,
  livenessOf,
  mmuWritable,
  type CallFrame,
  type FileState,
  type LabState,
  type LocalValue,
  type MmState,
  type PFrame,
  type SecState,
  type Pte,
  type TlbEntry,
  isKernelPage,
  KERNEL_MM,
  pageMm,
  tableCount,
  tableOf,
  tablePages,
  tablesOf,
  tableTag,
  SWAP_CACHE_REF,
  ZERO_PFN,
} from './state'
import type { InvariantName, Scenario } from './types'

export type Control =
  | { readonly k: 'goto'; readonly pc: string }
  | {
      readonly k: 'call'
      readonly proc: string
      readonly l: Record<string, LocalValue>
      readonly ret: string
    }
  | { readonly k: 'ret'; readonly value: LocalValue }

/** x86 tlb_single_page_flush_ceiling (arch/x86/mm/tlb.c, v6.6). */
export const X86_FLUSH_CEILING = 33
/** arm64 MAX_TLBI_OPS = PTRS_PER_PTE for 4K pages (arch/arm64/include/asm/tlbflush.h, v6.6). */
export const ARM64_MAX_TLBI_OPS = 512

export type FlushKind = 'page' | 'range' | 'mm'

/** The arch-hook site of each kind of flush: the generic function the mm code called. */
const FLUSH_SITE: Readonly<Record<FlushKind, ArchSite>> = {
  page: 'flush_tlb_page',
  range: 'flush_tlb_range',
  mm: 'flush_tlb_mm',
}

/**
 * The sites a run asked about (Ctx.at), as a mask over SITE_NAMES: runPolicy with
 * `tallySites` runs a policy carrying one (PolicyResult.sitesReached).
 */
export interface SiteTally {
  reached: number
}

/** A policy that notes every site its run asks about. */
export interface TallyingPolicy extends Policy {
  readonly tally?: SiteTally
}

export class Ctx {
  /** Filled only when tracing. */
  readonly events: TraceEvent[] = []
  violations: Violation[] = NO_VIOLATIONS
  control: Control | null = null
  /**
   * Driver commands this step started but that finish in later steps of the same thread, in
   * order (an atc-first driver's IOTLB invalidation): step() runs them before the thread goes on.
   */
  owed: Array<{ readonly sec: number; readonly pages: number[] | null; readonly why: string }> | null = null

  constructor(
    readonly sc: Scenario,
    readonly policy: Policy,
    readonly s: LabState,
    readonly t: number,
    readonly step: number,
    readonly tracing: boolean,
    readonly metrics: Metrics,
    /** When set, every shared resource the step reads or writes is recorded here. */
    readonly fp: Footprint | null = null,
    /** Secondary invalidations by shape, counted when given. */
    readonly kinds: InvalidationKinds | null = null,
  ) {}

  // ---- copy-on-write: a step shares every part of the state it does not change -------
  // Which parts this step already copied (bit masks; frames as a lazily made set).
  private ownFrames = false
  private ownFrame: Set<number> | null = null
  private ownMms = false
  private ownMm = 0
  private ownTlbs = false
  private ownSecs = false
  private ownSec = 0
  private ownRegs = false
  private ownFiles = false
  private ownPtes = 0
  private ownVmas = 0

  /** The mm's own fields (locks, flags), copied once per step; its arrays stay shared. */
  private mmW(mm: number): MmState {
    if (!this.ownMms) {
      this.s.mms = this.s.mms.slice()
      this.ownMms = true
    }
    if ((this.ownMm & (1 << mm)) === 0) {
      this.s.mms[mm] = { ...this.s.mms[mm]! }
      this.ownMm |= 1 << mm
    }
    return this.s.mms[mm]!
  }
  private ptesW(mm: number): Array<Pte | null> {
    const m = this.mmW(mm)
    if ((this.ownPtes & (1 << mm)) === 0) {
      m.ptes = m.ptes.slice()
      this.ownPtes |= 1 << mm
    }
    return m.ptes
  }
  private vmasW(mm: number): MmState['vmas'] {
    const m = this.mmW(mm)
    if ((this.ownVmas & (1 << mm)) === 0) {
      m.vmas = m.vmas.slice()
      this.ownVmas |= 1 << mm
    }
    return m.vmas
  }
  private secW(i: number): SecState {
    if (!this.ownSecs) {
      this.s.secs = this.s.secs.slice()
      this.ownSecs = true
    }
    if ((this.ownSec & (1 << i)) === 0) {
      const x = this.s.secs[i]!
      this.s.secs[i] = { entries: x.entries, atc: x.atc, seq: x.seq, inProg: x.inProg.slice(), wc: x.wc }
      this.ownSec |= 1 << i
    }
    return this.s.secs[i]!
  }
  private tlbsW(): TlbEntry[][] {
    if (!this.ownTlbs) {
      this.s.tlbs = this.s.tlbs.slice()
      this.ownTlbs = true
    }
    return this.s.tlbs
  }
  private framesW(): PFrame[] {
    if (!this.ownFrames) {
      this.s.frames = this.s.frames.slice()
      this.ownFrames = true
    }
    return this.s.frames
  }

  private rd(x: number): void {
    if (this.fp) this.fp.r.push(x)
  }
  private wr(x: number): void {
    if (this.fp) this.fp.w.push(x)
    if (this.owed !== null) this.noteAfterOwed(x)
  }
  private inc(x: number): void {
    if (this.fp) this.fp.inc.push(x)
    if (this.owed !== null) this.noteAfterOwed(x)
  }
  /**
   * The first resource (other than a secondary's TLB: the rest of the notifier's fan-out)
   * this step changed after an atc-first driver's first command: such kernel work would show
   * before the driver's second command, so step() refuses it (the step must end there).
   */
  afterOwed: number | null = null
  private noteAfterOwed(x: number): void {
    if (this.afterOwed === null && !Res.isSec(x)) this.afterOwed = x
  }

  get thread() {
    return this.s.threads[this.t]!
  }
  get name(): string {
    return this.sc.threads[this.t]!.name
  }
  /**
   * The mm the running kernel code works on: vma->vm_mm of the VMA an rmap or i_mmap walk is
   * at (the `mm` local of the innermost frame that has one: rmap.ts walkVmas), else the
   * thread's own (current->mm).
   */
  get mmIndex(): number {
    const st = this.thread.stack
    for (let i = st.length - 1; i >= 0; i--) {
      const m = st[i]!.l.mm
      if (typeof m === 'number') return m
    }
    return this.sc.threads[this.t]!.mm
  }
  get frame(): CallFrame {
    const st = this.thread.stack
    return st[st.length - 1]!
  }
  pageName(p: number): string {
    return this.sc.pages[p]!.name
  }
  pagesText(ps: readonly number[]): string {
    return ps.map((p) => this.pageName(p)).join(',')
  }

  // ---- control flow -------------------------------------------------------------------
  goto(pc: string): void {
    this.control = { k: 'goto', pc }
  }
  call(proc: string, l: Record<string, LocalValue>, ret: string): void {
    this.control = { k: 'call', proc, l, ret }
  }
  ret(value: LocalValue = null): void {
    this.control = { k: 'ret', value }
  }

  /**
   * Whether the policy notifies at this call site (policy.ts SITES). The one place kernel code
   * asks about a site: a tallying policy (SiteTally) notes the site as reached, whether the
   * policy has it or not. So a run that never asks about a site behaves the same with or
   * without it (synthesize.ts relies on that); callers test cheap conditions that make the site
   * irrelevant (no hw-walker, a driver flushing elsewhere) before asking.
   */
  at(site: Site): boolean {
    const tally = (this.policy as TallyingPolicy).tally
    if (tally !== undefined) tally.reached |= siteBit(site)
    return hasSite(this.policy, site)
  }
  /**
   * Whether the policy has the site, for trace text only (which function name an event shows):
   * it changes no behaviour, so it does not count as reaching the site.
   */
  names(site: Site): boolean {
    return hasSite(this.policy, site)
  }

  // ---- trace and metrics --------------------------------------------------------------
  emit(kind: EventKind, fn: string, text: string, detail?: EventDetail): void {
    if (!this.tracing) return
    this.events.push({
      step: this.step,
      thread: this.name,
      fn,
      kind,
      text,
      locks: this.thread.locks.slice(),
      ...detail,
    })
  }
  /** The `pages` detail of an event about `pages` (null: the whole address space). */
  pagesDetail(pages: readonly number[] | null): EventDetail {
    return { pages: pages === null ? 'all' : pages.map((p) => this.pageName(p)) }
  }
  /** Simulated time from the cost table, with the scenario's overrides. */
  cost(key: CostKey, times = 1): void {
    this.metrics.sim_ns += (this.sc.costs[key] ?? COSTS[key].ns) * times
  }
  violate(invariant: InvariantName, message: string): void {
    if (this.violations === NO_VIOLATIONS) this.violations = []
    this.violations.push({ invariant, step: this.step, thread: this.name, message })
    this.emit('violation', invariant, message)
  }

  // ---- locks ----------------------------------------------------------------------------
  /** The PTE table (PMD range) a page lives in: its `table:`. */
  tableOf(page: number): number {
    return tableOf(this.sc, page)
  }
  /** Whether two pages live in the same PTE table (hence share a split PTL). */
  sameTable(a: number, b: number): boolean {
    return this.tableOf(a) === this.tableOf(b)
  }
  /** `ptl`, `ptl(child)`; with several tables `ptl#1`, `ptl#1(child)`. */
  private ptlName(mm: number, k: number): string {
    return `ptl${tableTag(this.sc, k)}${mm === 0 ? '' : '(child)'}`
  }
  /**
   * A PTE table as traces name it: `base` ('the PTE page') with one table, `the PTE page#1`
   * with several.
   */
  tableName(k: number, base = 'the PTE page'): string {
    return `${base}${tableTag(this.sc, k)}`
  }
  /** Whether spin_lock(pte_lockptr(mm, pmd)) of the PTE table `page` lives in would not wait. */
  ptlFree(mm: number, page: number): boolean {
    const k = this.tableOf(page)
    this.rd(Res.ptl(mm, k))
    return this.s.mms[mm]!.ptl[k] === -1
  }
  /** pte_offset_map_lock(): the split PTL of the PTE table `page` lives in. */
  lockPtl(mm: number, page: number, fn = 'pte_offset_map_lock'): void {
    const k = this.tableOf(page)
    const tag = tableTag(this.sc, k)
    this.spinLock(
      mm,
      'ptl',
      k,
      this.ptlName(mm, k),
      fn,
      `take the page-table lock${tag ? ` ${this.ptlName(mm, k)}` : ''}`,
    )
  }
  unlockPtl(mm: number, page: number, fn = 'pte_unmap_unlock'): void {
    const k = this.tableOf(page)
    const tag = tableTag(this.sc, k)
    this.spinUnlock(
      mm,
      'ptl',
      k,
      this.ptlName(mm, k),
      fn,
      `release the page-table lock${tag ? ` ${this.ptlName(mm, k)}` : ''}`,
    )
  }
  /** A per-table spinlock of an mm (a PTL, a pmd_lock): held by one thread, or -1. */
  private spinLock(
    mm: number,
    field: 'ptl' | 'pmdl',
    k: number,
    name: string,
    fn: string,
    text: string,
  ): void {
    const m = this.mmW(mm)
    const held = m[field][k]!
    if (held !== -1) throw new Error(`model bug: ${this.name} takes ${name} held by thread ${held}`)
    m[field] = m[field].slice()
    m[field][k] = this.t
    this.wr(field === 'ptl' ? Res.ptl(mm, k) : Res.pmdl(mm, k))
    this.thread.locks.push(name)
    this.emit('lock', fn, text)
  }
  private spinUnlock(
    mm: number,
    field: 'ptl' | 'pmdl',
    k: number,
    name: string,
    fn: string,
    text: string,
  ): void {
    const m = this.mmW(mm)
    if (m[field][k] !== this.t) throw new Error(`model bug: ${this.name} releases ${name} it does not hold`)
    m[field] = m[field].slice()
    m[field][k] = -1
    this.wr(field === 'ptl' ? Res.ptl(mm, k) : Res.pmdl(mm, k))
    this.dropLock(name)
    this.emit('lock', fn, text)
  }
  mmapReadable(mm: number): boolean {
    this.rd(Res.mmap(mm))
    return this.s.mms[mm]!.writer === -1
  }
  mmapWritable(mm: number): boolean {
    this.rd(Res.mmap(mm))
    this.rd(Res.mmapReaders(mm))
    const m = this.s.mms[mm]!
    return m.writer === -1 && m.readers === 0
  }
  mmapReadLock(mm: number): void {
    const m = this.mmW(mm)
    if (m.writer !== -1) throw new Error('model bug: mmap_read_lock with a writer')
    m.readers++
    this.inc(Res.mmapReaders(mm))
    this.thread.locks.push('mmap_lock(r)')
    this.emit('lock', 'mmap_read_lock', 'take mmap_lock for read')
  }
  mmapReadUnlock(mm: number): void {
    this.mmW(mm).readers--
    this.inc(Res.mmapReaders(mm))
    this.dropLock('mmap_lock(r)')
    this.emit('lock', 'mmap_read_unlock', 'release mmap_lock')
  }
  mmapWriteLock(mm: number): void {
    const m = this.mmW(mm)
    if (m.writer !== -1 || m.readers !== 0) throw new Error('model bug: mmap_write_lock while held')
    m.writer = this.t
    this.wr(Res.mmap(mm))
    this.thread.locks.push('mmap_lock(w)')
    this.emit('lock', 'mmap_write_lock', 'take mmap_lock for write')
  }
  mmapWriteUnlock(mm: number): void {
    this.mmW(mm).writer = -1
    this.wr(Res.mmap(mm))
    this.dropLock('mmap_lock(w)')
    this.emit('lock', 'mmap_write_unlock', 'release mmap_lock')
  }
  mmapWriteDowngrade(mm: number): void {
    const m = this.mmW(mm)
    m.writer = -1
    m.readers++
    this.wr(Res.mmap(mm))
    this.inc(Res.mmapReaders(mm))
    this.dropLock('mmap_lock(w)')
    this.thread.locks.push('mmap_lock(r)')
    this.emit('lock', 'mmap_write_downgrade', 'downgrade mmap_lock to read')
  }
  dropLock(name: string): void {
    const ls = this.thread.locks
    const i = ls.lastIndexOf(name)
    if (i >= 0) ls.splice(i, 1)
  }

  // ---- page tables, VMAs and frames (recorded accessors) -------------------------
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
      if (mm === 0) this.checkNoStaleWalkCache(k)
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
  private checkNoStaleWalkCache(k: number): void {
    if (this.s.mms[0]!.tbl[k] !== null) return
    if (this.s.secs.some((x) => x.wc[k] === true))
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
  // ---- THP: the huge page's PMD, its PTE table, pmd_lock, GUP-fast ----------------------
  /** The huge page's subpages (the scenario's `thp:`), or none. */
  get thpPages(): readonly number[] {
    return this.sc.thp?.pages ?? NO_PAGES
  }
  isThp(page: number): boolean {
    return this.sc.thp !== null && this.sc.thp.pages.includes(page)
  }
  /** The table of the huge page's PMD (`thp:`). */
  private get thpTable(): number {
    return this.tableOf(this.thpPages[0] ?? 0)
  }
  pmdLockFree(mm: number): boolean {
    const k = this.thpTable
    this.rd(Res.pmdl(mm, k))
    return this.s.mms[mm]!.pmdl[k] === -1
  }
  /** pmd_lock(mm, pmd): the huge PMD's lock (split PMD lock or mm->page_table_lock). */
  pmdLock(mm: number, fn = 'pmd_lock'): void {
    this.spinLock(mm, 'pmdl', this.thpTable, 'pmd_lock', fn, 'take the PMD lock')
  }
  pmdUnlock(mm: number, fn = 'spin_unlock (pmd_lock)'): void {
    this.spinUnlock(mm, 'pmdl', this.thpTable, 'pmd_lock', fn, 'release the PMD lock')
  }
  /** The huge page's PTE table while it is unlinked (detached or deposited); null if none. */
  table(mm: number): ReadonlyArray<Pte | null> | null {
    const k = this.thpTable
    this.rd(Res.pt(mm, k))
    return this.s.mms[mm]!.tbl[k]!
  }
  /**
   * Replaces the huge page's unlinked table (null: it is freed or linked); `pt` says whether
   * the PMD links one.
   */
  setTable(mm: number, tbl: Array<Pte | null> | null, pt: boolean): void {
    const k = this.thpTable
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
  /** The walk cache of hw-walker `i` holds the PMD's pointer to the PTE table `page` lives in. */
  walkCached(i: number, page: number): boolean {
    return this.walkCache(i, this.tableOf(page))
  }
  setWalkCache(i: number, page: number, v: boolean): void {
    this.setWalkCacheOf(i, this.tableOf(page), v)
  }
  private walkCache(i: number, k: number): boolean {
    this.rd(Res.wc(i, k))
    return this.s.secs[i]!.wc[k]!
  }
  private setWalkCacheOf(i: number, k: number, v: boolean): void {
    this.wr(Res.wc(i, k))
    const sec = this.secW(i)
    sec.wc = sec.wc.slice()
    sec.wc[k] = v
  }

  vma(mm: number, page: number): 'rw' | 'ro' | 'none' | null {
    this.rd(Res.vma(mm, page))
    return this.s.mms[mm]!.vmas[page]!
  }
  setVma(mm: number, page: number, v: 'rw' | 'ro' | 'none' | null): void {
    this.wr(Res.vma(mm, page))
    this.vmasW(mm)[page] = v
  }
  /** inc_tlb_flush_pending() / dec_tlb_flush_pending(): a commutative count of gathers in flight. */
  tlbFlushPending(mm: number, delta: number): void {
    this.inc(Res.tfp(mm))
    this.mmW(mm).tfp += delta
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
  /**
   * i_mmap_lock_read()/unlock on the mapping's i_mmap tree (a shared count). The rwsem is the
   * file's (struct address_space), one for the VMAs of every mm: its count lives in the
   * process's MmState whichever mm the caller works on.
   */
  imapRead(_mm: number, delta: number): void {
    this.inc(Res.imap(0))
    this.mmW(0).imapReaders += delta
    if (delta > 0) this.thread.locks.push('i_mmap_rwsem(r)')
    else this.dropLock('i_mmap_rwsem(r)')
    this.emit('lock', delta > 0 ? 'i_mmap_lock_read' : 'i_mmap_unlock_read', "the mapping's i_mmap tree")
  }
  /** No reader holds the file's i_mmap rwsem (i_mmap_lock_write can take it); see imapRead. */
  imapWritable(_mm: number): boolean {
    this.rd(Res.imap(0))
    return this.s.mms[0]!.imapReaders === 0
  }
  /** Whether the VMA at `page` is still linked in the file's i_mmap tree. */
  imapLinked(mm: number, page: number): boolean {
    this.rd(Res.imap(mm))
    return this.s.mms[mm]!.imap[page]!
  }
  /** unlink_file_vma() (free_pgtables) under i_mmap_lock_write. */
  imapUnlink(mm: number, page: number): void {
    this.wr(Res.imap(mm))
    const m = this.mmW(mm)
    m.imap = m.imap.slice()
    m.imap[page] = false
  }
  /** vma_interval_tree_insert_after() (dup_mmap): the child's file VMA joins the i_mmap tree. */
  imapLink(mm: number, page: number): void {
    this.wr(Res.imap(mm))
    const m = this.mmW(mm)
    m.imap = m.imap.slice()
    m.imap[page] = true
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
  /**
   * A KVM vCPU fault takes (+1) or drops (-1) its mm_users reference (MmState.users): the vCPU
   * is a thread of the process (kvm_vcpu_ioctl: kvm->mm == current->mm), so while it faults
   * the process's last mmput, and exit_mmap(), cannot happen.
   */
  mmUsers(mm: number, delta: number): void {
    this.wr(Res.live(mm))
    const m = this.mmW(mm)
    const n = (m.users ?? 0) + delta
    if (n > 0) m.users = n
    else delete m.users
    if (delta > 0) this.thread.locks.push('mm_users (vCPU fault)')
    else this.dropLock('mm_users (vCPU fault)')
  }
  /** No vCPU fault holds the mm: exit_mmap() may run (the last mmput). */
  mmUnused(mm: number): boolean {
    this.rd(Res.live(mm))
    return (this.s.mms[mm]!.users ?? 0) === 0
  }
  /**
   * mmu_notifier_release() (v6.6 mm/mmu_notifier.c __mmu_notifier_release): under SRCU, every
   * subscriber's ->release, then hlist_del_init_rcu() of each subscription; HMM interval
   * notifiers get mn_itree_release() (an MMU_NOTIFY_RELEASE invalidation of everything).
   * Per secondary, `release: block` (default) is the v6.6 driver's callback: SMMUv3
   * arm_smmu_mm_release (quiet_cd: translation disabled, arm_smmu_tlb_inv_asid,
   * arm_smmu_atc_inv_domain), VT-d intel_mm_release (intel_pasid_tear_down_entry with
   * fault_ignore: PASID entry cleared, PASID cache, IOTLB and device TLB flushed), KVM
   * kvm_mmu_notifier_release -> kvm_flush_shadow_all; `release: none` does nothing.
   */
  mmuNotifierRelease(mm: number): void {
    this.wr(Res.live(mm))
    this.mmW(mm).rel = true
    if (mm !== 0 || this.sc.secondaries.length === 0) {
      this.emit('notifier', 'mmu_notifier_release', 'no subscribers')
      return
    }
    this.metrics.notifier_calls++
    this.emit('notifier', 'mmu_notifier_release', "every subscriber's ->release, then unhook them all")
    this.sc.secondaries.forEach((d, i) => {
      if (d.release === 'none') {
        this.emit('sec-inval', '->release', `${d.name}: release: none, the driver does nothing`)
        return
      }
      if (d.type === 'sw-mirror') {
        // KVM: kvm_flush_shadow_all zaps every SPTE. HMM: mn_itree_release invalidates every
        // interval notifier (MMU_NOTIFY_RELEASE), which moves the sequence a fault in flight
        // checks (mmu_interval_read_retry) before it installs.
        this.secInvalidate(i, null, 'kvm_mmu_notifier_release: kvm_flush_shadow_all / mn_itree_release')
        this.rd(Res.seq(i))
        this.wr(Res.seq(i))
        // An HMM mirror's seq is odd while an invalidation runs (ctx.ts intervalStart):
        // mn_itree_release's start and end move it by two, or leave an odd one to its end.
        if (d.protocol === 'hmm') this.secW(i).seq += this.s.secs[i]!.seq % 2 === 0 ? 2 : 0
        else this.secW(i).seq++
        return
      }
      const fn =
        d.iommu === 'vt-d'
          ? 'intel_mm_release: intel_pasid_tear_down_entry'
          : d.iommu === 'smmu-v3'
            ? 'arm_smmu_mm_release: quiet_cd, arm_smmu_tlb_inv_asid, arm_smmu_atc_inv_domain'
            : '->release: PASID entry blocked'
      this.emit(
        'sec-inval',
        fn,
        `${d.name}: the PASID's ${d.iommu === 'smmu-v3' ? 'CD disables translation' : 'entry is cleared'}: later DMA aborts`,
      )
      this.secInvalidate(i, null, fn)
    })
  }
  /** A frame, for reading. */
  folio(pfn: number): Readonly<PFrame> {
    this.rd(Res.frame(pfn))
    return this.s.frames[pfn]!
  }
  /** A frame, for changing. */
  folioW(pfn: number): PFrame {
    this.rd(Res.frame(pfn))
    this.wr(Res.frame(pfn))
    const fs = this.framesW()
    this.ownFrame ??= new Set()
    if (!this.ownFrame.has(pfn)) {
      fs[pfn] = { ...fs[pfn]! }
      this.ownFrame.add(pfn)
    }
    return fs[pfn]!
  }
  /**
   * Allocates a frame, reusing a free one so that a use-after-free is observable: the free frame
   * that comes first in the canonical frame numbering (state.ts frameLabels), so that the choice
   * depends on the state's structure, never on pfn numbers. That keeps the semantics symmetric
   * under renumbering, which the explorer's canonical hashing relies on. (The kernel's choice is
   * the allocator's business; any free page may come back.)
   */
  allocFrame(v: number, fn: string): number {
    this.rd(Res.alloc)
    this.wr(Res.alloc)
    const fs = this.framesW()
    let pfn = -1
    const free = fs.reduce((n, f, i) => n + (i !== ZERO_PFN && f.free ? 1 : 0), 0)
    if (free > 0) {
      // With a choice to make, the choice reads what the numbering reads: for partial-order
      // reduction, this step then depends on every step that changes a PTE, a TLB or a frame.
      if (free > 1 && this.fp) this.readAllForLabels()
      const lab = frameLabels(this.s, livenessOf(this.sc))
      for (let i = 0; i < fs.length; i++)
        if (i !== ZERO_PFN && fs[i]!.free && (pfn < 0 || lab[i]! < lab[pfn]!)) pfn = i
    }
    if (pfn < 0) {
      pfn = fs.length
      fs.push({ v, ref: 1, map: 0, free: false, gen: 1, w: 0, sup: false })
    } else {
      const f = fs[pfn]!
      fs[pfn] = { v, ref: 1, map: 0, free: false, gen: f.gen + 1, w: 0, sup: false }
    }
    this.wr(Res.frame(pfn))
    ;(this.ownFrame ??= new Set()).add(pfn)
    this.emit('frame', fn, `allocate pfn ${pfn} (gen ${fs[pfn]!.gen})`)
    return pfn
  }
  /**
   * Footprint of a choice made through frameLabels, which reads every PTE, TLB entry, folio,
   * frame and the other threads' pfn locals (thread-private, so no resource names them): the
   * step is marked dependent on every other step.
   */
  private readAllForLabels(): void {
    this.wr(Res.everything)
  }
  /** folio_put(): drop a reference; the frame returns to the allocator at zero. */
  putFrame(pfn: number, fn = 'folio_put'): void {
    if (pfn === ZERO_PFN) return
    const f = this.folioW(pfn)
    if (f.free || f.ref <= 0) throw new Error(`model bug: put of free pfn ${pfn}`)
    f.ref--
    if (f.ref === 0) {
      f.free = true
      this.wr(Res.alloc)
      this.emit('frame', fn, `free pfn ${pfn} (gen ${f.gen})`)
    }
  }
  getFrame(pfn: number): void {
    if (pfn !== ZERO_PFN) this.folioW(pfn).ref++
  }
  /** A new swap slot (get_swap_page / add_to_swap): swap_map count 0, the folio in the swap cache. */
  swapAlloc(pfn: number): number {
    this.rd(Res.alloc)
    this.wr(Res.alloc)
    this.s.swap = [...this.s.swap, null]
    this.s.swapCache = [...this.s.swapCache, pfn]
    this.s.swapMap = [...this.s.swapMap, 0]
    return this.s.swap.length - 1
  }
  /** The slot's swap_map count: how many swap PTEs refer to it (v6.6 swap_count()). */
  swapCount(slot: number): number {
    this.rd(Res.alloc)
    return (this.s.swapMap[slot] ?? 0) & (SWAP_CACHE_REF - 1)
  }
  /** Whether the swap cache holds a reference of its own on the slot's folio (swapCacheAdd). */
  swapCacheRef(slot: number): boolean {
    this.rd(Res.alloc)
    return ((this.s.swapMap[slot] ?? 0) & SWAP_CACHE_REF) !== 0
  }
  /** swap_duplicate() (v6.6 mm/swapfile.c): one more swap PTE refers to the slot. */
  swapDup(slot: number): void {
    this.wr(Res.alloc)
    const m = this.s.swapMap.slice()
    m[slot] = (m[slot] ?? 0) + 1
    this.s.swapMap = m
  }
  /**
   * swap_free() / free_swap_and_cache(): one swap PTE fewer; returns the count left. At 0 a
   * folio the swap cache holds a reference of its own on leaves it (folio_free_swap:
   * delete_from_swap_cache and the cache's folio_put); reclaim's folio stays for reclaim to drop.
   */
  swapFree(slot: number, fn: string): number {
    this.wr(Res.alloc)
    const m = this.s.swapMap.slice()
    const x = (m[slot] ?? 0) - 1
    if (x < 0) throw new Error(`model bug: swap_free of free slot ${slot}`)
    m[slot] = x
    this.s.swapMap = m
    const left = x & (SWAP_CACHE_REF - 1)
    if (left === 0 && x & SWAP_CACHE_REF) this.swapUncache(slot, fn)
    return left
  }
  /**
   * add_to_swap_cache() of a folio read in while other PTEs still share the slot
   * (read_swap_cache_async), or reclaim's folio kept in the cache once reclaim is done with it:
   * the cache holds a reference of its own (taken here for a new folio; `take` false hands over
   * the caller's).
   */
  swapCacheAdd(slot: number, pfn: number, take: boolean): void {
    this.wr(Res.alloc)
    if (take) this.getFrame(pfn)
    const c = this.s.swapCache.slice()
    c[slot] = pfn
    this.s.swapCache = c
    const m = this.s.swapMap.slice()
    m[slot] = (m[slot] ?? 0) | SWAP_CACHE_REF
    this.s.swapMap = m
  }
  /** The folio in the swap cache for a slot (swap_cache_get_folio), or -1. */
  swapCached(slot: number): number {
    this.rd(Res.alloc)
    return this.s.swapCache[slot] ?? -1
  }
  /** delete_from_swap_cache(), and the cache's own folio_put when it holds one (swapCacheAdd). */
  swapUncache(slot: number, fn = 'delete_from_swap_cache'): void {
    this.wr(Res.alloc)
    const pfn = this.s.swapCache[slot] ?? -1
    const c = this.s.swapCache.slice()
    c[slot] = -1
    this.s.swapCache = c
    const x = this.s.swapMap[slot] ?? 0
    if (x & SWAP_CACHE_REF) {
      const m = this.s.swapMap.slice()
      m[slot] = x & ~SWAP_CACHE_REF
      this.s.swapMap = m
      if (pfn >= 0) this.putFrame(pfn, `${fn}: the swap cache's folio_put`)
    }
  }
  swapRead(slot: number): number | null {
    this.rd(Res.alloc)
    return this.s.swap[slot] ?? null
  }
  /** swap_writepage() stores contents; swap_free() stores null. */
  swapWrite(slot: number, v: number | null): void {
    this.wr(Res.alloc)
    const sw = this.s.swap.slice()
    sw[slot] = v
    this.s.swap = sw
  }
  // ---- file pages: the page-cache folio (kind: file) ------------------------------------
  /** The page-cache folio of file page `page` (throws for other kinds: a model bug). */
  file(page: number): FileState {
    page = this.sc.pages[page]!.fileOf ?? page
    this.rd(Res.file(page))
    const f = this.s.files[page]
    if (!f) throw new Error(`model bug: ${this.pageName(page)} is not a file page`)
    return f
  }
  isFile(page: number): boolean {
    return this.sc.pages[page]!.kind === 'file'
  }
  private setFile(page: number, f: FileState): void {
    // An address declared `file: P` maps P's folio: its page-cache state is P's.
    page = this.sc.pages[page]!.fileOf ?? page
    this.wr(Res.file(page))
    if (!this.ownFiles) {
      this.s.files = this.s.files.slice()
      this.ownFiles = true
    }
    this.s.files[page] = f
  }
  folioLockFree(page: number): boolean {
    return this.file(page).lock === -1
  }
  /** folio_lock(): a sleeping lock, taken only when free (the caller's guard waits). */
  folioLock(page: number, fn = 'folio_lock'): void {
    const f = this.file(page)
    if (f.lock !== -1) throw new Error(`model bug: ${this.name} takes a folio lock held by thread ${f.lock}`)
    this.setFile(page, { ...f, lock: this.t })
    this.thread.locks.push(`folio_lock(${this.pageName(page)})`)
    this.emit('lock', fn, `lock the page-cache folio of ${this.pageName(page)}`)
  }
  folioUnlock(page: number, fn = 'folio_unlock'): void {
    const f = this.file(page)
    if (f.lock !== this.t) throw new Error(`model bug: ${this.name} unlocks a folio it does not hold`)
    this.setFile(page, { ...f, lock: -1 })
    this.dropLock(`folio_lock(${this.pageName(page)})`)
    this.emit('lock', fn, `unlock the page-cache folio of ${this.pageName(page)}`)
  }
  /** folio_mark_dirty() / set_page_dirty(): PG_dirty := 1. */
  folioMarkDirty(page: number, fn: string): void {
    const f = this.file(page)
    this.emit(
      'frame',
      fn,
      `${this.pageName(page)} (pfn ${f.pfn}): PG_dirty${f.dirty ? ' (already set)' : ' := 1'}`,
    )
    if (!f.dirty) this.setFile(page, { ...f, dirty: true })
  }
  /** folio_test_clear_dirty(): clears PG_dirty, returns whether it was set. */
  folioTestClearDirty(page: number): boolean {
    const f = this.file(page)
    this.emit(
      'frame',
      'folio_test_clear_dirty',
      `${this.pageName(page)} (pfn ${f.pfn}): PG_dirty was ${f.dirty ? 1 : 0}, now 0`,
    )
    if (f.dirty) this.setFile(page, { ...f, dirty: false })
    return f.dirty
  }
  /** truncate's i_size_write(): from now on a fault on the page gets SIGBUS. */
  fileShrink(page: number): void {
    const f = this.file(page)
    this.setFile(page, { ...f, trunc: true })
    this.emit('frame', 'i_size_write', `${this.pageName(page)} is beyond the new end of file`)
  }
  /**
   * truncate_inode_pages(): filemap_remove_folio() takes the folio out of the page cache;
   * PG_dirty is cancelled (folio_cancel_dirty in truncate_cleanup_folio). The folio lock stays
   * with its holder; the caller drops the page cache's reference (returns the pfn).
   */
  fileRemoveFolio(page: number): number {
    const f = this.file(page)
    this.setFile(page, { ...f, pfn: -1, dirty: false, trunc: true })
    this.emit('frame', 'filemap_remove_folio', `${this.pageName(page)}: pfn ${f.pfn} leaves the page cache`)
    return f.pfn
  }
  /**
   * Reclaim's __remove_mapping() of a clean file folio (v6.6 mm/vmscan.c): the folio leaves the
   * page cache (__filemap_remove_folio); the file keeps its contents on disk, so a later fault
   * reads them into a new folio (fileReadIn). The caller drops the references.
   */
  fileEvict(page: number): number {
    const f = this.file(page)
    this.setFile(page, { ...f, pfn: -1, dirty: false })
    this.emit(
      'frame',
      '__remove_mapping',
      `${this.pageName(page)}: pfn ${f.pfn} leaves the page cache (clean)`,
    )
    return f.pfn
  }
  /**
   * filemap_fault() on a page-cache miss (v6.6 mm/filemap.c): filemap_alloc_folio,
   * filemap_add_folio (locked, the page cache's reference) and ->read_folio from disk.
   */
  fileReadIn(page: number): number {
    const f = this.file(page)
    const pfn = this.allocFrame(f.disk, 'filemap_alloc_folio')
    this.setFile(page, { ...f, pfn })
    this.emit(
      'frame',
      'filemap_read_folio',
      `${this.pageName(page)}: pfn ${pfn} := disk(${this.pageName(page)}) = ${f.disk}`,
    )
    return pfn
  }
  /** folio_migrate_mapping() of a page-cache folio: the page cache slot now holds `pfn`. */
  fileMigrateSlot(page: number, pfn: number): void {
    const f = this.file(page)
    this.setFile(page, { ...f, pfn })
    this.getFrame(pfn)
    this.emit(
      'frame',
      'folio_migrate_mapping',
      `${this.pageName(page)}: the page cache slot moves from pfn ${f.pfn} to pfn ${pfn}`,
    )
  }
  /** The writeback I/O: the folio's contents as they are now go to the page's disk block. */
  diskWrite(page: number, fn: string): void {
    const f = this.file(page)
    const v = this.folio(f.pfn).v
    this.setFile(page, { ...f, disk: v })
    this.emit('frame', fn, `disk(${this.pageName(page)}) := ${v} (contents of pfn ${f.pfn})`)
  }

  setReg(r: number, v: number): void {
    if (!this.ownRegs) {
      this.s.regs = this.s.regs.slice()
      this.ownRegs = true
    }
    this.s.regs[r] = v
  }

  // ---- TLB entries (CPU TLBs and secondaries) -------------------------------------------
  tlbFind(t: number, page: number): TlbEntry | null {
    this.rd(Res.tlb(t, page))
    return this.s.tlbs[t]!.find((e) => e.page === page) ?? null
  }
  tlbPut(t: number, e: TlbEntry): void {
    this.wr(Res.tlb(t, e.page))
    this.tlbsW()[t] = insertEntry(this.s.tlbs[t]!, e)
  }
  tlbDrop(t: number, page: number): void {
    this.wr(Res.tlb(t, page))
    this.tlbsW()[t] = this.s.tlbs[t]!.filter((e) => e.page !== page)
  }
  /** The IOTLB (hw-walker) or shadow table (sw-mirror) of secondary `i`. */
  secFind(i: number, page: number): TlbEntry | null {
    return this.levelFind(i, 'entries', page)
  }
  secPut(i: number, e: TlbEntry): void {
    this.levelPut(i, 'entries', e)
  }
  secDrop(i: number, page: number): void {
    this.levelDrop(i, 'entries', page)
  }
  /** The device ATC of an ATS hw-walker (Res.sec covers both levels of one secondary). */
  atcFind(i: number, page: number): TlbEntry | null {
    return this.levelFind(i, 'atc', page)
  }
  atcPut(i: number, e: TlbEntry): void {
    this.levelPut(i, 'atc', e)
  }
  atcDrop(i: number, page: number): void {
    this.levelDrop(i, 'atc', page)
  }
  private levelFind(i: number, level: 'entries' | 'atc', page: number): TlbEntry | null {
    this.rd(Res.sec(i, page))
    return this.s.secs[i]![level].find((e) => e.page === page) ?? null
  }
  private levelPut(i: number, level: 'entries' | 'atc', e: TlbEntry): void {
    this.wr(Res.sec(i, e.page))
    this.secW(i)[level] = insertEntry(this.s.secs[i]![level], e)
  }
  private levelDrop(i: number, level: 'entries' | 'atc', page: number): void {
    this.wr(Res.sec(i, page))
    this.secW(i)[level] = this.s.secs[i]![level].filter((e) => e.page !== page)
  }
  seq(i: number): number {
    this.rd(Res.seq(i))
    return this.s.secs[i]!.seq
  }
  inProg(i: number, page: number): number {
    this.rd(Res.inprog(i, page))
    return this.s.secs[i]!.inProg[page]!
  }
  private allPages(): number[] {
    return this.sc.pages.map((_, i) => i)
  }
  /** Removes entries for `pages` (all pages when null) from a list; records reads and writes. */
  private dropFrom(
    list: readonly TlbEntry[],
    pages: readonly number[] | null,
    res: (p: number) => number,
  ): TlbEntry[] {
    for (const p of pages ?? this.allPages()) this.rd(res(p))
    // A 2 MiB entry goes as a whole when any of its subpages is invalidated.
    const huge = pages !== null && this.thpPages.some((p) => pages.includes(p))
    const out: TlbEntry[] = []
    for (const e of list) {
      if (pages === null || pages.includes(e.page) || (huge && e.huge)) this.wr(res(e.page))
      else out.push(e)
    }
    return out
  }

  // ---- kernel mappings (init_mm), signal/wait flags ------------------------------------------
  isKernelPage(page: number): boolean {
    return isKernelPage(this.sc, page)
  }
  /** The address space a page lives in: init_mm for kernel pages, else the thread's mm. */
  mmOfPage(page: number): number {
    return pageMm(this.sc, page, this.mmIndex)
  }
  flagSet(i: number): boolean {
    this.rd(Res.flag(i))
    return this.s.flags[i]!
  }
  setFlag(i: number): void {
    this.wr(Res.flag(i))
    const fl = this.s.flags.slice()
    fl[i] = true
    this.s.flags = fl
  }
  vmapLazy(page: number): boolean {
    this.rd(Res.vlazy(page))
    return this.s.vlazy[page] === true
  }
  setVmapLazy(page: number, v: boolean): void {
    this.wr(Res.vlazy(page))
    const l = this.s.vlazy.slice()
    l[page] = v
    this.s.vlazy = l
  }

  /**
   * x86 flush_tlb_kernel_range() (arch/x86/mm/tlb.c, v6.6): above tlb_single_page_flush_ceiling
   * pages it is flush_tlb_all(), else an IPI to every CPU to INVLPG the range. Neither calls
   * the arch hook: mmu_notifier_arch_invalidate_secondary_tlbs() takes an mm, and kernel
   * flushes have none (reference 1.8). The 2017 kernel notifier calls its chain at the
   * `flush_tlb_kernel_range` site here; a wide range is run as flush_tlb_all, whose site is
   * `flush_tlb_all`.
   */
  flushTlbKernelRange(pages: readonly number[], fn: string): void {
    if (pages.length > X86_FLUSH_CEILING) {
      this.flushTlbAll(`flush_tlb_all (${fn})`)
      return
    }
    this.metrics.cpu_tlb_flushes++
    this.sc.threads.forEach((th, i) => {
      if (th.kind === 'cpu') this.tlbsW()[i] = this.dropFrom(this.s.tlbs[i]!, pages, (p) => Res.tlb(i, p))
    })
    this.cost(
      this.sc.threads.filter((th) => th.kind === 'cpu').length > 1 ? 'cpu_flush_ipi' : 'cpu_flush_local',
    )
    this.emit(
      'cpu-flush',
      fn,
      `flush every CPU's TLB: kernel ${this.pagesText(pages)}`,
      this.pagesDetail(pages),
    )
    this.kernelNotify(pages, 'flush_tlb_kernel_range')
  }

  /** flush_tlb_all(): every CPU's whole TLB, user and kernel entries; no arch hook (v6.6). */
  flushTlbAll(fn: string): void {
    this.metrics.cpu_tlb_flushes++
    this.sc.threads.forEach((th, i) => {
      if (th.kind === 'cpu') this.tlbsW()[i] = this.dropFrom(this.s.tlbs[i]!, null, (p) => Res.tlb(i, p))
    })
    this.cost('cpu_flush_ipi')
    this.emit('cpu-flush', fn, "flush every CPU's whole TLB", this.pagesDetail(null))
    this.kernelNotify(null, 'flush_tlb_all')
  }

  /**
   * The kernel MMU notifier chain of the 2017 proposal ("mm: Add kernel MMU notifier to manage
   * IOTLB/DEVTLB", not merged): an atomic chain called from flush_tlb_kernel_range(), so that
   * drivers of supervisor-PASID devices invalidate their IOTLB/DevTLB synchronously.
   */
  private kernelNotify(
    pages: readonly number[] | null,
    site: 'flush_tlb_kernel_range' | 'flush_tlb_all',
  ): void {
    const subs = this.sc.secondaries
      .map((d, i) => [d, i] as const)
      .filter(([d]) => d.type === 'hw-walker' && d.pasid === 'supervisor')
    if (subs.length === 0 || !this.at(site)) return
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'kernel_mmu_notifier',
      `${site}: ${pages === null ? 'all' : this.pagesText(pages)}`,
      this.pagesDetail(pages),
    )
    for (const [, i] of subs) this.secInvalidate(i, pages, `kernel MMU notifier (${site})`)
  }

  // ---- CPU TLB flushes (v6.6 arch code) and the arch hook -----------------------------
  /**
   * An architecture TLB flush of `pages` (or the whole mm) for address space `mm`:
   * x86 flush_tlb_mm_range (local INVLPG + IPIs), arm64 TLBI ...IS + DSB (broadcast).
   * This is where v6.6 calls arch_invalidate_secondary_tlbs (reference §1.8): `site` is the
   * call site it stands for (by default the one of `kind`: flush_tlb_page, flush_tlb_range,
   * flush_tlb_mm); null for a flush that has no hook in any kernel (arch_tlbbatch_flush: no mm).
   * An SMMU with BTM snoops the broadcast TLBI whatever the policy.
   */
  flushTlb(
    mm: number,
    kind: FlushKind,
    pages: readonly number[],
    fn: string,
    site: ArchSite | null = FLUSH_SITE[kind],
  ): void {
    const arch = this.sc.arch
    let full = kind === 'mm'
    if (arch === 'x86_64' && pages.length > X86_FLUSH_CEILING) full = true
    if (arch === 'arm64' && kind === 'range' && pages.length >= ARM64_MAX_TLBI_OPS) full = true
    this.metrics.cpu_tlb_flushes++
    let remote = false
    this.sc.threads.forEach((th, i) => {
      if (th.kind !== 'cpu' || th.mm !== mm) return
      if (i !== this.t) remote = true
      this.tlbsW()[i] = this.dropFrom(this.s.tlbs[i]!, full ? null : pages, (p) => Res.tlb(i, p))
    })
    if (arch === 'x86_64') this.cost(remote ? 'cpu_flush_ipi' : 'cpu_flush_local')
    else this.cost('cpu_flush_tlbi')
    this.emit(
      'cpu-flush',
      fn,
      `flush CPU TLBs: ${full ? 'whole mm' : this.pagesText(pages)}`,
      this.pagesDetail(full ? null : pages),
    )
    if (mm !== 0) return
    if (arch === 'arm64') {
      // The SMMU snoops the TLBI into its IOTLB; a device ATC is not covered (reference 4.1).
      this.sc.secondaries.forEach((d, i) => {
        if (d.type === 'hw-walker' && d.btm) this.iotlbSnoop(i, full ? null : pages)
      })
    }
    // x86: flush_tlb_mm_range passes (start,end), or (0,-1) above the ceiling.
    // arm64: __flush_tlb_page_nosync passes one page; __flush_tlb_range in v6.6-v6.13 passed
    // an empty range (start advanced in place), which the SMMU treats as invalidate-all.
    if (site) this.archHook(mm, full || (arch === 'arm64' && kind === 'range') ? null : pages, site)
  }

  /** mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end) at an arch site of the policy; null: (0, -1). */
  archHook(mm: number, pages: readonly number[] | null, site: ArchSite): void {
    if (mm !== 0 || !this.hasHwWalker() || !this.at(site) || this.mmReleased(mm)) return
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'mmu_notifier_arch_invalidate_secondary_tlbs',
      pages === null ? 'range (0, -1): whole address space' : this.pagesText(pages),
      this.pagesDetail(pages),
    )
    this.forHw((i) => {
      const d = this.sc.secondaries[i]!
      if (pages === null && d.type === 'hw-walker' && d.iommu === 'vt-d' && !this.sc.kernel.vtdFullRangeFix) {
        // v6.6.0 intel_flush_svm_range(): pages = (end - start + 1) >> VTD_PAGE_SHIFT wraps to 0
        // for (0, -1UL), and the chunk loop issues nothing (fixed by e7ad6c2a4b1a).
        this.emit(
          'sec-inval',
          'intel_arch_invalidate_secondary_tlbs',
          `${d.name}: range (0, -1UL) overflows the page count: no IOTLB or ATC command (v6.6.0, before e7ad6c2a4b1a)`,
          this.pagesDetail(null),
        )
        return
      }
      this.secInvalidate(i, pages, 'arch_invalidate_secondary_tlbs')
    })
  }

  hasHwWalker(): boolean {
    return this.sc.secondaries.some((d) => d.type === 'hw-walker')
  }
  private forHw(f: (i: number) => void): void {
    this.sc.secondaries.forEach((d, i) => {
      if (d.type === 'hw-walker') f(i)
    })
  }

  /**
   * A driver invalidates a secondary for `pages` (null: everything). For a hw-walker that is its
   * IOTLB and, with ATS, the device ATC, as two commands each waited for (v6.6
   * arm_smmu_mm_arch_invalidate_secondary_tlbs: arm_smmu_tlb_inv_range_asid, then
   * arm_smmu_atc_inv_domain; intel_flush_svm_range: qi_flush_piotlb, then
   * qi_flush_dev_iotlb_pasid). An SMMU with BTM skips its own TLBI (the snoop covered the IOTLB)
   * but still invalidates the ATC.
   */
  secInvalidate(i: number, pages: readonly number[] | null, why: string): void {
    const d = this.sc.secondaries[i]!
    this.metrics.secondary_invalidations++
    if (d.type === 'sw-mirror') {
      const sec = this.secW(i)
      const before = sec.entries.length
      sec.entries = this.dropFrom(sec.entries, pages, (p) => Res.sec(i, p))
      this.emit(
        'sec-inval',
        why,
        `${d.name}: invalidate ${this.rangeText(pages)} (${this.dropped(before, sec.entries)})`,
        this.pagesDetail(pages),
      )
      return
    }
    const iotlb = !(d.btm && d.iommu === 'smmu-v3')
    const c = invalidationCost(d.iommu, pages, d.ats, iotlb)
    for (const [key, times] of c.cost) this.cost(key, times)
    if (this.kinds) {
      if (iotlb) this.kinds[c.kind]++
      if (d.ats) this.kinds.atc++
    }
    if (!d.ats) {
      if (iotlb) this.dropIotlb(i, pages, why)
      else
        this.emit(
          'sec-inval',
          why,
          `${d.name}: BTM: the IOTLB is left to snooped TLBIs; no ATC: no command`,
          this.pagesDetail(pages),
        )
      return
    }
    if (!iotlb) {
      this.emit(
        'sec-inval',
        why,
        `${d.name}: BTM: the IOTLB is left to snooped TLBIs; the ATC is not snooped`,
        this.pagesDetail(pages),
      )
      this.dropAtc(i, pages, why)
      return
    }
    if (d.atcOrder === 'iotlb-first') {
      this.dropIotlb(i, pages, why)
      this.dropAtc(i, pages, why)
      return
    }
    // atc-first: the ATC command completes, and the IOTLB command is a step of its own (the
    // thread runs it next, holding the same locks): in between the device may send a
    // translation request that the IOMMU answers from the IOTLB it has not invalidated yet.
    // Kernel code after a notifier call continues only after it (proc.ts afterNotifier;
    // step() refuses a step that changes anything else once a command is owed).
    this.dropAtc(i, pages, why)
    ;(this.owed ??= []).push({ sec: i, pages: pages === null ? null : pages.slice(), why })
  }

  /** A driver's IOTLB command (and, v6.6 non-leaf, its walk cache). */
  private dropIotlb(i: number, pages: readonly number[] | null, why: string): void {
    const d = this.sc.secondaries[i]!
    const sec = this.secW(i)
    const before = sec.entries.length
    sec.entries = this.dropFrom(sec.entries, pages, (p) => Res.sec(i, p))
    this.dropWalkCache(i, pages, why)
    if (this.tracing)
      this.emit(
        'sec-inval',
        why,
        `${d.name}: invalidate ${d.type === 'hw-walker' && d.ats ? 'IOTLB ' : ''}${this.rangeText(pages)} (${this.dropped(before, sec.entries)})`,
        this.pagesDetail(pages),
      )
  }
  /** A driver's device-ATC command (ATS). */
  private dropAtc(i: number, pages: readonly number[] | null, why: string): void {
    const sec = this.secW(i)
    const before = sec.atc.length
    sec.atc = this.dropFrom(sec.atc, pages, (p) => Res.sec(i, p))
    if (this.tracing)
      this.emit(
        'sec-inval',
        why,
        `${this.sc.secondaries[i]!.name}: invalidate ATC ${this.rangeText(pages)} (${this.dropped(before, sec.atc)})`,
        this.pagesDetail(pages),
      )
  }

  /** The IOTLB command an atc-first driver sends after its ATC command (see `owed`). */
  iotlbCommand(i: number, pages: readonly number[] | null, why: string): void {
    const d = this.sc.secondaries[i]!
    const sec = this.secW(i)
    const before = sec.entries.length
    sec.entries = this.dropFrom(sec.entries, pages, (p) => Res.sec(i, p))
    this.emit(
      'sec-inval',
      why,
      `${d.name}: invalidate IOTLB ${this.rangeText(pages)} (${this.dropped(before, sec.entries)}), after the ATC (atc_order: atc-first)`,
      this.pagesDetail(pages),
    )
    this.dropWalkCache(i, pages, why)
  }

  /**
   * The non-leaf part of a driver's invalidation (SMMU leaf=false, VT-d ih=0, as v6.6 SVA
   * drivers send it): the walk-cache entry for each PTE table whose PMD range the range
   * touches goes (SMMU CMD_TLBI_NH_VA with Leaf=0 and VT-d PASID-based IOTLB invalidation with
   * IH=0 drop the paging-structure entries used for the addresses). A leaf-only driver
   * (leaf_only: true) keeps them.
   */
  private dropWalkCache(i: number, pages: readonly number[] | null, why: string): void {
    const d = this.sc.secondaries[i]!
    if (d.type !== 'hw-walker' || !d.walkCache) return
    for (const k of pages === null ? this.tables : tablesOf(this.sc, pages)) {
      if (!this.walkCache(i, k)) continue
      const table = this.tableName(k, 'the PTE table')
      if (d.leafOnly) {
        this.emit(
          'sec-inval',
          why,
          `${d.name}: leaf-only invalidation: the walk cache keeps ${table}`,
          this.pagesDetail(pages),
        )
        continue
      }
      this.setWalkCacheOf(i, k, false)
      this.emit(
        'sec-inval',
        why,
        `${d.name}: non-leaf invalidation: drop the walk-cache entry for ${table}`,
        this.pagesDetail(pages),
      )
    }
  }

  /** BTM: the SMMU applies a snooped broadcast TLBI to its IOTLB (not to a device ATC). */
  private iotlbSnoop(i: number, pages: readonly number[] | null): void {
    const d = this.sc.secondaries[i]!
    const sec = this.secW(i)
    const before = sec.entries.length
    sec.entries = this.dropFrom(sec.entries, pages, (p) => Res.sec(i, p))
    this.emit(
      'sec-inval',
      'BTM: snooped broadcast TLBI',
      `${d.name}: invalidate ${d.type === 'hw-walker' && d.ats ? 'IOTLB ' : ''}${this.rangeText(pages)} (${this.dropped(before, sec.entries)})`,
      this.pagesDetail(pages),
    )
  }
  private rangeText(pages: readonly number[] | null): string {
    return pages === null ? 'all' : this.pagesText(pages)
  }
  private dropped(before: number, after: readonly TlbEntry[]): string {
    return `${count(before - after.length, 'entry', 'entries')} dropped`
  }

  // ---- mmu_notifier entry points -------------------------------------------------------
  private hasSubscribers(mm: number): boolean {
    // After mmu_notifier_release() the subscription list is empty.
    return mm === 0 && this.sc.secondaries.length > 0 && !this.mmReleased(mm)
  }

  /**
   * mmu_notifier_invalidate_range_start_nonblock() (v6.6, the OOM reaper's): like range_start
   * with !mmu_notifier_range_blockable(). A subscriber that would have to sleep (`nonblock:
   * eagain`: an HMM driver whose mutex_trylock fails, mn_itree_invalidate's -EAGAIN) fails it;
   * mn_hlist_invalidate_range_start then calls invalidate_range_end for the subscribers that
   * already succeeded. Returns false on -EAGAIN.
   */
  rangeStartNonblock(mm: number, pages: readonly number[], event: string): boolean {
    if (!this.hasSubscribers(mm)) return true
    const failing = this.sc.secondaries.findIndex((d) => d.nonblock === 'eagain')
    if (failing < 0) {
      this.rangeStart(mm, pages, event)
      return true
    }
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'mmu_notifier_invalidate_range_start_nonblock',
      `${event} ${this.pagesText(pages)}: ${this.sc.secondaries[failing]!.name} cannot proceed without sleeping: -EAGAIN`,
      this.pagesDetail(pages),
    )
    return false
  }

  /** mmu_notifier_invalidate_range_start(): sw-mirrors zap and block refill; start/end hw drivers flush. */
  rangeStart(mm: number, pages: readonly number[], event: string, owner?: number): void {
    if (!this.hasSubscribers(mm)) return
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'mmu_notifier_invalidate_range_start',
      `${event} ${this.pagesText(pages)}`,
      this.pagesDetail(pages),
    )
    this.sc.secondaries.forEach((d, i) => {
      if (d.type === 'sw-mirror' && d.protocol === 'hmm') {
        this.intervalStart(i, pages, event, owner)
      } else if (d.type === 'sw-mirror') {
        const zapped = this.mirrorZap(i, pages)
        this.mirrorInProgress(i, pages, 1)
        this.emit(
          'sec-inval',
          'kvm_mmu_notifier_invalidate_range_start',
          `${d.name}: invalidate_in_progress++, zap ${count(zapped, 'shadow entry', 'shadow entries')}`,
          this.pagesDetail(pages),
        )
      } else if (d.flushAt !== 'end' && this.at('invalidate_range_start')) {
        this.secInvalidate(i, pages, 'invalidate_range_start')
      }
    })
  }

  /**
   * A sw-mirror's invalidation at range_start (KVM's kvm_unmap_gfn_range, dmirror_do_update):
   * its shadow entries for `pages` go, counted as one secondary invalidation and in mirror_zaps.
   * Returns how many went.
   */
  private mirrorZap(i: number, pages: readonly number[]): number {
    const sec = this.secW(i)
    const before = sec.entries.length
    sec.entries = this.dropFrom(sec.entries, pages, (p) => Res.sec(i, p))
    const zapped = before - sec.entries.length
    this.metrics.secondary_invalidations++
    if (zapped > 0) {
      this.metrics.mirror_zaps += zapped
      this.cost('mirror_zap')
    }
    return zapped
  }

  /**
   * A sw-mirror's per-page count of running invalidations (KVM mmu_invalidate_in_progress, the
   * interval notifier's active ranges): +1 at range_start, -1 at range_end.
   */
  private mirrorInProgress(i: number, pages: readonly number[], delta: 1 | -1): void {
    const sec = this.secW(i)
    for (const p of pages) {
      this.rd(Res.inprog(i, p))
      this.wr(Res.inprog(i, p))
      sec.inProg[p]! += delta
    }
  }

  /**
   * An HMM mirror's mmu_interval_notifier at range_start (v6.6 mm/mmu_notifier.c
   * mn_itree_inv_start_range: active_invalidate_ranges++, invalidate_seq made odd, then
   * mn_itree_invalidate calls ->invalidate of each overlapping notifier). The mirror's notifier
   * spans the address space (lib/test_hmm.c dmirror_fops_open: mmu_interval_notifier_insert(0,
   * ULONG_MAX)). Its ->invalidate (dmirror_interval_invalidate) returns at once for its own
   * MMU_NOTIFY_MIGRATE (range->owner == its pgmap_owner); otherwise, under the driver lock
   * (dmirror->mutex, held for the whole step), mmu_interval_set_seq(mni, cur_seq) and zap
   * (dmirror_do_update). `seq` is the notifier's invalidate_seq: odd while it equals the
   * subscriptions' odd sequence (an invalidation that reached it is running), even otherwise.
   */
  private intervalStart(i: number, pages: readonly number[], event: string, owner?: number): void {
    const d = this.sc.secondaries[i]!
    const sec = this.secW(i)
    this.mirrorInProgress(i, pages, 1)
    if (event === 'MMU_NOTIFY_MIGRATE' && owner === i) {
      this.emit(
        'sec-inval',
        'dmirror_interval_invalidate',
        `${d.name}: MMU_NOTIFY_MIGRATE with range->owner == its pgmap_owner: skipped (the driver updates its mirror in the migration)`,
        this.pagesDetail(pages),
      )
      return
    }
    this.rd(Res.seq(i))
    this.wr(Res.seq(i))
    if (sec.seq % 2 === 0) sec.seq++
    const zapped = this.mirrorZap(i, pages)
    this.emit(
      'sec-inval',
      'dmirror_interval_invalidate',
      `${d.name}: mutex_lock, mmu_interval_set_seq (seq ${sec.seq}), zap ${count(zapped, 'mirror entry', 'mirror entries')}, mutex_unlock`,
      this.pagesDetail(pages),
    )
  }

  /**
   * mn_itree_inv_end() (v6.6): active_invalidate_ranges--; the last one makes the subscriptions'
   * invalidate_seq even (the notifier's odd seq no longer equals it) and wakes
   * mmu_interval_read_begin() sleepers. Interval notifiers get no range_end callback.
   */
  private intervalEnd(i: number, pages: readonly number[]): void {
    const d = this.sc.secondaries[i]!
    const sec = this.secW(i)
    this.mirrorInProgress(i, pages, -1)
    let active = 0
    sec.inProg.forEach((n, p) => {
      this.rd(Res.inprog(i, p))
      active += n
    })
    this.rd(Res.seq(i))
    if (active === 0 && sec.seq % 2 === 1) {
      this.wr(Res.seq(i))
      sec.seq++
    }
    this.emit(
      'sec-inval',
      'mn_itree_inv_end',
      `${d.name}: ${active === 0 ? 'last active range: invalidate_seq even, wake_up_all' : `${count(active, 'range')} still active`}`,
      this.pagesDetail(pages),
    )
  }

  /**
   * mmu_notifier_invalidate_range_end(). At the `range_end` site, v4.15's
   * __mmu_notifier_invalidate_range_end first calls ->invalidate_range unless the caller used
   * mmu_notifier_invalidate_range_only_end(); then ->invalidate_range_end (the
   * `invalidate_range_end` site), which _only_end calls too.
   */
  rangeEnd(mm: number, pages: readonly number[], onlyEnd: boolean): void {
    if (!this.hasSubscribers(mm)) return
    this.metrics.notifier_calls++
    const fn =
      onlyEnd && this.names('range_end')
        ? 'mmu_notifier_invalidate_range_only_end'
        : 'mmu_notifier_invalidate_range_end'
    this.emit('notifier', fn, this.pagesText(pages), this.pagesDetail(pages))
    this.sc.secondaries.forEach((d, i) => {
      if (d.type === 'sw-mirror' && d.protocol === 'hmm') {
        this.intervalEnd(i, pages)
      } else if (d.type === 'sw-mirror') {
        const sec = this.secW(i)
        this.rd(Res.seq(i))
        this.wr(Res.seq(i))
        sec.seq++
        this.mirrorInProgress(i, pages, -1)
        this.emit(
          'sec-inval',
          'kvm_mmu_notifier_invalidate_range_end',
          `${d.name}: mmu_invalidate_seq++, invalidate_in_progress--`,
          this.pagesDetail(pages),
        )
      } else {
        if (!onlyEnd && this.at('range_end'))
          this.secInvalidate(i, pages, '->invalidate_range (from range_end)')
        if (d.flushAt !== 'start' && this.at('invalidate_range_end'))
          this.secInvalidate(i, pages, 'invalidate_range_end')
      }
    })
  }

  /**
   * v4.15 mmu_notifier_invalidate_range(): ->invalidate_range under the PTL, at the call site
   * `site` (ptep_clear_flush_notify, tlb_flush_mmu_tlbonly, try_to_unmap_one) when the policy
   * has it; v6.6 renamed the callback and calls it from arch code only.
   */
  invalidateRange(
    mm: number,
    pages: readonly number[] | null,
    site: 'ptep_clear_flush_notify' | 'tlb_flush_mmu_tlbonly' | 'try_to_unmap_one',
  ): void {
    // No hw-walker: nobody implements ->invalidate_range, whatever the policy.
    if (!this.hasHwWalker() || !this.at(site) || !this.hasSubscribers(mm)) return
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'mmu_notifier_invalidate_range',
      `${site}: ${pages === null ? 'all' : this.pagesText(pages)}`,
      this.pagesDetail(pages),
    )
    this.forHw((i) => this.secInvalidate(i, pages, `->invalidate_range (${site})`))
  }

  /**
   * Catalin Marinas's ptep_set_access_flags_notify() (the `ptep_set_access_flags` site): the
   * invalidate_range-class callback (v6.6: arch_invalidate_secondary_tlbs) under the PTL when
   * the PTE changed. A start/end-only driver does not implement it, so start-end's named set
   * with access-flags-notify leaves the site out.
   */
  accessFlagsNotify(mm: number, page: number): void {
    if (!this.hasHwWalker() || !this.at('ptep_set_access_flags') || !this.hasSubscribers(mm)) return
    this.metrics.notifier_calls++
    this.emit('notifier', 'ptep_set_access_flags_notify', this.pageName(page), this.pagesDetail([page]))
    this.forHw((i) => this.secInvalidate(i, [page], 'ptep_set_access_flags_notify'))
  }

  // ---- accesses and invariant checks -------------------------------------------------------
  /**
   * Checks a memory access through a cached translation against the invariants:
   * use-after-free (frame freed or reallocated since the translation was filled),
   * stale-after-return (a syscall removed this mapping/permission and returned), lost-write
   * (the address now maps another frame, so no later access through the page table sees it).
   */
  checkAccess(who: string, mm: number, e: TlbEntry, write: boolean): void {
    const f = this.folio(e.pfn)
    const page = this.pageName(e.page)
    const acc = write ? 'write' : 'read'
    if (e.pfn !== ZERO_PFN && (f.free || f.gen !== e.gen)) {
      this.violate(
        'use-after-free',
        `${this.name} ${acc}s ${page} through the ${who} entry for pfn ${e.pfn} (gen ${e.gen}), but pfn ${e.pfn} was ${f.free ? 'freed' : `freed and reallocated (gen ${f.gen})`}`,
      )
      return
    }
    const pte = this.pte(mm, e.page)
    const stale = !mapsPage(pte) || pte!.pfn !== e.pfn || (write && !pte!.write)
    if (stale && e.revoked) {
      this.violate(
        'stale-after-return',
        `${this.name} ${acc}s ${page} through the ${who} entry (pfn ${e.pfn}, ${e.write ? 'RW' : 'RO'}) after a syscall removed that ${pte && pte.present && pte.pfn === e.pfn ? 'write permission' : 'mapping'} and returned; PTE is now ${pteText(pte)}`,
      )
      return
    }
    // Lost only if the kernel carried the contents over to the frame now mapped (a copy): a
    // write racing a zap (MADV_DONTNEED, munmap) is discarded by design, as for CPUs.
    if (write && f.sup && pte && pte.present && pte.pfn !== e.pfn && this.vma(mm, e.page) !== null) {
      this.violate(
        'lost-write',
        `${this.name} writes ${page} into pfn ${e.pfn} through a stale entry in the ${who}, but ${page} now maps pfn ${pte.pfn}: no access through the page table will see the write`,
      )
    }
  }

  /** Performs a read or write on a frame (after the checks). */
  access(pfn: number, write: boolean, value: number): number {
    if (write) {
      if (pfn === ZERO_PFN) throw new Error('model bug: write to the zero page')
      const f = this.folioW(pfn)
      f.v = value
      f.w++
      return value
    }
    return pfn === ZERO_PFN ? 0 : this.folio(pfn).v
  }

  /**
   * At a syscall's return: every cached translation that no longer matches its PTE is marked
   * revoked (a migration entry still maps its page here: a migration in flight, with its own
   * notifier range, is not what the syscall removed; its copy and free check the entry). `unmap`: the syscall removes mappings (munmap, madvise, unmap_mapping_range); a
   * file page's entry that still maps its page-cache folio but lost write permission to a
   * concurrent folio_mkclean (writeback, which has not reached its range_end yet) is not
   * something this syscall revoked.
   */
  markRevoked(mm: number, pages: readonly number[], unmap = false): void {
    const mark = (list: readonly TlbEntry[], res: (p: number) => number): TlbEntry[] =>
      list.map((e) => {
        if (!pages.includes(e.page)) return e
        this.rd(res(e.page))
        if (e.revoked) return e
        const pte = this.pte(mm, e.page)
        const gone = !mapsPage(pte) || pte!.pfn !== e.pfn
        const stale = gone || (e.write && !pte!.write)
        if (!stale) return e
        if (!gone && unmap && this.isFile(e.page)) return e
        this.wr(res(e.page))
        return { ...e, revoked: true }
      })
    this.sc.threads.forEach((th, i) => {
      if (th.kind === 'cpu' && (th.mm === mm || mm === KERNEL_MM)) {
        for (const p of pages) this.rd(Res.tlb(i, p))
        this.tlbsW()[i] = mark(this.s.tlbs[i]!, (p) => Res.tlb(i, p))
      }
    })
    if (mm === 0 || mm === KERNEL_MM)
      this.s.secs.forEach((sec, i) => {
        for (const p of pages) this.rd(Res.sec(i, p))
        const marked = mark(sec.entries, (p) => Res.sec(i, p))
        if (marked.some((e, j) => e !== sec.entries[j])) this.secW(i).entries = marked
        const atc = mark(sec.atc, (p) => Res.sec(i, p))
        if (atc.some((e, j) => e !== sec.atc[j])) this.secW(i).atc = atc
      })
  }

  mmuWritable(pte: Pte): boolean {
    return mmuWritable(this.sc.arch, pte)
  }
}

const NO_VIOLATIONS: Violation[] = []

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
export function scenarioExits(sc: Scenario): boolean {
  let x = EXITS.get(sc)
  if (x === undefined) EXITS.set(sc, (x = sc.threads.some((t) => t.ops.some((o) => o.kind === 'exit'))))
  return x
}
const NO_PAGES: readonly number[] = []

/**
 * For stale-after-return: whether the PTE maps its pfn as far as a syscall is concerned, present
 * or a migration entry (the page is under migration; the write bit is the entry's).
 */
function mapsPage(p: Pte | null): boolean {
  return p !== null && (p.present || p.mig === true)
}

export function pteText(p: Pte | null): string {
  if (!p) return 'none'
  if (p.mig)
    return `${p.huge ? 'PMD ' : ''}migration entry (pfn ${p.pfn}, ${p.write ? 'writable' : 'read-only'})`
  if (p.swp !== undefined) return `swap entry (slot ${p.swp})`
  if (!p.present) return `pfn ${p.pfn} PROT_NONE`
  if (p.huge && !p.present) return `pfn ${p.pfn} (huge PMD, invalid: pmdp_invalidate)`
  return `pfn ${p.pfn} ${p.write ? 'RW' : 'RO'}${p.dirty ? ' dirty' : ' clean'}${p.pfn === ZERO_PFN ? ' (zero page)' : ''}${p.huge ? ' (huge PMD)' : ''}`
}

export function insertEntry(list: readonly TlbEntry[], e: TlbEntry): TlbEntry[] {
  const out = list.filter((x) => x.page !== e.page)
  out.push(e)
  out.sort((a, b) => a.page - b.page)
  return out
}
