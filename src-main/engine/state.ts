/**
 * The machine state the simulator steps: physical frames, page tables, CPU TLBs, secondary
 * TLBs and thread progress. Plain data only; `keyOf` is the canonical key used by
 * visited-state hashing, so everything that can influence the future must live here and
 * nothing else (metrics and traces are kept outside).
 */
import type { Scenario, SecondaryMm, ThpDecl } from './types'

/** A present or PROT_NONE PTE. `null` in a page table is pte_none(). */
export interface Pte {
  readonly pfn: number
  /** false for a PROT_NONE PTE (x86 _PAGE_PROTNONE): not accessible to any MMU, pfn kept. */
  readonly present: boolean
  readonly write: boolean
  readonly dirty: boolean
  /**
   * A migration entry (a non-present swap entry naming the page under migration, `write` as
   * make_writable_migration_entry): faults on it wait in migration_entry_wait().
   */
  readonly mig?: true
  /** A swap entry: the page's contents live in swap slot `swp` (pfn is -1). */
  readonly swp?: number
  /**
   * A swap entry's SWP_EXCLUSIVE bit (pte_swp_mkexclusive, d7c0e68dab98, v5.19): the page was
   * PageAnonExclusive when try_to_unmap_one() replaced its PTE, so do_swap_page() may map it
   * writable without looking at the refcount.
   */
  readonly excl?: true
  /**
   * The subpage's share of a huge PMD (a THP mapped at PMD level): one translation covers every
   * subpage of the huge page. `present: false` with `huge` is a PMD made invalid by
   * pmdp_invalidate() while a split is in progress.
   */
  readonly huge?: true
}

/** A physical frame (struct page / folio), with a generation number bumped on every allocation. */
export interface PFrame {
  v: number
  ref: number
  map: number
  free: boolean
  gen: number
  /** Count of writes into the frame, so a write after a copy snapshot can be detected. */
  w: number
  /** The page's contents were copied into a new frame that replaced this one (wp_page_copy). */
  sup: boolean
  /**
   * An anon folio whose folio->mapping is the fork child's own anon_vma (the child's fault
   * allocated it: do_anonymous_page, wp_page_copy in the child): rmap_walk_anon visits only the
   * child's VMA. Absent: the process's anon_vma, whose interval tree holds the process's VMA
   * and, after fork (anon_vma_clone), the child's right after it.
   */
  avc?: true
  /**
   * PG_locked of an anon folio (folio_lock / folio_trylock, v6.6 include/linux/pagemap.h): the
   * thread holding it; absent while unlocked. A page-cache folio's lock is FileState.lock.
   */
  lk?: number
  /** Off the LRU (folio_isolate_lru / isolate_lru_folios took it; putback_lru_page returns it). */
  iso?: true
}

/** A cached translation, in a CPU TLB or a secondary TLB/shadow table. */
export interface TlbEntry {
  readonly page: number
  readonly pfn: number
  readonly gen: number
  readonly write: boolean
  readonly dirty: boolean
  /** A syscall that removed this mapping or permission returned while this entry existed. */
  readonly revoked: boolean
  /**
   * Part of one 2 MiB (PMD-level) entry: the entry covers every subpage of the huge page, and
   * invalidating any of them drops all of it.
   */
  readonly huge?: true
}

export interface MmState {
  live: boolean
  ptes: Array<Pte | null>
  /** VMA protection per page; null where no VMA (munmapped). */
  vmas: Array<'rw' | 'ro' | 'none' | null>
  /** mmap_lock: writer thread or -1, and the number of readers. */
  writer: number
  readers: number
  /**
   * Per PTE table (a page's `table`, tableOf): the holder thread of that table's split
   * page-table lock (pte_lockptr), or -1.
   */
  ptl: number[]
  /**
   * Per PTE table: the table exists (a populated PMD); free_pgtables removes it when no VMA is
   * left over its PMD range.
   */
  pt: boolean[]
  /** mm->tlb_flush_pending: mmu_gathers in progress (inc_tlb_flush_pending in tlb_gather_mmu). */
  tfp: number
  /**
   * mm->tlb_flush_batched: a batched unmap (TTU_BATCH_FLUSH) queued a flush since the last
   * flush_tlb_batched_pending() (pending != flushed, v6.6 mm/rmap.c, 3ea277194daa). Optional:
   * absent means false.
   */
  tfb?: boolean
  /** Per page: its (pfnmap) VMA is linked in the file's i_mmap tree (until free_pgtables). */
  imap: boolean[]
  /** Readers of the i_mmap rwsem (i_mmap_lock_read in unmap_mapping_range). */
  imapReaders: number
  /**
   * The process's anon_vma rwsem (in the process's MmState): readers (rmap_walk_anon's
   * anon_vma_lock_read) and the writer thread (collapse_huge_page, split_huge_page:
   * anon_vma_lock_write). Optional: absent means 0 readers, no writer.
   */
  avr?: number
  avw?: number
  /** THP scenarios, per table: pmd_lock(mm, pmd) of the table's PMD: holder thread or -1. */
  pmdl: number[]
  /**
   * Per table, the contents of the PTE table while it is not linked in the PMD (`pt` false),
   * indexed by page. THP: the huge page's table, detached by pmdp_collapse_flush or deposited
   * (pgtable_trans_huge_deposit) under a huge PMD. Otherwise: a table free_pgtables unlinked
   * and tlb_finish_mmu has not freed yet. null when there is no such table: it was freed
   * (pte_free), or it is linked.
   */
  tbl: Array<Array<Pte | null> | null>
  /** Lockless GUP-fast walkers inside their IRQs-off section (tlb_remove_table_sync_one waits). */
  gupf: number
  /**
   * exit_mmap() ran mmu_notifier_release(): every subscription's ->release was called and the
   * subscriptions were unhooked (hlist_del_init_rcu), so no notifier fires for this mm again,
   * and mm_users is 0 (page requests and mirror faults can no longer mmget_not_zero it).
   */
  rel?: true
  /**
   * mm_users references a KVM vCPU's fault holds on the mm (mirror_access between its
   * mmget_not_zero check and its return): the vCPU is a thread of the process, so exit_mmap()
   * (the last mmput) cannot run while one is in flight. Absent when 0.
   */
  users?: number
  /**
   * MMF_OOM_SKIP: exit_mmap() set it after unmap_vmas() and mmap_read_unlock(), before it takes
   * mmap_lock for write; oom_reap_task_mm() tests it under mmap_read_trylock and skips the mm.
   */
  oomSkip?: true
  /**
   * MMF_UNSTABLE: __oom_reap_task_mm() set it before its first zap (v6.6 mm/oom_kill.c); a
   * fault that would populate a new anonymous page (do_anonymous_page's
   * check_stable_address_space) gets VM_FAULT_SIGBUS from then on.
   */
  unstable?: true
}

