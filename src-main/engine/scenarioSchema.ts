/**
 * JSON Schema of the scenario language for editors (completion, hover, light diagnostics),
 * generated from the same key and op lists that validateScenario() checks against. The
 * engine's own validation stays the authority: it also checks names, ops and conditions.
 */
import { COST_KEYS, COSTS } from './costs'
import { PRESETS, PRESET_DOCS, SITES, VARIANTS } from './policy'
import {
  CPU_OPS,
  DEVICE_OPS,
  HW_KEYS,
  KERNEL_KEYS,
  PAGE_KEYS,
  PAGE_KINDS,
  SW_KEYS,
  TOP_KEYS,
} from './scenario'
import { INVARIANTS, METRIC_NAMES } from './types'

const OP_DOCS: Record<string, string> = {
  read: 'read P -> reg: a load (CPU) or DMA read (device) through the TLB; the register gets the value',
  write: 'write P value: a store (CPU) or DMA write (device)',
  translate:
    'translate P (device, ats: true): a PCIe ATS Translation Request with no access (prefetch): the IOMMU answers from its IOTLB or a walk, the completion fills the ATC; no PTE: R=W=0, nothing cached',
  write_fault: 'handle_mm_fault(FAULT_FLAG_WRITE) on P: reuse upgrade, dirty-bit update, COW, or nothing',
  cow_fault:
    'a write fault expected to break COW (wp_page_copy); re-checks pte_same and backs off if resolved. A huge page shared by fork (thp:): do_huge_pmd_wp_page splits the PMD, then copies the subpage',
  munmap:
    'munmap P [Q...]: unmap_region with an mmu_gather; pages freed after the flush. A huge page (thp:): zap_huge_pmd when the range covers it, else split_vma splits the PMD first; a range over several PMDs zaps each in turn (zap_pmd_range), in one range and gather',
  madvise_dontneed:
    'madvise(MADV_DONTNEED) P [Q...]: zap_page_range_single per VMA. A huge page (thp:): zap_huge_pmd when the range covers it, else zap_pmd_range splits the PMD first',
  mprotect:
    'mprotect P [Q...] ro|rw|none: change_protection with the mmu_gather; change_pmd_range takes each huge PMD (thp:) under its own pmd_lock: change_huge_pmd, or a split for part of it',
  fork: 'fork: dup_mmap write-protects private pages; threads with mm: child start after it returns. A huge page (thp:): copy_huge_pmd shares the huge PMD read-only in both, each huge PMD in turn (copy_pmd_range)',
  migrate:
    'migrate P [async|sync_light|sync]: migrate_pages (mm/migrate.c v6.6) in that migrate_mode (default async: NUMA balancing; sync_light: kcompactd; sync: move_pages). Every mode first unmaps with try_to_migrate(TTU_BATCH_FLUSH) (sync modes: migrate_pages_sync tries MIGRATE_ASYNC first); a folio with extra references fails folio_migrate_mapping (-EAGAIN), its PTE is restored, and a sync mode retries it with ptep_clear_flush; faults on the migration entry wait. A PMD-mapped huge page (thp:) migrates whole: set_pmd_migration_entry (pmdp_invalidate flushes at once), remove_migration_pmd',
  migrate_vma:
    'migrate_vma P [owner M]: HMM device migration (mm/migrate_device.c): range_start(MMU_NOTIFY_MIGRATE), migrate_vma_collect_pmd clears to a migration entry and flushes under the PTL, range_end, copy, finalize; owner M (a protocol: hmm sw-mirror): its driver migrates, its ->invalidate skips the event and it maps the destination (dmirror_migrate_finalize_and_map). A subpage of a huge page (thp:): split_huge_page first',
  reclaim:
    'reclaim P: try_to_unmap to a swap entry with a batched flush, pageout, free; a later fault swaps in (mm/vmscan.c). A PMD-mapped huge page (thp:) is swapped whole (THP_SWAP) after try_to_unmap_one splits its PMD (TTU_SPLIT_HUGE_PMD)',
  ksm_merge:
    'ksm_merge P: write_protect_page, pages_identical with a stable page of equal content, replace_page (mm/ksm.c). A subpage of a huge page (thp:): split_huge_page first',
  unmap_mapping_range:
    "unmap_mapping_range P: a driver revokes its pfnmap mapping through the file's i_mmap tree (zap_page_range_single)",
  vmalloc:
    'vmalloc K [value]: a kernel page at vmalloc address K; purges lazily freed areas first (flush_tlb_kernel_range), then maps a new page (mm/vmalloc.c)',
  vfree:
    'vfree K: clear the kernel PTE without a flush (the area waits for the lazy purge), free the page at once (mm/vmalloc.c)',
  signal: 'signal F: set flag F (a driver ringing a doorbell, a completion)',
  wait: 'wait F: block until another thread has signalled F',
  thp_split:
    'thp_split H: __split_huge_pmd of huge page H (declared under thp:): range_start, pmd_lock, pmdp_invalidate (flush_tlb_range), PTEs to the same pages, range_end (v4.15: only_end) (mm/huge_memory.c). kind: file: pmdp_huge_clear_flush zaps the PMD, no PTEs (the pages refault from the page cache)',
  thp_collapse:
    'thp_collapse H: khugepaged of huge page H: collapse_huge_page (anon) or collapse_and_free_pmd (kind: file): range_start, pmdp_collapse_flush, range_end, tlb_remove_table_sync_one, copy into a new huge page, free the old pages (and, for file, the page table), set_pmd_at (mm/khugepaged.c)',
  writeback:
    'writeback P (kind: file): folio_lock, folio_clear_dirty_for_io -> folio_mkclean (no rmap walk if unmapped) -> page_vma_mkclean_one, then the contents go to disk(P) (mm/page-writeback.c, mm/rmap.c)',
  exit: "exit: the process's last thread exits: exit_mmap: mmu_notifier_release (each driver's ->release, then no subscriber is left), unmap_vmas with no notifier, free_pgtables, tlb_finish_mmu frees the pages (mm/mmap.c); the last op of its thread",
  mremap:
    'mremap P Q: mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of page P to address Q (mapped: none; a file page needs Q declared file: P): mmap_write_lock, range_start over P, move_ptes under the PTL (flush_tlb_batched_pending, ptep_get_and_clear, set_pte_at at Q, flush_tlb_range of P before the unlock: eb66ae030829), range_end, then the old VMA is unmapped (mm/mremap.c)',
  truncate:
    "truncate P (kind: file): ftruncate below P: i_size_write (faults now SIGBUS), unmap_mapping_range (zap_page_range_single with notifiers), truncate_inode_pages (folio_lock, unmap again if a fault mapped it, filemap_remove_folio, the page cache's reference dropped) (mm/truncate.c). The first subpage of a kind: file huge page (thp:): the whole huge page (zap_huge_pmd, truncate_inode_folio)",
  oom_reap:
    'oom_reap: the oom_reaper kthread: __oom_reap_task_mm under mmap_read_trylock zaps the anon VMAs with mmu_notifier_invalidate_range_start_nonblock; a notifier returning -EAGAIN (nonblock: eagain) makes it skip the VMA (mm/oom_kill.c)',
}

