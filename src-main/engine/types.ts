/**
 * Plain-data types shared by every part of the engine. Nothing here runs; everything here
 * survives JSON and structured clone, so results can cross worker and IPC boundaries.
 */
import type { Policy } from './policy'

export type Arch = 'x86_64' | 'arm64'
/** VMA protection as mprotect(2) sees it. */
export type Prot = 'rw' | 'ro' | 'none'
/**
 * Initial PTE state of a page.
 * - `rw`: present, writable, dirty (the default for `prot: rw`).
 * - `ro`: present, read-only, page exclusive: a write fault reuses it (`wp_page_reuse`).
 * - `clean`: present, writable but not dirty (arm64 without hardware DBM: read-only to the MMUs).
 * - `none`: no PTE yet; the first access faults a page in (`do_anonymous_page`).
 */
export type Mapped = 'rw' | 'ro' | 'clean' | 'none'

export interface PageDecl {
  readonly name: string
  readonly value: number
  readonly prot: Prot
  /** Shared with a fork child: PTE read-only in both, mapcount 2; a write fault copies. */
  readonly cow: boolean
  readonly mapped: Mapped
  /**
   * anon: private anonymous memory. pfnmap: a VM_PFNMAP mapping of raw PFNs (device memory, a
   * BAR) set up by the driver (remap_pfn_range): no struct page refcounting, linked in the
   * file's i_mmap tree so that the driver can revoke it with unmap_mapping_range().
   * file: a MAP_SHARED page of a regular file. The page cache holds its own reference (a
   * zap never frees it), writes are tracked by the folio's PG_dirty and the PTE dirty bit,
   * and `writeback` stores its contents to disk (`disk(P)`, initially `value`). Never COW.
   * kernel: a vmalloc address in the kernel's own address space (init_mm), declared under
   * `kernel_pages:`; mapped by `vmalloc`, unmapped by `vfree`, never in a process VMA.
   */
  readonly kind: 'anon' | 'pfnmap' | 'file' | 'kernel'
  /**
   * kind: file, declared `file: P`: this address maps the same file offset as file page P (a
   * second VMA of the file, or where mremap moves P's mapping): its PTE maps P's page-cache
   * folio, which `files[P]` holds; this page has no folio of its own.
   */
  readonly fileOf?: number
  /**
   * pfnmap: what a fault on a none PTE does. 'sigbus' (default): a remap_pfn_range() VMA with
   * no ->fault. 'insert_pfn': the driver's ->fault maps the pfn again (vfio-pci's
   * vfio_pci_mmap_fault, kernel/pfnmap.ts), so an access after a revoke can succeed.
   */
  readonly fault?: 'sigbus' | 'insert_pfn'
  /**
   * The PTE table (page-table page) the page lives in, 0..3: the pages of one table are one
   * 2 MiB PMD range, with its own split page-table lock (pte_lockptr), its own PMD entry
   * (populated or none) and its own walk-cache entry in a hw-walker. Absent: table 0. The
   * pages of a table are adjacent in declaration order and tables come in ascending order
   * (scenario/pages.ts).
   */
  readonly table?: number
  /**
   * false: no VMA at this address before the run, a hole in the address space: an mremap
   * target declared `mapped: none` with no `prot:` (move_vma's copy_vma makes its VMA). An
   * access before that finds no VMA. Absent: the page has a VMA of `prot`.
   */
  readonly vma?: false
}

export type FlushAt = 'start' | 'end' | 'both'