export interface SecState {
  /** hw-walker: the IOMMU's IOTLB; sw-mirror: the shadow table. */
  entries: TlbEntry[]
  /** hw-walker with ats: the device's ATC (a device TLB in front of the IOTLB); else empty. */
  atc: TlbEntry[]
  /** sw-mirror: mmu_invalidate_seq (KVM) / interval sequence (HMM). */
  seq: number
  /** sw-mirror: invalidations in progress covering each page. */
  inProg: number[]
  /**
   * hw-walker with walk_cache, per PTE table: the walk cache holds the table's PMD's pointer to
   * its PTE page (a non-leaf entry); walks then read that page without reading the PMD.
   */
  wc: boolean[]
}

export type LocalValue = number | boolean | string | null | readonly number[]
export interface CallFrame {
  readonly proc: string
  pc: string
  l: Record<string, LocalValue>
}

export interface ThreadState {
  op: number
  stack: CallFrame[]
  done: boolean
  /** Faults on the current access; kept in the state only for a hw-walker with retry_limit. */
  faults: number
  /** Locks held, for traces and lock checks: 'mmap_lock(r)', 'mmap_lock(w)', 'ptl'. */
  locks: string[]
}

/**
 * A file page's page-cache folio (kind: file): its frame (never freed: the page cache holds a
 * reference), PG_dirty, the folio lock (holder thread or -1) and what writeback last stored
 * on disk.
 */
export interface FileState {
  /** The page-cache folio's frame; -1 once truncate removed it from the page cache. */
  readonly pfn: number
  readonly dirty: boolean
  readonly lock: number
  readonly disk: number
  /**
   * truncate shrank the file below this page (i_size_write, before truncate_pagecache): a
   * fault on it gets SIGBUS (filemap_fault's i_size check).
   */
  readonly trunc?: true
  /**
   * The page-cache folio is a PMD-order large folio (a `kind: file` huge page that is PMD-mapped
   * or was collapsed): a fault on a none PMD may map it whole (do_set_pmd).
   */
  readonly large?: true
}

/** LabState.swapMap's flag: the swap cache holds its own reference on the slot's folio. */
export const SWAP_CACHE_REF = 0x10000

export interface LabState {
  frames: PFrame[]
  mms: MmState[]
  /** CPU TLB per thread (device threads have an empty one). */
  tlbs: TlbEntry[][]
  secs: SecState[]
  threads: ThreadState[]
  regs: Array<number | null>
  /** Swap slots: contents written by pageout, null once freed. */
  swap: Array<number | null>
  /** The folio still in the swap cache for each slot (pfn), or -1. */
  swapCache: number[]
  /**
   * Per slot, v6.6 si->swap_map: the count of swap PTEs that refer to it (swap_duplicate adds
   * one per PTE, swap_free / free_swap_and_cache drop one), plus SWAP_CACHE_REF when the swap
   * cache holds a folio reference of its own (a folio read in while other PTEs still share the
   * slot, or one reclaim kept); while reclaim runs, its own reference stands for the cache's.
   */
  swapMap: number[]
  /** Per page: its page-cache folio for kind: file pages, null for the others. */
  files: Array<FileState | null>
  /** `signal F` has run, per flag. */
  flags: boolean[]
  /**
   * Per kernel page: its vmap area was freed lazily (free_vmap_area_noflush) and waits for
   * __purge_vmap_area_lazy, which flushes the TLBs; until then the address is not reused.
   */
  vlazy: boolean[]
}

