/**
 * Lock layer of the step context: the split page-table lock (PTL) of each PTE table, the huge
 * page's pmd_lock, mmap_lock, the file's i_mmap rwsem and the page-cache folio lock. A guard
 * in kernel/*.ts waits until a lock is free; these take and release it, record it in the
 * thread's held locks (traces) and in the step's footprint.
 */
import { Res } from '../footprint'
import { tableTag } from '../state'
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
  pmdLockFree(mm: number): boolean {
    const k = this.thpTable
    this.rd(Res.pmdl(mm, k))
    return this.s.mms[mm]!.pmdl[k] === -1
  }
  /** pmd_lock(mm, pmd): the huge PMD's lock (split PMD lock or mm->page_table_lock). */
  pmdLock(mm: number, fn = 'pmd_lock'): void {
    this.spin(mm, 'pmdl', this.thpTable, 'pmd_lock', true, fn, 'take the PMD lock')
  }
  pmdUnlock(mm: number, fn = 'spin_unlock (pmd_lock)'): void {
    this.spin(mm, 'pmdl', this.thpTable, 'pmd_lock', false, fn, 'release the PMD lock')
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
}