export interface HwWalkerDecl {
  readonly type: 'hw-walker'
  readonly name: string
  /** Broadcast TLB maintenance: the SMMU snoops CPU TLBIs (arm64 only). */
  readonly btm: boolean
  /** Where a start/end-only driver invalidates its TLB. */
  readonly flushAt: FlushAt
  /** Pages with a translation in the TLB before the run (permission of the initial PTE). */
  readonly cached: readonly number[]
  /** Hardware that resets after N faults on one access (Roedel 2014); null = retries forever. */
  readonly retryLimit: number | null
  /** The TLB may keep a read-only entry that just faulted on a write (SMMU: yes). */
  readonly negativeCaching: boolean
  /** Which driver's invalidation commands (and costs) this secondary has. */
  readonly iommu: 'smmu-v3' | 'vt-d' | 'amd-v2'
  /**
   * PCIe ATS: the device keeps its own ATC (device TLB) in front of the IOMMU's IOTLB. A miss in
   * the ATC is a translation request the IOMMU answers from its IOTLB or a walk.
   */
  readonly ats: boolean
  /**
   * The order of the driver's two invalidation commands. 'iotlb-first' is what v6.6 drivers do
   * (SMMU: arm_smmu_tlb_inv_range_asid then arm_smmu_atc_inv_domain; VT-d: qi_flush_piotlb then
   * qi_flush_dev_iotlb_pasid). 'atc-first' lets the device refill its ATC from the still-stale
   * IOTLB between the two.
   */
  readonly atcOrder: 'iotlb-first' | 'atc-first'
  /**
   * Which requests the device's PASID may make: 'user' (SVA of the process, the mainline
   * case) or 'supervisor' (requests with the privilege bit: the device can also translate
   * kernel addresses, as in the 2017 VT-d kernel-SVM design, reference 5.12).
   */
  readonly pasid: 'user' | 'supervisor'
  /**
   * The walker also caches non-leaf entries: the PMD's pointer to a PTE page-table page (a
   * paging-structure / walk cache). A later walk goes through the cached table without reading
   * the PMD again. Only a non-leaf invalidation drops it.
   */
  readonly walkCache: boolean
  /**
   * The driver invalidates leaf entries only (SMMU CMD_TLBI_EL2_VA with leaf=true, VT-d
   * ih=1): its walk cache survives every invalidation. v6.6 SVA drivers invalidate non-leaf
   * (arm_smmu_tlb_inv_range_asid(..., leaf=false), intel_flush_svm_range(..., ih=0)).
   */
  readonly leafOnly: boolean
  /**
   * The driver's ->release (called by mmu_notifier_release from exit_mmap). 'block' (default,
   * v6.6): SMMUv3 arm_smmu_mm_release installs the quiet (translation-disabled) CD and
   * invalidates the ASID's IOTLB and the ATC; VT-d intel_mm_release tears the PASID entry down
   * (intel_pasid_tear_down_entry, fault_ignore): from then on the device's accesses abort.
   * 'none': a driver whose release does nothing (the device keeps translating through its
   * cached entries and the page table being freed).
   */
  readonly release?: 'block' | 'none'
  /**
   * Whether its invalidate_range_start can run with !mmu_notifier_range_blockable (the OOM
   * reaper's mmu_notifier_invalidate_range_start_nonblock). 'eagain': it needs to sleep (a
   * driver lock it must not trylock-fail on) and returns -EAGAIN / false. Default 'proceed'.
   */
  readonly nonblock?: 'proceed' | 'eagain'
  /** See SecondaryMm: 1 for a device bound to the fork child's mm; absent: the process's. */
  readonly mm?: 1
}

export interface SwMirrorDecl {
  readonly type: 'sw-mirror'
  readonly name: string
  readonly cached: readonly number[]
  /**
   * ->release: 'block' (default): kvm_mmu_notifier_release -> kvm_flush_shadow_all (HMM:
   * mn_itree_release invalidates every interval notifier), zapping every shadow entry; later
   * faults fail (the mm has no users: mmget_not_zero fails). 'none': nothing is zapped.
   */
  readonly release?: 'block' | 'none'
  /** See HwWalkerDecl.nonblock: 'eagain' models an HMM driver whose invalidate must take a mutex. */
  readonly nonblock?: 'proceed' | 'eagain'
  /**
   * Which notifier the mirror uses. 'kvm' (default): a struct mmu_notifier whose
   * invalidate_range_start zaps and counts mmu_invalidate_in_progress and whose range_end bumps
   * mmu_invalidate_seq (virt/kvm/kvm_main.c v6.6). 'hmm': an mmu_interval_notifier
   * (mmu_interval_notifier_insert over the mirror's range, mm/mmu_notifier.c v6.6) whose
   * ->invalidate takes the driver lock, calls mmu_interval_set_seq and zaps at range_start;
   * the device fault follows Documentation/mm/hmm.rst: mmu_interval_read_begin (waits while an
   * invalidation of the range runs), hmm_range_fault, driver lock, mmu_interval_read_retry.
   */
  readonly protocol?: 'kvm' | 'hmm'
  /** protocol hmm: false = a driver that programs the device without mmu_interval_read_retry. */
  readonly hmmRetry?: boolean
  /** See SecondaryMm: 1 for a mirror of the fork child's mm; absent: the process's. */
  readonly mm?: 1
}