/** The kernel's address space (init_mm), present when the scenario has kernel pages. */
export const KERNEL_MM = 2

/** The mm secondary `i` is bound to (types.ts SecondaryMm): 0 the process, 1 the fork child. */
export function secMm(sc: Scenario, i: number): SecondaryMm {
  return sc.secondaries[i]!.mm ?? 0
}

/** Whether a page is a kernel (vmalloc) page, declared under `kernel_pages:`. */
export function isKernelPage(sc: Scenario, page: number): boolean {
  return sc.pages[page]!.kind === 'kernel'
}
/** The address space a page lives in: init_mm for a kernel page, else `mm`. */
export function pageMm(sc: Scenario, page: number, mm: number): number {
  return isKernelPage(sc, page) ? KERNEL_MM : mm
}

/** The PTE table (PMD range) a page lives in: its `table:`, 0 when not declared. */
export function tableOf(sc: Scenario, page: number): number {
  return sc.pages[page]!.table ?? 0
}

/** The huge page (`thp:`) whose subpage `page` is, or null (a small page). */
export function hugeOf(sc: Scenario, page: number): ThpDecl | null {
  for (const h of sc.thp) if (h.pages.includes(page)) return h
  return null
}

const TABLES = new WeakMap<Scenario, number>()
/** How many PTE tables the scenario's pages span: 1 + the highest `table:`. */
export function tableCount(sc: Scenario): number {
  let n = TABLES.get(sc)
  if (n === undefined) {
    n = 1
    for (const p of sc.pages) n = Math.max(n, (p.table ?? 0) + 1)
    TABLES.set(sc, n)
  }
  return n
}

/** The tables the pages live in, ascending, each once. */
export function tablesOf(sc: Scenario, pages: readonly number[]): number[] {
  const out: number[] = []
  for (const p of pages) {
    const k = tableOf(sc, p)
    if (!out.includes(k)) out.push(k)
  }
  return out.sort((a, b) => a - b)
}

/** The user pages of table k, in declaration (address) order. */
export function tablePages(sc: Scenario, k: number): number[] {
  const out: number[] = []
  sc.pages.forEach((p, i) => {
    if (p.kind !== 'kernel' && (p.table ?? 0) === k) out.push(i)
  })
  return out
}

/**
 * How a PTE table is named in traces and state rows: '' when the scenario has one table (the
 * names stay `ptl`, `the PTE page`), `#k` when it has several (`ptl#1`).
 */
export function tableTag(sc: Scenario, k: number): string {
  return tableCount(sc) > 1 ? `#${k}` : ''
}

/** An address space with no PTEs, no VMAs and free locks (the fork child before fork, init_mm). */
function emptyMm(n: number, live: boolean, tables: number): MmState {
  return {
    live,
    ptes: new Array<Pte | null>(n).fill(null),
    vmas: new Array<MmState['vmas'][number]>(n).fill(null),
    writer: -1,
    readers: 0,
    ptl: new Array<number>(tables).fill(-1),
    pt: new Array<boolean>(tables).fill(live),
    tfp: 0,
    imap: new Array<boolean>(n).fill(false),
    imapReaders: 0,
    pmdl: new Array<number>(tables).fill(-1),
    tbl: new Array<Array<Pte | null> | null>(tables).fill(null),
    gupf: 0,
  }
}

/** pfn 0 is the shared zero page: never freed, always reads 0. */
export const ZERO_PFN = 0

