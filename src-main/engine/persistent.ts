/**
 * Persistent sets (Godefroid 1996, ch. 4): at a state, explore only the steps of a set T of
 * enabled threads such that no sequence of steps by threads outside T, from that state, can
 * contain a step dependent on a step of T. Then every order of the other threads' steps can be
 * taken after T's, and every terminal state, and every violating step (up to reordering of
 * independent steps), stays reachable in the reduced graph.
 *
 * "Steps outside T" include the threads' whole futures, not only their next steps, so the test
 * needs an over-approximation of what a thread may touch from now to its end: `Futures`, per
 * thread and op index, and the state's own structure. A step of T conflicts with the future of
 * a thread u outside T when it touches:
 *   - a per-page resource (a PTE, a VMA, a CPU TLB entry, a secondary's entry, a page's
 *     in-progress range, a kernel page's lazy vmap area, a file page's folio state) of a page in
 *     u's page set;
 *   - a frame that is free (anyone may allocate it), that one of u's locals names, or that is
 *     referenced (by a PTE, a CPU TLB or secondary entry, the page cache or the swap cache)
 *     through a page in u's page set. Nothing else can lead u to a frame: outside KSM, fork,
 *     THP and kernel pages (which widen every page set to all pages), a frame gains a reference
 *     through a page only by being allocated for it, or copied from that page's PTE; and it
 *     becomes free only through a put by a thread touching it through one of its pages, which
 *     the same test catches;
 *   - mmap_lock for read (the reader count, the writer field read by a guard) when u may take
 *     it for write (munmap, mprotect, fork, THP collapse: every op but a read, write or fault);
 *   - any other shared resource (the allocator, page tables, sequence counts, walk caches,
 *     flags, a lock it takes, the mm's released notifiers after `exit`): always.
 * Locks held by the stepping thread are not shared: until it releases one (a step of T), no
 * step outside T can touch it. Likewise a thread that is blocked only on locks held by members
 * of T cannot step outside T: it is skipped. Reads conflict like writes (the futures do not
 * say which), which only costs reduction, never soundness.
 *
 * Page sets are deliberately coarse: only a CPU or device read, write, write_fault,
 * cow_fault or device translate names the one page it can touch; any other op (flush ranges, rmap walks, batched
 * flushes) may touch every page. The explorer checks each step it runs against its thread's
 * page set (`outside`): a step outside it is a model bug, reported, never a silently wrong
 * verdict; the tests run that check on every step of the unreduced explorer over the
 * catalogue and generated scenarios.
 */
import type { Footprint } from './footprint'
import { NON_PFN_LOCALS, tableOf, type LabState, type LocalValue } from './state'
import type { Scenario } from './types'

const M = 1 << 12
const FAM = M * M
/** Footprint families (footprint.ts Res) whose key ends in a page index. */
const PAGE_FAMILIES = new Set([1, 2, 4, 5, 7, 12, 13])
const FRAME_FAMILY = 8
/** Family 3 sub-kinds (footprint.ts Res: 3*M*M + 16*sub + mm + 4*table). */
const SUB_PTL = 0
const SUB_MMAP = 1
const SUB_MMAP_READERS = 4
const SUB_ALLOC = 3
const SUB_PMDL = 8
/** Family 11 (footprint.ts Res.everything): the allocator's choice among free frames. */
const EVERYTHING_FAMILY = 11

/** What a step touched, as the persistent-set test needs it. */
export interface StepTouch {
  /** It touched a shared resource that conflicts with every other thread's future. */
  readonly global: boolean
  /** It took or dropped mmap_lock for read (conflicts only with future writers). */
  readonly mmapShared: boolean
  /** Pages of per-page resources it touched. */
  readonly pages: readonly number[]
  /** Frames whose contents or state it touched. */
  readonly frames: readonly number[]
  /** It took mmap_lock for write. */
  readonly mmapWrite: boolean
  /**
   * It touched a global resource other than a page-table lock (PTL, pmd_lock), mmap_lock for
   * read and the frame allocator: what joins threads into one component (`components`).
   */
  readonly shared: boolean
}