/**
 * The mm a secondary is bound to (`mm: child` in the scenario): a driver subscribes to one mm
 * (iommu_sva_bind_device(dev, mm) -> mmu_notifier_register; KVM_CREATE_VM takes current->mm;
 * mmu_interval_notifier_insert(mni, mm, ...)). The fork child's mm starts with no subscriptions
 * (v6.6 kernel/fork.c mm_init: mmu_notifier_subscriptions_init, notifier_subscriptions = NULL;
 * dup_mmap copies none): a driver binds to it after fork returns, in the child. Only written
 * when 1, so the decls of every other scenario stay as they were.
 */
export type SecondaryMm = 0 | 1

export type SecondaryDecl = HwWalkerDecl | SwMirrorDecl

export type CpuOp =
  | { readonly kind: 'read'; readonly page: number; readonly reg: number | null }
  | { readonly kind: 'write'; readonly page: number; readonly value: number }
  | { readonly kind: 'write_fault'; readonly page: number }
  | { readonly kind: 'cow_fault'; readonly page: number }
  | { readonly kind: 'munmap'; readonly pages: readonly number[] }
  | { readonly kind: 'madvise_dontneed'; readonly pages: readonly number[] }
  | { readonly kind: 'mprotect'; readonly pages: readonly number[]; readonly prot: Prot }
  | { readonly kind: 'fork' }
  | { readonly kind: 'ksm_merge'; readonly page: number }
  | { readonly kind: 'migrate'; readonly page: number; readonly mode: MigrateMode }
  /**
   * `owner` (a protocol-hmm sw-mirror): the driver of that mirror migrates, passing its
   * pgmap_owner; its ->invalidate skips the MMU_NOTIFY_MIGRATE event and the driver maps the
   * destination into its mirror itself.
   */
  | { readonly kind: 'migrate_vma'; readonly page: number; readonly owner?: number }
  | { readonly kind: 'reclaim'; readonly page: number }
  | { readonly kind: 'unmap_mapping_range'; readonly page: number }
  | { readonly kind: 'writeback'; readonly page: number }
  | { readonly kind: 'vmalloc'; readonly page: number; readonly value: number }
  | { readonly kind: 'vfree'; readonly page: number }
  /** The process's last thread exits: exit_mmap (v6.6 mm/mmap.c), mmu_notifier_release first. */
  | { readonly kind: 'exit' }
  /** The oom_reaper kthread reaps the process's mm: __oom_reap_task_mm (v6.6 mm/oom_kill.c). */
  | { readonly kind: 'oom_reap' }
  /** ftruncate below file page P: truncate_setsize -> truncate_pagecache (v6.6 mm/truncate.c). */
  | { readonly kind: 'truncate'; readonly page: number }
  /** mremap(P, MREMAP_MAYMOVE|MREMAP_FIXED, Q): move_vma -> move_page_tables (v6.6 mm/mremap.c). */
  | { readonly kind: 'mremap'; readonly page: number; readonly to: number }
  | SyncOp

/** Ordering between threads, as a driver and its device agree by a doorbell or a completion. */
export type SyncOp =
  | { readonly kind: 'signal'; readonly flag: number }
  | { readonly kind: 'wait'; readonly flag: number }
  /** __split_huge_pmd() of huge page `hp` (an index into `thp`; v6.6 mm/huge_memory.c). */
  | { readonly kind: 'thp_split'; readonly hp: number }
  /** khugepaged collapse of huge page `hp`'s range (v6.6 mm/khugepaged.c). */
  | { readonly kind: 'thp_collapse'; readonly hp: number }

export type DeviceOp =
  | { readonly kind: 'read'; readonly page: number; readonly reg: number | null }
  | { readonly kind: 'write'; readonly page: number; readonly value: number }
  /** A PCIe ATS Translation Request with no access (a prefetch): fills the device's ATC. */
  | { readonly kind: 'translate'; readonly page: number }
  | SyncOp

export type Op = CpuOp | DeviceOp

export interface ThreadDecl {
  readonly name: string
  readonly kind: 'cpu' | 'device'
  /** Address space: 0 = the process, 1 = its fork child. */
  readonly mm: 0 | 1
  /** Index into `secondaries` for device threads, -1 for CPU threads. */
  readonly via: number
  readonly ops: readonly Op[]
  /** The op strings as written, for traces. */
  readonly opText: readonly string[]
}