export function initialState(sc: Scenario): LabState {
  const frames: PFrame[] = [{ v: 0, ref: 1, map: 0, free: false, gen: 1, w: 0, sup: false }]
  const n = sc.pages.length
  const tables = tableCount(sc)
  // The tables of PMD-mapped huge pages.
  // (A file/shmem THP has none: arch_needs_pgtable_deposit() is false on x86 and arm64.)
  const hugeTables = sc.thp
    .filter((h) => h.mapped === 'pmd' && h.kind !== 'file')
    .map((h) => tableOf(sc, h.pages[0]!))
  const parent: MmState = {
    live: true,
    ptes: [],
    vmas: [],
    writer: -1,
    readers: 0,
    ptl: new Array<number>(tables).fill(-1),
    pt: new Array<boolean>(tables).fill(false),
    tfp: 0,
    imap: sc.pages.map((p) => (p.kind === 'pfnmap' || p.kind === 'file') && p.vma !== false),
    imapReaders: 0,
    pmdl: new Array<number>(tables).fill(-1),
    // A PMD-mapped anon THP has its PTE table deposited (do_huge_pmd_anonymous_page).
    tbl: Array.from({ length: tables }, (_, k) =>
      hugeTables.includes(k) ? new Array<Pte | null>(n).fill(null) : null,
    ),
    gupf: 0,
  }
  const hasChild = sc.pages.some((p) => p.cow)
  const child = emptyMm(n, hasChild, tables)
  const files: Array<FileState | null> = sc.pages.map(() => null)
  const hasKernel = sc.pages.some((p) => p.kind === 'kernel')
  // init_mm: its page table always exists; no VMAs, no mmap_lock users in the model.
  const kernel: MmState = emptyMm(n, true, tables)
  sc.pages.forEach((p, i) => {
    if (p.kind === 'kernel') {
      // vmalloc'ed before the run: a page of its own (not rmap-counted), mapped in init_mm only.
      parent.vmas.push(null)
      parent.ptes.push(null)
      if (p.mapped === 'none') return
      const pfn = frames.length
      frames.push({ v: p.value, ref: 1, map: 0, free: false, gen: 1, w: 0, sup: false })
      kernel.ptes[i] = { pfn, present: true, write: true, dirty: true }
      return
    }
    parent.vmas.push(p.vma === false ? null : p.prot)
    if (hasChild) child.vmas[i] = p.vma === false ? null : p.prot
    // cow pages imply a fork before the run: dup_mmap linked the child's VMA of a file (a
    // regular file's, or a driver's pfnmap) into the file's i_mmap tree (kernel/protect.ts fork).
    if (hasChild && (p.kind === 'file' || p.kind === 'pfnmap') && p.vma !== false) child.imap[i] = true
    if (p.kind === 'file' && p.fileOf !== undefined) {
      // Another address of file page fileOf's offset: it maps that page's folio (set up below,
      // once every folio exists).
      parent.ptes.push(null)
      return
    }
    if (p.kind === 'file') {
      // The page-cache folio exists whether or not a PTE maps it; it holds the page cache's
      // own reference. A writable PTE of a shared file page is only installed by a write
      // fault (wp_page_shared / do_shared_fault), which marks the folio dirty.
      const pfn = frames.length
      const mapped = p.mapped !== 'none'
      frames.push({
        v: p.value,
        ref: mapped ? 2 : 1,
        map: mapped ? 1 : 0,
        free: false,
        gen: 1,
        w: 0,
        sup: false,
      })
      const write = p.mapped === 'rw' || p.mapped === 'clean'
      files[i] = { pfn, dirty: write, lock: -1, disk: p.value }
      if (hugeOf(sc, i)?.mapped === 'pmd') files[i] = { ...files[i], large: true }
      // A subpage of a PMD-mapped file/shmem THP (kind: file huge page): the huge PMD.
      const pte: Pte = { pfn, present: true, write, dirty: p.mapped === 'rw' }
      parent.ptes.push(!mapped ? null : hugeOf(sc, i)?.mapped === 'pmd' ? { ...pte, huge: true } : pte)
      return
    }
    if (p.mapped === 'none') {
      parent.ptes.push(null)
      return
    }
    const pfn = frames.length
    // A pfnmap PFN has no struct page refcounting: the driver owns it, nothing maps-counts it.
    const mapcount = p.kind === 'pfnmap' ? 0 : p.cow ? 2 : 1
    frames.push({
      v: p.value,
      ref: Math.max(1, mapcount),
      map: mapcount,
      free: false,
      gen: 1,
      w: 0,
      sup: false,
    })
    const write = p.mapped === 'rw' || p.mapped === 'clean'
    const dirty = p.mapped !== 'clean'
    const huge = hugeOf(sc, i)?.mapped === 'pmd'
    parent.ptes.push(huge ? { pfn, present: true, write, dirty, huge } : { pfn, present: true, write, dirty })
    if (p.cow) child.ptes[i] = { pfn, present: true, write: false, dirty }
    // fork copied a VM_PFNMAP PTE as it was, made clean (copy_present_pte, VM_SHARED).
    if (hasChild && p.kind === 'pfnmap') child.ptes[i] = { pfn, present: true, write, dirty: false }
  })
  sc.pages.forEach((p, i) => {
    if (p.fileOf === undefined || p.mapped === 'none') return
    const pfn = files[p.fileOf]!.pfn
    const fr = frames[pfn]!
    frames[pfn] = { ...fr, ref: fr.ref + 1, map: fr.map + 1 }
    const write = p.mapped === 'rw' || p.mapped === 'clean'
    if (write) files[p.fileOf] = { ...files[p.fileOf]!, dirty: true }
    parent.ptes[i] = { pfn, present: true, write, dirty: p.mapped === 'rw' }
  })
  parent.pt = parent.pt.map((_, k) =>
    parent.ptes.some((p, i) => p !== null && !p.huge && tableOf(sc, i) === k),
  )
  const mms = hasKernel ? [parent, child, kernel] : [parent, child]
  const secs: SecState[] = sc.secondaries.map((d) => {
    // A device bound to the fork child (mm: child, cow pages only) caches the child's PTEs.
    const own = d.mm === 1 ? child : parent
    // A cached page of a PMD-mapped THP is one 2 MiB entry: it covers every subpage of its own.
    const cached = [...d.cached]
    for (const page of d.cached)
      if (own.ptes[page]?.huge)
        for (const q of hugeOf(sc, page)!.pages) if (!cached.includes(q)) cached.push(q)
    const entries: TlbEntry[] = cached
      .map((page) => {
        const pte = (isKernelPage(sc, page) ? kernel : own).ptes[page]!
        // hw-walker: the permission the MMU derives from the PTE; sw-mirror: pte_write.
        const write = d.type === 'hw-walker' ? mmuWritable(sc.arch, pte) : pte.write
        const e: TlbEntry = {
          page,
          pfn: pte.pfn,
          gen: frames[pte.pfn]!.gen,
          write,
          dirty: pte.dirty,
          revoked: false,
        }
        return pte.huge ? { ...e, huge: true as const } : e
      })
      .sort((a, b) => a.page - b.page)
    const atc = d.type === 'hw-walker' && d.ats ? entries.slice() : []
    return { entries, atc, seq: 0, inProg: new Array(n).fill(0), wc: new Array<boolean>(tables).fill(false) }
  })
  return {
    frames,
    mms,
    tlbs: sc.threads.map(() => []),
    secs,
    threads: sc.threads.map((t) => ({ op: 0, stack: [], done: t.ops.length === 0, faults: 0, locks: [] })),
    regs: sc.registers.map(() => null),
    swap: [],
    swapCache: [],
    swapMap: [],
    files,
    flags: sc.flags.map(() => false),
    // Only kernel pages have vmap areas (an empty list keeps the other scenarios' hash short).
    vlazy: hasKernel ? sc.pages.map(() => false) : [],
  }
}