const KERNEL_DOCS: Record<(typeof KERNEL_KEYS)[number], string> = {
  pfnmap_flush: 'b67fbebd4cf9 (v5.19): tlb_end_vma flushes for VM_PFNMAP; false = before the fix',
  dirty_flush_under_ptl:
    '1cf35d47712d (Linus, 2014): zap_pte_range flushes before dropping the PTL when it clears a dirty shared PTE; false = before 2014 (also implies delay_rmap: false)',
  vtd_full_range_fix:
    'e7ad6c2a4b1a (v6.7-rc3, in 6.6.y): the VT-d driver handles the (0, -1UL) range of a full flush; false = v6.6.0, where it sends no invalidation at all',
  migrate_vma_flush_under_ptl:
    '60bae7370896 (Popple, 2022): migrate_vma_collect_pmd flushes before pte_unmap_unlock; false = after it, so a concurrent MADV_DONTNEED can return with a stale TLB',
  delay_rmap:
    '5df397dec7c4 (Linus, 2022, v6.2): page_remove_rmap of a dirty file page waits until after that flush (tlb_flush_rmaps); false = 2014..v6.1',
  collapse_notify:
    'f268f6cf875f (Jann Horn, 2022, CVE-2022-48991): the file/shmem collapse (collapse_and_free_pmd) calls range_start/end; false = no notifier at all (needs thp kind: file)',
  mremap_flush_under_ptl:
    'eb66ae030829 (Linus, 2018, CVE-2018-18281): move_ptes flushes the old range before dropping the page-table lock; false = a clean PTE was flushed after the unlock, so a racing ftruncate could free the page under a stale TLB entry',
  gup_fast_ipi:
    '2ba99c5e0881 (Jann Horn, 2022): tlb_remove_table_sync_one() IPI after pmdp_collapse_flush waits for GUP-fast walkers before the page table is reused or freed; false = before the fix',
}