export type Verdict = 'holds' | 'violated' | 'unknown'
export type InvariantName =
  'use-after-free' | 'stale-after-return' | 'lost-write' | 'lost-dirty' | 'progress' | 'forbid'
export const INVARIANTS: readonly InvariantName[] = [
  'use-after-free',
  'stale-after-return',
  'lost-write',
  'lost-dirty',
  'progress',
  'forbid',
]
/** What `expect` may say per policy: a verdict, or the name of the invariant that must break. */
/**
 * enum migrate_mode (v6.6 include/linux/migrate_mode.h) of a `migrate` op: `async` (NUMA
 * balancing, demotion, direct compaction's first pass), `sync_light` (kcompactd), `sync`
 * (move_pages, mbind, memory hotplug).
 */
export type MigrateMode = 'async' | 'sync_light' | 'sync'
export const MIGRATE_MODES: readonly MigrateMode[] = ['async', 'sync_light', 'sync']

/**
 * What `expect` says of a policy: `holds`, `violated` (some invariant), an invariant name (that
 * one is violated, the others unconstrained), or `{ violated: [...] }`: exactly that set is
 * violated (a missing or an extra one is a mismatch).
 */
export type Expectation = 'holds' | 'violated' | InvariantName | ExactViolations
export interface ExactViolations {
  readonly violated: readonly InvariantName[]
}

export type ExploreMode = 'exhaustive' | 'random' | 'scripted'

export interface ExploreDecl {
  readonly mode: ExploreMode | null
  readonly seed: number | null
  readonly executions: number | null
  readonly schedule: readonly string[] | null
  readonly maxStates: number | null
}

/**
 * A transparent huge page: a handful of scenario pages (2-4) standing for the 512 subpages of
 * one 2 MiB PMD range: its own PTE table (`table:`), which holds no other page. `mapped: pmd` starts PMD-mapped (one huge translation; the PTE table
 * deposited, as do_huge_pmd_anonymous_page leaves it); `mapped: pte` starts mapped by small
 * pages through a PTE table (what khugepaged collapses). `kind: file` selects the file/shmem
 * collapse path (retract_page_tables / collapse_pte_mapped_thp), modelled on anon frames.
 */
export interface ThpDecl {
  readonly name: string
  readonly pages: readonly number[]
  readonly mapped: 'pmd' | 'pte'
  readonly kind: 'anon' | 'file'
}

export interface Scenario {
  readonly title: string
  readonly source: string | null
  readonly arch: Arch
  readonly pages: readonly PageDecl[]
  readonly secondaries: readonly SecondaryDecl[]
  readonly threads: readonly ThreadDecl[]
  readonly registers: readonly string[]
  readonly forbid: Expr | null
  readonly forbidText: string | null
  /** The policies the file defines by name (`policies:`), each a set of call sites. */
  readonly policies: readonly Policy[]
  /** Policy name (as written, canonicalised) → expectation. */
  readonly expect: ReadonlyArray<readonly [string, Expectation]>
  /** mmu_gather batch limit in pages (null: batches never fill, as when batch pages can be allocated). */
  readonly gatherBatch: number | null
  readonly explore: ExploreDecl
  /** Kernel behaviour toggles (defaults: v6.6). */
  readonly kernel: KernelToggles
  /** Policy name → what its metrics (on the reference schedule) must show, e.g. the cost of a correct policy. */
  readonly expectMetrics: ReadonlyArray<readonly [string, readonly MetricExpectation[]]>
  /** Names of the flags `signal F` sets and `wait F` waits for. */
  readonly flags: readonly string[]
  /**
   * The huge pages (`thp:`), in address order, each in a PTE table of its own; empty when none.
   * The other pages are small pages in other tables (state.ts hugeOf: the huge page of a page).
   */
  readonly thp: readonly ThpDecl[]
  /** Cost-table entries (ns) this scenario overrides. */
  readonly costs: Readonly<Record<string, number>>
}

/** The counters of a run's Metrics (results.ts), in the order reports and the app show them. */
export const METRIC_KEYS = [
  'notifier_calls',
  'secondary_invalidations',
  'device_faults',
  'mirror_zaps',
  'cpu_tlb_flushes',
  'sim_ns',
] as const

/** The metrics `expect_metrics` can name: the run's counters and the invalidations by kind. */
export const METRIC_NAMES = [
  ...METRIC_KEYS,
  'page_invalidations',
  'range_invalidations',
  'full_invalidations',
  'atc_invalidations',
] as const
export type MetricName = (typeof METRIC_NAMES)[number]