/**
 * Whether an MMU may write through a PTE without faulting. arm64 without hardware DBM maps a
 * writable-but-clean PTE as PTE_RDONLY, so the first write faults (handle_pte_fault marks it
 * dirty); x86 sets the dirty bit in hardware.
 */
export function mmuWritable(arch: 'x86_64' | 'arm64', pte: Pte): boolean {
  return pte.present && pte.write && (arch === 'x86_64' || pte.dirty)
}

function cloneLocals(l: Record<string, LocalValue>): Record<string, LocalValue> {
  const o: Record<string, LocalValue> = {}
  for (const k in l) o[k] = l[k]!
  return o
}

/**
 * The starting point of a step: shares every component with `s` except thread `t`, whose
 * call stack the step runs on. Ctx copies any other component before changing it.
 */
export function shallowNext(s: LabState, t: number): LabState {
  const threads = s.threads.slice()
  const th = s.threads[t]!
  threads[t] = {
    op: th.op,
    stack: th.stack.map((f) => ({ proc: f.proc, pc: f.pc, l: cloneLocals(f.l) })),
    done: th.done,
    faults: th.faults,
    locks: th.locks.slice(),
  }
  return {
    frames: s.frames,
    mms: s.mms,
    tlbs: s.tlbs,
    secs: s.secs,
    threads,
    regs: s.regs,
    swap: s.swap,
    swapCache: s.swapCache,
    swapMap: s.swapMap,
    files: s.files,
    flags: s.flags,
    vlazy: s.vlazy,
  }
}

const CODES = new Map<string, number>()
function code(s: string): number {
  let c = CODES.get(s)
  if (c === undefined) {
    c = CODES.size + 1
    CODES.set(s, c)
  }
  return c
}

/**
 * Incremental 64-bit state hash (two 32-bit multiply-xorshift lanes), fed integers directly:
 * building a key string and hashing it was the explorer's hot spot.
 */
class Hasher {
  a = 0x811c9dc5
  b = 0x9747b28c
  n(x: number): void {
    const v = x | 0
    this.a = Math.imul(this.a ^ v, 0x01000193)
    this.a ^= this.a >>> 16
    this.b = Math.imul(this.b ^ (v + 0x7f4a7c15), 0x5bd1e995)
    this.b ^= this.b >>> 15
  }
}

function hashEntries(h: Hasher, es: readonly TlbEntry[], lab: Int32Array | null): void {
  h.n(es.length)
  for (const e of es) {
    h.n(e.page)
    h.n(frameCode(e.pfn, lab))
    h.n(e.gen)
    h.n((e.write ? 1 : 0) | (e.dirty ? 2 : 0) | (e.revoked ? 4 : 0) | (e.huge ? 8 : 0))
  }
}

function hashLocal(h: Hasher, v: LocalValue): void {
  if (v === null) h.n(-1)
  else if (typeof v === 'number') h.n(v)
  else if (typeof v === 'boolean') h.n(v ? -2 : -3)
  else if (typeof v === 'string') h.n(-4 - code(v))
  else {
    h.n(-1000 - v.length)
    for (const x of v) h.n(x)
  }
}

/**
 * What of a state can still influence the future. Dead parts are left out of the hash, so
 * states that differ only there are explored once: registers the forbid condition does not
 * read, the CPU TLB of a finished CPU thread, and the secondary TLB of a secondary whose
 * device threads have all finished (nothing reads them again).
 */
