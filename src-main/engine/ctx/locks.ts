/**
 * Lock layer of the step context: the split page-table lock (PTL) of each PTE table, the huge
 * page's pmd_lock, mmap_lock, the file's i_mmap rwsem, the page-cache folio lock, and an anon
 * folio's lock and LRU isolation (PFrame.lk, PFrame.iso). A guard
 * in kernel/*.ts waits until a lock is free; these take and release it, record it in the
 * thread's held locks (traces) and in the step's footprint.
 */
import { Res } from '../footprint'
import { tableTag } from '../state'
import type { ThpDecl } from '../types'
import { CtxMemory } from './memory'

export class CtxLocks extends CtxMemory {
  // ---- the split PTL and pmd_lock ----------------------------------------------------
  /** `ptl`, `ptl(child)`; with several tables `ptl#1`, `ptl#1(child)`. */
  private ptlName(mm: number, k: number): string {
    return `ptl${tableTag(this.sc, k)}${mm === 0 ? '' : '(child)'}`
  }
  /** Whether spin_lock(pte_lockptr(mm, pmd)) of the PTE table `page` lives in would not wait. */
  ptlFree(mm: number, page: number): boolean {
    const k = this.tableOf(page)
    this.rd(Res.ptl(mm, k))
    return this.s.mms[mm]!.ptl[k] === -1
  }
  /** pte_offset_map_lock(): the split PTL of the PTE table `page` lives in. */
  lockPtl(mm: number, page: number, fn = 'pte_offset_map_lock'): void {
    this.ptlHold(mm, page, true, fn)
  }
  unlockPtl(mm: number, page: number, fn = 'pte_unmap_unlock'): void {
    this.ptlHold(mm, page, false, fn)
  }
  /** Takes (`take`) or releases the split PTL of the PTE table `page` lives in. */
  private ptlHold(mm: number, page: number, take: boolean, fn: string): void {
    const k = this.tableOf(page)
    const name = this.ptlName(mm, k)
    const what = `${take ? 'take' : 'release'} the page-table lock`
    this.spin(mm, 'ptl', k, name, take, fn, tableTag(this.sc, k) ? `${what} ${name}` : what)
  }
  /**
   * Takes (`take`) or releases a per-table spinlock of an mm (a PTL, a pmd_lock): held by one
   * thread, or -1. The caller's guard waited for it; taking a held one, or releasing one this
   * thread does not hold, is a model bug.
   */
  private spin(
    mm: number,
    field: 'ptl' | 'pmdl',
    k: number,
    name: string,
    take: boolean,
    fn: string,
    text: string,
  ): void {
    const m = this.mmW(mm)
    const held = m[field][k]!
    if (take && held !== -1) throw new Error(`model bug: ${this.name} takes ${name} held by thread ${held}`)
    if (!take && held !== this.t) throw new Error(`model bug: ${this.name} releases ${name} it does not hold`)
    m[field] = m[field].slice()
    m[field][k] = take ? this.t : -1
    this.wr(field === 'ptl' ? Res.ptl(mm, k) : Res.pmdl(mm, k))
    if (take) this.thread.locks.push(name)
    else this.dropLock(name)
    this.emit('lock', fn, text)
  }
  pmdLockFree(mm: number, hp: ThpDecl): boolean {
    const k = this.hugeTable(hp)
    this.rd(Res.pmdl(mm, k))
    return this.s.mms[mm]!.pmdl[k] === -1
  }
  /** pmd_lock(mm, pmd) of huge page `hp`'s PMD (split PMD lock or mm->page_table_lock). */
  pmdLock(mm: number, hp: ThpDecl, fn = 'pmd_lock'): void {
    const of = this.sc.thp.length > 1 ? ` of ${hp.name}` : ''
    this.spin(mm, 'pmdl', this.hugeTable(hp), this.pmdLockName(hp), true, fn, `take the PMD lock${of}`)
  }
  pmdUnlock(mm: number, hp: ThpDecl, fn = 'spin_unlock (pmd_lock)'): void {
    const of = this.sc.thp.length > 1 ? ` of ${hp.name}` : ''
    this.spin(mm, 'pmdl', this.hugeTable(hp), this.pmdLockName(hp), false, fn, `release the PMD lock${of}`)
  }
  /** The held-lock name: `pmd_lock`, or `pmd_lock(H)` with several huge pages. */
  private pmdLockName(hp: ThpDecl): string {
    return this.sc.thp.length > 1 ? `pmd_lock(${hp.name})` : 'pmd_lock'
  }
  /** Removes the innermost hold of `name` from the thread's held locks (traces). */
  dropLock(name: string): void {
    const ls = this.thread.locks
    const i = ls.lastIndexOf(name)
    if (i >= 0) ls.splice(i, 1)
  }

