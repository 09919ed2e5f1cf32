/**
 * Cached-translation layer of the step context: CPU TLB entries, a secondary's entries (IOTLB
 * or shadow table) and device ATC, the sw-mirror sequence and in-progress counts, kernel
 * (init_mm) pages and the vmap lazy-free state, signal/wait flags, and the accesses through
 * cached translations with the invariant checks (use-after-free, stale-after-return,
 * lost-write) and the syscall-return revocation mark.
 */
import { Res } from '../footprint'
import { hugeOf, isKernelPage, KERNEL_MM, pageMm, type Pte, type TlbEntry, ZERO_PFN } from '../state'
import { insertEntry, pteText } from './base'
import { CtxTables } from './tables'

export class CtxTlbs extends CtxTables {
  // ---- TLB entries (CPU TLBs and secondaries) ----------------------------------------
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
  protected dropFrom(
    list: readonly TlbEntry[],
    pages: readonly number[] | null,
    res: (p: number) => number,
  ): TlbEntry[] {
    for (const p of pages ?? this.allPages()) this.rd(res(p))
    // A 2 MiB entry goes as a whole when any subpage of its own huge page is invalidated.
    const out: TlbEntry[] = []
    for (const e of list) {
      const whole =
        pages !== null && e.huge === true && hugeOf(this.sc, e.page)!.pages.some((p) => pages.includes(p))
      if (pages === null || pages.includes(e.page) || whole) this.wr(res(e.page))
      else out.push(e)
    }
    return out
  }
  // ---- kernel mappings (init_mm), signal/wait flags ----------------------------------
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
  // ---- accesses through cached translations and invariant checks ---------------------
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
    // A secondary caches translations of the mm it is bound to (types.ts SecondaryMm); a
    // supervisor PASID also those of init_mm.
    this.s.secs.forEach((sec, i) => {
      if (mm !== KERNEL_MM && (this.sc.secondaries[i]!.mm ?? 0) !== mm) return
      for (const p of pages) this.rd(Res.sec(i, p))
      const marked = mark(sec.entries, (p) => Res.sec(i, p))
      if (marked.some((e, j) => e !== sec.entries[j])) this.secW(i).entries = marked
      const atc = mark(sec.atc, (p) => Res.sec(i, p))
      if (atc.some((e, j) => e !== sec.atc[j])) this.secW(i).atc = atc
    })
  }
}

/**
 * For stale-after-return: whether the PTE maps its pfn as far as a syscall is concerned, present
 * or a migration entry (the page is under migration; the write bit is the entry's).
 */
function mapsPage(p: Pte | null): boolean {
  return p !== null && (p.present || p.mig === true)
}
