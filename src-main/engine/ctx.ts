/**
 * The step context: the primitives every kernel sequence is lowered onto (the LKMM ".def"
 * idea). Kernel sequences in kernel/*.ts call these by their kernel names; the policy decides
 * here, and only here, which notifier calls reach which secondary.
 *
 * Ctx is built in layers, each extending the one below (src-main/engine/ctx/):
 * - base.ts: step identity, copy-on-write of the state, footprint, control flow, trace, costs,
 *   violations, and `at` (the policy's decision point);
 * - memory.ts: frames, swap, page-cache folios and disk, registers;
 * - locks.ts: PTL, pmd_lock, mmap_lock, i_mmap rwsem, folio lock;
 * - tables.ts: PTEs, PMDs, PTE pages, walk caches, VMAs, pending flushes, the mm's life;
 * - tlbs.ts: CPU TLB, secondary and ATC entries, kernel pages, flags, accesses and their checks;
 * - secondary.ts: a driver's invalidation commands (IOTLB, ATC, walk cache, BTM, KVM, HMM);
 * - this file: the notifier and policy layer: CPU TLB flushes and the arch hook, the kernel
 *   notifier chain, mmu_notifier range_start/range_end/invalidate_range/release.
 */
import type { ArchSite } from './policy'
import { Res } from './footprint'
import { count } from './plural'
import { CtxSecondary } from './ctx/secondary'

export { insertEntry, pteText, type Control, type SiteTally, type TallyingPolicy } from './ctx/base'
export { scenarioExits } from './ctx/tables'

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