/** Classifies a step of thread `t` from state `s` (locks `t` holds in `s` are its own). */
export function touchOf(fp: Footprint, s: LabState, t: number): StepTouch {
  let global = false
  let mmapShared = false
  let mmapWrite = false
  let shared = false
  const pages: number[] = []
  const frames: number[] = []
  const holdsLambda = s.mms.some((m) => m.ptl.includes(t) || m.pmdl.includes(t))
  const add = (keys: readonly number[], mode: 'r' | 'w' | 'inc'): void => {
    for (const k of keys) {
      const fam = Math.floor(k / FAM)
      if (PAGE_FAMILIES.has(fam)) {
        const p = k % M
        if (!pages.includes(p)) pages.push(p)
        continue
      }
      if (fam === FRAME_FAMILY) {
        const f = k - FRAME_FAMILY * FAM
        if (!frames.includes(f)) frames.push(f)
        continue
      }
      if (fam === EVERYTHING_FAMILY) {
        global = true
        continue
      }
      if (fam === 3) {
        const off = k - 3 * FAM
        const sub = Math.floor(off / 16)
        const mm = s.mms[off % 4]
        const tb = (off % 16) >> 2
        if (mm && sub === SUB_PTL && mm.ptl[tb] === t) continue
        if (mm && sub === SUB_PMDL && mm.pmdl[tb] === t) continue
        if (mm && (sub === SUB_MMAP || sub === SUB_MMAP_READERS) && mm.writer === t) continue
        if (mm && sub === SUB_MMAP && mode === 'r') {
          mmapShared = true
          continue
        }
        if (mm && sub === SUB_MMAP_READERS && mode === 'inc') {
          mmapShared = true
          continue
        }
        if (sub === SUB_MMAP && mode === 'w') mmapWrite = true
        global = true
        // A page-table lock taken while holding another one (lock nesting) is shared: see
        // `components` for why separate components never nest them.
        if ((sub === SUB_PTL || sub === SUB_PMDL) && !holdsLambda) continue
        if (sub === SUB_ALLOC) continue
        shared = true
        continue
      }
      global = true
      shared = true
    }
  }
  add(fp.r, 'r')
  add(fp.w, 'w')
  add(fp.inc, 'inc')
  return { global, mmapShared, pages, frames, mmapWrite, shared }
}

const PAGE_LOCAL_OPS = new Set(['read', 'write', 'write_fault', 'cow_fault', 'translate'])

/** Per thread and op index: the pages the thread may touch from that op to its end. */
export class Futures {
  /** pages[t][op][p]: 1 if page p may be touched from op `op` on. */
  private readonly pages: Uint8Array[][]
  /** mmapWriter[t][op]: the thread may take mmap_lock for write from op `op` on. */
  private readonly mmapWriter: boolean[][]
  /** everyPage[t][op]: the page set is every page (the thread may reach any frame). */
  private readonly everyPage: boolean[][]
  /** share[t][op]: the thread may touch a shared global resource (StepTouch.shared) from op on. */
  private readonly share: boolean[][]
  /**
   * Every thread may touch a shared global resource: a sw-mirror (every fault's notifier and
   * every mirror access use its sequence count), a walk cache, or the scenario shapes that
   * widen page sets (THP, kernel pages, a fork child, KSM, fork).
   */
  readonly shareAll: boolean