export interface Liveness {
  readonly regs: readonly boolean[]
  /** For each secondary, the threads that access memory through it. */
  readonly secUsers: ReadonlyArray<readonly number[]>
  /** Hash pfns through canonical frame numbering (frameLabels); false: `--reduction none`. */
  readonly canonicalFrames: boolean
  /**
   * The pages some unfinished thread may still touch (persistent.ts Futures.livePages), or
   * null. CPU TLB and secondary entries (and in-progress counts) of the other pages are never
   * read again, by a step (Futures over-approximates what each step touches, checked on every
   * step) or by the final checks (forbid and lost-dirty read PTEs, frames, the page cache and
   * registers): they are left out of the hash.
   */
  readonly futurePages?: ((s: LabState) => Uint8Array) | null
}

const LIVENESS = new WeakMap<Scenario, Liveness>()

/** The scenario's liveness with canonical frame numbering, computed once (the allocator's). */
export function livenessOf(sc: Scenario): Liveness {
  let l = LIVENESS.get(sc)
  if (!l) LIVENESS.set(sc, (l = liveness(sc)))
  return l
}

export function liveness(sc: Scenario, canonicalFrames = true): Liveness {
  const used = new Set<number>()
  const walk = (e: Scenario['forbid']): void => {
    if (!e) return
    if (e.k === 'reg') used.add(e.r)
    else if (e.k === 'not') walk(e.e)
    else if (e.k === 'bin' || e.k === 'cmp') {
      walk(e.a)
      walk(e.b)
    }
  }
  walk(sc.forbid)
  return {
    regs: sc.registers.map((_, i) => used.has(i)),
    secUsers: sc.secondaries.map((_, i) =>
      sc.threads.flatMap((t, j) => (t.kind === 'device' && t.via === i ? [j] : [])),
    ),
    canonicalFrames,
  }
}

function pteCode(p: Pte | null, lab: Int32Array | null): number {
  if (!p) return -1
  if (p.swp !== undefined) return -1000 - 2 * p.swp - (p.excl ? 1 : 0)
  return (
    frameCode(p.pfn, lab) * 64 +
    (p.present ? 1 : 0) +
    (p.write ? 2 : 0) +
    (p.dirty ? 4 : 0) +
    8 +
    (p.mig ? 16 : 0) +
    (p.huge ? 32 : 0)
  )
}

/** A pfn as hashed: its canonical label, or itself without canonical numbering (or if no frame). */
function frameCode(pfn: number, lab: Int32Array | null): number {
  return lab !== null && pfn >= 0 && pfn < lab.length ? lab[pfn]! : pfn
}

/**
 * Locals that always hold a pfn or a list of pfns (or -1/null for none): checked against every
 * assignment in kernel/*.ts. They take part in canonical frame numbering. A local not listed
 * here is hashed both as written and through the numbering (see hashLocalCanon), which is sound
 * whatever it holds; listing a key that can hold anything else would not be.
 */
export const PFN_LOCALS: ReadonlySet<string> = new Set([
  'pfn',
  'hpfn',
  'pfns',
  'kpage',
  'new',
  'g_queue',
  'g_rmap',
])

/**
 * Locals that hold a PTE snapshot (kernel/proc.ts encodePte: [pfn, present, write, dirty, mig,
 * swp(, huge | , 0, excl)], vmf->orig_pte and the like) or a list whose first element is a pfn (thp.ts's
 * `old`), or null: checked against every assignment in kernel/*.ts. Their first element takes
 * part in canonical frame numbering; the rest is hashed as written (always sound). Hashing the
 * snapshot's pfn raw split states that differ only in which frame a COW got.
 */
export const PTE_LOCALS: ReadonlySet<string> = new Set(['orig', 'old'])

/**
 * Locals that never hold a pfn: an op's parameters (page indices, values, registers, flags), page
 * lists and loop indices, counts and snapshots of counters (a folio's write count `w`, its `gen`,
 * a sequence count), booleans and swap slots. persistent.ts's frame reachability skips them;
 * any local not listed here or in PFN_LOCALS / PTE_LOCALS is taken to name any frame whose
 * number it equals.
 */
export const NON_PFN_LOCALS: ReadonlySet<string> = new Set([
  'page',
  'pages',
  'req',
  'write',
  'remote',
  'val',
  'value',
  'reg',
  'prot',
  'flag',
  'wait',
  'sec',
  'why',
  'w',
  'gen',
  'hgen',
  'wr',
  'seq',
  'i',
  'vi',
  'runOf',
  'g_range',
  'mapped',
  'copied',
  'changed',
  'dirty',
  'ok',
  'installed',
  'batched',
  'bmm',
  'mm',
  'migs',
  'slot',
  'owner',
  'to',
  'late',
  'nested',
  // The page whose PTE table a page-table walk has locked (zap, change_pte_range, copy_pte_range).
  'pp',
  // mprotect: the index in the VMA's pages where change_pmd_range()'s notifier range starts.
  'rsi',
  'slots',
  'ft',
  // do_swap_page: whether the folio is the swap cache's (swapcache != NULL) or a fresh one.
  'swapcache',
])