export class Ctx extends CtxSecondary {
  // ---- kernel TLB flushes and the kernel notifier chain (2017 proposal) --------------
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
  // ---- CPU TLB flushes (v6.6 arch code) and the arch hook ----------------------------
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
    if (arch === 'arm64') {
      // The SMMU snoops the TLBI into its IOTLB; a device ATC is not covered (reference 4.1).
      // SVA shares the mm's ASID with the SMMU context (arm_smmu_share_asid): it snoops the
      // TLBIs of the mm its device is bound to, not another mm's.
      this.sc.secondaries.forEach((d, i) => {
        if (d.type === 'hw-walker' && d.btm && (d.mm ?? 0) === mm) this.iotlbSnoop(i, full ? null : pages)
      })
    }
    // x86: flush_tlb_mm_range passes (start,end), or (0,-1) above the ceiling.
    // arm64: __flush_tlb_page_nosync passes one page; __flush_tlb_range in v6.6-v6.13 passed
    // an empty range (start advanced in place), which the SMMU treats as invalidate-all.
    if (site) this.archHook(mm, full || (arch === 'arm64' && kind === 'range') ? null : pages, site)
  }
  /** mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end) at an arch site of the policy; null: (0, -1). */
  archHook(mm: number, pages: readonly number[] | null, site: ArchSite): void {
    if (!this.hasHwWalker(mm) || !this.at(site) || this.mmReleased(mm)) return
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'mmu_notifier_arch_invalidate_secondary_tlbs',
      pages === null ? 'range (0, -1): whole address space' : this.pagesText(pages),
      this.pagesDetail(pages),
    )
    this.forHw(mm, (i) => {
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
  // ---- mmu_notifier entry points -----------------------------------------------------
  /**
   * Whether `mm`'s subscription hlist (mmu_notifier_register: KVM, SVA drivers) has a hw-walker
   * driver (the ones with ->invalidate_range / arch_invalidate_secondary_tlbs). Each secondary
   * is bound to one mm (types.ts SecondaryMm): the fork child's mm has subscribers only when a
   * device is bound to it (mm: child).
   */
  private hasHwSubscribers(mm: number): boolean {
    // After mmu_notifier_release() the subscription list is empty (mn_hlist_release unhooks).
    return this.hasHwWalker(mm) && !this.mmReleased(mm)
  }
  /**
   * Whether secondary i still hears range_start/end on `mm`: a hlist subscriber until
   * mmu_notifier_release(); an mmu_interval_notifier (protocol: hmm) for as long as the mm has
   * notifier_subscriptions, since v6.6 mn_itree_release() invalidates the interval tree but
   * leaves its notifiers in it (the driver removes them), and __mmu_notifier_invalidate_range_start
   * calls mn_itree_invalidate() whenever has_itree: exit_mmap's unmap_vmas reaches them.
   */
  private hears(mm: number, i: number): boolean {
    const d = this.sc.secondaries[i]!
    // A driver subscribes to one mm: the process's, or the fork child's (mm: child), bound when
    // fork returns. The one range on the child's mm that can start earlier, a file rmap walk of
    // the VMA dup_mmap linked into i_mmap, is delivered whole: v6.6's bind takes
    // mm_take_all_locks() and so waits for such a walk, and a pair cut in two would unbalance
    // KVM's in-progress count (childDevice.test.ts). It reaches a secondary that holds nothing yet.
    if ((d.mm ?? 0) !== mm) return false
    return (d.type === 'sw-mirror' && d.protocol === 'hmm') || !this.mmReleased(mm)
  }
  /** Whether range_start/end on `mm` reaches any subscriber (hlist or interval tree). */
  hasRangeSubscribers(mm: number): boolean {
    return this.sc.secondaries.some((_, i) => this.hears(mm, i))
  }
  /**
   * mmu_notifier_invalidate_range_start_nonblock() (v6.6, the OOM reaper's): like range_start
   * with !mmu_notifier_range_blockable(). A subscriber that would have to sleep (`nonblock:
   * eagain`: an HMM driver whose mutex_trylock fails, mn_itree_invalidate's -EAGAIN) fails it;
   * mn_hlist_invalidate_range_start then calls invalidate_range_end for the subscribers that
   * already succeeded. Returns false on -EAGAIN.
   */
  rangeStartNonblock(mm: number, pages: readonly number[], event: string): boolean {
    if (!this.hasRangeSubscribers(mm)) return true
    const failing = this.sc.secondaries.findIndex((d, i) => d.nonblock === 'eagain' && this.hears(mm, i))
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
    if (!this.hasRangeSubscribers(mm)) return
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'mmu_notifier_invalidate_range_start',
      `${event} ${this.pagesText(pages)}`,
      this.pagesDetail(pages),
    )
    this.sc.secondaries.forEach((d, i) => {
      if (!this.hears(mm, i)) return
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
   * mmu_notifier_invalidate_range_end(). At the `range_end` site, v4.15's
   * __mmu_notifier_invalidate_range_end first calls ->invalidate_range unless the caller used
   * mmu_notifier_invalidate_range_only_end(); then ->invalidate_range_end (the
   * `invalidate_range_end` site), which _only_end calls too.
   */
  rangeEnd(mm: number, pages: readonly number[], onlyEnd: boolean): void {
    if (!this.hasRangeSubscribers(mm)) return
    this.metrics.notifier_calls++
    const fn =
      onlyEnd && this.names('range_end')
        ? 'mmu_notifier_invalidate_range_only_end'
        : 'mmu_notifier_invalidate_range_end'
    this.emit('notifier', fn, this.pagesText(pages), this.pagesDetail(pages))
    this.sc.secondaries.forEach((d, i) => {
      if (!this.hears(mm, i)) return
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
    if (!this.hasHwWalker() || !this.at(site) || !this.hasHwSubscribers(mm)) return
    this.metrics.notifier_calls++
    this.emit(
      'notifier',
      'mmu_notifier_invalidate_range',
      `${site}: ${pages === null ? 'all' : this.pagesText(pages)}`,
      this.pagesDetail(pages),
    )
    this.forHw(mm, (i) => this.secInvalidate(i, pages, `->invalidate_range (${site})`))
  }
  /**
   * Catalin Marinas's ptep_set_access_flags_notify() (the `ptep_set_access_flags` site): the
   * invalidate_range-class callback (v6.6: arch_invalidate_secondary_tlbs) under the PTL when
   * the PTE changed. A start/end-only driver does not implement it, so start-end's named set
   * with access-flags-notify leaves the site out.
   */
  accessFlagsNotify(mm: number, page: number): void {
    if (!this.hasHwWalker() || !this.at('ptep_set_access_flags') || !this.hasHwSubscribers(mm)) return
    this.metrics.notifier_calls++
    this.emit('notifier', 'ptep_set_access_flags_notify', this.pageName(page), this.pagesDetail([page]))
    this.forHw(mm, (i) => this.secInvalidate(i, [page], 'ptep_set_access_flags_notify'))
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
    // Only the drivers bound to this mm (a device on the fork child keeps its subscription).
    if (!this.sc.secondaries.some((d) => (d.mm ?? 0) === mm)) {
      this.emit('notifier', 'mmu_notifier_release', 'no subscribers')
      return
    }
    this.metrics.notifier_calls++
    this.emit('notifier', 'mmu_notifier_release', "every subscriber's ->release, then unhook them all")
    this.sc.secondaries.forEach((d, i) => {
      if ((d.mm ?? 0) !== mm) return
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
}