  constructor(readonly sc: Scenario) {
    const n = sc.pages.length
    const widen =
      sc.thp.length > 0 ||
      sc.pages.some((p) => p.kind === 'kernel') ||
      sc.threads.some((t) => t.mm === 1 || t.ops.some((o) => o.kind === 'ksm_merge' || o.kind === 'fork')) ||
      // An HMM mirror's mn_itree_inv_end reads every page's active ranges, and its
      // mmu_interval_read_begin waits on any of them (ctx.ts intervalEnd, kernel/hmm.ts).
      sc.secondaries.some((x) => x.type === 'sw-mirror' && x.protocol === 'hmm')
    this.pages = []
    this.mmapWriter = []
    this.everyPage = []
    this.share = []
    // An `exit` releases the mm's notifiers: every device access and notifier call then reads
    // that (ctx.ts mmReleased, a shared resource), so every thread may share. The OOM reaper's
    // MMF_UNSTABLE is read by every anonymous fault (ctx/tables.ts mmUnstable) likewise.
    this.shareAll =
      widen ||
      sc.secondaries.some((x) => x.type === 'sw-mirror' || (x.type === 'hw-walker' && x.walkCache)) ||
      sc.threads.some((t) => t.ops.some((o) => o.kind === 'exit' || o.kind === 'oom_reap'))
    for (const t of sc.threads) {
      const pages: Uint8Array[] = new Array<Uint8Array>(t.ops.length + 1)
      const writer: boolean[] = new Array<boolean>(t.ops.length + 1)
      const every: boolean[] = new Array<boolean>(t.ops.length + 1)
      let acc = new Uint8Array(n)
      let w = false
      let all = false
      const share: boolean[] = new Array<boolean>(t.ops.length + 1)
      let sh = false
      pages[t.ops.length] = acc
      writer[t.ops.length] = w
      every[t.ops.length] = all
      share[t.ops.length] = sh
      for (let k = t.ops.length - 1; k >= 0; k--) {
        const op = t.ops[k]!
        acc = acc.slice()
        const local = PAGE_LOCAL_OPS.has(op.kind)
        if (!local) sh = true
        share[k] = sh
        if (!widen && local && 'page' in op) {
          acc[op.page] = 1
          // A fault at an address declared `file: P` works on P's page-cache folio.
          const owner = sc.pages[op.page]!.fileOf
          if (owner !== undefined) acc[owner] = 1
        } else if (op.kind !== 'signal' && op.kind !== 'wait') {
          acc.fill(1)
          all = true
        }
        if (!local && op.kind !== 'signal' && op.kind !== 'wait') w = true
        pages[k] = acc
        writer[k] = w
        every[k] = all
      }
      this.pages.push(pages)
      this.mmapWriter.push(writer)
      this.everyPage.push(every)
      this.share.push(share)
    }
  }

  /** The pages some unfinished thread of `s` may still touch (1) or none will (0). */
  livePages(s: LabState): Uint8Array {
    const out = new Uint8Array(this.sc.pages.length)
    s.threads.forEach((th, u) => {
      if (th.done) return
      if (this.everyPage[u]![th.op]!) out.fill(1)
      else {
        const f = this.pages[u]![th.op]!
        for (let p = 0; p < f.length; p++) if (f[p] === 1) out[p] = 1
      }
    })
    return out
  }

  /** Whether thread `u`, from op `op` on, may touch a shared global resource. */
  mayShare(u: number, op: number): boolean {
    return this.shareAll || this.share[u]![op]!
  }

  /** Whether the page sets of thread `u` (from op `uop` on) and thread `v` (from `vop` on) meet. */
  pagesMeet(u: number, uop: number, v: number, vop: number): boolean {
    if (this.everyPage[u]![uop]! || this.everyPage[v]![vop]!) return true
    const a = this.pages[u]![uop]!
    const b = this.pages[v]![vop]!
    for (let p = 0; p < a.length; p++) if (a[p] === 1 && b[p] === 1) return true
    return false
  }

  /** Whether thread `u`, from op `op` on, may touch a per-page resource of page `p`. */
  hasPage(u: number, op: number, p: number): boolean {
    return this.pages[u]![op]![p] === 1
  }

  mayWriteMmap(u: number, op: number): boolean {
    return this.mmapWriter[u]![op]!
  }

  hasEveryPage(u: number, op: number): boolean {
    return this.everyPage[u]![op]!
  }

  /**
   * The check behind the soundness of the over-approximation: a step of thread `t` run while
   * it was at op `op` touched only what its future allows. Returns what it touched outside
   * (a page's name, or mmap_lock for write), or null.
   */
  outside(x: StepTouch, t: number, op: number, s: LabState): string | null {
    const f = this.pages[t]![op]!
    for (const p of x.pages) if (f[p] !== 1) return `page ${this.sc.pages[p]!.name}`
    if (x.mmapWrite && !this.mmapWriter[t]![op]!) return 'mmap_lock for write'
    // (A fault may link the PTE table: states with an unlinked one have no components.)
    if (x.shared && !this.mayShare(t, op) && !tablesUnsettled(this.sc, s))
      return 'a shared global resource (not a page-table lock, mmap_lock for read or the allocator)'
    return null
  }
}