  // ---- mmap_lock ---------------------------------------------------------------------
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
  // ---- the file's i_mmap rwsem -------------------------------------------------------
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
  // ---- the page-cache folio lock -----------------------------------------------------
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
  // ---- an anon folio's lock (PG_locked) and LRU isolation -----------------------------
  /** Whether the anon folio `pfn` is unlocked (folio_trylock would succeed; a guard waits on it). */
  anonLockFree(pfn: number): boolean {
    return this.folio(pfn).lk === undefined
  }
  /** The held-lock name of an anon folio's lock: `folio_lock(A)`, the page it is reached by. */
  private anonLockName(label: string): string {
    return `folio_lock(${label})`
  }
  /**
   * folio_lock() / a successful folio_trylock() of anon folio `pfn` (`label`: the page, or
   * `A new` for a migration's destination, in traces and held locks).
   */
  anonLock(pfn: number, label: string, fn: string): void {
    const fr = this.folioW(pfn)
    if (fr.lk !== undefined)
      throw new Error(`model bug: ${this.name} takes the folio lock of pfn ${pfn} held by thread ${fr.lk}`)
    fr.lk = this.t
    this.thread.locks.push(this.anonLockName(label))
    this.emit('lock', fn, `lock the folio pfn ${pfn} (${label})`)
  }
  /** folio_trylock(): takes the lock if it is free; returns whether it did (no waiting). */
  anonTrylock(pfn: number, label: string, fn: string): boolean {
    if (!this.anonLockFree(pfn)) {
      this.emit(
        'info',
        fn,
        `folio_trylock of pfn ${pfn} (${label}) fails: locked by ${this.sc.threads[this.folio(pfn).lk!]?.name ?? 'another thread'}`,
      )
      return false
    }
    this.anonLock(pfn, label, fn)
    return true
  }
  anonUnlock(pfn: number, label: string, fn = 'folio_unlock'): void {
    const fr = this.folioW(pfn)
    if (fr.lk !== this.t)
      throw new Error(`model bug: ${this.name} unlocks pfn ${pfn}, a folio it does not hold`)
    delete fr.lk
    this.dropLock(this.anonLockName(label))
    this.emit('lock', fn, `unlock the folio pfn ${pfn} (${label})`)
  }
  /** Whether the anon folio `pfn` is on the LRU (not isolated). */
  onLru(pfn: number): boolean {
    return this.folio(pfn).iso !== true
  }
  /**
   * folio_isolate_lru() / isolate_lru_folios(): takes the folio off the LRU, or returns false if
   * another isolation has it (folio_test_clear_lru fails). The reference is the caller's.
   */
  isolateLru(pfn: number, fn: string): boolean {
    if (!this.onLru(pfn)) {
      this.emit('info', fn, `pfn ${pfn} is not on the LRU (isolated by another thread): isolation fails`)
      return false
    }
    this.folioW(pfn).iso = true
    this.emit('frame', fn, `pfn ${pfn} off the LRU`)
    return true
  }
  /** putback_lru_page() / folio_add_lru(): the folio is on the LRU again (the reference is the caller's). */
  putbackLru(pfn: number, fn = 'putback_lru_page'): void {
    const fr = this.folioW(pfn)
    if (fr.iso !== true) throw new Error(`model bug: ${fn} of pfn ${pfn}, which is on the LRU`)
    delete fr.iso
    this.emit('frame', fn, `pfn ${pfn} back on the LRU`)
  }
  /** An isolated folio about to be freed (free_unref_folios): it never returns to the LRU. */
  lruFreed(pfn: number): void {
    delete this.folioW(pfn).iso
  }
  // ---- the process's anon_vma rwsem -----------------------------------------------------
  /**
   * anon_vma_lock_read() would not wait (no writer). One rwsem stands for the process's
   * anon_vma; a walk over a folio of the fork child's own anon_vma takes it too (its writers,
   * collapse and split_huge_page, are refused with a child).
   */
  anonVmaReadable(): boolean {
    this.rd(Res.anonVma)
    return (this.s.mms[0]!.avw ?? -1) === -1
  }
  /** anon_vma_lock_write() would not wait (no writer, no reader). */
  anonVmaWritable(): boolean {
    this.rd(Res.anonVma)
    this.rd(Res.anonVmaReaders)
    const m = this.s.mms[0]!
    return (m.avw ?? -1) === -1 && (m.avr ?? 0) === 0
  }
  /** anon_vma_lock_read() (+1) / anon_vma_unlock_read() (-1), rmap_walk_anon's. */
  anonVmaRead(delta: 1 | -1, fn: string): void {
    this.rd(Res.anonVma)
    this.inc(Res.anonVmaReaders)
    const m = this.mmW(0)
    if (delta > 0 && (m.avw ?? -1) !== -1) throw new Error('model bug: anon_vma_lock_read with a writer')
    m.avr = (m.avr ?? 0) + delta
    if (m.avr < 0) throw new Error('model bug: anon_vma_unlock_read with no reader')
    if (delta > 0) this.thread.locks.push('anon_vma(r)')
    else this.dropLock('anon_vma(r)')
    this.emit('lock', fn, delta > 0 ? 'take the anon_vma lock for read' : 'release the anon_vma lock')
  }
  /** anon_vma_lock_write() / anon_vma_unlock_write(). */
  anonVmaWrite(take: boolean, fn: string): void {
    this.rd(Res.anonVmaReaders)
    this.wr(Res.anonVma)
    const m = this.mmW(0)
    if (take && ((m.avw ?? -1) !== -1 || (m.avr ?? 0) !== 0))
      throw new Error('model bug: anon_vma_lock_write while held')
    if (!take && m.avw !== this.t) throw new Error('model bug: anon_vma_unlock_write by a non-holder')
    m.avw = take ? this.t : -1
    if (take) this.thread.locks.push('anon_vma(w)')
    else this.dropLock('anon_vma(w)')
    this.emit('lock', fn, take ? 'take the anon_vma lock for write' : 'release the anon_vma lock')
  }
}
