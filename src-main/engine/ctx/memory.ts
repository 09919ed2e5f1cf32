/**
 * Memory layer of the step context: physical frames (allocation, references, contents), swap
 * slots and the swap cache, file pages' page-cache folios and their disk blocks, and CPU
 * registers. Frames are reused so that a use-after-free is observable.
 */
import { Res } from '../footprint'
import { frameLabels, livenessOf, type FileState, type PFrame, SWAP_CACHE_REF, ZERO_PFN } from '../state'
import { CtxBase } from './base'

export class CtxMemory extends CtxBase {
  // Which parts this step already copied (see CtxBase: copy-on-write).
  private ownFrames = false
  private ownFrame: Set<number> | null = null
  private ownRegs = false
  private ownFiles = false
  private framesW(): PFrame[] {
    if (!this.ownFrames) {
      this.s.frames = this.s.frames.slice()
      this.ownFrames = true
    }
    return this.s.frames
  }

  // ---- frames ------------------------------------------------------------------------
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
      if (f.lk !== undefined || f.iso === true)
        throw new Error(`model bug: pfn ${pfn} freed while ${f.lk !== undefined ? 'locked' : 'isolated'}`)
      f.free = true
      this.wr(Res.alloc)
      this.emit('frame', fn, `free pfn ${pfn} (gen ${f.gen})`)
    }
  }
  getFrame(pfn: number): void {
    if (pfn !== ZERO_PFN) this.folioW(pfn).ref++
  }
  // ---- swap --------------------------------------------------------------------------
  /**
   * A new swap slot (get_swap_page / add_to_swap): swap_map count 0, the folio in the swap cache.
   * While reclaim holds the folio (add_to_swap to __remove_mapping) the swap cache's reference
   * is folded into reclaim's own (SWAP_CACHE_REF clear): that state is also the folio lock
   * reclaim holds (swapCacheLocked); folioRefCount() gives the kernel's folio_ref_count.
   */
  swapAlloc(pfn: number): number {
    this.rd(Res.alloc)
    this.wr(Res.alloc)
    this.s.swap = [...this.s.swap, null]
    this.s.swapCache = [...this.s.swapCache, pfn]
    this.s.swapMap = [...this.s.swapMap, 0]
    return this.s.swap.length - 1
  }
  /**
   * Reclaim takes a folio that is already in the swap cache (add_to_swap is skipped): the
   * cache's reference is folded into reclaim's isolation reference (see swapAlloc).
   */
  swapCacheFold(slot: number): void {
    this.wr(Res.alloc)
    const m = this.s.swapMap.slice()
    m[slot] = (m[slot] ?? 0) & ~SWAP_CACHE_REF
    this.s.swapMap = m
    this.putFrame(this.s.swapCache[slot]!)
  }
  /** Whether reclaim holds the slot's swap-cache folio (locked, its reference folded: swapAlloc). */
  swapCacheLocked(slot: number): boolean {
    return this.swapCached(slot) >= 0 && !this.swapCacheRef(slot)
  }
  /** folio_ref_count(): the frame's count, plus the swap cache's while folded into reclaim's. */
  folioRefCount(pfn: number): number {
    const slot = this.swapSlotOf(pfn)
    return this.folio(pfn).ref + (slot >= 0 && !this.swapCacheRef(slot) ? 1 : 0)
  }
  /** The swap slot whose swap cache holds `pfn` (folio_test_swapcache, folio->swap), or -1. */
  swapSlotOf(pfn: number): number {
    this.rd(Res.alloc)
    return this.s.swapCache.indexOf(pfn)
  }
  /**
   * folio_free_swap() (v6.6 mm/swapfile.c) of the folio in slot's swap cache: only when no swap
   * PTE refers to the slot any more (folio_swapped() false), the folio leaves the swap cache
   * (delete_from_swap_cache, the cache's folio_put) and put_swap_folio frees the slot. Returns
   * whether it did.
   */
  folioFreeSwap(slot: number, fn: string): boolean {
    if (this.swapCached(slot) < 0 || this.swapCount(slot) > 0) return false
    this.swapUncache(slot, fn)
    this.swapWrite(slot, null)
    return true
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
   * swap_free() / free_swap_and_cache()'s __swap_entry_free(): one swap PTE fewer; returns the
   * count left. A folio in the slot's swap cache stays there (SWAP_HAS_CACHE keeps the slot):
   * the caller decides whether to free it (folioFreeSwap).
   */
  swapFree(slot: number): number {
    this.wr(Res.alloc)
    const m = this.s.swapMap.slice()
    const x = (m[slot] ?? 0) - 1
    if ((x & (SWAP_CACHE_REF - 1)) === SWAP_CACHE_REF - 1 || x < 0)
      throw new Error(`model bug: swap_free of free slot ${slot}`)
    m[slot] = x
    this.s.swapMap = m
    return x & (SWAP_CACHE_REF - 1)
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
  // ---- file pages: the page-cache folio (kind: file) ---------------------------------
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
  protected setFile(page: number, f: FileState): void {
    // An address declared `file: P` maps P's folio: its page-cache state is P's.
    page = this.sc.pages[page]!.fileOf ?? page
    this.wr(Res.file(page))
    if (!this.ownFiles) {
      this.s.files = this.s.files.slice()
      this.ownFiles = true
    }
    this.s.files[page] = f
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
  /**
   * folio_migrate_mapping() of a page-cache folio (or collapse_file's xas_store, `fn`): the page
   * cache slot now holds `pfn`, with the page cache's reference.
   */
  fileMigrateSlot(page: number, pfn: number, fn = 'folio_migrate_mapping'): void {
    const f = this.file(page)
    this.setFile(page, { ...f, pfn })
    this.getFrame(pfn)
    this.emit(
      'frame',
      fn,
      `${this.pageName(page)}: the page cache slot moves from pfn ${f.pfn} to pfn ${pfn}`,
    )
  }
  /** collapse_file(): the page's page-cache folio is now the new PMD-order huge page. */
  fileSetLarge(page: number): void {
    const f = this.file(page)
    if (!f.large) this.setFile(page, { ...f, large: true })
  }
  /** The writeback I/O: the folio's contents as they are now go to the page's disk block. */
  diskWrite(page: number, fn: string): void {
    const f = this.file(page)
    const v = this.folio(f.pfn).v
    this.setFile(page, { ...f, disk: v })
    this.emit('frame', fn, `disk(${this.pageName(page)}) := ${v} (contents of pfn ${f.pfn})`)
  }
  // ---- registers ---------------------------------------------------------------------
  setReg(r: number, v: number): void {
    if (!this.ownRegs) {
      this.s.regs = this.s.regs.slice()
      this.ownRegs = true
    }
    this.s.regs[r] = v
  }
}