/** The frames of a state by how they can be reached: through which pages, free or not. */
export class FrameRefs {
  private readonly byPage: Array<number[] | undefined>

  constructor(private readonly s: LabState) {
    this.byPage = new Array<number[] | undefined>(s.frames.length)
    const add = (pfn: number, p: number): void => {
      if (pfn < 0 || pfn >= this.byPage.length) return
      const l = (this.byPage[pfn] ??= [])
      if (!l.includes(p)) l.push(p)
    }
    for (const m of s.mms) {
      m.ptes.forEach((q, p) => {
        if (!q) return
        if (q.swp === undefined) add(q.pfn, p)
        else add(s.swapCache[q.swp] ?? -1, p)
      })
      for (const t of m.tbl) if (t) t.forEach((q, p) => q && q.swp === undefined && add(q.pfn, p))
    }
    s.files.forEach((f, p) => f && add(f.pfn, p))
    for (const t of s.tlbs) for (const e of t) add(e.pfn, e.page)
    for (const x of s.secs) {
      for (const e of x.entries) add(e.pfn, e.page)
      for (const e of x.atc) add(e.pfn, e.page)
    }
  }

  /** Whether a step of thread `u` from op `op` on may touch frame `pfn`. */
  reaches(fut: Futures, u: number, op: number, pfn: number): boolean {
    const f = this.s.frames[pfn]
    if (!f || f.free || fut.hasEveryPage(u, op)) return true
    for (const fr of this.s.threads[u]!.stack) for (const k in fr.l) if (holds(k, fr.l[k]!, pfn)) return true
    for (const p of this.byPage[pfn] ?? []) if (fut.hasPage(u, op, p)) return true
    return false
  }
}

/**
 * Whether anything but thread `t`'s own locals names frame `pfn`: a PTE (or a swap entry whose
 * folio is in the swap cache), an unlinked table, the page cache, an unfinished CPU thread's
 * TLB, a secondary's entry or ATC, or another thread's locals.
 */
export function frameNamed(s: LabState, pfn: number, t: number): boolean {
  let named = false
  for (const m of s.mms) {
    for (const q of m.ptes)
      if (q && (q.swp === undefined ? q.pfn === pfn : s.swapCache[q.swp] === pfn)) return true
    for (const t of m.tbl)
      if (t) for (const q of t) if (q && q.swp === undefined && q.pfn === pfn) return true
  }
  for (const f of s.files) if (f && f.pfn === pfn) return true
  if (s.swapCache.includes(pfn)) return true
  // (A finished CPU thread's TLB is never read again: state.ts leaves it out of the hash too.)
  s.tlbs.forEach((x, i) => {
    if (!s.threads[i]!.done) for (const e of x) if (e.pfn === pfn) named = true
  })
  if (named) return true
  for (const x of s.secs) {
    for (const e of x.entries) if (e.pfn === pfn) return true
    for (const e of x.atc) if (e.pfn === pfn) return true
  }
  for (let u = 0; u < s.threads.length; u++)
    if (u !== t)
      for (const fr of s.threads[u]!.stack) for (const k in fr.l) if (holds(k, fr.l[k]!, pfn)) return true
  return false
}

/**
 * Whether local `k` may name frame `pfn`: never for state.ts NON_PFN_LOCALS; `orig` (an
 * encoded PTE, kernel/proc.ts encodePte) names only its first element; any other number, or
 * number in a list, is taken for a pfn.
 */
function holds(k: string, v: LocalValue, pfn: number): boolean {
  if (NON_PFN_LOCALS.has(k)) return false
  // vmf->orig_pte is always one encoded PTE; `old` may also be thp.ts's list of pfns.
  if (k === 'orig') return Array.isArray(v) && (v as readonly number[])[0] === pfn
  if (typeof v === 'number') return v === pfn
  return Array.isArray(v) && (v as readonly number[]).includes(pfn)
}