/** One `expect_metrics` entry: `full_invalidations: '>= 1'` or `mirror_zaps: 0`. */
export interface MetricExpectation {
  readonly metric: MetricName
  readonly op: '==' | '>=' | '<=' | '>' | '<'
  readonly value: number
}

/** Kernel behaviour toggles, each named for the commit that introduced the v6.6 behaviour. */
export interface KernelToggles {
  /** b67fbebd4cf9 (v5.19): tlb_end_vma() flushes for VM_PFNMAP/VM_MIXEDMAP. */
  readonly pfnmapFlush: boolean
  /**
   * 1cf35d47712d (Linus, 2014, v3.16): zap_pte_range() forces the TLB flush before it drops
   * the PTL when it clears a dirty shared PTE (and on a full batch). false: the flush comes
   * after the PTL is released (tlb_flush_mmu / tlb_finish_mmu).
   */
  readonly dirtyFlushUnderPtl: boolean
  /**
   * 5df397dec7c4 (Linus, 2022, v6.2): page_remove_rmap() of a dirty file page is delayed
   * until after the forced flush (tlb_flush_rmaps, still under the PTL). false: the mapcount
   * drops in the PTE loop, before the flush.
   */
  readonly delayRmap: boolean
  /**
   * e7ad6c2a4b1a (v6.7-rc3, backported to 6.6.y): intel_flush_svm_range() handles the range
   * (0, -1UL) of a full flush. false (v6.6.0): the page count overflows and the VT-d driver's
   * arch_invalidate_secondary_tlbs sends no command at all (reference 4.2, 5.13).
   */
  readonly vtdFullRangeFix: boolean
  /**
   * 60bae7370896 (Popple, 2022): migrate_vma_collect_pmd() flushes the TLB before it drops
   * the PTL. false: after pte_unmap_unlock(), so a concurrent MADV_DONTNEED can return while
   * a stale translation of the page is still cached (reference 5.9, row 16).
   */
  readonly migrateVmaFlushUnderPtl: boolean
  /**
   * f268f6cf875f (Jann Horn, 2022, CVE-2022-48991): the file/shmem collapse path
   * (collapse_and_free_pmd) calls mmu_notifier_invalidate_range_start/end. false: before the
   * fix, the PMD is cleared and the page table freed with no notifier at all.
   */
  readonly collapseNotify: boolean
  /**
   * 2ba99c5e0881 (Jann Horn, 2022): tlb_remove_table_sync_one() after pmdp_collapse_flush, an
   * IPI that waits for lockless GUP-fast walkers (IRQs off) before the page table is reused or
   * freed. false: before the fix.
   */
  readonly gupFastIpi: boolean
  /**
   * eb66ae030829 (Linus, 2018, v4.19; CVE-2018-18281): move_ptes() flushes the old range's TLB
   * before it drops the page-table locks. false: only a dirty PTE was flushed under the lock
   * (5d1904204c99); a clean one was flushed by move_page_tables() after the unlock, so a racing
   * ftruncate could free the page under a stale TLB entry. Absent: true.
   */
  readonly mremapFlushUnderPtl?: boolean
}

/** Expression of a `forbid` condition. */
export type Expr =
  | { readonly k: 'num'; readonly v: number }
  | { readonly k: 'reg'; readonly r: number }
  | { readonly k: 'mem'; readonly page: number }
  /** disk(P): what writeback last stored for file page P. */
  | { readonly k: 'disk'; readonly page: number }
  | { readonly k: 'not'; readonly e: Expr }
  | { readonly k: 'bin'; readonly op: '&&' | '||'; readonly a: Expr; readonly b: Expr }
  | {
      readonly k: 'cmp'
      readonly op: '==' | '!=' | '<' | '<=' | '>' | '>='
      readonly a: Expr
      readonly b: Expr
    }

/** A validation problem: `path` into the input document, `offset` into the string scalar there. */
export interface ScenarioIssue {
  readonly path: ReadonlyArray<string | number>
  readonly offset: number | null
  readonly length: number | null
  readonly message: string
  /** `key`: the problem is the mapping key itself (unknown key), not its value. */
  readonly at: 'value' | 'key'
}

export class ScenarioError extends Error {
  constructor(readonly issues: readonly ScenarioIssue[]) {
    super(issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'))
    this.name = 'ScenarioError'
  }
}