/**
 * An op list. Its items carry no description (a generic hover would show every op's doc on each
 * op) and no pattern (the engine's own marker names the unknown op and suggests one; a pattern
 * mismatch said the same in regex). The editor completes op names and documents the op under
 * the cursor from `x-op-docs`.
 */
const OPS_SCHEMA = { type: 'array', items: { type: 'string' } }

function opDocs(ops: readonly string[]): Record<string, string> {
  return Object.fromEntries(ops.map((o) => [o, OP_DOCS[o] ?? o]))
}

export function scenarioJsonSchema(): object {
  const policyKeys = PRESETS.flatMap((p) => [p, ...VARIANTS.map((v) => `${p}+${v}`)])
  const expectation = {
    oneOf: [
      { enum: ['holds', 'violated', ...INVARIANTS] },
      {
        type: 'object',
        description: 'Exactly these invariants are violated (a missing or an extra one is a mismatch)',
        required: ['violated'],
        additionalProperties: false,
        properties: {
          violated: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: INVARIANTS } },
        },
      },
    ],
  }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'MMU Notifier Lab scenario',
    type: 'object',
    required: ['title', 'arch'],
    additionalProperties: false,
    properties: {
      title: { type: 'string', description: 'One line saying what the scenario shows' },
      source: { type: 'string', description: 'Where the case comes from (commit, thread, document)' },
      notes: { type: 'string', description: 'Free text' },
      arch: {
        enum: ['x86_64', 'arm64'],
        description: 'Decides the CPU TLB-flush rules (and where the arch hook fires)',
      },
      pages: {
        type: 'object',
        description:
          'Page name -> initial state, in address order; pages with the same table: share a PTE page (one PMD range)',
        additionalProperties: {
          type: 'object',
          additionalProperties: false,
          properties: {
            value: { type: 'integer', description: 'Initial contents' },
            prot: { enum: ['rw', 'ro', 'none'], description: 'VMA protection' },
            cow: { type: 'boolean', description: 'Shared with a fork child: read-only PTE, a write copies' },
            mapped: {
              enum: ['rw', 'ro', 'clean', 'none'],
              description:
                'PTE state: rw (writable, dirty), ro (read-only, exclusive), clean (writable, not dirty), none (no PTE yet)',
            },
            kind: {
              enum: [...PAGE_KINDS],
              description:
                'anon (private anonymous), pfnmap (a driver VM_PFNMAP mapping), file (a MAP_SHARED file page: page cache, PG_dirty, written back to disk(P))',
            },
            file: {
              type: 'string',
              description:
                "kind: file only: this address maps the same file offset as file page P (P's page-cache folio): a second VMA of the file, or an mremap target",
            },
            fault: {
              enum: ['sigbus', 'insert_pfn'],
              description:
                "kind: pfnmap only: what a fault on the revoked (none) PTE does: sigbus (default: a remap_pfn_range VMA with no ->fault) or insert_pfn (the driver's ->fault maps the pfn again, as vfio-pci's vfio_pci_mmap_fault)",
            },
            table: {
              type: 'integer',
              minimum: 0,
              maximum: 3,
              description:
                "The PTE table (one 2 MiB PMD range) the page lives in, 0-3 (default 0): its own split page-table lock, PMD and walk-cache entry. A table's pages are adjacent, tables ascend without gaps",
            },
          },
        },
      },
      secondary: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name', 'type'],
          properties: {
            name: {
              type: 'string',
              description: "The secondary's name: device threads name it in via, traces by it",
            },
            type: {
              enum: ['hw-walker', 'sw-mirror'],
              description:
                'hw-walker: SVA IOMMU TLB filled by walking the CPU page table; sw-mirror: KVM/HMM shadow table',
            },
            btm: { type: 'boolean', description: 'arm64 SMMU broadcast TLB maintenance: snoops CPU TLBIs' },
            flush_at: {
              enum: ['start', 'end', 'both'],
              description: 'Where a start/end-only driver invalidates its TLB',
            },
            cached: {
              type: 'array',
              items: { type: 'string' },
              description: 'Pages with a translation before the run',
            },
            retry_limit: {
              type: 'integer',
              minimum: 1,
              description: 'The device resets after N faults on one access',
            },
            negative_caching: {
              type: 'boolean',
              description: 'A read-only entry that faulted on a write stays cached',
            },
            iommu: {
              enum: ['smmu-v3', 'vt-d', 'amd-v2'],
              description:
                'The driver whose invalidation commands and costs apply (default: smmu-v3 on arm64, vt-d on x86)',
            },
            pasid: {
              enum: ['user', 'supervisor'],
              description:
                'user: SVA of the process (mainline); supervisor: the device may also translate kernel addresses (2017 VT-d design, x86_64 only)',
            },
            ats: {
              type: 'boolean',
              description:
                'PCIe ATS: the device has its own ATC in front of the IOTLB (cached pages are in both); BTM does not cover it',
            },
            walk_cache: {
              type: 'boolean',
              description:
                "The walker caches non-leaf entries (the PMD's pointer to the PTE table: a huge page's, deposited or detached under its PMD, else the PTE page that munmap's free_pgtables frees); only a non-leaf invalidation drops them",
            },
            leaf_only: {
              type: 'boolean',
              description:
                'The driver invalidates leaf entries only (SMMU leaf=true, VT-d ih=1), so its walk cache survives; v6.6 drivers invalidate non-leaf (needs walk_cache)',
            },
            release: {
              enum: ['block', 'none'],
              description:
                "The driver's ->release at exit_mmap: block (default, v6.6: SMMUv3 quiet CD / VT-d PASID teardown with the IOTLB and ATC invalidated, KVM kvm_flush_shadow_all; later DMA aborts) or none (it does nothing)",
            },
            nonblock: {
              enum: ['proceed', 'eagain'],
              description:
                'Its invalidate_range_start under !blockable (the OOM reaper): proceed (default) or eagain (it must sleep: -EAGAIN, the reaper skips the VMA)',
            },
            protocol: {
              enum: ['kvm', 'hmm'],
              description:
                'sw-mirror: kvm (default: mmu_notifier, zap + in_progress at range_start, seq++ at range_end) or hmm (an mmu_interval_notifier: ->invalidate sets the sequence and zaps at range_start; faults use mmu_interval_read_begin / hmm_range_fault / mmu_interval_read_retry under the driver lock)',
            },
            hmm_retry: {
              type: 'boolean',
              description:
                'protocol: hmm: false = the driver programs its device without mmu_interval_read_retry (default true)',
            },
            mm: {
              enum: ['process', 'child'],
              description:
                "The mm the driver bound the secondary to: process (default) or child, the fork child's (a fork op or cow: true pages; bound after fork returns, as dup_mmap copies no subscription): it hears only the notifier calls on the child's mm, translates and faults through the child's page table, and its device threads start once fork returned. Not with release, nonblock, pasid: supervisor or thp:; cached: cow: true pages only",
            },
            atc_order: {
              enum: ['iotlb-first', 'atc-first'],
              description:
                "Order of the driver's invalidations (v6.6: iotlb-first); atc-first lets the device refill its ATC from the stale IOTLB",
            },
          },
          propertyNames: { enum: [...new Set([...HW_KEYS, ...SW_KEYS])] },
          // Each type has its own keys (the loader's HW_KEYS and SW_KEYS).
          if: { properties: { type: { const: 'sw-mirror' } }, required: ['type'] },
          then: { propertyNames: { enum: [...SW_KEYS] } },
          else: { propertyNames: { enum: [...HW_KEYS] } },
        },
      },
      cpus: {
        type: 'object',
        description: 'Thread name -> ops (each thread on its own CPU)',
        additionalProperties: {
          oneOf: [
            OPS_SCHEMA,
            {
              type: 'object',
              properties: {
                mm: {
                  enum: ['process', 'child'],
                  description:
                    'The address space the thread runs in: process (default) or child (the fork child: it starts when fork returns, or at once with cow: true pages)',
                },
                ops: { ...OPS_SCHEMA, description: "The thread's ops, in order" },
              },
              additionalProperties: false,
            },
          ],
        },
      },
      devices: {
        type: 'object',
        description: 'Thread name -> { via: secondary, ops }',
        additionalProperties: {
          type: 'object',
          required: ['via', 'ops'],
          additionalProperties: false,
          properties: {
            via: {
              type: 'string',
              description: 'The secondary (hw-walker or sw-mirror) the device accesses memory through',
            },
            ops: { ...OPS_SCHEMA, description: "The device's ops, in order" },
          },
        },
      },
      forbid: {
        type: 'string',
        description:
          'A condition on the final state, e.g. r1 == 1 && r0 == 0; mem(P) reads page P, disk(P) what writeback stored for file page P',
      },
      policies: {
        type: 'object',
        description:
          'Policies this file defines: name -> the call sites where secondaries are notified (and presets whose sites it takes), e.g. { popple-v1: [start-end, handle_pte_fault] }; expect and --policy use the name',
        additionalProperties: {
          type: 'array',
          uniqueItems: true,
          items: {
            anyOf: [
              ...SITES.map((s) => ({ const: s.name, description: `${s.kernel}: ${s.doc}` })),
              { enum: policyKeys, description: 'a preset (with variants): all of its sites' },
            ],
          },
        },
      },
      expect: {
        type: 'object',
        description:
          'Policy (a preset[+variant], sites:a,b, or a name defined in policies:) -> holds | violated | the invariant that must break | { violated: [the exact set of invariants that break] }',
        properties: Object.fromEntries(
          policyKeys.map((k) => [
            k,
            { ...expectation, description: PRESET_DOCS[k.split('+')[0] as keyof typeof PRESET_DOCS] },
          ]),
        ),
        additionalProperties: expectation,
      },
      expect_metrics: {
        type: 'object',
        description:
          "Policy -> bounds on its metrics (reference schedule): a count (3) or a bound ('>= 1'); the policy must be in expect too",
        additionalProperties: {
          type: 'object',
          additionalProperties: false,
          properties: Object.fromEntries(
            METRIC_NAMES.map((m) => [
              m,
              { type: ['integer', 'string'], pattern: '^\\s*(==|>=|<=|>|<)\\s*\\d+\\s*$' },
            ]),
          ),
        },
      },
      kernel_pages: {
        type: 'object',
        description:
          'Kernel page name -> initial state: vmalloc addresses in init_mm (x86_64), reached by CPU threads and by devices with pasid: supervisor',
        additionalProperties: {
          type: 'object',
          additionalProperties: false,
          properties: {
            value: { type: 'integer', description: 'Initial contents' },
            mapped: {
              enum: ['rw', 'none'],
              description: "rw: vmalloc'ed before the run (default); none: not yet",
            },
          },
        },
      },
      thp: {
        type: 'object',
        description:
          'Transparent huge pages: each name -> { pages: [A, B], mapped: pmd | pte, kind: anon | file }; 2-4 adjacent subpages standing for 512, each huge page its own PMD range (its own PTE table, assigned when no page declares table:); the other pages are small pages beside them',
        additionalProperties: {
          oneOf: [
            { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 4 },
            {
              type: 'object',
              required: ['pages'],
              additionalProperties: false,
              properties: {
                pages: { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 4 },
                mapped: {
                  enum: ['pmd', 'pte'],
                  description:
                    'pmd: one huge PMD (default); pte: small PTEs through a PTE table (what khugepaged collapses)',
                },
                kind: {
                  enum: ['anon', 'file'],
                  description:
                    'anon: collapse_huge_page; file: a MAP_SHARED shmem huge page whose subpages are page-cache pages: the file/shmem collapse path (collapse_and_free_pmd), and a split that zaps the PMD (no PTEs; the pages refault, do_set_pmd or a PTE) and a zap that frees nothing',
                },
              },
            },
          ],
        },
      },
      kernel: {
        type: 'object',
        description: 'Kernel behaviour toggles; all default to v6.6 (true)',
        additionalProperties: false,
        properties: Object.fromEntries(
          KERNEL_KEYS.map((k) => [k, { type: 'boolean', description: KERNEL_DOCS[k] }]),
        ),
      },
      mmu_gather: {
        type: 'object',
        additionalProperties: false,
        properties: {
          batch: {
            type: 'integer',
            minimum: 1,
            description:
              'Pages an mmu_gather batch holds before __tlb_remove_page forces a flush under the PTL (default: batches never fill)',
          },
        },
      },
      costs: {
        type: 'object',
        description: 'Cost-table overrides in ns (results name the table used)',
        additionalProperties: false,
        properties: Object.fromEntries(
          COST_KEYS.map((c) => [c, { type: 'integer', minimum: 0, description: COSTS[c].source }]),
        ),
      },
      explore: {
        type: 'object',
        additionalProperties: false,
        properties: {
          mode: {
            enum: ['exhaustive', 'random', 'scripted'],
            description:
              'exhaustive (default): every interleaving; random: sampled schedules; scripted: the one schedule given',
          },
          seed: { type: 'integer', minimum: 0, description: 'random: the PRNG seed' },
          executions: { type: 'integer', minimum: 1, description: 'random: how many schedules to sample' },
          schedule: {
            type: 'array',
            items: { type: 'string' },
            description: 'scripted: thread names, one per step',
          },
          max_states: { type: 'integer', minimum: 1, description: 'exhaustive: the state budget' },
        },
      },
    },
    propertyNames: { enum: [...TOP_KEYS] },
    [`x-page-keys`]: [...PAGE_KEYS],
    /** Op name -> one-line doc, per thread kind: the editor's op completion and hover. */
    [`x-op-docs`]: { cpu: opDocs(CPU_OPS), device: opDocs(DEVICE_OPS) },
  }
}

export const SCENARIO_TEMPLATE = `title: What this scenario shows, in one line
source: Where it comes from (commit, thread, document)
arch: arm64
pages:
  P: { value: 0, prot: rw }
secondary:
  - { name: smmu, type: hw-walker, cached: [P] }
cpus:
  C0: [munmap P]
devices:
  D0: { via: smmu, ops: [write P 1, write P 2] }
expect: { start-end: holds, invalidate-range: holds, arch-hook: holds }
`