/** Whether a step touching `x` may be dependent on some step of thread `u` from op `op` on. */
export function conflicts(fut: Futures, refs: () => FrameRefs, x: StepTouch, u: number, op: number): boolean {
  if (x.global) return true
  if (x.mmapShared && fut.mayWriteMmap(u, op)) return true
  for (const p of x.pages) if (fut.hasPage(u, op, p)) return true
  for (const f of x.frames) if (refs().reaches(fut, u, op, f)) return true
  return false
}

/**
 * The smallest persistent set among those grown from each enabled thread (closing over the
 * threads whose futures its steps conflict with), or null when none is smaller than `en`.
 * A thread reached that is disabled ends the seed, unless its guard reads only locks held by
 * members of the set (`frozenBy`: then it cannot step before they do).
 *
 * `touch[i]` is the next step of `en[i]`. With a `scope` (a group of `components`), threads
 * outside it are left out: they do not step until the group is done.
 */
export function persistentSet(
  fut: Futures,
  s: LabState,
  en: readonly number[],
  touch: readonly StepTouch[],
  frozenBy: (u: number) => readonly number[] | null,
  scope: Uint8Array | null = null,
): number[] | null {
  const n = s.threads.length
  const pos = new Int32Array(n).fill(-1)
  en.forEach((t, i) => (pos[t] = i))
  let refs: FrameRefs | null = null
  const getRefs = (): FrameRefs => (refs ??= new FrameRefs(s))
  let best: number[] | null = null
  for (let seed = 0; seed < en.length; seed++) {
    if (touch[seed]!.global) continue
    const inT = new Uint8Array(n)
    const set = [en[seed]!]
    inT[en[seed]!] = 1
    let ok = true
    for (let h = 0; ok && h < set.length; h++) {
      const x = touch[pos[set[h]!]!]!
      if (x.global) {
        ok = false
        break
      }
      for (let u = 0; u < n && ok; u++) {
        if (inT[u] === 1 || s.threads[u]!.done || (scope !== null && scope[u] === 0)) continue
        if (!conflicts(fut, getRefs, x, u, s.threads[u]!.op)) continue
        if (pos[u]! >= 0) {
          inT[u] = 1
          set.push(u)
          continue
        }
        // Disabled: harmless only while the holders of what it waits for are in the set.
        const holders = frozenBy(u)
        if (holders === null) {
          ok = false
          break
        }
        for (const w of holders) {
          if (inT[w] === 1) continue
          if (pos[w]! < 0) {
            ok = false
            break
          }
          inT[w] = 1
          set.push(w)
        }
        inT[u] = 1
      }
      if (best !== null && set.length >= best.length) ok = false
    }
    if (ok && set.length < en.length && (best === null || set.length < best.length)) best = set
  }
  return best
}

/**
 * The threads holding the locks thread `u`'s guard waits on, or null when its guard reads
 * anything else (then something outside a set may enable it). `reads` is its guard's read set.
 */
export function lockHolders(s: LabState, reads: readonly number[] | null): number[] | null {
  if (reads === null || reads.length === 0) return null
  const out: number[] = []
  for (const k of reads) {
    if (Math.floor(k / FAM) !== 3) return null
    const off = k - 3 * FAM
    const sub = Math.floor(off / 16)
    const mm = s.mms[off % 4]
    const tb = (off % 16) >> 2
    if (!mm) return null
    const h =
      sub === SUB_PTL
        ? (mm.ptl[tb] ?? -1)
        : sub === SUB_PMDL
          ? (mm.pmdl[tb] ?? -1)
          : sub === SUB_MMAP
            ? mm.writer
            : -1
    if (h < 0) return null
    if (!out.includes(h)) out.push(h)
  }
  return out
}

/**
 * A PTE table not linked that a fault would link (Res.pt: a VMA is over one of its pages), or
 * one unlinked and not yet freed (a walk cache may read it): page tables are then shared by
 * every fault and walk. A table freed with no VMA left over it stays unlinked: no op makes a VMA
 * there again (ctx.ts checkNoStaleWalkCache).
 */
export function tablesUnsettled(sc: Scenario, s: LabState): boolean {
  return s.mms.some(
    (m) =>
      m.live &&
      (m.tbl.some((x) => x !== null) ||
        m.pt.some((x, k) => !x && m.vmas.some((v, p) => v !== null && tableOf(sc, p) === k))),
  )
}
