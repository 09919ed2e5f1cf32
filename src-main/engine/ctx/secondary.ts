/**
 * Secondary-MMU driver layer of the step context: what a driver's invalidation does to its
 * secondary. For a hw-walker (IOMMU SVA: SMMUv3, VT-d) the IOTLB and device-ATC commands, their
 * order, the walk cache's non-leaf invalidation and BTM snooping; for a sw-mirror, KVM's
 * zap and in-progress count and an HMM mirror's interval notifier sequence. Which notifier
 * call reaches the driver is decided a layer up (Ctx, ../ctx.ts).
 */
import { invalidationCost } from '../costs'
import { Res } from '../footprint'
import { count } from '../plural'
import { hugeOf, tablesOf } from '../state'
import type { Scenario } from '../types'
import { CtxTlbs } from './tlbs'

/** Base-page size of a PMD range: a 2 MiB huge page is 512 pages of 4 KiB. */
export const HPAGE_PMD_NR = 512

/**
 * The 4 KiB pages an invalidation of `pages` stands for, for what it costs the driver. A
 * huge page's few subpages stand for its 512 (types.ts ThpDecl), so a range that covers all
 * of them is the 2 MiB range the kernel passes for a PMD (zap_huge_pmd, change_huge_pmd,
 * __split_huge_pmd, pmdp_collapse_flush): 512 aligned pages, which the SMMU sends as one
 * ASID-wide TLBI (CMDQ_MAX_TLBI_OPS) and VT-d as one 2 MiB chunk. A subpage alone stays one
 * page. Small pages keep their own index (below 512: a scenario has a handful of pages).
 */
export function spanPages(sc: Scenario, pages: readonly number[] | null): readonly number[] | null {
  if (pages === null || sc.thp.length === 0) return pages
  const out: number[] = []
  const seen = new Set<number>()
  for (const p of pages) {
    const h = hugeOf(sc, p)
    const hp = h ? sc.thp.indexOf(h) : -1
    if (h && h.pages.every((q) => pages.includes(q))) {
      if (seen.has(hp)) continue
      seen.add(hp)
      const base = HPAGE_PMD_NR * (hp + 1)
      for (let k = 0; k < HPAGE_PMD_NR; k++) out.push(base + k)
    } else out.push(p)
  }
  return out
}

export class CtxSecondary extends CtxTlbs {
  // ---- a driver's invalidation commands ----------------------------------------------
  /** Whether a hw-walker is declared (bound to `mm`, when given: types.ts SecondaryMm). */
  hasHwWalker(mm?: number): boolean {
    return this.sc.secondaries.some((d) => d.type === 'hw-walker' && (mm === undefined || (d.mm ?? 0) === mm))
  }
  /** Each hw-walker bound to `mm` (a driver's notifier is registered on one mm). */
  protected forHw(mm: number, f: (i: number) => void): void {
    this.sc.secondaries.forEach((d, i) => {
      if (d.type === 'hw-walker' && (d.mm ?? 0) === mm) f(i)
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
      const n = this.dropEntries(i, 'entries', pages)
      this.emit(
        'sec-inval',
        why,
        `${d.name}: invalidate ${this.rangeText(pages)} (${this.dropped(n)})`,
        this.pagesDetail(pages),
      )
      return
    }
    const iotlb = !(d.btm && d.iommu === 'smmu-v3')
    const c = invalidationCost(d.iommu, spanPages(this.sc, pages), d.ats, iotlb)
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
    const n = this.dropEntries(i, 'entries', pages)
    this.dropWalkCache(i, pages, why)
    if (this.tracing)
      this.emit(
        'sec-inval',
        why,
        `${d.name}: invalidate ${d.type === 'hw-walker' && d.ats ? 'IOTLB ' : ''}${this.rangeText(pages)} (${this.dropped(n)})`,
        this.pagesDetail(pages),
      )
  }
  /** A driver's device-ATC command (ATS). */
  private dropAtc(i: number, pages: readonly number[] | null, why: string): void {
    const n = this.dropEntries(i, 'atc', pages)
    if (this.tracing)
      this.emit(
        'sec-inval',
        why,
        `${this.sc.secondaries[i]!.name}: invalidate ATC ${this.rangeText(pages)} (${this.dropped(n)})`,
        this.pagesDetail(pages),
      )
  }
  /** The IOTLB command an atc-first driver sends after its ATC command (see `owed`). */
  iotlbCommand(i: number, pages: readonly number[] | null, why: string): void {
    const d = this.sc.secondaries[i]!
    const n = this.dropEntries(i, 'entries', pages)
    this.emit(
      'sec-inval',
      why,
      `${d.name}: invalidate IOTLB ${this.rangeText(pages)} (${this.dropped(n)}), after the ATC (atc_order: atc-first)`,
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
  protected iotlbSnoop(i: number, pages: readonly number[] | null): void {
    const d = this.sc.secondaries[i]!
    const n = this.dropEntries(i, 'entries', pages)
    this.emit(
      'sec-inval',
      'BTM: snooped broadcast TLBI',
      `${d.name}: invalidate ${d.type === 'hw-walker' && d.ats ? 'IOTLB ' : ''}${this.rangeText(pages)} (${this.dropped(n)})`,
      this.pagesDetail(pages),
    )
  }
  private rangeText(pages: readonly number[] | null): string {
    return pages === null ? 'all' : this.pagesText(pages)
  }
  private dropped(n: number): string {
    return `${count(n, 'entry', 'entries')} dropped`
  }
  /**
   * Drops secondary `i`'s entries for `pages` (all when null) from one level: `entries` (the
   * IOTLB or shadow table) or `atc` (the device ATC). Returns how many went.
   */
  private dropEntries(i: number, level: 'entries' | 'atc', pages: readonly number[] | null): number {
    const sec = this.secW(i)
    const before = sec[level].length
    sec[level] = this.dropFrom(sec[level], pages, (p) => Res.sec(i, p))
    return before - sec[level].length
  }
  // ---- sw-mirror callbacks: KVM's and HMM's side of range_start/range_end ------------
  /**
   * A sw-mirror's invalidation at range_start (KVM's kvm_unmap_gfn_range, dmirror_do_update):
   * its shadow entries for `pages` go, counted as one secondary invalidation and in mirror_zaps.
   * Returns how many went.
   */
  protected mirrorZap(i: number, pages: readonly number[]): number {
    const zapped = this.dropEntries(i, 'entries', pages)
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
  protected mirrorInProgress(i: number, pages: readonly number[], delta: 1 | -1): void {
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
  protected intervalStart(i: number, pages: readonly number[], event: string, owner?: number): void {
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
  protected intervalEnd(i: number, pages: readonly number[]): void {
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
}
