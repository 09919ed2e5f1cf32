/**
 * Step footprints for partial-order reduction: the shared resources a step read and wrote.
 * Two steps enabled in the same state commute (are independent) when neither writes what
 * the other reads or writes. Thread-private state (the thread's own stack, registers) is not
 * a resource.
 */
export interface Footprint {
  readonly r: number[]
  readonly w: number[]
  /** Commutative updates (counter increments/decrements): commute with each other only. */
  readonly inc: number[]
}

const M = 1 << 12 // per-kind stride: up to 4096 pages, threads or frames
/**
 * Family 3 (per-mm resources) is 3*M*M + 16*sub + slot, slot = mm + 4*table (mm < 4, table < 4):
 * a page-table lock, a PMD and a pmd_lock exist once per PTE table (split PTLs), so steps on
 * different tables are independent.
 */
const slot = (mm: number, table: number): number => mm + 4 * table
export const Res = {
  pte: (mm: number, p: number) => 1 * M * M + mm * M + p,
  vma: (mm: number, p: number) => 2 * M * M + mm * M + p,
  /** The split page-table lock of one PTE table. */
  ptl: (mm: number, table: number) => 3 * M * M + slot(mm, table),
  /** mmap_lock's writer field. */
  mmap: (mm: number) => 3 * M * M + 16 + mm,
  /** mmap_lock's reader count. */
  mmapReaders: (mm: number) => 3 * M * M + 64 + mm,
  live: (mm: number) => 3 * M * M + 32 + mm,
  alloc: 3 * M * M + 48,
  /** One PTE table: its PMD entry (populated or none) and, while unlinked, its contents. */
  pt: (mm: number, table: number) => 3 * M * M + 80 + slot(mm, table),
  tfp: (mm: number) => 3 * M * M + 96 + mm,
  imap: (mm: number) => 3 * M * M + 112 + mm,
  /** THP: pmd_lock of a table's PMD (the huge page's). */
  pmdl: (mm: number, table: number) => 3 * M * M + 128 + slot(mm, table),
  /** THP: the count of GUP-fast walkers with IRQs off (what tlb_remove_table_sync_one waits for). */
  gupf: (mm: number) => 3 * M * M + 144 + mm,
  /** mm->tlb_flush_batched (set_tlb_ubc_flush_pending / flush_tlb_batched_pending). */
  tfb: (mm: number) => 3 * M * M + 160 + mm,
  /** The process's anon_vma rwsem: its writer (anon_vma_lock_write). */
  anonVma: 3 * M * M + 176,
  /** The process's anon_vma rwsem: its reader count (anon_vma_lock_read, commutative). */
  anonVmaReaders: 3 * M * M + 192,
  /** A hw-walker's walk cache: its non-leaf entry for one PTE table. */
  wc: (i: number, table: number) => 10 * M * M + 4 * i + table,
  tlb: (t: number, p: number) => 4 * M * M + t * M + p,
  sec: (i: number, p: number) => 5 * M * M + i * M + p,
  isSec: (x: number) => x >= 5 * M * M && x < 6 * M * M,
  seq: (i: number) => 6 * M * M + i,
  inprog: (i: number, p: number) => 7 * M * M + i * M + p,
  /** A frame: contents, counts and, for an anon folio, its folio lock and LRU isolation (PFrame.lk, iso). */
  frame: (pfn: number) => 8 * M * M + pfn,
  /** A `signal`/`wait` flag. */
  flag: (i: number) => 9 * M * M + i,
  /** A kernel page's vmap area on the lazy purge list. */
  vlazy: (p: number) => 12 * M * M + p,
  /** A file page's page-cache state: PG_dirty, the folio lock, its disk block. */
  file: (p: number) => 13 * M * M + p,
  /** Written by a step that read the whole state (allocFrame's choice): dependent on every step. */
  everything: 11 * M * M,
}

export function newFootprint(): Footprint {
  return { r: [], w: [], inc: [] }
}

/** Whether two steps' footprints allow them to commute. */
export function independent(a: Footprint, b: Footprint): boolean {
  if (a.w.includes(Res.everything) || b.w.includes(Res.everything)) return false
  for (const x of a.w) if (b.w.includes(x) || b.r.includes(x) || b.inc.includes(x)) return false
  for (const x of b.w) if (a.r.includes(x) || a.inc.includes(x)) return false
  for (const x of a.inc) if (b.r.includes(x)) return false
  for (const x of b.inc) if (a.r.includes(x)) return false
  return true
}