/**
 * Canonical frame numbering (symmetry reduction over pfns). Frames are labelled in the order a
 * fixed walk of the live state first reaches them: the zero page, each address space's PTEs in
 * page order (and a detached or deposited PTE table), page-cache folios, the swap cache, live
 * CPU and secondary TLB entries, then the pfn locals of each thread's call stack. Frames nothing
 * reaches come last, ordered by their contents. Two states that differ only in which pfns the
 * allocator handed out (two orders of independent COW faults) get the same labels, hence the
 * same hash.
 *
 * Soundness: the step semantics never looks at a pfn's number except as an identity (an index
 * into `frames`), and the allocator picks the free frame with the smallest label (allocFrame),
 * so for a permutation p of pfns, step(p(s)) = p(step(s)): isomorphic states have isomorphic
 * successors, the same violations and the same enabled threads, and a schedule (thread names)
 * found in the quotient replays from the real initial state. States are merged only when the
 * labelled walk, every other field, and every unlisted local's value both as written and as
 * labelled are equal: then the relabelling maps one state onto the other.
 */
/** A secondary whose device threads have all finished: nothing reads its TLB again. */
function secDead(s: LabState, live: Liveness, i: number): boolean {
  for (const t of live.secUsers[i]!) if (!s.threads[t]!.done) return false
  return true
}

/** The labelling walk's cursor (frameLabels runs to completion, never re-entered). */
let labNext = 0
function visitFrame(lab: Int32Array, pfn: number): void {
  if (pfn >= 0 && pfn < lab.length && lab[pfn]! < 0) lab[pfn] = labNext++
}

export function frameLabels(s: LabState, live: Liveness): Int32Array {
  const n = s.frames.length
  const lab = new Int32Array(n).fill(-1)
  labNext = 0
  visitFrame(lab, ZERO_PFN)
  for (const m of s.mms) {
    for (const p of m.ptes) if (p && p.swp === undefined) visitFrame(lab, p.pfn)
    for (const t of m.tbl) if (t) for (const p of t) if (p && p.swp === undefined) visitFrame(lab, p.pfn)
  }
  for (const f of s.files) if (f) visitFrame(lab, f.pfn)
  for (const pfn of s.swapCache) visitFrame(lab, pfn)
  for (let i = 0; i < s.tlbs.length; i++) {
    if (s.threads[i]!.done) continue
    for (const e of s.tlbs[i]!) visitFrame(lab, e.pfn)
  }
  for (let i = 0; i < s.secs.length; i++) {
    if (secDead(s, live, i)) continue
    const x = s.secs[i]!
    for (const e of x.entries) visitFrame(lab, e.pfn)
    for (const e of x.atc) visitFrame(lab, e.pfn)
  }
  for (const t of s.threads)
    for (const f of t.stack)
      for (const k in f.l) {
        const kind = keyInfo(k) & 3
        if (kind === 0) continue
        const v = f.l[k]!
        if (kind === KEY_PFN) {
          if (typeof v === 'number') visitFrame(lab, v)
          else if (Array.isArray(v)) for (const x of v as readonly number[]) visitFrame(lab, x)
        } else if (Array.isArray(v) && v.length > 0) visitFrame(lab, (v as readonly number[])[0]!)
      }
  let next = labNext
  if (next < n) {
    const rest: number[] = []
    for (let i = 0; i < n; i++) if (lab[i]! < 0) rest.push(i)
    const fs = s.frames
    rest.sort((a, b) => {
      const x = fs[a]!
      const y = fs[b]!
      return (
        Number(x.free) - Number(y.free) ||
        x.v - y.v ||
        x.ref - y.ref ||
        x.map - y.map ||
        x.gen - y.gen ||
        x.w - y.w ||
        Number(x.sup) - Number(y.sup) ||
        (x.lk ?? -1) - (y.lk ?? -1) ||
        Number(x.iso === true) - Number(y.iso === true) ||
        a - b
      )
    })
    for (const i of rest) lab[i] = next++
  }
  return lab
}

const KEY_PFN = 1
const KEY_PTE = 2
const KEY_INFO = new Map<string, number>()
/** A local's key: its code (times 4) and whether it holds pfns (KEY_PFN) or a PTE snapshot. */
function keyInfo(k: string): number {
  let x = KEY_INFO.get(k)
  if (x === undefined) {
    x = code(k) * 4 + (PFN_LOCALS.has(k) ? KEY_PFN : PTE_LOCALS.has(k) ? KEY_PTE : 0)
    KEY_INFO.set(k, x)
  }
  return x
}

function hashLocalCanon(h: Hasher, info: number, v: LocalValue, lab: Int32Array): void {
  const kind = info & 3
  if (kind === KEY_PFN) {
    if (typeof v === 'number') h.n(frameCode(v, lab))
    else if (Array.isArray(v)) {
      h.n(-1000 - v.length)
      for (const x of v as readonly number[]) h.n(frameCode(x, lab))
    } else hashLocal(h, v)
    return
  }
  if (kind === KEY_PTE && Array.isArray(v) && v.length > 0) {
    const a = v as readonly number[]
    h.n(-2000 - a.length)
    h.n(frameCode(a[0]!, lab))
    for (let i = 1; i < a.length; i++) h.n(a[i]!)
    return
  }
  hashLocal(h, v)
  // Not known to be a pfn, maybe one: also hash it through the numbering (see frameLabels).
  if (typeof v === 'number') h.n(frameCode(v, lab))
  else if (Array.isArray(v)) for (const x of v as readonly number[]) h.n(frameCode(x, lab))
}

/** The two 32-bit halves of the state's 64-bit hash (live parts only), for visited-state hashing. */
export function hashState(s: LabState, live: Liveness): [number, number] {
  const h = new Hasher()
  const lab = live.canonicalFrames ? frameLabels(s, live) : null
  // With futurePages: free frames that nothing names (after every named one in the labelling)
  // are left out. Allocating one of them instead of a fresh frame gives a state that differs
  // only in the frame's number and generation, and generations are only ever compared for
  // equality with the entries and locals taken from the same frame (ctx.ts checkAccess).
  let kept = s.frames.length
  if (lab !== null && live.futurePages) {
    const reached = labNext
    kept = 0
    for (let i = 0; i < lab.length; i++) if (lab[i]! < reached || !s.frames[i]!.free) kept++
  }
  h.n(kept)
  const order = lab === null ? null : new Int32Array(lab.length)
  if (lab !== null && order !== null) for (let i = 0; i < lab.length; i++) order[lab[i]!] = i
  for (let j = 0; j < kept; j++) {
    const f = s.frames[order === null ? j : order[j]!]!
    h.n(f.v)
    h.n(f.ref)
    h.n(f.map)
    h.n(f.gen)
    h.n(f.w * 8 + (f.free ? 1 : 0) + (f.sup ? 2 : 0) + (f.avc ? 4 : 0))
    h.n((f.lk ?? -1) + 1 + (f.iso ? 1 << 12 : 0))
  }
  for (const m of s.mms) {
    h.n((m.live ? 1 : 0) + 2 * (m.writer + 1) + 1024 * m.readers)
    for (let k = 0; k < m.ptl.length; k++) h.n(m.ptl[k]! * 2 + (m.pt[k] ? 1 : 0))
    h.n(m.tfp + 64 * m.imapReaders + (m.tfb === true ? 1 << 20 : 0))
    h.n((m.avr ?? 0) + 64 * ((m.avw ?? -1) + 1))
    for (const l of m.imap) h.n(l ? 1 : 0)
    for (const p of m.ptes) h.n(pteCode(p, lab))
    h.n(
      64 * m.gupf +
        (m.rel ? 1 << 20 : 0) +
        (m.oomSkip ? 1 << 19 : 0) +
        (m.unstable ? 1 << 18 : 0) +
        (m.users ?? 0) * (1 << 21),
    )
    for (const l of m.pmdl) h.n(l)
    for (const t of m.tbl) {
      if (t) {
        h.n(t.length)
        for (const p of t) h.n(pteCode(p, lab))
      } else h.n(-5)
    }
    for (const v of m.vmas) h.n(v === null ? 0 : v === 'rw' ? 1 : v === 'ro' ? 2 : 3)
  }
  const lp = live.futurePages?.(s) ?? null
  const alive = (es: readonly TlbEntry[]): readonly TlbEntry[] =>
    lp === null ? es : es.filter((e) => lp[e.page] === 1)
  s.tlbs.forEach((t, i) => hashEntries(h, s.threads[i]!.done ? [] : alive(t), lab))
  s.secs.forEach((x, i) => {
    const dead = secDead(s, live, i)
    hashEntries(h, dead ? [] : alive(x.entries), lab)
    hashEntries(h, dead ? [] : alive(x.atc), lab)
    h.n(x.seq)
    for (const w of x.wc) h.n(w && !dead ? 1 : 0)
    x.inProg.forEach((p, page) => h.n(lp === null || lp[page] === 1 ? p : 0))
  })
  for (const t of s.threads) {
    h.n(t.op)
    h.n((t.done ? 1 : 0) + 2 * t.faults)
    h.n(t.locks.length)
    for (const l of t.locks) h.n(code(l))
    h.n(t.stack.length)
    for (const f of t.stack) {
      h.n(code(f.proc))
      h.n(code(f.pc))
      for (const k in f.l) {
        const info = keyInfo(k)
        h.n(info >> 2)
        if (lab === null) hashLocal(h, f.l[k]!)
        else hashLocalCanon(h, info, f.l[k]!, lab)
      }
    }
  }
  s.regs.forEach((r, i) => h.n(live.regs[i] ? (r === null ? -7 : r) : 0))
  h.n(s.swap.length)
  for (const v of s.swap) h.n(v === null ? -9 : v)
  for (const p of s.swapCache) h.n(frameCode(p, lab))
  for (const x of s.swapMap) h.n(x)
  for (const f of s.files) {
    if (!f) continue
    h.n(frameCode(f.pfn, lab) * 2 + (f.dirty ? 1 : 0))
    h.n(f.lock + (f.trunc ? 1 << 20 : 0) + (f.large ? 1 << 21 : 0))
    h.n(f.disk)
  }
  for (const x of s.flags) h.n(x ? 1 : 0)
  for (const x of s.vlazy) h.n(x ? 1 : 0)
  return [h.a >>> 0, h.b >>> 0]
}
